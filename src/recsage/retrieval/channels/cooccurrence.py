"""Item-item co-occurrence (next-item neighbourhood) channel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsage.data.schema import Dataset
from recsage.retrieval.channels.base import Channel, Resources, exclude_top
from recsage.types import QueryBatch


class CooccurrenceChannel(Channel):
    """Items that follow/precede the user's recent items within `window` steps elsewhere.

    Co-occurrence counts are normalized like cosine (c_ij / sqrt(c_i c_j)) and summed over
    the last `recent` history items, the most recent weighted most (`decay` per step).
    """

    kind = "cooccurrence"
    reason = "often chosen right after items in your history"

    @dataclass
    class Config:
        window: int = 3
        recent: int = 10
        decay: float = 0.8
        neighbors: int = 100

    def fit(self, data: Dataset, resources: Resources) -> None:
        from recsage.models.baselines import keep_top_per_row

        inter = data.interactions
        n_items = data.n_items
        rows, cols = [], []
        for off in range(1, self.config.window + 1):
            if off >= len(inter):
                break
            ok = inter.user[:-off] == inter.user[off:]  # sorted by user: same user, off apart
            a, b = inter.item[:-off][ok], inter.item[off:][ok]
            rows += [a, b]
            cols += [b, a]
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        co = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_items, n_items))
        co.sum_duplicates()
        co.setdiag(0)
        co.eliminate_zeros()
        deg = np.sqrt(np.asarray(co.sum(axis=1)).ravel()).astype(np.float32)
        rr = np.repeat(np.arange(n_items), np.diff(co.indptr))
        d = deg[rr] * deg[co.indices]
        co.data = co.data / np.where(d > 0, d, 1.0)
        self.graph = keep_top_per_row(co.tocsr(), self.config.neighbors)

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        recent = [s[-cfg.recent :] for s in batch.sequences]
        lengths = np.array([len(s) for s in recent])
        steps = [np.arange(k)[::-1] for k in lengths]
        flat = np.concatenate(steps) if steps else np.zeros(0, np.int64)
        w = np.power(cfg.decay, flat.astype(np.float64)).astype(np.float32)
        rows = np.repeat(np.arange(len(recent)), lengths)
        cols = np.concatenate(recent) if len(recent) else np.zeros(0, np.int64)
        h = sp.csr_matrix((w, (rows, cols)), shape=(len(recent), batch.n_items))
        scores = (h @ self.graph).toarray()
        scores[scores == 0] = -np.inf
        return exclude_top(scores, batch, n)

    def state(self) -> dict[str, np.ndarray]:
        g = self.graph
        return {"data": g.data, "indices": g.indices.astype(np.int64), "indptr": g.indptr}

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        n = len(state["indptr"]) - 1
        self.graph = sp.csr_matrix((state["data"], state["indices"], state["indptr"]), (n, n))
