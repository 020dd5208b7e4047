"""Learned ranker stage (LambdaMART, FM, NFM, DeepFM, DIN) over candidate features."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsage.errors import ConfigError
from recsage.ranking.stages.base import Stage, StageContext
from recsage.types import CandidateBatch


class LearnedStage(Stage):
    """A learned ranker (FM / NFM / DeepFM / DIN / LightGBM) over candidate features."""

    kind = "learned"
    needs_features = True

    @dataclass
    class Config:
        learner: str = "lgbm"
        objective: str = "listwise"
        params: dict[str, Any] = field(default_factory=dict)
        negatives: int = 50
        seed: int = 0

    ranker: Any = None

    def make_ranker(self) -> Any:
        from recsage.ranking.learners.registry import create_ranker

        params = dict(self.config.params)
        params.setdefault("objective", self.config.objective)
        return create_ranker(self.config.learner, **params)

    def score(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray:
        from recsage.ranking.training import ranking_data

        if self.ranker is None:
            raise ConfigError(f"stage '{self.name}' is not trained; fit the pipeline first")
        n_items = len(ctx.item_category) if ctx.item_category is not None else 0
        data, rows = ranking_data(cands, ctx, labels=None, n_items=n_items)
        out = np.full(cands.shape, np.nan, np.float32)
        if len(rows[0]):
            out[rows] = self.ranker.predict(data)
        return out

    def save(self, path: Path) -> None:
        if self.ranker is not None:
            self.ranker.save(path)

    def load(self, path: Path) -> None:
        from recsage.ranking.learners.base import Ranker

        self.ranker = Ranker.load(path)
