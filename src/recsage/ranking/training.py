"""Turn candidate batches into ranking training data (labels from held-out targets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recsage.ranking.stages.base import StageContext
from recsage.types import CandidateBatch


def ranking_data(
    cands: CandidateBatch,
    ctx: StageContext,
    *,
    labels: np.ndarray | None,
    rows_mask: np.ndarray | None = None,
    n_items: int = 0,
) -> tuple[Any, tuple[np.ndarray, np.ndarray]]:
    """`RankingData` over the valid candidate slots (optionally only `rows_mask` slots).

    Returns the data and the (row, column) slot indices its rows came from, so predictions
    can be scattered back. Groups are batch rows, contiguous by construction.
    """
    from recsage.ranking.learners.data import RankingData

    assert ctx.features is not None
    mask = cands.valid if rows_mask is None else (cands.valid & rows_mask)
    r, c = np.nonzero(mask)
    dense = ctx.features[r, c]
    items = cands.items[r, c]
    cat = (
        ctx.item_category[items][:, None].astype(np.int64)
        if ctx.item_category is not None
        else np.zeros((len(r), 0), np.int64)
    )
    card = (int(ctx.item_category.max()) + 1,) if ctx.item_category is not None else ()
    uniq_rows, group = np.unique(r, return_inverse=True)
    history = ctx.histories[uniq_rows] if ctx.histories is not None else None
    data = RankingData(
        dense=dense.astype(np.float32),
        categorical=cat,
        cardinalities=card,
        group=group.astype(np.int64),
        label=None if labels is None else labels[r, c].astype(np.float32),
        item=items.astype(np.int64),
        history=history,
        n_items=n_items,
    )
    return data, (r, c)


def label_matrix(cands: CandidateBatch, targets: sp.csr_matrix) -> np.ndarray:
    """(B, N) 1.0 where the candidate is one of the row's targets."""
    t = targets.tocsr()
    b, n = cands.shape
    rows = np.repeat(np.arange(b), n)
    vals = np.asarray(t[rows, np.maximum(cands.items, 0).ravel()]).reshape(b, n)
    return np.where(cands.valid, vals > 0, False).astype(np.float32)


def sample_training_slots(
    labels: np.ndarray, valid: np.ndarray, *, negatives: int, seed: int
) -> np.ndarray:
    """Slots kept for training: every positive plus up to `negatives` random negatives,
    only in rows that have a positive (a list without the target teaches nothing)."""
    rng = np.random.default_rng(seed)
    has_pos = np.asarray((labels > 0).any(axis=1))
    noise = rng.random(labels.shape)
    neg = valid & (labels <= 0)
    noise[~neg] = np.inf
    kth = np.sort(noise, axis=1)[
        :, min(negatives, labels.shape[1]) - 1 : min(negatives, labels.shape[1])
    ]
    keep_neg = neg & (noise <= kth)
    return ((labels > 0) | keep_neg) & has_pos[:, None] & valid


def last_items(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """(B, length) last history items, left-padded with -1."""
    out = np.full((len(sequences), length), -1, np.int64)
    for i, s in enumerate(sequences):
        tail = s[-length:]
        if len(tail):
            out[i, -len(tail) :] = tail
    return out


def concat_ranking_data(parts: list[Any]) -> Any:
    """Concatenate `RankingData` pieces, renumbering groups so they stay contiguous."""
    from recsage.ranking.learners.data import RankingData

    if not parts:
        raise ValueError("no ranking data to concatenate")
    offset = 0
    groups = []
    for p in parts:
        groups.append(p.group + offset)
        offset += int(p.group.max()) + 1 if len(p.group) else 0
    hist = [p.history for p in parts]
    labels = [p.label for p in parts]
    return RankingData(
        dense=np.concatenate([p.dense for p in parts]),
        categorical=np.concatenate([p.categorical for p in parts]),
        cardinalities=parts[0].cardinalities,
        group=np.concatenate(groups),
        label=None if any(x is None for x in labels) else np.concatenate(labels),
        item=np.concatenate([p.item for p in parts]),
        history=None if any(h is None for h in hist) else np.concatenate(hist),
        n_items=parts[0].n_items,
    )
