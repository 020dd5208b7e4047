"""TransE training, KG item vectors, the KG model/channel and their persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsage.errors import RecsageError
from recsage.knowledge.channel import KGChannel, KGModel, KGModelConfig
from recsage.knowledge.embeddings import TransE, recency_profile
from recsage.knowledge.graph import ItemKnowledgeGraph
from recsage.models.base import Recommender
from recsage.retrieval.channels.base import Resources
from recsage.types import QueryBatch


def test_transe_loss_decreases_and_is_seeded(graph: ItemKnowledgeGraph) -> None:
    a = TransE(dim=8, epochs=40, batch_size=4, lr=0.05, seed=3).fit(graph)
    assert len(a.losses) == 40
    assert np.mean(a.losses[-5:]) < 0.5 * np.mean(a.losses[:5])
    b = TransE(dim=8, epochs=40, batch_size=4, lr=0.05, seed=3).fit(graph)
    np.testing.assert_array_equal(a.entity_vectors, b.entity_vectors)
    c = TransE(dim=8, epochs=40, batch_size=4, lr=0.05, seed=4).fit(graph)
    assert not np.allclose(a.entity_vectors, c.entity_vectors)
    np.testing.assert_allclose(np.linalg.norm(a.entity_vectors, axis=1), 1.0, rtol=1e-5)


def test_item_vectors_zero_without_triples_and_propagation(graph: ItemKnowledgeGraph) -> None:
    m = TransE(dim=8, epochs=5, seed=0).fit(graph)
    v0 = m.item_vectors(graph, propagate=0.0)
    np.testing.assert_array_equal(v0[4], 0.0)  # Orphan has no triples
    np.testing.assert_allclose(np.linalg.norm(v0[:4], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(v0[0], m.entity_vectors[0], rtol=1e-5)
    v1 = m.item_vectors(graph, propagate=1.0)
    fox = int(np.flatnonzero(graph.entity_names == "m.fox")[0])
    expected = m.entity_vectors[0] + m.entity_vectors[fox]  # Alien's only neighbour: m.fox
    np.testing.assert_allclose(v1[0], expected / np.linalg.norm(expected), rtol=1e-5)


def test_transe_save_load(graph: ItemKnowledgeGraph, tmp_path: Path) -> None:
    m = TransE(dim=4, epochs=3).fit(graph)
    back = TransE.load(m.save(tmp_path / "t"))
    np.testing.assert_array_equal(back.entity_vectors, m.entity_vectors)
    assert back.losses == m.losses and back.config == m.config


def test_recency_profile_by_hand() -> None:
    v = np.eye(3, dtype=np.float32)
    p = recency_profile([np.array([0, 1]), np.array([], np.int64)], v, recent=10, decay=0.5)
    np.testing.assert_allclose(p[0], np.array([0.5, 1.0, 0.0]) / np.sqrt(1.25), rtol=1e-6)
    np.testing.assert_array_equal(p[1], 0.0)


def test_kg_model_scores_save_load(movies, tmp_path: Path) -> None:
    m = KGModel(KGModelConfig(graph="none", dim=8, epochs=10)).fit(movies)
    assert m.graph is not None and m.losses[-1] < m.losses[0]
    seqs = [np.array([0]), np.array([], np.int64)]
    s = m.score_sequences(seqs)
    assert s.shape == (2, 5) and np.isneginf(s[1]).all()
    assert np.argmax(np.where(np.arange(5) == 0, -np.inf, s[0])) in (1, 2)  # Sci-Fi siblings
    back = Recommender.load(m.save(tmp_path / "kg"))
    assert isinstance(back, KGModel) and back.graph is not None
    np.testing.assert_array_equal(back.score_sequences(seqs), s)
    np.testing.assert_array_equal(back.graph.head, m.graph.head)
    with pytest.raises(RecsageError):
        KGModel(graph=ItemKnowledgeGraph.build(2, [])).fit(movies)


def test_kg_channel_retrieves_and_persists(movies) -> None:
    ch = KGChannel("kg", n=2, graph="none", dim=8, epochs=10)
    ch.fit(movies, Resources())
    assert ch.graph is not None and ch.spec()["kind"] == "kg"
    batch = QueryBatch(np.array([0, -1]), [np.array([0, 3]), np.array([], np.int64)], 5)
    items, _ = ch.retrieve(batch, 2)
    assert set(items[0].tolist()).isdisjoint({0, 3})  # history excluded
    assert (items[1] == -1).all()  # no history, no KG profile: nothing retrieved
    full = ch.scores(batch)
    assert full.shape == (2, 5)
