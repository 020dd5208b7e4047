"""Memory guard: refuse before allocating, name a model that fits instead."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from recsage.data.schema import Dataset, Interactions
from recsage.data.vocab import Vocabulary
from recsage.models.baselines import EASE
from recsage.models.memory import (
    MemoryBudgetError,
    available_bytes,
    check_fit_memory,
    fit_bytes,
    parse_bytes,
)


def _wide(n_items: int, n_users: int = 50, per_user: int = 4) -> Dataset:
    """A catalogue of `n_items` with a few interactions (cheap to build at any width)."""
    rng = np.random.default_rng(0)
    user = np.repeat(np.arange(n_users), per_user)
    item = rng.integers(0, n_items, len(user))
    import pandas as pd

    items = Vocabulary(np.array([f"i{i}" for i in range(n_items)], dtype=object))
    users = Vocabulary(np.array([f"u{u}" for u in range(n_users)], dtype=object))
    return Dataset(
        "wide", Interactions.build(user, item), users, items, pd.DataFrame(index=range(n_items))
    )


def test_parse_bytes():
    assert parse_bytes("24GiB") == 24 * 2**30
    assert parse_bytes("512m") == 512 * 2**20
    assert parse_bytes("1e9") == 10**9
    with pytest.raises(Exception, match="cannot read 'lots'"):
        parse_bytes("lots")


def test_estimates_follow_the_formulas():
    # EASE: float64 Gram + inverse + scaled copy (3 x 8 n^2) + float32 weights (4 n^2)
    assert fit_bytes("ease", None, n_users=10, n_items=1000, nnz=100, pairs=500) == (
        12 * 100 + 28 * 1000**2
    )
    # item-kNN is bounded by the co-occurrence pairs, never by a dense n^2
    knn = fit_bytes("itemknn", None, n_users=10, n_items=10**6, nnz=100, pairs=1000)
    assert knn == 12 * 100 + 36 * 1000


def test_ease_refused_where_its_item_matrix_cannot_fit():
    avail = available_bytes()
    n_items = math.isqrt(avail // 4) + 1  # even one float32 item x item matrix is too big
    data = _wide(n_items)
    tracemalloc.start()
    with pytest.raises(MemoryBudgetError) as info:
        EASE().fit(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    msg = str(info.value)
    assert msg.startswith(f"ease: fitting on {n_items:,} items")
    assert f"dense {n_items:,} x {n_items:,} item-item matrix" in msg
    assert "use als or itemknn or pop instead" in msg
    assert peak < 64 * 2**20  # refused before allocating anything large


def test_budget_from_the_environment(monkeypatch):
    data = _wide(2000)
    nnz = len(np.unique(data.interactions.user * 2000 + data.interactions.item))
    assert check_fit_memory("ease", None, data, budget=2**40) == 12 * nnz + 28 * 2000**2
    monkeypatch.setenv("RECSAGE_MEMORY_LIMIT", "64MiB")  # 28 * 2000^2 = 112 MB > 64 MiB
    with pytest.raises(MemoryBudgetError, match=r"more than the 64\.0 MiB available"):
        check_fit_memory("ease", None, data)
    # a small catalogue fits the same budget
    assert check_fit_memory("ease", None, _wide(500)) < 64 * 2**20
