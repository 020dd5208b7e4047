"""Reciprocal-rank fusion pre-rank over the channels' rank columns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsage.ranking.stages.base import Stage, StageContext
from recsage.types import CandidateBatch


class RRFStage(Stage):
    """Reciprocal-rank fusion of the channels: sum_c w_c / (k + rank_c). Cheap, no training."""

    kind = "rrf"

    @dataclass
    class Config:
        k: float = 60.0
        weights: dict[str, float] = field(default_factory=dict)

    def score(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray:
        total = np.zeros(cands.shape, np.float64)
        for c in cands.channel_names:
            r = cands.scores.get(f"{c}_rank")
            if r is None:
                continue
            w = self.config.weights.get(c, 1.0)
            total += np.where(np.isfinite(r), w / (self.config.k + r), 0.0)
        return np.where(cands.valid, total, np.nan).astype(np.float32)
