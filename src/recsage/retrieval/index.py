"""recsage.retrieval.index."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import numpy as np
import scipy.sparse as sp

from recsage.artifacts import VECTOR_INDEX, read_artifact, write_artifact
from recsage.component import Registry
from recsage.errors import ArtifactError, ConfigError, RecsageError

FAISS_FILE = "index.faiss"


Exclude: TypeAlias = (
    Sequence[np.ndarray] | Sequence[Sequence[int]] | sp.csr_matrix | sp.csr_array | None
)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def _exclusion_pairs(exclude: Exclude, n_queries: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(query row, excluded id) pairs from a per-query list or a CSR matrix."""
    if exclude is None:
        return None
    if sp.issparse(exclude):
        m = sp.csr_matrix(exclude)
        if m.shape[0] != n_queries:
            raise RecsageError(
                f"exclude matrix has {m.shape[0]} rows but there are {n_queries} queries"
            )
        counts = np.diff(m.indptr)
        ids = m.indices.astype(np.int64)
    else:
        arrays = [np.asarray(a if a is not None else [], dtype=np.int64).ravel() for a in exclude]
        if len(arrays) != n_queries:
            raise RecsageError(
                f"exclude has {len(arrays)} entries but there are {n_queries} queries"
            )
        counts = np.fromiter((a.size for a in arrays), np.int64, len(arrays))
        ids = np.concatenate(arrays) if arrays else np.empty(0, np.int64)
    rows = np.repeat(np.arange(n_queries, dtype=np.int64), counts)
    return rows, ids


