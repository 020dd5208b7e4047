"""Splits: which interaction lands where, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from recsage.data.splits import (
    cold_item_split,
    cold_user_split,
    dedupe_first,
    leave_one_out,
    temporal_split,
)
from recsage.errors import ConfigError
from tests.conftest import make_dataset


def _targets(split) -> dict[str, list[str]]:
    t = split.targets
    users = split.train.users
    items = split.train.items
    return {
        users.ids[u]: sorted(items.decode(t.indices[t.indptr[u] : t.indptr[u + 1]]).tolist())
        for u in split.users
    }


def test_leave_one_out_targets_and_histories(tiny) -> None:
    loo = leave_one_out(tiny)
    assert _targets(loo.test) == {"a": ["i3"], "b": ["i2"], "c": ["i3"]}
    assert _targets(loo.valid) == {"a": ["i2"], "b": ["i1"]}
    # test training keeps the validation items; validation training drops both
    assert len(loo.test.train.interactions) == 10 - 3
    assert len(loo.valid.train.interactions) == 10 - 3 - 2
    # history equals the training matrix: a's test history is i0, i1, i2
    a = tiny.users.index_of("a")
    assert sorted(loo.test.history[a].indices.tolist()) == [0, 1, 2]


def test_leave_one_out_merges_repeats_and_says_so() -> None:
    ds = make_dataset([("u", "x", 1), ("u", "y", 2), ("u", "x", 3)])
    deduped, removed = dedupe_first(ds)
    assert removed == 1 and len(deduped.interactions) == 2
    loo = leave_one_out(ds)
    assert _targets(loo.test) == {"u": ["y"]}
    assert any("repeated" in n for n in loo.test.notes)


def test_temporal_split(tiny) -> None:
    split = temporal_split(tiny, test_fraction=0.3)
    # cutoff = 70% quantile of timestamps [1,1,2,2,3,4,5,6,7,9] = 5.3
    assert _targets(split) == {"b": ["i2"], "c": ["i3"]}
    assert any("no history" in n for n in split.notes)  # d's only interaction is after


def test_cold_item_split(tiny) -> None:
    split = cold_item_split(tiny, cold_fraction=0.2)
    # first-seen: i0:1 i1:2 i2:3 i3:4 i4:9 -> i4 is cold; d has no other history
    assert split.train.items.decode(split.candidates).tolist() == ["i4"]
    assert len(split.users) == 0
    split = cold_item_split(tiny, cold_fraction=0.4)
    assert sorted(split.train.items.decode(split.candidates).tolist()) == ["i3", "i4"]
    assert _targets(split) == {"a": ["i3"], "c": ["i3"]}
    assert not np.isin(split.train.interactions.item, split.candidates).any()


def test_cold_user_split_is_seeded_and_gives_history(tiny) -> None:
    s1 = cold_user_split(tiny, cold_fraction=0.5, n_given=1, seed=3)
    s2 = cold_user_split(tiny, cold_fraction=0.5, n_given=1, seed=3)
    assert s1.users.tolist() == s2.users.tolist()
    assert s1.query_history
    for u in s1.users:
        assert (s1.train.interactions.user != u).all()
        assert s1.history[u].nnz == 1
        assert s1.targets[u].nnz == 1
    with pytest.raises(ConfigError):
        cold_user_split(tiny, cold_fraction=1.5)
