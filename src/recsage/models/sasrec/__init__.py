"""SASRec: causal Transformer over item sequences (ID + text adapter, or text-only)."""

from __future__ import annotations

from recsage.models.sasrec.model import SASRec, sequence_scorer
from recsage.models.sasrec.net import SASRecConfig

__all__ = ["SASRec", "SASRecConfig", "sequence_scorer"]