def _excluded_mask(
    rows: np.ndarray, cand: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Boolean (len(rows), width): candidate id listed as excluded for its query row."""
    ex_rows, ex_ids = pairs
    keep = ex_ids >= 0
    ex_rows, ex_ids = ex_rows[keep], ex_ids[keep]
    if ex_ids.size == 0 or cand.size == 0:
        return np.zeros(cand.shape, dtype=bool)
    span = int(max(int(cand.max()), int(ex_ids.max()))) + 1
    n_rows = int(max(int(rows.max()), int(ex_rows.max()))) + 1
    if n_rows * span < 2**62:  # one vectorized membership test on (row, id) keys
        cand_keys = np.where(cand >= 0, rows[:, None] * span + cand, -1)
        return np.isin(cand_keys, ex_rows * span + ex_ids)
    order = np.argsort(ex_rows, kind="stable")
    bounds = np.searchsorted(ex_rows[order], np.arange(n_rows + 1))
    out = np.zeros(cand.shape, dtype=bool)
    for i, r in enumerate(rows.tolist()):
        out[i] = np.isin(cand[i], ex_ids[order[bounds[r] : bounds[r + 1]]])
    return out


def _compact(
    scores: np.ndarray, ids: np.ndarray, valid: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first k valid entries per row, order preserved; pad with (-inf, -1)."""
    width = ids.shape[1]
    if width < k:
        pad = k - width
        scores = np.pad(scores, ((0, 0), (0, pad)))
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        valid = np.pad(valid, ((0, 0), (0, pad)))
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    s = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    i = np.take_along_axis(ids, order, axis=1).astype(np.int64)
    v = np.take_along_axis(valid, order, axis=1)
    s[~v] = -np.inf
    i[~v] = -1
    return s, i


class VectorIndex(ABC):
    """An id -> vector index searched by inner product (cosine when `normalize`).

    Subclasses implement `_build/_add/_remove/_search_raw/_capacity` and their state I/O;
    validation, normalization, exclusions and the manifest live here.
    """

    kind: ClassVar[str] = ""

    def __init__(self, *, normalize: bool = False, metric: str = "ip") -> None:
        if metric != "ip":
            raise ConfigError(
                f"unsupported metric {metric!r}: only 'ip' (inner product) is supported; "
                "use normalize=True for cosine"
            )
        self.normalize = normalize
        self.metric = metric
        self.dim: int | None = None
        self.metadata: dict[str, Any] = {}
        self._live = np.empty(0, np.int64)  # sorted ids currently searchable

    # public API

    def __len__(self) -> int:
        return int(self._live.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, dim={self.dim}, params={self.params})"

    @property
    def ids(self) -> np.ndarray:
        """Sorted ids currently in the index."""
        return self._live.copy()

    @property
    def params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-serializable; saved in the manifest)."""
        return {"normalize": self.normalize, "metric": self.metric, **self._params()}

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole content with `vectors` (n, d) under `ids` (n,)."""
        ids, vecs = self._prepare(ids, vectors, building=True)
        self.dim = int(vecs.shape[1])
        self._build(ids, vecs)
        self._live = np.sort(ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add new ids (an unbuilt index is built); ids already present raise."""
        if self.dim is None:
            self.build(ids, vectors)
            return
        ids, vecs = self._prepare(ids, vectors, building=False)
        clash = ids[np.isin(ids, self._live)]
        if clash.size:
            raise RecsageError(
                f"{clash.size} ids are already in the index (e.g. {clash[:5].tolist()}); "
                "call remove(ids) first to replace their vectors"
            )
        if ids.size:
            self._add(ids, vecs)
            self._live = np.union1d(self._live, ids)

    def remove(self, ids: np.ndarray | Sequence[int]) -> int:
        """Remove ids (absent ones are ignored); returns how many were removed."""
        arr = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        present = arr[np.isin(arr, self._live, assume_unique=True)]
        if present.size:
            self._remove(present)
            self._live = np.setdiff1d(self._live, present, assume_unique=True)
        return int(present.size)

    def search(
        self, queries: np.ndarray, k: int, *, exclude: Exclude = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids per query: (scores float32 (n, k), ids int64 (n, k)), best first.

        `exclude` is one id array per query, or a CSR matrix whose row i lists (as column
        indices) the ids to skip for query i. Missing slots: id -1, score -inf.
        """
        if self.dim is None or len(self) == 0:
            state = "was never built" if self.dim is None else "has had every id removed"
            raise RecsageError(
                f"cannot search an empty {self.kind} index (it {state}): "
                "call build(ids, vectors) first"
            )
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise RecsageError(
                f"queries must have shape (n, {self.dim}), got {tuple(np.shape(queries))}"
            )
        if int(k) < 1:
            raise RecsageError(f"k must be >= 1, got {k}")
        k = int(k)
        q = l2_normalize(q) if self.normalize else np.ascontiguousarray(q)
        pairs = _exclusion_pairs(exclude, len(q))
        return self._search_filtered(q, k, pairs)

    def save(self, directory: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write the index to `directory` (an artifact folder); returns the folder."""
        if self.dim is None:
            raise RecsageError(f"cannot save an unbuilt {self.kind} index: build it first")
        if metadata:
            self.metadata = {**self.metadata, **metadata}
        return write_artifact(
            directory,
            VECTOR_INDEX,
            name=self.kind,
            config=self.params,
            arrays={"ids": self._live, **self._state_arrays()},
            extra={"dim": self.dim, "count": len(self), "metadata": self.metadata},
            write=self._write_files,
        )

    @classmethod
    def load(cls, directory: str | Path) -> VectorIndex:
        """Load a saved index; `VectorIndex.load` dispatches on the manifest's kind."""
        art = read_artifact(directory, VECTOR_INDEX)
        folder, kind = art.path, art.name
        try:
            klass = INDEXES.get(str(kind))
        except ConfigError as exc:
            raise ArtifactError(f"{folder}: {exc}") from None
        if cls is not VectorIndex and klass is not cls:
            raise ArtifactError(f"{folder} holds a '{kind}' index, not '{cls.kind}'")
        index = klass(**art.config)
        index.dim = int(art.get("dim"))
        index.metadata = dict(art.get("metadata") or {})
        try:
            arrays = art.arrays()
            index._live = arrays.pop("ids").astype(np.int64)
            index._load_state(arrays, folder)
        except (OSError, ValueError, RuntimeError, KeyError, ArtifactError) as exc:
            raise ArtifactError(f"{folder}: incomplete or corrupt index files ({exc})") from exc
        if len(index) != int(art.get("count")) or index._capacity() < len(index):
            raise ArtifactError(
                f"{folder}: manifest says {art.get('count')} vectors but the files hold "
                f"{len(index)}; the index was not saved completely"
            )
        return index

    # shared machinery

    def _prepare(
        self, ids: np.ndarray, vectors: np.ndarray, *, building: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        id_arr = np.asarray(ids)
        if id_arr.ndim != 1 or not (id_arr.size == 0 or np.issubdtype(id_arr.dtype, np.integer)):
            raise RecsageError(f"ids must be a 1-D integer array, got {id_arr.dtype}{id_arr.shape}")
        id_arr = id_arr.astype(np.int64)
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2:
            raise RecsageError(f"vectors must be 2-D (n, dim), got shape {vecs.shape}")
        if len(id_arr) != len(vecs):
            raise RecsageError(f"{len(id_arr)} ids for {len(vecs)} vectors")
        if not building and vecs.shape[1] != self.dim:
            raise RecsageError(f"vectors have dim {vecs.shape[1]}, the index has {self.dim}")
        if id_arr.size and id_arr.min() < 0:
            raise RecsageError("ids must be >= 0 (-1 marks an empty result slot)")
        if np.unique(id_arr).size != id_arr.size:
            raise RecsageError("ids must be unique")
        if not np.isfinite(vecs).all():
            raise RecsageError("vectors contain NaN or infinite values")
        vecs = l2_normalize(vecs) if self.normalize else np.ascontiguousarray(vecs)
        return id_arr, vecs

    def _initial_fetch(self, wanted: int) -> int:
        return wanted

    def _search_filtered(
        self, q: np.ndarray, k: int, pairs: tuple[np.ndarray, np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(q)
        cap = self._capacity()
        max_excl = int(np.bincount(pairs[0], minlength=1).max()) if pairs is not None else 0
        fetch = max(1, min(cap, self._initial_fetch(k + max_excl)))
        out_s = np.full((n, k), -np.inf, np.float32)
        out_i = np.full((n, k), -1, np.int64)
        todo = np.arange(n)
        while todo.size:
            scores, ids = self._search_raw(q[todo], fetch)
            valid = ids >= 0  # -1: not returned, -2: returned but removed (tombstone)
            if pairs is not None:
                valid &= ~_excluded_mask(todo, ids, pairs)
            exhausted = (ids == -1).any(axis=1) | (fetch >= cap)
            done = (valid.sum(axis=1) >= k) | exhausted
            if done.any():
                s, i = _compact(scores[done], ids[done], valid[done], k)
                out_s[todo[done]] = s
                out_i[todo[done]] = i
            todo = todo[~done]
            fetch = min(cap, fetch * 2)
        return out_s, out_i

    # subclass hooks

    def _params(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _remove(self, ids: np.ndarray) -> None: ...

    @abstractmethod
    def _search_raw(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best-first (scores, ids) of width <= k; -1 = no result, -2 = removed entry."""

    @abstractmethod
    def _capacity(self) -> int:
        """Stored entries, removed ones included (the most a search can return)."""

    def _state_arrays(self) -> dict[str, np.ndarray]:
        """Arrays to save besides the live ids (to `state.safetensors`)."""
        return {}

    def _write_files(self, folder: Path) -> None:  # noqa: B027
        """Native files to save next to the state (the FAISS index)."""

    @abstractmethod
    def _load_state(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        """Restore from `_state_arrays()` output and the native files in `folder`."""


class ExactIndex(VectorIndex):
    """Brute-force NumPy inner product: the test oracle (batched matmul + argpartition)."""

    kind = "exact"

    def __init__(
        self, *, normalize: bool = False, metric: str = "ip", block_bytes: int = 1 << 27
    ) -> None:
        super().__init__(normalize=normalize, metric=metric)
        self.block_bytes = block_bytes
        self._ids = np.empty(0, np.int64)
        self._vectors = np.empty((0, 0), np.float32)

    def _params(self) -> dict[str, Any]:
        return {"block_bytes": self.block_bytes}

    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._ids = ids.copy()
        self._vectors = vectors.copy()

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._ids = np.concatenate([self._ids, ids])
        self._vectors = np.concatenate([self._vectors, vectors])

    def _remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self._ids, ids)
        self._ids = self._ids[keep]
        self._vectors = self._vectors[keep]

    def _capacity(self) -> int:
        return len(self._ids)

    def _search_raw(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n_items = len(self._ids)
        k = min(k, n_items)
        step = max(1, self.block_bytes // (4 * max(1, n_items)))
        out_s = np.empty((len(q), k), np.float32)
        out_p = np.empty((len(q), k), np.int64)
        for start in range(0, len(q), step):
            scores = q[start : start + step] @ self._vectors.T
            if k < n_items:
                part = np.argpartition(scores, n_items - k, axis=1)[:, n_items - k :]
                top = np.take_along_axis(scores, part, axis=1)
            else:
                part = np.broadcast_to(np.arange(n_items), scores.shape)
                top = scores
            order = np.argsort(-top, axis=1, kind="stable")
            out_s[start : start + step] = np.take_along_axis(top, order, axis=1)
            out_p[start : start + step] = np.take_along_axis(part, order, axis=1)
        return out_s, self._ids[out_p]

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"vector_ids": self._ids, "vectors": self._vectors}

    def _load_state(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        self._ids = arrays["vector_ids"].astype(np.int64)
        self._vectors = arrays["vectors"].astype(np.float32)
        if self._vectors.shape != (len(self._ids), self.dim):
            raise ValueError("vectors do not match vector_ids and the manifest dim")


#: index kinds by name; a separate package adds one through the ``recsage.indexes`` group
INDEXES: Registry[VectorIndex] = Registry(
    "index", base=VectorIndex, group="recsage.indexes", noun="index kind"
)
INDEXES.register("exact", ExactIndex)
INDEXES.register("flat", "recsage.retrieval.faiss_index:FaissFlatIndex")
INDEXES.register("hnsw", "recsage.retrieval.faiss_index:FaissHNSWIndex")
INDEXES.register("ivfpq", "recsage.retrieval.faiss_index:FaissIVFPQIndex")


def make_index(kind: str, **params: Any) -> VectorIndex:
    """Create an empty index by kind: "exact", "flat", "hnsw", "ivfpq" (or a plugin's)."""
    cls = INDEXES.get(kind.lower())
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for the '{kind}' index: {exc}") from None


def load_index(directory: str | Path) -> VectorIndex:
    """Load any saved index (kind read from its manifest)."""
    return VectorIndex.load(directory)
