"""User encoders: a user vector from a behaviour history over item vectors, or from profile text.

History encoders pool the vectors of the items a user interacted with: plain mean,
recency-weighted mean (exponential decay by position from the newest item) or
attention pooling (softmax over each item's similarity to a query: the history mean when
no query is given, else a fixed or learned query vector). They are parameter-free and
vectorized (one sparse matrix product per batch), so they work as baselines, as cold-user
fallbacks and as features. `ProfileUserEncoder` embeds rendered profile sentences with a
`TextEncoder`; `combine_user_vectors` blends several views as a weighted sum of
normalized vectors.

Histories are either a CSR matrix (one row per user; column order stands in for time
order, which CSR does not keep, so pass lists when recency matters) or a sequence of
item-index arrays, oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias

import numpy as np
import scipy.sparse as sp

from recsage.errors import ConfigError, RecsageError

if TYPE_CHECKING:
    import pandas as pd

    from recsage.encoders.templates import UserTextTemplate
    from recsage.encoders.text import TextEncoder

Histories: TypeAlias = "sp.spmatrix | Sequence[np.ndarray] | Sequence[Sequence[int]]"
POOLINGS = ("mean", "recency", "attention")


def l2_normalize_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(norms > eps, x / np.maximum(norms, eps), 0.0).astype(np.float32)


def flatten_histories(
    histories: Histories, *, last: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(items, offsets): the concatenated histories and row boundaries (len n + 1).

    With `last`, only each history's last `last` entries are kept.
    """
    if sp.issparse(histories):
        m = sp.csr_matrix(histories)
        items = np.asarray(m.indices, dtype=np.int64)
        offsets = np.asarray(m.indptr, dtype=np.int64)
    else:
        seqs = [np.asarray(h, dtype=np.int64).ravel() for h in histories]  # type: ignore[union-attr]
        lengths = np.fromiter((len(s) for s in seqs), np.int64, len(seqs))
        offsets = np.zeros(len(seqs) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        items = items.astype(np.int64, copy=False)
    if last is not None:
        if last < 1:
            raise ConfigError(f"last must be >= 1, got {last}")
        row, age = _row_and_age(offsets)
        keep = age < last
        if not keep.all():
            counts = np.bincount(row[keep], minlength=len(offsets) - 1)
            offsets = np.zeros(len(offsets), np.int64)
            np.cumsum(counts, out=offsets[1:])
            items = items[keep]
    return items, offsets


def _row_and_age(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per flat entry: its row, and its position from the row's end (0 = newest)."""
    lengths = np.diff(offsets)
    row = np.repeat(np.arange(len(lengths)), lengths)
    age = offsets[row + 1] - 1 - np.arange(offsets[-1])
    return row, age


def _weighted_sum(
    item_vectors: np.ndarray, items: np.ndarray, row: np.ndarray, weights: np.ndarray, n: int
) -> np.ndarray:
    """sum_j w_j * item_vectors[items_j] per row, as one sparse x dense product."""
    w = sp.csr_matrix((weights.astype(np.float32), (row, items)), shape=(n, item_vectors.shape[0]))
    return np.asarray(w @ item_vectors, dtype=np.float32)


def _check_items(item_vectors: np.ndarray, items: np.ndarray) -> None:
    if items.size and (items.min() < 0 or items.max() >= item_vectors.shape[0]):
        raise RecsageError(
            f"history item index out of range 0..{item_vectors.shape[0] - 1} "
            f"(got {int(items.min())}..{int(items.max())})"
        )


def mean_pool(
    item_vectors: np.ndarray,
    histories: Histories,
    *,
    last: int | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Mean of the history items' vectors (zeros for empty histories)."""
    return recency_pool(item_vectors, histories, half_life=None, last=last, normalize=normalize)


def recency_weights(lengths: np.ndarray, half_life: float | None) -> np.ndarray:
    """Flat per-entry weights 0.5 ** (age / half_life), age 0 = newest; 1 when half_life=None."""
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    _, age = _row_and_age(offsets)
    if half_life is None:
        return np.ones(len(age), np.float64)
    if half_life <= 0:
        raise ConfigError(f"half_life must be > 0, got {half_life}")
    return np.power(0.5, age / float(half_life))


def recency_pool(
    item_vectors: np.ndarray,
    histories: Histories,
    *,
    half_life: float | None = 10.0,
    last: int | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Weighted mean with weight 0.5 ** (age / half_life); age 0 = the newest item.

    `half_life=None` gives the plain mean. Empty histories give zero vectors.
    """
    item_vectors = np.asarray(item_vectors, dtype=np.float32)
    items, offsets = flatten_histories(histories, last=last)
    _check_items(item_vectors, items)
    n = len(offsets) - 1
    row, _ = _row_and_age(offsets)
    w = recency_weights(np.diff(offsets), half_life)
    totals = np.bincount(row, weights=w, minlength=n)
    w = w / np.where(totals > 0, totals, 1.0)[row]
    out = _weighted_sum(item_vectors, items, row, w, n)
    return l2_normalize_rows(out) if normalize else out


def _segment_softmax(scores: np.ndarray, row: np.ndarray, n: int) -> np.ndarray:
    """Softmax of flat `scores` within each row segment."""
    peak = np.full(n, -np.inf)
    np.maximum.at(peak, row, scores)
    e = np.exp(scores - peak[row])
    sums = np.bincount(row, weights=e, minlength=n)
    return e / sums[row]


def attention_pool(
    item_vectors: np.ndarray,
    histories: Histories,
    *,
    query: np.ndarray | None = None,
    temperature: float = 0.1,
    last: int | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Softmax-weighted mean: weight_j ∝ exp(cos(item_j, q) / temperature).

    `q` is each user's history mean when `query` is None (parameter-free: items close to
    the user's centre of mass count more, outliers less), else `query` (d,) shared by all
    users or (n, d) per user (e.g. a learned or context vector).
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    item_vectors = np.asarray(item_vectors, dtype=np.float32)
    items, offsets = flatten_histories(histories, last=last)
    _check_items(item_vectors, items)
    n = len(offsets) - 1
    row, _ = _row_and_age(offsets)
    if query is None:
        lengths = np.diff(offsets).astype(np.float64)
        w = 1.0 / np.where(lengths > 0, lengths, 1.0)[row]
        q = l2_normalize_rows(_weighted_sum(item_vectors, items, row, w, n))
    else:
        q = np.asarray(query, dtype=np.float32)
        q = np.broadcast_to(q, (n, item_vectors.shape[1])) if q.ndim == 1 else q
        if q.shape != (n, item_vectors.shape[1]):
            raise RecsageError(f"query must have shape ({item_vectors.shape[1]},) or (n, d)")
        q = l2_normalize_rows(q)
    unit_items = l2_normalize_rows(item_vectors)
    sims = np.einsum("ij,ij->i", unit_items[items], q[row]).astype(np.float64)
    w = _segment_softmax(sims / temperature, row, n)
    out = _weighted_sum(item_vectors, items, row, w, n)
    return l2_normalize_rows(out) if normalize else out


class UserEncoder(Protocol):
    """Anything that maps histories to (n, d) float32 user vectors."""

    def encode(self, histories: Histories) -> np.ndarray: ...


@dataclass
class HistoryUserEncoder:
    """Pool a history over fixed item vectors: "mean", "recency" or "attention".

    `last` keeps only the newest items; `half_life` is for "recency" (in positions);
    `temperature` and `query` for "attention". `batch_size` bounds memory per call.
    """

    item_vectors: np.ndarray
    pooling: str = "mean"
    last: int | None = None
    half_life: float = 10.0
    temperature: float = 0.1
    query: np.ndarray | None = None
    normalize: bool = True
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        self.item_vectors = np.asarray(self.item_vectors, dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])

    def encode(self, histories: Histories) -> np.ndarray:
        """(n, dim) float32 user vectors, one per history (zeros for empty ones)."""
        if sp.issparse(histories):
            rows = sp.csr_matrix(histories)
            n = rows.shape[0]
            chunks = [rows[lo : lo + self.batch_size] for lo in range(0, n, self.batch_size)]
        else:
            seqs = list(histories)  # type: ignore[arg-type]
            n = len(seqs)
            chunks = [seqs[lo : lo + self.batch_size] for lo in range(0, n, self.batch_size)]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate([self._encode_chunk(c, lo) for lo, c in _with_starts(chunks)])

    def _encode_chunk(self, chunk: Histories, start: int) -> np.ndarray:
        if self.pooling == "attention":
            query = self.query
            if query is not None and np.ndim(query) == 2:
                query = np.asarray(query)[start : start + _count(chunk)]
            return attention_pool(
                self.item_vectors,
                chunk,
                query=query,
                temperature=self.temperature,
                last=self.last,
                normalize=self.normalize,
            )
        half_life = self.half_life if self.pooling == "recency" else None
        return recency_pool(
            self.item_vectors, chunk, half_life=half_life, last=self.last, normalize=self.normalize
        )


def _count(chunk: Histories) -> int:
    return int(chunk.shape[0]) if sp.issparse(chunk) else len(chunk)  # type: ignore[union-attr]


def _with_starts(chunks: list[Histories]) -> list[tuple[int, Histories]]:
    out, start = [], 0
    for c in chunks:
        out.append((start, c))
        start += _count(c)
    return out


class ProfileUserEncoder:
    """User vectors from profile text: `UserTextTemplate` rows -> `TextEncoder.encode_queries`.

    Rows whose rendered text is empty get zero vectors (so a combiner can skip them).
    """

    def __init__(self, encoder: TextEncoder, template: UserTextTemplate | None = None) -> None:
        self.encoder = encoder
        if template is None:
            from recsage.encoders.templates import UserTextTemplate

            template = UserTextTemplate()
        self.template = template

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    def render(
        self, user_table: pd.DataFrame, preferences: Sequence[str | None] | None = None
    ) -> list[str]:
        """Profile sentences, one per row of `user_table`."""
        return self.template.render(user_table, preferences)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) vectors for ready-made profile sentences (empty text -> zeros)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            vecs = self.encoder.encode_queries([texts[i] for i in keep], use_cache=True)
            out[keep] = l2_normalize_rows(vecs)
        return out

    def encode(
        self, user_table: pd.DataFrame, preferences: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """(n, dim) vectors for the rows of `user_table`."""
        return self.encode_texts(self.render(user_table, preferences))


def combine_user_vectors(
    vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None
) -> np.ndarray:
    """Weighted sum of row-normalized views, renormalized.

    A view whose row is all zeros (no history, no profile) drops out of that row, so
    the other views keep their relative weight. All views must share (n, d).
    """
    if not vectors:
        raise ConfigError("combine_user_vectors needs at least one view")
    weights = [1.0] * len(vectors) if weights is None else list(weights)
    if len(weights) != len(vectors):
        raise ConfigError(f"{len(weights)} weights for {len(vectors)} views")
    shape = np.shape(vectors[0])
    total = np.zeros(shape, np.float32)
    for v, w in zip(vectors, weights, strict=True):
        if np.shape(v) != shape:
            raise RecsageError(f"views differ in shape: {np.shape(v)} vs {shape}")
        total += np.float32(w) * l2_normalize_rows(v)
    return l2_normalize_rows(total)


@dataclass
class CombinedUserEncoder:
    """Several history encoders blended by `combine_user_vectors` (same item space)."""

    encoders: Sequence[UserEncoder]
    weights: Sequence[float] | None = None

    def encode(self, histories: Histories) -> np.ndarray:
        """Blend of each encoder's vectors for the same histories."""
        if not sp.issparse(histories):
            histories = list(histories)  # type: ignore[arg-type]
        return combine_user_vectors([e.encode(histories) for e in self.encoders], self.weights)


__all__ = [
    "POOLINGS",
    "CombinedUserEncoder",
    "Histories",
    "HistoryUserEncoder",
    "ProfileUserEncoder",
    "UserEncoder",
    "attention_pool",
    "combine_user_vectors",
    "flatten_histories",
    "l2_normalize_rows",
    "mean_pool",
    "recency_pool",
    "recency_weights",
]
