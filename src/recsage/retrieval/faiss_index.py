"""FAISS vector indexes (flat, HNSW, IVF-PQ) behind the `VectorIndex` interface; FAISS is
imported only when one of them is built or loaded."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from recsage.errors import ConfigError, RecsageError
from recsage.retrieval.index import FAISS_FILE, VectorIndex


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise RecsageError(
            "faiss is not installed: pip install 'recsage[semantic]' (or use the 'exact' index)"
        ) from None
    return faiss


class _FaissIndex(VectorIndex):
    """Shared FAISS plumbing: the index object and its file."""

    def __init__(self, *, normalize: bool = False, metric: str = "ip") -> None:
        super().__init__(normalize=normalize, metric=metric)
        self._index: Any = None

    def _capacity(self) -> int:
        return int(self._index.ntotal) if self._index is not None else 0

    def _write_files(self, folder: Path) -> None:
        _faiss().write_index(self._index, str(folder / FAISS_FILE))

    def _load_state(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        path = folder / FAISS_FILE
        if not path.is_file():
            raise OSError(f"{path} is missing")
        self._index = _faiss().read_index(str(path))
        if self._index.d != self.dim:
            raise ValueError(f"{path} has dim {self._index.d}, manifest says {self.dim}")


class FaissFlatIndex(_FaissIndex):
    """Exact FAISS search: IndexFlatIP inside IndexIDMap2 (supports add/remove by id)."""

    kind = "flat"

    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        faiss = _faiss()
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
        self._index.add_with_ids(vectors, ids)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add_with_ids(vectors, ids)

    def _remove(self, ids: np.ndarray) -> None:
        self._index.remove_ids(ids)

    def _search_raw(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self._index.search(q, k)
        return scores, ids.astype(np.int64)


class FaissHNSWIndex(_FaissIndex):
    """HNSW graph (IndexHNSWFlat, inner product). HNSW cannot delete, so `remove` marks
    tombstones that searches skip (over-fetching); past `rebuild_threshold` dead fraction
    the graph is rebuilt from the live vectors (`rebuild()` does it on demand).
    """

    kind = "hnsw"

    def __init__(
        self,
        M: int = 32,  # FAISS's name for the graph degree
        *,
        ef_construction: int = 200,
        ef_search: int = 128,
        rebuild_threshold: float | None = 0.5,
        normalize: bool = False,
        metric: str = "ip",
    ) -> None:
        super().__init__(normalize=normalize, metric=metric)
        if M < 2 or ef_construction < 1 or ef_search < 1:
            raise ConfigError("HNSW needs M >= 2, ef_construction >= 1 and ef_search >= 1")
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.rebuild_threshold = rebuild_threshold
        self._labels = np.empty(0, np.int64)  # graph position -> id
        self._alive = np.empty(0, bool)  # graph position -> not removed

    def _params(self) -> dict[str, Any]:
        return {
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "rebuild_threshold": self.rebuild_threshold,
        }

    @property
    def n_removed(self) -> int:
        """Tombstoned entries still in the graph."""
        return int((~self._alive).sum())

    def rebuild(self) -> None:
        """Rebuild the graph from live vectors, dropping tombstones."""
        if self._index is None:
            return
        vectors = self._index.reconstruct_n(0, self._index.ntotal)[self._alive]
        self._build(self._labels[self._alive], np.ascontiguousarray(vectors))

    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(vectors.shape[1], self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        index.add(vectors)
        self._index = index
        self._labels = ids.copy()
        self._alive = np.ones(len(ids), bool)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add(vectors)
        self._labels = np.concatenate([self._labels, ids])
        self._alive = np.concatenate([self._alive, np.ones(len(ids), bool)])

    def _remove(self, ids: np.ndarray) -> None:
        self._alive[np.isin(self._labels, ids)] = False
        dead = self.n_removed
        if self.rebuild_threshold is not None and dead > self.rebuild_threshold * len(self._alive):
            self.rebuild()

    def _initial_fetch(self, wanted: int) -> int:
        alive = max(1, int(self._alive.sum()))
        return math.ceil(wanted * len(self._alive) / alive)

    def _search_raw(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = _faiss().SearchParametersHNSW(efSearch=max(self.ef_search, k))
        scores, pos = self._index.search(q, k, params=params)
        found = pos >= 0
        safe = np.where(found, pos, 0)
        ids = np.where(found, self._labels[safe], -1)
        ids[found & ~self._alive[safe]] = -2
        return scores, ids.astype(np.int64)

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"labels": self._labels, "alive": self._alive.astype(np.uint8)}

    def _load_state(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        super()._load_state(arrays, folder)
        self._labels = arrays["labels"].astype(np.int64)
        self._alive = arrays["alive"].astype(bool)
        if not (len(self._labels) == len(self._alive) == self._index.ntotal):
            raise ValueError("labels/alive do not match the HNSW graph size")
        self._index.hnsw.efSearch = self.ef_search


class FaissIVFPQIndex(_FaissIndex):
    """IVF with product quantization (compressed; approximate), trained on `build`.

    Defaults: ``nlist = 4*sqrt(n)`` (at most n/39), ``m`` = the largest divisor of dim that is
    <= dim/8 (8 dims per one-byte code at nbits=8: 48 bytes for a 384-dim vector instead of
    1536; dim/4 raises recall but trains ~20x slower in FAISS), training on at most
    ``max(50*nlist, 10_000)`` vectors.
    """

    kind = "ivfpq"

    def __init__(
        self,
        nlist: int | None = None,
        m: int | None = None,
        *,
        nbits: int = 8,
        nprobe: int = 16,
        max_train: int | None = None,
        seed: int = 0,
        normalize: bool = False,
        metric: str = "ip",
    ) -> None:
        super().__init__(normalize=normalize, metric=metric)
        if nbits < 1 or nbits > 16 or nprobe < 1:
            raise ConfigError("IVF-PQ needs 1 <= nbits <= 16 and nprobe >= 1")
        self.nlist = nlist
        self.m = m
        self.nbits = nbits
        self.nprobe = nprobe
        self.max_train = max_train
        self.seed = seed

    def _params(self) -> dict[str, Any]:
        return {
            "nlist": self.nlist,
            "m": self.m,
            "nbits": self.nbits,
            "nprobe": self.nprobe,
            "max_train": self.max_train,
            "seed": self.seed,
        }

    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        faiss = _faiss()
        n, dim = vectors.shape
        nlist = self.nlist or max(1, min(round(4 * math.sqrt(n)), n // 39))
        m = self.m or max(d for d in range(1, max(1, dim // 8) + 1) if dim % d == 0)
        if dim % m:
            raise ConfigError(f"IVF-PQ m={m} must divide the vector dim {dim}")
        if n < max(nlist, 2**self.nbits):
            raise RecsageError(
                f"IVF-PQ with nlist={nlist}, nbits={self.nbits} needs at least "
                f"{max(nlist, 2**self.nbits)} training vectors, got {n}; use the 'flat' or "
                "'hnsw' index for small catalogues (or lower nlist/nbits)"
            )
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, self.nbits, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = self.seed
        index.pq.cp.seed = self.seed
        n_train = min(n, self.max_train or max(50 * nlist, 10_000))
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(n, size=n_train, replace=False)) if n_train < n else None
        index.train(vectors if sample is None else vectors[sample])
        index.add_with_ids(vectors, ids)
        self._quantizer = quantizer
        self._index = index
        self.nlist, self.m = int(nlist), int(m)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add_with_ids(vectors, ids)

    def _remove(self, ids: np.ndarray) -> None:
        self._index.remove_ids(ids)

    def _search_raw(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = _faiss().SearchParametersIVF(nprobe=self.nprobe)
        scores, ids = self._index.search(q, k, params=params)
        return scores, ids.astype(np.int64)
