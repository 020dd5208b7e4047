"""Every vector index kind keeps the `VectorIndexTests` contract."""

from __future__ import annotations

from recsage.retrieval.index import VectorIndex, make_index
from recsage.testing import VectorIndexTests


class TestExact(VectorIndexTests):
    def make_index(self) -> VectorIndex:
        return make_index("exact", block_bytes=4096)  # several blocks: the batching path


class TestFaissFlat(VectorIndexTests):
    def make_index(self) -> VectorIndex:
        return make_index("flat")


class TestHNSW(VectorIndexTests):
    min_recall = 0.95

    def make_index(self) -> VectorIndex:
        return make_index("hnsw", M=16, ef_search=64)


class TestHNSWRebuilding(VectorIndexTests):
    """Removing a third of the ids triggers a graph rebuild (threshold 0.3)."""

    min_recall = 0.95

    def make_index(self) -> VectorIndex:
        return make_index("hnsw", M=16, ef_search=64, rebuild_threshold=0.3)


class TestIVFPQ(VectorIndexTests):
    min_recall = 0.75  # 4 one-byte codes per 16-d vector: measured 0.86

    def make_index(self) -> VectorIndex:
        return make_index("ivfpq", nlist=8, m=4, nbits=8, nprobe=8)


def test_every_index_kind_runs_the_suite() -> None:
    from recsage.retrieval.index import INDEXES

    covered = {type(c().make_index()).kind for c in VectorIndexTests.__subclasses__()}
    assert set(INDEXES) <= covered
