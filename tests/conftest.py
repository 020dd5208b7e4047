"""Shared fixtures: small hand-made datasets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsage.data.schema import Dataset, Interactions
from recsage.data.vocab import Vocabulary


def make_dataset(rows: list[tuple[str, str, float]], n_items: int | None = None) -> Dataset:
    """Dataset from (user, item, timestamp) rows; items i0..i{n-1} when n_items is given."""
    users = Vocabulary.from_values([r[0] for r in rows])
    item_ids = [f"i{j}" for j in range(n_items)] if n_items else [r[1] for r in rows]
    items = Vocabulary.from_values(item_ids)
    inter = Interactions.build(
        users.encode([r[0] for r in rows]),
        items.encode([r[1] for r in rows]),
        timestamp=np.array([r[2] for r in rows], float),
    )
    table = pd.DataFrame({"title": [f"Title {i}" for i in items.ids]})
    return Dataset("tiny", inter, users, items, table)


@pytest.fixture
def tiny() -> Dataset:
    """Four users over five items, timestamps chosen so the order is unambiguous."""
    rows = [
        ("a", "i0", 1), ("a", "i1", 2), ("a", "i2", 3), ("a", "i3", 4),
        ("b", "i0", 1), ("b", "i1", 5), ("b", "i2", 6),
        ("c", "i1", 2), ("c", "i3", 7),
        ("d", "i4", 9),
    ]  # fmt: skip
    return make_dataset(rows, n_items=5)
