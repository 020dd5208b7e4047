"""Metrics and the full-ranking evaluation protocol."""

from __future__ import annotations

from recsage.evaluation.metrics import (
    catalogue_coverage,
    intra_list_diversity,
    metrics_from_positions,
    novelty,
    target_positions,
    top_k,
)
from recsage.evaluation.protocol import EvalResult, evaluate

__all__ = [
    "EvalResult",
    "catalogue_coverage",
    "evaluate",
    "intra_list_diversity",
    "metrics_from_positions",
    "novelty",
    "target_positions",
    "top_k",
]
