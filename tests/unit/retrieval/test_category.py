"""The category channel: scores checked by hand on a four-item catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsage.retrieval.channels.base import Resources
from recsage.retrieval.channels.registry import create_channel
from recsage.types import QueryBatch
from tests.conftest import make_dataset


def test_scores_are_category_share_plus_scaled_popularity() -> None:
    # items a, b: Horror; c: Horror + Comedy; d: Comedy; e: no category
    rows = [("u1", "a", 1.0), ("u1", "c", 2.0), ("u2", "d", 1.0), ("u3", "d", 1.0),
            ("u4", "b", 1.0), ("u4", "e", 2.0)]  # fmt: skip
    ds = make_dataset(rows)
    cats = {"a": ["Horror"], "b": ["Horror"], "c": ["Horror", "Comedy"], "d": ["Comedy"], "e": []}
    ds.item_table["categories"] = pd.Series([cats[i] for i in ds.items.ids], dtype=object)
    ch = create_channel({"name": "cat", "kind": "category", "n": 5, "popularity_weight": 0.5})
    ch.fit(ds, Resources())
    hist = ds.items.lookup(["a"])  # one Horror item: profile = {Horror: 1}
    items, scores = ch.retrieve(QueryBatch(np.array([-1]), [hist], ds.n_items), 5)
    got = dict(zip(ds.items.decode(items[0][items[0] >= 0]), scores[0][items[0] >= 0], strict=True))
    pop = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 1}  # interaction counts; max 2
    # b: share 1 + 0.5 * 1/2; c: share 1 (it carries Horror) + 0.5 * 1/2; d, e share nothing
    assert set(got) == {"b", "c"}
    assert np.isclose(got["b"], 1 + 0.5 * pop["b"] / 2) and np.isclose(got["c"], 1.25)
    hist2 = ds.items.lookup(["a", "d"])  # half Horror, half Comedy
    items, scores = ch.retrieve(QueryBatch(np.array([-1]), [hist2], ds.n_items), 5)
    got = dict(zip(ds.items.decode(items[0][items[0] >= 0]), scores[0][items[0] >= 0], strict=True))
    # c carries both categories: 0.5 + 0.5 = 1 share; b only Horror: 0.5
    assert np.isclose(got["c"], 1.0 + 0.25) and np.isclose(got["b"], 0.5 + 0.25)
    assert list(got) == ["c", "b"] and "e" not in got
