"""Explanations: every reason must be true of the data (faithfulness), and the CLI."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recsage.errors import RecsageError
from recsage.knowledge.explain import (
    Explainer,
    Explanation,
    PathReason,
    SharedAttribute,
    item_attributes,
    matrix_scorer,
)
from recsage.knowledge.graph import ItemKnowledgeGraph, KGPath, attribute_triples, item_key

from .conftest import TITLES, tiny_table


def assert_faithful(ex: Explainer, history: list[int], exp: Explanation) -> None:
    """The independent check the issue asks for, walking the data directly."""
    attrs = item_attributes(ex.item_table)
    for r in exp.because:
        assert r.item in history
    for a in exp.attributes:
        assert (a.kind, a.value) in attrs[exp.item]
        assert 0 < len(a.history_items) <= a.count
        for h in a.history_items:
            assert h in history and (a.kind, a.value) in attrs[h]
    for p in exp.paths:
        assert p.history_item in history and p.path.entities[0] == p.history_item
        assert p.path.entities[-1] == exp.item
        assert ex.graph is not None
        for h, r, t in p.path.triples():  # walk the stored triples
            sel = (ex.graph.head == h) & (ex.graph.relation == r) & (ex.graph.tail == t)
            assert sel.sum() == 1
    assert ex.check_faithful(history, exp) == []


def test_reasons_by_hand(graph: ItemKnowledgeGraph) -> None:
    table = tiny_table()
    ex = Explainer(table, graph)
    history = [3, 0, 1]  # Toy Story, Alien, Aliens (newest last)
    exp = ex.explain(history, 2, sources=["ease", "kg"])
    assert exp.sources == ["ease", "kg"] and not exp.in_history
    # Jaccard with Alien 3 {Sci-Fi, 1990s}: Toy Story {Comedy, 1990s} = 1/3, Aliens
    # {Sci-Fi, Action, 1980s} = 1/4, Alien {Sci-Fi, Horror, 1970s} = 1/4 (ties: most recent)
    assert [(r.item, round(r.weight, 3), r.steps_back) for r in exp.because] == [
        (3, 0.333, 2), (1, 0.25, 0), (0, 0.25, 1)
    ]  # fmt: skip
    assert {(a.kind, a.value): a.history_items for a in exp.attributes} == {
        ("genre", "Sci-Fi"): (1, 0),
        ("decade", "1990s"): (3,),
    }
    # paths: Aliens -sequel-> Alien 3 (1 hop) beats the 2-hop company paths
    assert exp.paths[0].path.entities == (1, 2)
    assert (
        exp.paths[0].text
        == "*Aliens* (in your history) — knowledge graph: *Aliens* sequel *Alien 3*"
    )
    # the company is known only by its MID: named by what links to it, never by the id
    fox = [p.text for p in exp.paths if p.path.entities[0] == 0]
    assert fox == [
        '*Alien* (in your history) — same "production companies" as *Alien 3* '
        "(an entity linked to both)"
    ]
    assert not any("m.fox" in line or "film.film" in line for line in exp.lines())
    assert_faithful(ex, history, exp)
    assert "found by: ease, kg" in exp.lines()


def test_named_entities_and_longer_paths_read_as_words() -> None:
    ext = pd.DataFrame(
        {
            "head": [item_key(0), item_key(1), item_key(3), "m.064_8sq"],
            "relation": ["film.film.production_companies", "film.film.production_companies",
                         "film.film.directed_by", "people.person.spouse"],
            "tail": ["m.fox", "m.fox", "m.064_8sq", "m.0jg24"],
        }
    )  # fmt: skip
    g = ItemKnowledgeGraph.build(5, [ext], item_names=TITLES, entity_display={"m.fox": "Fox"})
    ex = Explainer(tiny_table(), g)
    exp = ex.explain([0], 1)
    assert [p.text for p in exp.paths] == [
        '*Alien* (in your history) — same "production companies" entity (Fox) as *Aliens*'
    ]
    # id-only entities are named by the item before them; named ones by their name
    ent = list(g.entity_names)
    r_dir = g.relation_id("film.film.directed_by")
    r_co = g.relation_id("film.film.production_companies")
    one = KGPath((3, ent.index("m.064_8sq")), (r_dir,), (True,))
    assert ex._readable_path(one) == "*Toy Story* —[directed by]→ an entity linked to *Toy Story*"
    two = KGPath((0, ent.index("Fox"), 1), (r_co, r_co), (True, False))
    assert ex._readable_path(two) == (
        "*Alien* —[production companies]→ Fox ←[production companies]— *Aliens*"
    )


def test_an_item_already_in_the_history_says_so_first(graph: ItemKnowledgeGraph) -> None:
    ex = Explainer(tiny_table(), graph)
    exp = ex.explain([1, 0, 3], 0, sources=["pop"])
    assert exp.in_history
    assert exp.lines()[0] == "*Alien* is already in this history (1 item back)"
    assert exp.lines()[1] == "found by: pop"
    assert all(r.item != 0 for r in exp.because)  # not explained by itself
    assert ex.explain([0, 1, 3, 1], 0).lines()[0].endswith("(3 items back)")
    assert ex.explain([1, 0], 0).lines()[0].endswith("(your latest item)")
    assert not ex.explain([1, 3], 0).in_history


def test_model_scorer_weights_pick_the_history_items() -> None:
    w = np.zeros((5, 5))
    w[3, 2], w[0, 2] = 0.9, 0.1
    ex = Explainer(tiny_table(), scorer=matrix_scorer(w), scorer_name="EASE")
    exp = ex.explain([0, 1, 3], 2)
    assert [r.item for r in exp.because] == [3, 0]  # zero weights are not cited
    assert exp.paths == []  # no graph given
    assert "EASE weight 0.9" in exp.lines()[0]


def test_check_faithful_catches_invented_reasons(graph: ItemKnowledgeGraph) -> None:
    ex = Explainer(tiny_table(), graph)
    exp = ex.explain([0, 1], 2)
    r = graph.relation_id("film.film.sequel")
    exp.attributes.append(SharedAttribute("genre", "Comedy", (0,), ("Alien",), 1))
    exp.paths.append(PathReason(0, KGPath((0, 2), (r,), (True,)), "made up"))
    problems = ex.check_faithful([0, 1], exp)
    assert any("Comedy" in p for p in problems) and any("not in the graph" in p for p in problems)


def test_faithful_on_movielens_with_freebase() -> None:
    from recsage.data.sources.registry import load_dataset

    ds = load_dataset("ml-100k")
    graph = ItemKnowledgeGraph.for_dataset(ds)
    ex = Explainer(ds, graph)
    seqs = ds.sequences()
    rng = np.random.default_rng(0)
    n_paths = 0
    for u in rng.choice(ds.n_users, 5, replace=False):
        history = seqs[u][-30:].tolist()
        for item in rng.choice(ds.n_items, 4, replace=False):
            exp = ex.explain(history, int(item), sources=["ease"])
            assert_faithful(ex, history, exp)
            n_paths += len(exp.paths)
    assert n_paths > 0


def test_explain_errors() -> None:
    ex = Explainer(tiny_table())
    with pytest.raises(RecsageError):
        ex.explain([0], 9)
    with pytest.raises(RecsageError):
        Explainer(tiny_table(), ItemKnowledgeGraph.build(2, [attribute_triples(tiny_table())[:0]]))


def test_explain_cli_on_bundled_movielens() -> None:
    from recsage.cli.common import app

    res = CliRunner().invoke(
        app, ["explain", "--user", "1", "--item", "50"], env={"COLUMNS": "150"}
    )
    assert res.exit_code == 0, res.output
    assert "Star Wars" in res.output
    assert "genre" in res.output and "an entity linked to both" in res.output
    assert re.search(r"\bm\.[0-9a-z_]+", res.output) is None  # no raw Freebase MID shown
    assert "re-checked against the data: ok" in res.output
    bad = CliRunner().invoke(app, ["explain", "--user", "1", "--item", "no-such-item"])
    assert bad.exit_code != 0


def test_explain_a_saved_pipeline_with_a_kg_channel(movies, tmp_path) -> None:
    from recsage.cli.common import app
    from recsage.knowledge.channel import KGChannel
    from recsage.knowledge.explain import explain_command
    from recsage.pipeline.pipeline import Pipeline

    spec = {
        "text": {"enabled": False},
        "channels": [
            {"name": "ease", "kind": "model", "model": "ease", "n": 3, "params": {"l2": 1.0}},
            {"name": "kg", "kind": "kg", "n": 3, "graph": "none", "dim": 8, "epochs": 5},
            {"name": "pop", "kind": "popularity", "n": 3},
        ],
        "stages": [{"name": "fuse", "kind": "rrf", "keep": 5}],
    }
    pipe = Pipeline(spec).fit(movies)
    res = explain_command("u1", "c", pipeline=pipe)  # u1 saw Alien, Aliens, Toy Story
    exp = res.explanation
    assert (
        exp.title == "Alien 3 (1992)" and exp.sources and set(exp.sources) <= {"ease", "kg", "pop"}
    )
    assert exp.scorer == "EASE" and res.faithful == []
    assert ("genre", "Sci-Fi") in {(a.kind, a.value) for a in exp.attributes}
    pipe.save(tmp_path / "p")
    back = Pipeline.load(tmp_path / "p")  # the kg model reloads with its graph
    kg = next(c for c in back.channels if c.name == "kg")
    assert isinstance(kg, KGChannel) and kg.graph is not None
    np.testing.assert_array_equal(
        kg.graph.head, next(c for c in pipe.channels if c.name == "kg").graph.head
    )
    out = CliRunner().invoke(
        app, ["explain", "-u", "u1", "-i", "c", "--pipeline", str(tmp_path / "p")]
    )
    assert out.exit_code == 0, out.output
    assert "found by" in out.output and "Sci-Fi" in out.output
