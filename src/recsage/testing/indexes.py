"""`VectorIndexTests`: the contract every vector index keeps, against a NumPy oracle.

Subclass it as ``Test…`` and implement `make_index()`; set `min_recall` below 1 for
approximate kinds. The suite builds the index on random unit vectors and checks search
against `exact_top_k` (brute force here, independent of every index class): exact kinds
return the oracle's ids and scores, approximate ones reach `min_recall`@k; exclusions
are honoured (and, for exact kinds, the next-best ids fill in); add and remove update
what a search can return; save/load gives identical results; clear errors for bad use.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from recsage.errors import RecsageError
from recsage.retrieval.index import VectorIndex
from recsage.testing.checks import recall_at_k


def exact_top_k(
    vectors: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-k: (scores (n, k) float32, ids (n, k) int64), -inf/-1
    padded. Ties break by position in `vectors`."""
    s = queries.astype(np.float64) @ vectors.astype(np.float64).T
    if exclude is not None:
        for r, ex in enumerate(exclude):
            s[r, np.isin(ids, ex)] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(s, order, axis=1)
    out_ids = np.where(np.isfinite(top), ids[order], -1)
    out = np.full((len(queries), k), -np.inf, np.float32)
    out_i = np.full((len(queries), k), -1, np.int64)
    out[:, : top.shape[1]] = top
    out_i[:, : top.shape[1]] = out_ids
    return out, out_i


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """n random unit vectors (float32) with some cluster structure (as embeddings have)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    x = centres[rng.integers(0, 8, n)] + 0.8 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class VectorIndexTests:
    """Conformance suite for `VectorIndex` kinds (pytest collects subclasses)."""

    n: ClassVar[int] = 400
    dim: ClassVar[int] = 16
    k: ClassVar[int] = 10
    #: recall@k against the oracle that the index must reach (1.0: exact kind)
    min_recall: ClassVar[float] = 1.0

    def make_index(self) -> VectorIndex:
        raise NotImplementedError(
            f"{type(self).__name__} must define make_index() (conformance suite hook)"
        )

    @property
    def exact(self) -> bool:
        return self.min_recall >= 1.0

    @pytest.fixture(scope="class")
    @classmethod
    def corpus(cls) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, vectors, queries): ids are spread out (not 0..n-1) to catch id mix-ups."""
        vectors = unit_vectors(cls.n, cls.dim, seed=1)
        ids = np.arange(cls.n, dtype=np.int64) * 7 + 3
        queries = unit_vectors(25, cls.dim, seed=2)
        return ids, vectors, queries

    @pytest.fixture(scope="class")
    @classmethod
    def built(cls, corpus: tuple[np.ndarray, np.ndarray, np.ndarray]) -> VectorIndex:
        ids, vectors, _ = corpus
        index = cls().make_index()
        index.build(ids, vectors)
        return index

    def _check(
        self,
        got: tuple[np.ndarray, np.ndarray],
        want: tuple[np.ndarray, np.ndarray],
    ) -> None:
        s, i = got
        assert s.dtype == np.float32 and i.dtype == np.int64 and s.shape == i.shape
        for row in i:
            row = row[row >= 0]
            assert len(np.unique(row)) == len(row), "an id appears twice in one result"
        assert (np.diff(np.where(i >= 0, s, -np.inf), axis=1) <= 1e-5).all(), "not best first"
        if self.exact:
            np.testing.assert_array_equal(i, want[1])
            np.testing.assert_allclose(s, want[0], atol=1e-4)
        else:
            recall = recall_at_k(i, want[1])
            assert recall >= self.min_recall, f"recall@{self.k} {recall:.3f} < {self.min_recall}"

    # ---- the contract ---------------------------------------------------------------
    def test_search_matches_the_oracle(self, built: VectorIndex, corpus: tuple) -> None:
        ids, vectors, queries = corpus
        assert len(built) == self.n and set(built.ids.tolist()) == set(ids.tolist())
        got = built.search(queries, self.k)
        self._check(got, exact_top_k(vectors, ids, queries, self.k))

    def test_exclusions_are_honoured(self, built: VectorIndex, corpus: tuple) -> None:
        ids, vectors, queries = corpus
        full = exact_top_k(vectors, ids, queries, self.k)[1]
        exclude = [row[::2].copy() for row in full]  # every other true neighbour
        got = built.search(queries, self.k, exclude=exclude)
        for row, ex in zip(got[1], exclude, strict=True):
            assert not set(row.tolist()) & set(ex.tolist()), "an excluded id came back"
        self._check(got, exact_top_k(vectors, ids, queries, self.k, exclude))

    def test_k_beyond_the_index_pads(self, corpus: tuple) -> None:
        ids, vectors, queries = corpus
        index = self.make_index()
        index.build(ids[:300], vectors[:300])
        s, i = index.search(queries[:3], 310)
        assert s.shape == (3, 310) and (i[:, 300:] == -1).all()
        assert np.isneginf(s[:, 300:]).all()
        if self.exact:
            assert (np.sort(i[:, :300], axis=1) == np.sort(ids[:300])).all()

    def test_add_and_remove(self, corpus: tuple) -> None:
        ids, vectors, queries = corpus
        index = self.make_index()
        index.build(ids[:300], vectors[:300])
        index.add(ids[300:], vectors[300:])
        assert len(index) == self.n
        # a stored vector finds itself first (unit vectors: self inner product is maximal)
        probe = np.arange(300, self.n, 10)
        _, top = index.search(vectors[probe], 1)
        assert (top[:, 0] == ids[probe]).mean() >= (1.0 if self.exact else 0.8)
        with pytest.raises(RecsageError, match="already in the index"):
            index.add(ids[:1], vectors[:1])
        gone = ids[::3]
        assert index.remove(gone) == len(gone) and index.remove(gone) == 0
        assert len(index) == self.n - len(gone)
        _, found = index.search(queries, self.k)
        assert not set(found.ravel().tolist()) & set(gone.tolist()), "a removed id came back"
        keep = ~np.isin(ids, gone)
        self._check(index.search(queries, self.k),
                    exact_top_k(vectors[keep], ids[keep], queries, self.k))  # fmt: skip

    def test_save_load_roundtrip(self, built: VectorIndex, corpus: tuple, tmp_path: Path) -> None:
        _, _, queries = corpus
        built.save(tmp_path / "ix")
        back = VectorIndex.load(tmp_path / "ix")
        assert type(back) is type(built) and back.params == built.params
        a, b = built.search(queries, self.k), back.search(queries, self.k)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_allclose(a[0], b[0], atol=1e-6)

    def test_clear_errors(self, built: VectorIndex) -> None:
        with pytest.raises(RecsageError, match="empty"):
            self.make_index().search(np.zeros((1, self.dim), np.float32), 3)
        with pytest.raises(RecsageError, match="shape"):
            built.search(np.zeros((1, self.dim + 1), np.float32), 3)
        with pytest.raises(RecsageError, match="k must be"):
            built.search(np.zeros((1, self.dim), np.float32), 0)
