"""Executors: local mapping, shard ranges, the factory and the missing-Ray message."""

from __future__ import annotations

import sys

import pytest

from recsage.errors import ConfigError, RecsageError
from recsage.executor import LocalExecutor, import_ray, make_executor, shard_ranges


def _mul(shared: dict[str, int], shard: tuple[int, int]) -> list[int]:
    return [shared["k"] * i for i in range(*shard)]


def test_local_executor_maps_in_shard_order_with_one_shared_object():
    ex = LocalExecutor()
    out = ex.map(_mul, [(0, 2), (2, 5), (5, 6)], shared={"k": 3})
    assert out == [[0, 3], [6, 9, 12], [15]]
    it = ex.imap(_mul, [(0, 1)], shared={"k": 2})
    assert next(it) == [0]


def test_shard_ranges_cover_everything_once():
    assert shard_ranges(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert shard_ranges(0, 3) == []
    with pytest.raises(ConfigError, match="shard size"):
        shard_ranges(5, 0)


def test_make_executor_defaults_and_errors(monkeypatch):
    monkeypatch.delenv("RECSAGE_RAY_ADDRESS", raising=False)
    assert isinstance(make_executor(), LocalExecutor)
    assert isinstance(make_executor("LOCAL"), LocalExecutor)
    with pytest.raises(ConfigError, match="unknown executor 'spark'; known: local, ray"):
        make_executor("spark")


def test_missing_ray_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RecsageError, match=r"pip install 'recsage\[ray\]'"):
        import_ray()
    monkeypatch.setenv("RECSAGE_RAY_ADDRESS", "ray://nowhere:10001")
    with pytest.raises(RecsageError, match="needs Ray"):
        make_executor()  # the address selects Ray
