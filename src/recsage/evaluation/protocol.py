"""Full-ranking evaluation of any scorer on a `Split`, batched and vectorized."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsage.data.splits import Split
from recsage.errors import ConfigError
from recsage.metrics import (
    catalogue_coverage,
    intra_list_diversity,
    metrics_from_positions,
    novelty,
    ranked_batches,
    target_positions,
)
from recsage.types import top_k


@runtime_checkable
class SupportsScore(Protocol):
    """A fitted model (`Recommender`) scoring all items for dense user indices."""

    def score(self, users: np.ndarray, *, history: sp.csr_matrix | None = None) -> np.ndarray: ...


@dataclass
class EvalResult:
    """Mean metrics, per-user rows and a description of the protocol that produced them."""

    model: str
    metrics: dict[str, float]
    per_user: pd.DataFrame
    protocol: dict[str, Any]
    eval_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metrics": self.metrics,
            "protocol": self.protocol,
            "eval_seconds": round(self.eval_seconds, 3),
            **self.extra,
        }


def item_category_features(item_table: pd.DataFrame) -> np.ndarray | None:
    """One-hot category matrix for intra-list diversity, or None without categories."""
    if "categories" not in item_table.columns:
        return None
    cats = item_table["categories"]
    lists = [c if isinstance(c, list | tuple | np.ndarray) else [] for c in cats]
    vocab = sorted({c for row in lists for c in row})
    if not vocab:
        return None
    pos = {c: i for i, c in enumerate(vocab)}
    feats = np.zeros((len(lists), len(vocab)), np.float32)
    for i, row in enumerate(lists):
        for c in row:
            feats[i, pos[c]] = 1.0
    return feats


def evaluate(
    model: SupportsScore | Callable[..., np.ndarray],
    split: Split,
    *,
    name: str | None = None,
    ks: tuple[int, ...] = (10, 20),
    batch_size: int = 1024,
    sampled_negatives: int | None = None,
    seed: int = 0,
    item_features: np.ndarray | None = None,
    list_k: int = 10,
) -> EvalResult:
    """Rank the whole catalogue (or `split.candidates`) for every evaluated user.

    History items are excluded, ties count against the target, and beyond-accuracy
    metrics (coverage, novelty, intra-list diversity) describe the top-`list_k` lists.
    With `sampled_negatives=N` the target is ranked among N random non-history items
    instead: those metrics are prefixed `sampled{N}_` and the protocol says so.
    """
    if any(k < 1 for k in ks):
        raise ConfigError(f"cut-offs must be >= 1, got {ks}")
    if sampled_negatives is not None and sampled_negatives < 1:
        raise ConfigError(
            f"sampled negatives must be >= 1, got {sampled_negatives} (None = full ranking)"
        )
    score_fn = model.score if isinstance(model, SupportsScore) else model
    model_name = str(name or getattr(model, "name", "model"))
    setting = eval_setting(split, item_features)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    per_metric, lists = rank_users(
        score_fn, split, split.users, setting, ks=ks, batch_size=batch_size,
        sampled_negatives=sampled_negatives, rng=rng, list_k=list_k,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return assemble_result(
        model_name, split, setting, per_metric, lists, seconds,
        sampled_negatives=sampled_negatives, list_k=list_k,
    )  # fmt: skip


@dataclass
class EvalSetting:
    """What every batch of an evaluation shares: candidate mask, item features, popularity."""

    cand_mask: np.ndarray
    item_features: np.ndarray | None
    popularity: np.ndarray


def eval_setting(split: Split, item_features: np.ndarray | None = None) -> EvalSetting:
    """The candidate mask, diversity features and training popularity for `split`."""
    cand_mask = np.ones(split.n_items, bool)
    if split.candidates is not None:
        cand_mask[:] = False
        cand_mask[split.candidates] = True
    if item_features is None:
        item_features = item_category_features(split.train.item_table)
    popularity = np.bincount(split.train.interactions.item, minlength=split.n_items)
    return EvalSetting(cand_mask, item_features, popularity)


def rank_users(
    score_fn: Callable[..., np.ndarray],
    split: Split,
    users: np.ndarray,
    setting: EvalSetting,
    *,
    ks: tuple[int, ...],
    batch_size: int,
    sampled_negatives: int | None,
    rng: np.random.Generator,
    list_k: int,
) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    """Per-user metric chunks and top-`list_k` lists for `users`, `batch_size` at a time.

    A user's rows depend only on the users batched with it, so any run that batches the
    same users together (e.g. shards aligned to `batch_size`) gets identical numbers.
    """
    per_metric: dict[str, list[np.ndarray]] = {}
    lists: list[np.ndarray] = []
    batches = ranked_batches(
        score_fn, users, split.history, split.targets, pass_history=split.query_history,
        candidates=split.candidates, batch_size=batch_size,
    )  # fmt: skip
    for rb in batches:
        eligible = rb.eligible
        if sampled_negatives:
            eligible = _sample_negatives(eligible, rb.targets, sampled_negatives, rng)
        positions = target_positions(rb.scores, rb.targets, eligible)
        for key, vals in metrics_from_positions(positions, ks).items():
            per_metric.setdefault(key, []).append(vals)
        if not sampled_negatives:
            lists.append(top_k(rb.scores, rb.eligible, list_k))
    return per_metric, lists


def assemble_result(
    model_name: str,
    split: Split,
    setting: EvalSetting,
    per_metric: dict[str, list[np.ndarray]],
    lists: list[np.ndarray],
    seconds: float,
    *,
    sampled_negatives: int | None,
    list_k: int,
) -> EvalResult:
    """Mean metrics and beyond-accuracy metrics from the per-user chunks of every user."""
    users = split.users
    cand_mask = setting.cand_mask
    prefix = f"sampled{sampled_negatives}_" if sampled_negatives else ""
    per_user = pd.DataFrame({"user": split.train.users.decode(users)})
    for key, chunks in per_metric.items():
        per_user[prefix + key] = np.concatenate(chunks) if chunks else np.zeros(0)
    metrics = {
        col: float(per_user[col].mean()) if len(per_user) else 0.0
        for col in per_user.columns
        if col != "user"
    }
    if lists:
        all_lists = np.concatenate(lists)
        metrics[f"coverage@{list_k}"] = catalogue_coverage(all_lists, int(cand_mask.sum()))
        nov = novelty(all_lists, setting.popularity, split.train.n_users)
        per_user[f"novelty@{list_k}"] = nov
        metrics[f"novelty@{list_k}"] = float(nov.mean())
        if setting.item_features is not None:
            ild = intra_list_diversity(all_lists, setting.item_features)
            per_user[f"diversity@{list_k}"] = ild
            metrics[f"diversity@{list_k}"] = float(ild.mean())
    protocol = {
        "split": split.name,
        "users": len(users),
        "ranked_items": int(cand_mask.sum()),
        "ranking": f"sampled ({sampled_negatives} negatives)" if sampled_negatives else "full",
        "ties": "against target",
        "history_excluded": True,
        "notes": list(split.notes),
    }
    return EvalResult(model_name, metrics, per_user, protocol, seconds)


def _sample_negatives(
    eligible: np.ndarray, targets: sp.csr_matrix, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Keep the targets plus `n` random eligible non-targets per row."""
    out = np.zeros_like(eligible)
    dense_t = targets.toarray() > 0
    for r in range(eligible.shape[0]):
        pool = np.flatnonzero(eligible[r] & ~dense_t[r])
        pick = rng.choice(pool, size=min(n, len(pool)), replace=False)
        out[r, pick] = True
    out |= dense_t & eligible
    return out
