"""Popularity / trending channel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsage.data.schema import Dataset
from recsage.retrieval.channels.base import Channel, Resources, exclude_top
from recsage.types import QueryBatch


class PopularityChannel(Channel):
    """Most popular items; with `half_life_days` > 0, trending (time-decayed counts)."""

    kind = "popularity"

    @dataclass
    class Config:
        half_life_days: float = 0.0

    def fit(self, data: Dataset, resources: Resources) -> None:
        inter = data.interactions
        if self.config.half_life_days > 0 and len(inter):
            age_days = (inter.timestamp.max() - inter.timestamp) / 86400.0
            w = np.power(0.5, age_days / self.config.half_life_days)
        else:
            w = np.ones(len(inter))
        self.counts = np.bincount(inter.item, weights=w, minlength=data.n_items).astype(np.float32)

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.broadcast_to(self.counts, (len(batch), len(self.counts)))
        return exclude_top(np.array(scores), batch, n)

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        self.counts = state["counts"]
