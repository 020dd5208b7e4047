"""Search spaces and the tuning protocol (no Ray needed for these parts)."""

from __future__ import annotations

import numpy as np
import pytest

from recsage.data.splits import leave_one_out
from recsage.data.synth import SynthConfig, generate
from recsage.errors import ConfigError
from recsage.evaluation.tune import parse_space, rung_sizes, set_path, tune_data

SPEC = {
    "merge": {"max_candidates": 300},
    "channels": [{"name": "ease", "kind": "model", "model": "ease", "n": 100}],
    "stages": [{"name": "rerank", "kind": "mmr", "lambda": 0.9}],
}


def test_parse_space_validates_every_entry():
    params = parse_space({"space": {
        "channels.ease.params.l2": {"loguniform": [10.0, 1000.0]},
        "merge.max_candidates": {"choice": [100, 200]},
        "stages.rerank.keep": {"int": [5, 20]},
    }})  # fmt: skip
    rng = np.random.default_rng(0)
    draws = [params[0].sample(rng) for _ in range(200)]
    assert min(draws) >= 10.0 and max(draws) <= 1000.0
    assert {params[2].sample(rng) for _ in range(300)} == set(range(5, 21))  # inclusive
    for bad, msg in [
        ({}, "non-empty \\[space\\] table"),
        ({"space": {"a.b": {"normal": [0, 1]}}}, "unknown distribution 'normal'"),
        ({"space": {"a.b": {"uniform": [2.0, 1.0]}}}, "low must be below high"),
        ({"space": {"a.b": {"loguniform": [0.0, 1.0]}}}, "loguniform needs low > 0"),
        ({"space": {"a.b": {"int": [1.5, 3]}}}, "int bounds must be integers"),
        ({"space": {"a.b": {"uniform": [0, 1], "int": [0, 1]}}}, "exactly one of"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_space(bad)


def test_set_path_addresses_entries_by_name_and_copies():
    out = set_path(SPEC, "channels.ease.params.l2", 50.0)
    assert out["channels"][0]["params"] == {"l2": 50.0}
    assert "params" not in SPEC["channels"][0]  # the input is not modified
    assert set_path(SPEC, "stages.rerank.lambda", 0.5)["stages"][0]["lambda"] == 0.5
    with pytest.raises(ConfigError, match="no entry named 'cooc'"):
        set_path(SPEC, "channels.cooc.window", 3)
    with pytest.raises(ConfigError, match="the spec has no section 'chanels'"):
        set_path(SPEC, "chanels.ease.n", 3)


def test_tuning_data_hides_the_test_interactions():
    ds = generate(SynthConfig(users=200, items=60, events=2400, seed=2))
    data = tune_data(ds)
    test = leave_one_out(ds).test
    valid = leave_one_out(ds).valid
    # nothing the trials fit on or validate against contains a test target
    t = test.targets.tocoo()
    train = data.train.matrix()
    assert train[t.row, t.col].sum() == 0
    assert (data.valid.targets != valid.targets).nnz == 0  # validation = 2nd-last items
    assert sorted(data.order.tolist()) == sorted(data.valid.users.tolist())
    assert rung_sizes(10, (0.25, 0.5, 1.0)) == [2, 5, 10]
    with pytest.raises(ConfigError, match="increasing shares"):
        rung_sizes(10, (0.5, 0.25))
