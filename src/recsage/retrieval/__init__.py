"""Candidate retrieval: vector indexes (exact NumPy oracle, FAISS flat/HNSW/IVF-PQ).

FAISS is imported only when a FAISS index is built or loaded.
"""

from __future__ import annotations

from recsage.retrieval.faiss_index import FaissFlatIndex, FaissHNSWIndex, FaissIVFPQIndex
from recsage.retrieval.index import (
    INDEXES,
    ExactIndex,
    VectorIndex,
    l2_normalize,
    load_index,
    make_index,
)

__all__ = [
    "INDEXES",
    "ExactIndex",
    "FaissFlatIndex",
    "FaissHNSWIndex",
    "FaissIVFPQIndex",
    "VectorIndex",
    "l2_normalize",
    "load_index",
    "make_index",
]
