"""The generic EM training engine."""
