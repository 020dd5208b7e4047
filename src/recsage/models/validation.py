"""Validation scores for early stopping, computed inside the models layer.

Same protocol and numbers as `recsage.evaluation.evaluate` (full ranking, history
excluded, ties against the target): both batch through `recsage.metrics.ranked_batches`,
so a model never has to import the evaluation package (a higher layer) to validate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from recsage.data.splits import Split
from recsage.metrics import metrics_from_positions, ranked_batches, target_positions


def validation_ndcg(
    score_fn: Callable[..., np.ndarray], split: Split, *, k: int = 10, batch_size: int = 1024
) -> float:
    """Mean NDCG@k of `score_fn(users, history=...)` over the split's evaluated users."""
    per_user: list[np.ndarray] = []
    batches = ranked_batches(
        score_fn, split.users, split.history, split.targets, pass_history=split.query_history,
        candidates=split.candidates, batch_size=batch_size,
    )  # fmt: skip
    for rb in batches:
        positions = target_positions(rb.scores, rb.targets, rb.eligible)
        per_user.append(metrics_from_positions(positions, (k,))[f"ndcg@{k}"])
    values = np.concatenate(per_user) if per_user else np.zeros(0)
    return float(values.mean()) if len(values) else 0.0


__all__ = ["validation_ndcg"]


def training_record(model: Any) -> dict[str, Any]:
    """The epoch history and best validation score of a model trained by the Trainer, for
    its manifest (NaN is written as null)."""
    best = None if math.isnan(model.best_ndcg) else float(model.best_ndcg)
    return {"history": model.history, "best_epoch": model.best_epoch, "best_ndcg": best}


def restore_training_record(model: Any, extra: dict[str, Any]) -> None:
    """Set `history`, `best_epoch` and `best_ndcg` back from a manifest's `training_record`."""
    model.history = list(extra.get("history", []))
    model.best_epoch = int(extra.get("best_epoch", 0))
    best = extra.get("best_ndcg")
    model.best_ndcg = float("nan") if best is None else float(best)
