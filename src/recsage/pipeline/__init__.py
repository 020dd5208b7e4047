"""Multi-channel retrieval and multi-stage ranking, driven by a TOML spec."""

from __future__ import annotations

from recsage.pipeline.candidates import CandidateBatch, history_matrix
from recsage.pipeline.channels import CHANNELS, QueryBatch, create_channel
from recsage.pipeline.merge import merge_channels
from recsage.pipeline.pipeline import Pipeline, Query, Recommendation, Trace
from recsage.pipeline.stages import STAGES, create_stage

__all__ = [
    "CHANNELS",
    "STAGES",
    "CandidateBatch",
    "Pipeline",
    "Query",
    "QueryBatch",
    "Recommendation",
    "Trace",
    "create_channel",
    "create_stage",
    "history_matrix",
    "merge_channels",
]
