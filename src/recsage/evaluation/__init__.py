"""Evaluation: the full-ranking protocol, pipeline diagnostics, the runner and reports."""

from __future__ import annotations

from recsage.evaluation.protocol import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate"]
