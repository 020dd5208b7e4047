"""A hand-made movie graph shared by the knowledge tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsage.data.schema import Dataset, Interactions
from recsage.data.vocab import Vocabulary
from recsage.knowledge.graph import ItemKnowledgeGraph, attribute_display, item_key

#: Items 0..4. Alien (0) and Aliens (1) share the company m.fox, which also lists Alien 3 (2);
#: Aliens -> sequel -> Alien 3; Toy Story (3) only has its director; Orphan (4) has no triples.
TITLES = ["Alien", "Aliens", "Alien 3", "Toy Story", "Orphan"]


def tiny_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e"],
            "title": TITLES,
            "year": pd.array([1979, 1986, 1992, 1995, pd.NA], dtype="Int64"),
            "categories": [["Sci-Fi", "Horror"], ["Sci-Fi", "Action"], ["Sci-Fi"], ["Comedy"], []],
        }
    )


def tiny_graph() -> ItemKnowledgeGraph:
    """External triples by hand (plus no attributes): see the test expectations."""
    ext = pd.DataFrame(
        {
            "head": [item_key(0), item_key(1), item_key(1), item_key(2), "m.fox", item_key(3)],
            "relation": [
                "film.film.production_companies",
                "film.film.production_companies",
                "film.film.sequel",
                "film.film.directed_by",
                "film.production_company.films",
                "film.film.directed_by",
            ],
            "tail": ["m.fox", "m.fox", item_key(2), "m.fincher", item_key(2), "m.lasseter"],
        }
    )
    return ItemKnowledgeGraph.build(5, [ext], item_names=TITLES)


@pytest.fixture
def graph() -> ItemKnowledgeGraph:
    return tiny_graph()


@pytest.fixture
def movies() -> Dataset:
    """Three users over the five movies, with attributes and a time order."""
    table = tiny_table()
    items = Vocabulary(table["item_id"])
    users = Vocabulary(["u1", "u2", "u3"])
    rows = [(0, 0), (0, 1), (0, 3), (1, 1), (1, 2), (1, 0), (2, 3), (2, 0), (2, 2)]
    inter = Interactions.build(
        np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
        timestamp=np.arange(len(rows), dtype=float),
    )  # fmt: skip
    return Dataset("movies", inter, users, items, table)


__all__ = ["TITLES", "attribute_display", "tiny_graph", "tiny_table"]
