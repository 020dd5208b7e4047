"""Text-similarity channel: item text vectors near the recent history."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsage.data.schema import Dataset
from recsage.errors import RecsageError
from recsage.retrieval.channels.base import Channel, Resources, exclude_top
from recsage.types import QueryBatch, history_matrix


class TextChannel(Channel):
    """Semantic neighbours: cosine between item text vectors and the mean of recent ones."""

    kind = "text"
    grows = True

    @dataclass
    class Config:
        recent: int = 10

    def fit(self, data: Dataset, resources: Resources) -> None:
        if resources.item_text_vectors is None:
            raise RecsageError(f"text channel '{self.name}' needs item text vectors")
        self.resources = resources

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.resources.item_text_vectors
        assert vectors is not None
        recent = [s[-self.config.recent :] for s in batch.sequences]
        h = history_matrix(recent, batch.n_items, half_life=3.0)
        prof = np.asarray(h @ vectors)
        prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
        scores = prof @ vectors.T
        scores[np.asarray(h.sum(axis=1)).ravel() == 0] = -np.inf
        return exclude_top(scores.astype(np.float32), batch, n)

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        self.fit(None, resources)  # type: ignore[arg-type]
