"""Registered architectures; importing this package registers every model."""

from zoo.models import char_lm, handwriting, mnist, nmt, wrn, yt8m, yt8m_official, yt8m_pooling  # noqa: F401
