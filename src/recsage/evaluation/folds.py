"""K-fold evaluation: the same models on every fold, metrics averaged (with their spread)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsage.data.splits import Split
from recsage.evaluation.protocol import EvalResult


def average_folds(per_fold: Sequence[Sequence[EvalResult]]) -> list[EvalResult]:
    """One result per model: metrics are the mean over folds of each fold's mean, `extra`
    holds the per-fold values and their standard deviation, `per_user` all folds' rows."""
    if not per_fold:
        return []
    out = []
    for i, first in enumerate(per_fold[0]):
        runs = [fold[i] for fold in per_fold]
        metrics = {k: float(np.mean([r.metrics[k] for r in runs])) for k in first.metrics}
        spread = {k: float(np.std([r.metrics[k] for r in runs])) for k in first.metrics}
        per_user = pd.concat(
            [r.per_user.assign(fold=f + 1) for f, r in enumerate(runs)], ignore_index=True
        )
        protocol = dict(first.protocol)
        protocol["split"] = f"kfold ({len(runs)} folds)"
        protocol["users"] = int(sum(r.protocol.get("users", 0) for r in runs))
        protocol["notes"] = [n for n in first.protocol.get("notes", []) if not n.startswith("fold")]
        extra: dict[str, Any] = {
            "fold_metrics": [r.metrics for r in runs],
            "fold_std": spread,
            "fit_seconds": float(sum(r.extra.get("fit_seconds", 0.0) for r in runs)),
            "config": first.extra.get("config", {}),
        }
        out.append(
            EvalResult(
                first.model,
                metrics,
                per_user,
                protocol,
                float(sum(r.eval_seconds for r in runs)),
                extra,
            )
        )
    return out


def run_folds(
    splits: Sequence[Split], run: Callable[[Split], list[EvalResult]]
) -> list[EvalResult]:
    """Run `run` on every fold's split and average the results per model."""
    return average_folds([run(sp) for sp in splits])
