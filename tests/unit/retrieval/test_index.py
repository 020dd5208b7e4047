"""Vector indexes: every FAISS index against the exact NumPy oracle, plus exclusions and I/O."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsage.errors import ArtifactError, ConfigError, RecsageError
from recsage.retrieval import (
    ExactIndex,
    FaissFlatIndex,
    FaissHNSWIndex,
    VectorIndex,
    load_index,
    make_index,
)

faiss = pytest.importorskip("faiss")

DIM = 32
N = 5000
K = 10
KINDS = ["exact", "flat", "hnsw", "ivfpq"]
PARAMS: dict[str, dict[str, object]] = {
    "exact": {},
    "flat": {},
    "hnsw": {"M": 16, "ef_construction": 100, "ef_search": 64},
    "ivfpq": {"nlist": 32, "m": 8, "nprobe": 8},
}


def clustered(n: int, seed: int) -> np.ndarray:
    """Mixture of 40 Gaussians (shared centres across seeds), like embedding clusters."""
    centres = np.random.default_rng(1234).normal(size=(40, DIM))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 40, n)] + 0.8 * rng.normal(size=(n, DIM))).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.arange(N, dtype=np.int64) * 3 + 11  # sparse, non-dense ids
    return ids, clustered(N, seed=1), clustered(200, seed=2)


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, VectorIndex]:
    ids, vectors, _ = data
    out = {}
    for kind in KINDS:
        index = make_index(kind, normalize=True, **PARAMS[kind])
        index.build(ids, vectors)
        out[kind] = index
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f[f >= 0]) & set(t[t >= 0])) for f, t in zip(found, truth, strict=True)]
    return float(np.sum(hits) / np.sum(truth >= 0))


def brute_force(
    vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ v.T
    top = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, top, axis=1), ids[top]


# ----------------------------------------------------------------------------- accuracy


def test_exact_matches_brute_force(data, built) -> None:
    ids, vectors, queries = data
    scores, found = built["exact"].search(queries, K)
    ref_scores, ref_ids = brute_force(vectors, ids, queries, K)
    np.testing.assert_array_equal(found, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    assert (np.diff(scores, axis=1) <= 1e-7).all()


def test_flat_identical_to_exact(data, built) -> None:
    queries = data[2]
    s_exact, i_exact = built["exact"].search(queries, K)
    s_flat, i_flat = built["flat"].search(queries, K)
    np.testing.assert_array_equal(i_flat, i_exact)
    np.testing.assert_allclose(s_flat, s_exact, atol=1e-5)


def test_hnsw_recall(data, built) -> None:
    _, truth = built["exact"].search(data[2], K)
    _, found = built["hnsw"].search(data[2], K)
    assert recall(found, truth) >= 0.9


def test_ivfpq_recall_reasonable(data, built) -> None:
    _, truth = built["exact"].search(data[2], K)
    _, found = built["ivfpq"].search(data[2], K)
    assert recall(found, truth) >= 0.5
    index = built["ivfpq"]
    assert index.params["nlist"] == 32 and index.params["m"] == 8


def test_single_query_vector_and_k_beyond_size() -> None:
    index = make_index("flat")
    index.build(np.array([5, 6, 7]), np.eye(3, 4, dtype=np.float32))
    scores, ids = index.search(np.array([1, 0, 0, 0], np.float32), 5)
    assert ids.shape == (1, 5)
    assert ids[0, 0] == 5 and (ids[0, 3:] == -1).all()
    assert np.isneginf(scores[0, 3:]).all()


# ----------------------------------------------------------------------------- exclusions


@pytest.mark.parametrize("kind", KINDS)
def test_exclusions_honoured(kind: str, data, built) -> None:
    queries = data[2][:50]
    _, full = built["exact"].search(queries, 60)
    # exclude a varying number of each query's true top results (0..49), and a stray id
    exclude = [np.append(full[i, : i % 50], 10**9) for i in range(len(queries))]
    _, found = built[kind].search(queries, K, exclude=exclude)
    for i, row in enumerate(found):
        assert not set(row.tolist()) & set(exclude[i].tolist())
        assert (row >= 0).all()
    if kind in ("exact", "flat"):
        expected = np.stack([full[i, i % 50 : i % 50 + K] for i in range(len(queries))])
        np.testing.assert_array_equal(found, expected)
    # the same exclusions as a CSR matrix over the id space
    rows = np.repeat(np.arange(len(queries)), [len(e) - 1 for e in exclude])
    cols = np.concatenate([e[:-1] for e in exclude])
    csr = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(queries), 3 * N + 11))
    _, found_csr = built[kind].search(queries, K, exclude=csr)
    if kind != "hnsw":  # HNSW may legitimately differ with another over-fetch width
        np.testing.assert_array_equal(found_csr, found)
    for i, row in enumerate(found_csr):
        assert not set(row.tolist()) & set(exclude[i].tolist())


def test_exclusion_shape_errors(built) -> None:
    queries = np.zeros((3, DIM), np.float32)
    with pytest.raises(RecsageError, match="3 queries"):
        built["exact"].search(queries, K, exclude=[[1]])
    with pytest.raises(RecsageError, match="3 queries"):
        built["exact"].search(queries, K, exclude=sp.csr_matrix((2, 10)))


def test_exclude_everything_leaves_empty_slots() -> None:
    index = make_index("exact")
    index.build(np.arange(4), np.eye(4, dtype=np.float32))
    scores, ids = index.search(np.ones((1, 4), np.float32), 3, exclude=[np.array([0, 1, 2])])
    assert ids.tolist() == [[3, -1, -1]]
    assert np.isneginf(scores[0, 1:]).all()


# ----------------------------------------------------------------------------- add / remove


@pytest.mark.parametrize("kind", KINDS)
def test_add_and_remove(kind: str, data) -> None:
    ids, vectors, queries = data
    index = make_index(kind, normalize=True, **PARAMS[kind])
    index.build(ids[:4000], vectors[:4000])
    index.add(ids[4000:], vectors[4000:])
    assert len(index) == N
    with pytest.raises(RecsageError, match="already in the index"):
        index.add(ids[:2], vectors[:2])
    _, before = index.search(queries[:20], K)
    gone = np.unique(before[:, :3])
    assert index.remove(np.append(gone, 10**9)) == len(gone)
    assert len(index) == N - len(gone)
    _, after = index.search(queries[:20], K)
    assert not np.isin(after, gone).any()
    assert (after >= 0).all()
    # a re-added id comes back with its new vector
    target = int(gone[0])
    index.add(np.array([target]), queries[:1])
    _, top = index.search(queries[:1], 1)
    assert top[0, 0] == target
    if kind in ("exact", "flat"):
        keep = ~np.isin(ids, gone)
        oracle = ExactIndex(normalize=True)
        oracle.build(ids[keep], vectors[keep])
        np.testing.assert_array_equal(
            index.search(queries[1:20], K)[1], oracle.search(queries[1:20], K)[1]
        )


def test_hnsw_tombstones_and_rebuild(data) -> None:
    ids, vectors, queries = data
    index = FaissHNSWIndex(M=16, ef_construction=80, ef_search=64, rebuild_threshold=None)
    index.build(ids[:2000], vectors[:2000])
    _, first = index.search(queries[:10], 50)
    index.remove(np.unique(first[:, :40]))  # heavy removal near the queries
    assert index.n_removed > 0
    _, found = index.search(queries[:10], K)
    assert not np.isin(found, first[:, :40]).any() and (found >= 0).all()
    index.rebuild()
    assert index.n_removed == 0 and len(index) == index._capacity()
    _, rebuilt = index.search(queries[:10], K)
    assert not np.isin(rebuilt, first[:, :40]).any()
    auto = FaissHNSWIndex(M=8, ef_construction=40, rebuild_threshold=0.3)
    auto.build(ids[:500], vectors[:500])
    auto.remove(ids[:200])
    assert auto.n_removed == 0 and len(auto) == 300


# ----------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_roundtrip(kind: str, data, built, tmp_path: Path) -> None:
    queries = data[2]
    index = built[kind]
    folder = index.save(tmp_path / kind, metadata={"encoder": "abc123"})
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == kind and manifest["dim"] == DIM and manifest["count"] == N
    assert manifest["config"]["normalize"] is True
    assert all(p.suffix in {".json", ".safetensors", ".faiss"} for p in folder.iterdir())
    loaded = load_index(folder)
    assert type(loaded) is type(index)
    assert loaded.metadata == {"encoder": "abc123"}
    assert loaded.params == index.params
    exclude = [np.array([int(index.ids[i])]) for i in range(len(queries))]
    for excl in (None, exclude):
        s1, i1 = index.search(queries, K, exclude=excl)
        s2, i2 = loaded.search(queries, K, exclude=excl)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)


def test_save_load_keeps_hnsw_tombstones(data, tmp_path: Path) -> None:
    ids, vectors, queries = data
    index = FaissHNSWIndex(M=8, ef_construction=40, rebuild_threshold=None)
    index.build(ids[:1000], vectors[:1000])
    index.remove(ids[:100])
    loaded = FaissHNSWIndex.load(index.save(tmp_path / "h"))
    assert isinstance(loaded, FaissHNSWIndex) and loaded.n_removed == 100
    _, found = loaded.search(queries[:20], K)
    assert not np.isin(found, ids[:100]).any()


def test_load_errors(built, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a saved vector index"):
        load_index(tmp_path / "missing")
    folder = built["flat"].save(tmp_path / "flat")
    with pytest.raises(ArtifactError, match="'flat' index"):
        FaissHNSWIndex.load(folder)
    (folder / "index.faiss").unlink()
    with pytest.raises(ArtifactError, match="corrupt"):
        FaissFlatIndex.load(folder)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", KINDS)
def test_search_on_empty_index_errors(kind: str) -> None:
    index = make_index(kind)
    with pytest.raises(RecsageError, match=r"empty .* never built"):
        index.search(np.zeros((1, DIM), np.float32), K)
    with pytest.raises(RecsageError, match="unbuilt"):
        index.save("unused")


def test_search_after_removing_everything_errors() -> None:
    index = make_index("flat")
    index.build(np.arange(3), np.eye(3, dtype=np.float32))
    index.remove(np.arange(3))
    with pytest.raises(RecsageError, match="every id removed"):
        index.search(np.eye(3, dtype=np.float32), 1)


def test_input_validation() -> None:
    index = make_index("exact")
    with pytest.raises(RecsageError, match="unique"):
        index.build(np.array([1, 1]), np.ones((2, 3)))
    with pytest.raises(RecsageError, match=">= 0"):
        index.build(np.array([-1, 2]), np.ones((2, 3)))
    with pytest.raises(RecsageError, match="NaN"):
        index.build(np.array([1, 2]), np.array([[1.0, np.nan, 0], [1, 2, 3]]))
    index.build(np.array([1, 2]), np.ones((2, 3)))
    with pytest.raises(RecsageError, match=r"shape \(n, 3\)"):
        index.search(np.ones((1, 4)), 1)
    with pytest.raises(RecsageError, match="k must be"):
        index.search(np.ones((1, 3)), 0)
    with pytest.raises(RecsageError, match="dim 4"):
        index.add(np.array([3]), np.ones((1, 4)))


def test_factory_and_config_errors() -> None:
    assert isinstance(make_index("FLAT"), FaissFlatIndex)
    with pytest.raises(ConfigError, match="unknown index kind"):
        make_index("annoy")
    with pytest.raises(ConfigError, match="bad parameters"):
        make_index("hnsw", nprobe=3)
    with pytest.raises(ConfigError, match="only 'ip'"):
        make_index("exact", metric="l2")
    small = make_index("ivfpq")
    with pytest.raises(RecsageError, match="training vectors"):
        small.build(np.arange(100), np.random.default_rng(0).normal(size=(100, 16)))
