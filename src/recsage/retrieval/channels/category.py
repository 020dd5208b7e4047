"""Category channel: popular items in the categories of the user's recent history.

A content signal that needs no co-occurrence data: it serves short histories and narrow
tastes, and items whose categories are known but that few people have interacted with yet.
Also the worked example of adding a channel in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsage.data.schema import Dataset
from recsage.retrieval.channels.base import Channel, Resources, exclude_top
from recsage.types import QueryBatch, history_matrix


class CategoryChannel(Channel):
    """score = share of the recent history in the item's categories + `popularity_weight` x
    the item's popularity (scaled to [0, 1]); items sharing no category are never returned."""

    kind = "category"
    reason = "popular in the categories you chose recently"

    @dataclass
    class Config:
        recent: int = 10
        popularity_weight: float = 0.5

    def fit(self, data: Dataset, resources: Resources) -> None:
        table = data.item_table
        lists = (
            [c if isinstance(c, list | tuple | np.ndarray) else [] for c in table["categories"]]
            if "categories" in table.columns
            else [[] for _ in range(data.n_items)]
        )
        names = sorted({str(c) for row in lists for c in row})
        code = {c: i for i, c in enumerate(names)}
        rows = np.repeat(np.arange(len(lists)), [len(r) for r in lists])
        cols = np.array([code[str(c)] for r in lists for c in r], np.int64)
        self.item_categories = sp.csr_matrix(
            (np.ones(len(cols), np.float32), (rows, cols)), shape=(data.n_items, max(1, len(names)))
        )
        counts = np.bincount(data.interactions.item, minlength=data.n_items).astype(np.float32)
        self.popularity = counts / max(float(counts.max(initial=0.0)), 1.0)

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        recent = [s[-self.config.recent :] for s in batch.sequences]
        h = history_matrix(recent, batch.n_items)[:, : self.item_categories.shape[0]]
        profile = np.asarray((h @ self.item_categories).todense(), np.float32)  # (B, G)
        profile /= np.maximum(profile.sum(axis=1, keepdims=True), 1e-12)
        overlap = np.asarray((self.item_categories @ profile.T).T, np.float32)  # (B, I)
        scores = overlap + self.config.popularity_weight * self.popularity[None, :]
        scores[overlap <= 0] = -np.inf
        return exclude_top(scores, batch, n)

    def state(self) -> dict[str, np.ndarray]:
        m = self.item_categories
        return {
            "indptr": m.indptr.astype(np.int64),
            "indices": m.indices.astype(np.int64),
            "n_categories": np.array([m.shape[1]], np.int64),
            "popularity": self.popularity,
        }

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        indptr, indices = state["indptr"], state["indices"]
        shape = (len(indptr) - 1, int(state["n_categories"][0]))
        data = np.ones(len(indices), np.float32)
        self.item_categories = sp.csr_matrix((data, indices, indptr), shape=shape)
        self.popularity = state["popularity"]
