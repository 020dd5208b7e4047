"""Fit-and-evaluate runs shared by the CLI, the benchmarks and the quickstart."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from recsage.data.schema import Dataset
from recsage.data.splits import (
    Split,
    cold_item_split,
    cold_user_split,
    leave_one_out,
    random_split,
    temporal_split,
)
from recsage.errors import ConfigError
from recsage.evaluation.protocol import EvalResult, evaluate
from recsage.models.registry import create_model

SPLITS = ("loo", "loo-valid", "temporal", "random", "kfold", "cold-item", "cold-user")


def make_split(
    dataset: Dataset,
    name: str = "loo",
    *,
    seed: int = 0,
    target_events: Sequence[str] | None = None,
    cutoff: float | None = None,
) -> Split:
    """The named split of `dataset` ('loo' is the leave-one-out test setting).

    `target_events` limits targets to those event types (loo, temporal, random);
    `cutoff` (epoch seconds) fixes the temporal split's cutoff. 'kfold' gives several
    splits: use `recsage.data.splits.kfold_splits`.
    """
    if target_events and name not in ("loo", "loo-valid", "temporal", "random"):
        raise ConfigError(f"target event types work with --split loo, temporal, random or "
                          f"kfold, not {name}")  # fmt: skip
    if cutoff is not None and name != "temporal":
        raise ConfigError("--cutoff is the temporal split's; add --split temporal")
    if name == "loo":
        return leave_one_out(dataset, target_events=target_events).test
    if name == "loo-valid":
        return leave_one_out(dataset, target_events=target_events).valid
    if name == "temporal":
        return temporal_split(dataset, cutoff=cutoff, target_events=target_events)
    if name == "random":
        return random_split(dataset, seed=seed, target_events=target_events)
    if name == "kfold":
        raise ConfigError("k-fold makes several splits: use kfold_splits (CLI: --split kfold)")
    if name == "cold-item":
        return cold_item_split(dataset)
    if name == "cold-user":
        return cold_user_split(dataset, seed=seed, n_given=1)
    raise ConfigError(f"unknown split '{name}'; known: {', '.join(SPLITS)}")


def parse_params(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`model.key=value` strings -> {model: {key: value}} (values kept as strings)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        model, dot, param = key.partition(".")
        if not sep or not dot or not model or not param:
            raise ConfigError(f"bad --param '{pair}': expected MODEL.KEY=VALUE, e.g. ease.l2=300")
        out.setdefault(model, {})[param] = value
    return out


def run_models(
    dataset: Dataset,
    models: Sequence[str],
    *,
    split: Split | str = "loo",
    params: dict[str, dict[str, Any]] | None = None,
    ks: tuple[int, ...] = (10, 20),
    sampled_negatives: int | None = None,
    seed: int = 0,
) -> list[EvalResult]:
    """Fit each model on the split's training data and evaluate it (same split for all)."""
    params = params or {}
    unknown = sorted(set(params) - set(models))
    if unknown:
        raise ConfigError(f"--param given for model(s) not being run: {', '.join(unknown)}")
    sp_ = make_split(dataset, split, seed=seed) if isinstance(split, str) else split
    results = []
    for name in models:
        model = create_model(name, **params.get(name, {}))
        start = time.perf_counter()
        model.fit(sp_.train)
        fit_s = time.perf_counter() - start
        res = evaluate(model, sp_, name=name, ks=ks, sampled_negatives=sampled_negatives, seed=seed)
        res.extra["fit_seconds"] = fit_s
        res.extra["config"] = params.get(name, {})
        results.append(res)
    return results
