"""recsage: an LLM-enhanced personalized recommender (library, CLI and HTTP service)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
