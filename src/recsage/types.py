"""Core types every layer shares: queries, candidate batches, recommendations, `top_k`.

`Query` is one request; `QueryBatch` is B of them as item-index sequences; `CandidateBatch`
is the one currency between retrieval channels and ranking stages: for B queries, up to N
candidate items each (padded with -1), named score columns, and a provenance bitmask saying
which channels retrieved each item. `Recommendation` is what callers get back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass
class CandidateBatch:
    """items (B, N) int64, -1 = empty slot; scores: name -> (B, N) float32 (NaN = absent)."""

    items: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    sources: np.ndarray | None = None  # (B, N) int64 bitmask over `channel_names`
    channel_names: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.items.shape[0]), int(self.items.shape[1]))

    @property
    def valid(self) -> np.ndarray:
        return self.items >= 0

    def take(self, order: np.ndarray, keep: int) -> CandidateBatch:
        """Reorder each row by `order` (B, N) column indices and keep the first `keep`."""
        order = order[:, :keep]
        items = np.take_along_axis(self.items, order, axis=1)
        scores = {k: np.take_along_axis(v, order, axis=1) for k, v in self.scores.items()}
        sources = None if self.sources is None else np.take_along_axis(self.sources, order, axis=1)
        return CandidateBatch(items, scores, sources, self.channel_names)

    def sort_by(self, column: str, keep: int) -> CandidateBatch:
        """Order rows by a score column (descending, empty slots and NaN last), keep `keep`."""
        s = self.scores[column]
        key = np.where(self.valid & np.isfinite(s), s, -np.inf)
        order = np.argsort(-key, axis=1, kind="stable")
        return self.take(order, keep)

    def row_sources(self, b: int, j: int) -> list[str]:
        """Names of the channels that retrieved candidate j of row b."""
        if self.sources is None:
            return []
        mask = int(self.sources[b, j])
        return [n for i, n in enumerate(self.channel_names) if mask >> i & 1]

    def to_score_matrix(self, n_items: int, column: str | None = None) -> np.ndarray:
        """(B, n_items) matrix: candidates get descending scores by position, others -inf.

        Used for full-ranking evaluation: items outside the candidate list count as missed.
        """
        b, n = self.shape
        out = np.full((b, n_items), -np.inf, np.float32)
        rank_score = (n - np.arange(n, dtype=np.float32))[None, :].repeat(b, axis=0)
        rows = np.repeat(np.arange(b), n).reshape(b, n)
        ok = self.valid
        out[rows[ok], self.items[ok]] = rank_score[ok]
        return out


def history_matrix(
    sequences: list[np.ndarray], n_items: int, *, half_life: float = 0.0
) -> sp.csr_matrix:
    """CSR (len(sequences), n_items) of the histories; recency-weighted when half_life > 0."""
    lengths = np.array([len(s) for s in sequences], np.int64)
    rows = np.repeat(np.arange(len(sequences)), lengths)
    cols = np.concatenate(sequences) if len(sequences) else np.zeros(0, np.int64)
    if half_life > 0:
        ends = np.cumsum(lengths)
        steps_back = np.repeat(ends, lengths) - 1 - np.arange(len(cols))
        data = np.power(0.5, steps_back / half_life).astype(np.float32)
    else:
        data = np.ones(len(cols), np.float32)
    m = sp.csr_matrix((data, (rows, cols)), shape=(len(sequences), n_items))
    m.sum_duplicates()
    if half_life <= 0:
        m.data[:] = 1.0
    return m


@dataclass
class QueryBatch:
    """B queries: user indices (-1 = unknown user), ordered histories, optional texts."""

    users: np.ndarray
    sequences: list[np.ndarray]
    n_items: int
    texts: list[str | None] = field(default_factory=list)
    #: (n_items,) True for items no row may receive (filters); None = nothing blocked
    blocked: np.ndarray | None = None
    _history: sp.csr_matrix | None = None
    _excluded: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        if not self.texts:
            self.texts = [None] * len(self.sequences)

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def history(self) -> sp.csr_matrix:
        """Binary CSR of the histories (cached)."""
        if self._history is None:
            self._history = history_matrix(self.sequences, self.n_items)
        return self._history

    @property
    def excluded(self) -> sp.csr_matrix:
        """CSR of what each row must not receive: its history plus the blocked items."""
        if self.blocked is None or not self.blocked.any():
            return self.history
        if self._excluded is None:
            cols = np.flatnonzero(self.blocked)
            rows = np.repeat(np.arange(len(self)), len(cols))
            block = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (rows, np.tile(cols, len(self)))),
                shape=(len(self), self.n_items),
            )
            both = (self.history + block).tocsr()
            both.data[:] = 1.0
            self._excluded = both
        return self._excluded


@dataclass
class ItemFilter:
    """Business filters on the item table: categories (any of), a year range, excluded ids.

    Applied inside retrieval and ranking (blocked items are never retrieved), so a filtered
    request still gets `n` items without over-fetching.
    """

    categories: list[str] | None = None
    min_year: int | None = None
    max_year: int | None = None
    exclude: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(
            self.categories is not None
            or self.min_year is not None
            or self.max_year is not None
            or self.exclude
        )


@dataclass
class Query:
    """One request: a known user and/or an explicit history, optional free text, `n`,
    optional filters; `exclude` is shorthand for `filters.exclude`."""

    user: str | None = None
    history: list[str] | None = None
    text: str | None = None
    n: int = 10
    exclude: list[str] = field(default_factory=list)
    filters: ItemFilter | None = None


@dataclass
class Recommendation:
    """One recommended item: external id, display title, final score, 1-based rank and the
    channels that retrieved it (`fallback:popular` when a cold-start fallback filled it)."""

    item: str
    title: str
    score: float
    rank: int
    sources: list[str]


def top_k(scores: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """Top-k item indices per row among eligible items (-1 pads rows with fewer)."""
    masked = np.where(eligible, scores, -np.inf)
    k_eff = min(k, masked.shape[1])
    part = np.argpartition(-masked, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(masked, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(part_scores, order, axis=1)
    return np.where(np.isfinite(top_scores), top, -1)
