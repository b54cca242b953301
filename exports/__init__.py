"""SavedModel export for TF Serving: python -m exports.export."""
