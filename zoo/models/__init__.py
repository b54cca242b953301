"""Registered architectures; importing this package registers every model."""

from zoo.models import char_lm, handwriting, mnist, wrn, yt8m  # noqa: F401
