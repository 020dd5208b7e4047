"""Retrieval channels: one module per kind, registered by name in `registry`."""
