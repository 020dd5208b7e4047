"""Full-ranking evaluation sharded over users, on any executor (local or Ray).

Each shard ranks its users exactly as `evaluate` does (same code: `rank_users`) and returns
the per-user metric rows and top-k lists; the driver concatenates them in user order and
computes the means and the beyond-accuracy metrics (coverage, novelty, diversity) over all
lists, so the result equals the local run's to the last digit. Shards are whole multiples
of `batch_size`, so every scoring batch holds the same users as in a local run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsage.data.splits import Split
from recsage.errors import ConfigError
from recsage.evaluation.protocol import (
    EvalResult,
    EvalSetting,
    assemble_result,
    eval_setting,
    rank_users,
)
from recsage.executor import Executor, LocalExecutor, shard_ranges


@dataclass
class _Job:
    """What every shard shares (put into the object store once)."""

    target: Any
    split: Split
    setting: EvalSetting
    ks: tuple[int, ...]
    batch_size: int
    list_k: int


def _score_fn(target: Any, split: Split) -> Any:
    """A scorer for a Recommender (`score`) or a Pipeline (`scorer` over the split's
    training sequences, as `evaluate_pipeline` ranks)."""
    if hasattr(target, "run_batch") and hasattr(target, "scorer"):
        return target.scorer(split.train.sequences())
    if hasattr(target, "score"):
        return target.score
    if callable(target):
        return target
    raise ConfigError(f"cannot evaluate a {type(target).__name__}: no score() or scorer()")


def _rank_shard(job: _Job, bounds: tuple[int, int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    lo, hi = bounds
    per_metric, lists = rank_users(
        _score_fn(job.target, job.split), job.split, job.split.users[lo:hi], job.setting,
        ks=job.ks, batch_size=job.batch_size, sampled_negatives=None,
        rng=np.random.default_rng(0), list_k=job.list_k,
    )  # fmt: skip
    merged = {k: np.concatenate(v) for k, v in per_metric.items()}
    return merged, (np.concatenate(lists) if lists else np.zeros((0, job.list_k), np.int64))


def evaluate_sharded(
    target: Any,
    split: Split,
    *,
    executor: Executor | None = None,
    name: str | None = None,
    ks: tuple[int, ...] = (10, 20),
    batch_size: int = 1024,
    shard_batches: int = 4,
    item_features: np.ndarray | None = None,
    list_k: int = 10,
    sampled_negatives: int | None = None,
) -> EvalResult:
    """`evaluate(target, split)` with users split into shards of `shard_batches` batches.

    `target` is a fitted Recommender, a fitted Pipeline or a score function. Sampled
    negatives draw from one random stream across users, which shards cannot reproduce,
    so they are refused here (run them with `evaluate`).
    """
    if sampled_negatives:
        raise ConfigError(
            "sampled-negative evaluation draws from one random stream over all users and "
            "cannot be sharded; run it with the local executor"
        )
    if any(k < 1 for k in ks):
        raise ConfigError(f"cut-offs must be >= 1, got {ks}")
    if batch_size < 1 or shard_batches < 1:
        raise ConfigError("batch_size and shard_batches must be >= 1")
    executor = executor or LocalExecutor()
    model_name = str(name or getattr(target, "name", None) or "model")
    if hasattr(target, "run_batch") and name is None:
        model_name = "pipeline"
    setting = eval_setting(split, item_features)
    job = _Job(target, split, setting, tuple(ks), batch_size, list_k)
    shards = shard_ranges(len(split.users), batch_size * shard_batches)
    start = time.perf_counter()
    per_metric: dict[str, list[np.ndarray]] = {}
    lists: list[np.ndarray] = []
    for merged, shard_lists in executor.imap(_rank_shard, shards, shared=job):
        for key, vals in merged.items():
            per_metric.setdefault(key, []).append(vals)
        lists.append(shard_lists)
    seconds = time.perf_counter() - start
    result = assemble_result(
        model_name, split, setting, per_metric, lists, seconds,
        sampled_negatives=None, list_k=list_k,
    )  # fmt: skip
    result.extra["executor"] = executor.name
    result.extra["shards"] = len(shards)
    return result


__all__ = ["evaluate_sharded"]
