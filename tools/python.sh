#!/bin/sh
# The project's interpreter: the python3 first on PATH (the activated virtual environment).
exec python3 "$@"
