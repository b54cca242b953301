"""absl-flag trainers: python -m trainers.train."""
