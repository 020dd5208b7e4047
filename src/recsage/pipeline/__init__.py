"""The pipeline: channels -> merge -> stages from a TOML spec; one object for every caller."""

from __future__ import annotations

from recsage.pipeline.pipeline import Pipeline, Trace
from recsage.types import Query, Recommendation

__all__ = ["Pipeline", "Query", "Recommendation", "Trace"]
