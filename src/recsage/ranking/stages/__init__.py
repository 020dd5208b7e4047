"""Ranking stages: one module per kind, registered by name in `registry`."""
