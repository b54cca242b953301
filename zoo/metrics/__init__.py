"""Metrics: YouTube-8M benchmark metrics, bits per character."""
