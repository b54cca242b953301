"""Errors every data reader raises (no TensorFlow import, so the model modules can use the readers' types)."""

from __future__ import annotations

__all__ = ["MissingDataError"]


class MissingDataError(FileNotFoundError, ValueError):
    """A data file or directory that is missing (a ``ValueError`` too, as ``Task.check_data`` promises)."""
