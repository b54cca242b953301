"""Data pipelines over the real on-disk formats, and writers for tests."""
