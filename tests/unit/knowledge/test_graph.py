"""ItemKnowledgeGraph: construction, adjacency, paths checked by hand, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsage.errors import ArtifactError, RecsageError
from recsage.knowledge.graph import (
    ATTRIBUTE,
    EXTERNAL,
    ItemKnowledgeGraph,
    KGPath,
    attribute_triples,
    load_lastfm_kg,
)

from .conftest import tiny_table


def test_build_indexes_items_first_and_dedupes(graph: ItemKnowledgeGraph) -> None:
    assert graph.n_items == 5 and graph.n_entities == 5 + 3  # m.fox, m.fincher, m.lasseter
    assert graph.n_triples == 6
    assert list(graph.entity_names[:5]) == ["Alien", "Aliens", "Alien 3", "Toy Story", "Orphan"]
    assert set(graph.entity_kinds[5:]) == {EXTERNAL}
    assert graph.describe()["items_with_triples"] == 4
    fox = int(np.flatnonzero(graph.entity_names == "m.fox")[0])
    r = graph.relation_id("film.film.production_companies")
    assert graph.has_triple(0, r, fox) and not graph.has_triple(fox, r, 0)
    adj = graph.adjacency("film.film.production_companies")
    assert adj.shape == (8, 8) and adj[0, fox] == 1 and adj[1, fox] == 1 and adj.nnz == 2


def test_neighbors(graph: ItemKnowledgeGraph) -> None:
    got = {(n.relation, n.name, n.outgoing) for n in graph.neighbors(2)}
    assert got == {
        ("film.film.sequel", "Aliens", False),
        ("film.film.directed_by", "m.fincher", True),
        ("film.production_company.films", "m.fox", False),
    }
    assert graph.neighbors(4) == []


def test_paths_by_hand(graph: ItemKnowledgeGraph) -> None:
    fox = int(np.flatnonzero(graph.entity_names == "m.fox")[0])
    # Alien -> Aliens: one 2-hop path through m.fox (both triples forward from the films)
    paths = graph.paths(0, 1)
    assert [p.entities for p in paths] == [(0, fox, 1)]
    assert paths[0].forward == (True, False)
    assert all(graph.verify_path(p) for p in paths)
    # Aliens -> Alien 3: the sequel triple (1 hop) first, then via m.fox (2 hops)
    paths = graph.paths(1, 2)
    assert [p.entities for p in paths] == [(1, 2), (1, fox, 2)]
    assert graph.relation_names[paths[0].relations[0]] == "film.film.sequel"
    assert graph.describe_path(paths[1]) == (
        "Aliens —[film.film.production_companies]→ m.fox —[film.production_company.films]→ Alien 3"
    )
    # Alien -> Alien 3 needs 2 hops via m.fox, or 3 via Aliens
    assert [p.entities for p in graph.paths(0, 2, max_hops=2)] == [(0, fox, 2)]
    three = [p.entities for p in graph.paths(0, 2, max_hops=3)]
    assert three[0] == (0, fox, 2) and (0, fox, 1, 2) in three
    assert graph.paths(0, 3, max_hops=3) == [] and graph.paths(0, 0) == []


def test_verify_path_rejects_invented_triples(graph: ItemKnowledgeGraph) -> None:
    r = graph.relation_id("film.film.sequel")
    assert graph.verify_path(KGPath((1, 2), (r,), (True,)))
    assert not graph.verify_path(KGPath((2, 1), (r,), (True,)))  # wrong direction
    assert not graph.verify_path(KGPath((0, 2), (r,), (True,)))


def test_attribute_triples_and_for_dataset(movies) -> None:
    frame = attribute_triples(tiny_table())
    rels = frame.groupby("relation").size().to_dict()
    assert rels == {"has_genre": 6, "released_in_decade": 4}  # Orphan: no year, no genre
    g = ItemKnowledgeGraph.for_dataset(movies, external="none")
    scifi = int(np.flatnonzero(g.entity_names == "Sci-Fi")[0])
    assert g.entity_kinds[scifi] == ATTRIBUTE
    assert "1970s" in set(g.entity_names) and g.describe()["items_with_triples"] == 4
    assert [p.entities for p in g.paths(0, 2)] == [(0, scifi, 2)]


def test_save_load_identical(graph: ItemKnowledgeGraph, tmp_path: Path) -> None:
    graph.save(tmp_path / "g")
    back = ItemKnowledgeGraph.load(tmp_path / "g")
    for a, b in zip(graph.arrays().values(), back.arrays().values(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.meta() == graph.meta()
    assert [p.entities for p in back.paths(1, 2)] == [p.entities for p in graph.paths(1, 2)]
    assert not list((tmp_path / "g").glob("*.pkl"))
    with pytest.raises(ArtifactError):
        ItemKnowledgeGraph.load(tmp_path)


def test_out_of_range_is_an_error(graph: ItemKnowledgeGraph) -> None:
    with pytest.raises(RecsageError):
        graph.paths(0, 99)
    with pytest.raises(RecsageError):
        graph.relation_id("nope")


def test_lastfm_loader_on_a_small_copy(tmp_path: Path) -> None:
    (tmp_path / "user_artists.dat").write_text(
        "userID\tartistID\tweight\n1\t10\t5\n1\t11\t3\n1\t99\t1\n2\t11\t7\n2\t12\t2\n"
    )
    (tmp_path / "item_index2entity_id.txt").write_text("10\t0\n11\t1\n12\t2\n")
    (tmp_path / "kg.txt").write_text("0\tmusic.artist.genre\t3\n1\tmusic.artist.genre\t3\n")
    ds, g = load_lastfm_kg(tmp_path)
    assert ds.n_items == 3 and len(ds.interactions) == 4
    assert ds.report is not None and ds.report.dropped == {
        "artist not linked to the knowledge graph": 1
    }
    assert [s.tolist() for s in ds.sequences()] == [[0, 1], [1, 2]]  # file order kept
    assert g.n_entities == 4 and [p.entities for p in g.paths(0, 1)] == [(0, 3, 1)]
    assert g.entity_names[3] == "satori:3"
