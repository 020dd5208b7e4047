"""Dataset readers, one module per source family, found by name in `registry`."""
