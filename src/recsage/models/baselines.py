"""Classic baselines: most-popular, item-kNN (cosine), EASE and ALS matrix factorization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsage.data.schema import Dataset
from recsage.errors import ConfigError, RecsageError
from recsage.models.base import Recommender


@dataclass
class PopularityConfig:
    """Most-popular: every user gets the items with the most training interactions."""


class Popularity(Recommender):
    """Non-personalised baseline: score = number of training interactions of the item."""

    name = "pop"
    config_cls = PopularityConfig

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        self.counts = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_matrix, *, given: bool) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), self.n_items)).copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.counts = state["counts"]


@dataclass
class ItemKNNConfig:
    """Item-kNN: cosine similarity of item columns, `neighbors` kept per item.

    `shrink` damps similarities computed from few co-occurrences (sim * co / (co + shrink)).
    """

    neighbors: int = 200
    shrink: float = 0.0


class ItemKNN(Recommender):
    """Item-based collaborative filtering: score(u, j) = sum over history i of sim(i, j)."""

    name = "itemknn"
    config_cls = ItemKNNConfig

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        if self.config.neighbors < 1:
            raise ConfigError("itemknn: neighbors must be >= 1")
        x = matrix.astype(np.float32).tocsc()
        co = (x.T @ x).tocsr().astype(np.float32)
        norms = np.sqrt(np.asarray(x.power(2).sum(axis=0)).ravel()).astype(np.float32)
        co.setdiag(0)
        co.eliminate_zeros()
        rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
        denom = norms[rows] * norms[co.indices]
        sim = co.data / np.where(denom > 0, denom, 1.0)
        if self.config.shrink > 0:
            sim *= co.data / (co.data + self.config.shrink)
        simm = sp.csr_matrix((sim.astype(np.float32), co.indices, co.indptr), shape=co.shape)
        self.sim = keep_top_per_row(simm, self.config.neighbors)

    def item_weights(self) -> sp.csr_matrix:
        """The kept neighbour similarities (row = "from" item)."""
        return self.sim

    def _score(self, users: np.ndarray, history: sp.csr_matrix, *, given: bool) -> np.ndarray:
        # sim rows are "from" items: history @ sim sums the neighbours of each history item
        return np.asarray((history @ self.sim).toarray(), dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        s = self.sim
        return {
            "indptr": s.indptr.astype(np.int64),
            "indices": s.indices.astype(np.int64),
            "data": s.data.astype(np.float32),
        }

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.sim = sp.csr_matrix(
            (state["data"], state["indices"], state["indptr"]), shape=(self.n_items, self.n_items)
        )


def keep_top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row (vectorized over rows with enough entries)."""
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= k:
        return m
    keep = np.ones(m.nnz, bool)
    for r in np.flatnonzero(counts > k):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        vals = m.data[lo:hi]
        drop = np.argpartition(-vals, k)[k:]
        keep[lo + drop] = False
    rows = np.repeat(np.arange(m.shape[0]), counts)
    return sp.csr_matrix(
        (m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape, dtype=np.float32
    )


@dataclass
class EASEConfig:
    """EASE (Steck, WWW 2019): closed-form item-item weights with L2 strength `l2`.

    `half_life` > 0 scores users from recency-weighted histories (the item `half_life`
    steps back weighs 0.5); 0 keeps the classic binary history.
    """

    l2: float = 500.0
    half_life: float = 0.0
    max_items: int = 40000


class EASE(Recommender):
    """Embarrassingly shallow autoencoder: B = I - P diagMat(1/diag(P)), P = (X'X + λI)^-1."""

    name = "ease"
    config_cls = EASEConfig

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        if matrix.shape[1] > self.config.max_items:
            raise ConfigError(
                f"ease: {matrix.shape[1]:,} items need a dense {matrix.shape[1]}^2 matrix; "
                f"raise max_items (now {self.config.max_items:,}) if memory allows"
            )
        x = matrix.astype(np.float64)
        g = np.asarray((x.T @ x).toarray(), dtype=np.float64)
        g[np.diag_indices_from(g)] += self.config.l2
        p = np.linalg.inv(g)
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        self.weights = b.astype(np.float32)
        self.recency = data.recency_matrix(self.config.half_life) if self.config.half_life else None

    def item_weights(self) -> np.ndarray:
        """The closed-form item-item weights B (zero diagonal)."""
        return self.weights

    def _score(self, users: np.ndarray, history: sp.csr_matrix, *, given: bool) -> np.ndarray:
        if not given and self.recency is not None:
            history = self.recency[users]
        return np.asarray(history.astype(np.float32) @ self.weights, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        state = {"weights": self.weights}
        if self.recency is not None:
            state |= {"recency.data": self.recency.data, "recency.indices": self.recency.indices,
                      "recency.indptr": self.recency.indptr}  # fmt: skip
        return state

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.weights = state["weights"]
        self.recency = None
        if "recency.data" in state:
            self.recency = sp.csr_matrix(
                (state["recency.data"], state["recency.indices"], state["recency.indptr"]),
                shape=(self.n_users, self.n_items),
            )


@dataclass
class ALSConfig:
    """Implicit ALS (Hu, Koren, Volinsky 2008) via the `implicit` library."""

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 2.0
    iterations: int = 15
    seed: int = 0


class ALS(Recommender):
    """Matrix factorization for implicit feedback; new histories are folded in exactly."""

    name = "als"
    config_cls = ALSConfig

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        cfg = self.config
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=cfg.alpha,
                iterations=cfg.iterations,
                random_state=cfg.seed,
                num_threads=0,
            )
            model.fit(matrix.astype(np.float32), show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        """Item factors (n_items, factors): score = user factors · item factors."""
        return self.item_factors

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """User factors solving the ALS least-squares step for the given histories."""
        y = self.item_factors.astype(np.float64)
        cfg = self.config
        yty = y.T @ y
        out = np.zeros((history.shape[0], y.shape[1]), np.float64)
        eye = cfg.regularization * np.eye(y.shape[1])
        for r in range(history.shape[0]):
            idx = history.indices[history.indptr[r] : history.indptr[r + 1]]
            if len(idx) == 0:
                continue
            yu = y[idx]
            a = yty + cfg.alpha * (yu.T @ yu) + eye
            out[r] = np.linalg.solve(a, (1.0 + cfg.alpha) * yu.sum(axis=0))
        return out.astype(np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_matrix, *, given: bool) -> np.ndarray:
        u = self.fold_in(history) if given else self.user_factors[users]
        return u @ self.item_factors.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.user_factors = state["user_factors"]
        self.item_factors = state["item_factors"]
        if self.item_factors.shape[0] != self.n_items:
            raise RecsageError("als artifact: item factor rows do not match the item count")
