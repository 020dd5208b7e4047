"""Ranking losses over a flat score vector and group ids, and grouped NDCG@K.

Every loss takes `scores` (n,), `labels` (n,) and `group` (n,) whose rows are contiguous
per group (a query / user). Groups are padded into a (n_groups, max_len) matrix with a
mask, so pairwise and listwise losses are a few tensor ops with no Python loop over
groups. Labels are relevance grades >= 0 (1 = relevant, 0 = not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from recsage.errors import DataError

__all__ = [
    "LOSSES",
    "GroupLayout",
    "group_layout",
    "group_offsets",
    "grouped_ndcg",
    "lambda_loss",
    "listwise_softmax",
    "pad_groups",
    "pairwise_bpr",
    "pairwise_ranknet",
    "pointwise_bce",
]


# ---------------------------------------------------------------------------- layout


def group_offsets(group: np.ndarray) -> np.ndarray:
    """Row offsets (n_groups + 1,) of contiguous groups, like a CSR indptr.

    Raises DataError when a group id occurs in more than one run of rows, because every
    grouped loss and metric assumes one contiguous block per group.
    """
    group = np.asarray(group)
    if group.ndim != 1:
        raise DataError(f"group must be a 1-d array of ids, got shape {group.shape}")
    n = len(group)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    run_ids = group[starts]
    if len(np.unique(run_ids)) != len(run_ids):
        ids, counts = np.unique(run_ids, return_counts=True)
        bad = ids[counts > 1][0]
        rows = starts[run_ids == bad][:2]
        raise DataError(
            f"rows of a group must be contiguous: group {bad} appears in separate runs "
            f"(starting at rows {rows[0]} and {rows[1]}); sort rows by group id (stable sort "
            "keeps the candidate order) before building ranking data"
        )
    return np.r_[starts, n].astype(np.int64)


class GroupLayout(NamedTuple):
    """Where each row sits in the padded (n_groups, max_len) matrix."""

    row_group: torch.Tensor  # (n,) group position 0..n_groups-1
    row_pos: torch.Tensor  # (n,) position within its group
    mask: torch.Tensor  # (n_groups, max_len) bool, True where a row exists
    n_groups: int
    max_len: int


def group_layout(group: torch.Tensor | np.ndarray) -> GroupLayout:
    """Compute the padded layout of contiguous groups (vectorized, validates contiguity)."""
    g = torch.as_tensor(group)
    if g.dim() != 1:
        raise DataError(f"group must be a 1-d tensor of ids, got shape {tuple(g.shape)}")
    n = g.numel()
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=g.device)
        return GroupLayout(empty, empty, torch.zeros(0, 0, dtype=torch.bool), 0, 0)
    new = torch.ones(n, dtype=torch.bool, device=g.device)
    new[1:] = g[1:] != g[:-1]
    starts = torch.nonzero(new).squeeze(1)
    n_groups = int(starts.numel())
    if int(torch.unique(g).numel()) != n_groups:
        group_offsets(g.cpu().numpy())  # raises with the offending group id
    row_group = torch.cumsum(new.long(), 0) - 1
    row_pos = torch.arange(n, device=g.device) - starts[row_group]
    sizes = torch.diff(torch.cat([starts, torch.tensor([n], device=g.device)]))
    max_len = int(sizes.max())
    mask = torch.zeros(n_groups, max_len, dtype=torch.bool, device=g.device)
    mask[row_group, row_pos] = True
    return GroupLayout(row_group, row_pos, mask, n_groups, max_len)


def pad_groups(values: torch.Tensor, layout: GroupLayout, fill: float = 0.0) -> torch.Tensor:
    """Scatter a flat (n,) vector into the (n_groups, max_len) matrix (differentiable)."""
    out = values.new_full((layout.n_groups, layout.max_len), fill)
    return out.index_put((layout.row_group, layout.row_pos), values)


def _check(scores: torch.Tensor, labels: torch.Tensor, group: torch.Tensor | np.ndarray) -> None:
    if scores.dim() != 1 or labels.shape != scores.shape or len(group) != scores.numel():
        raise DataError(
            "scores, labels and group must be 1-d with the same length; got "
            f"{tuple(scores.shape)}, {tuple(labels.shape)}, {len(group)}"
        )


def _zero(scores: torch.Tensor) -> torch.Tensor:
    """A zero loss that still belongs to the graph (no pairs / no positives in the batch)."""
    return scores.sum() * 0.0


# ---------------------------------------------------------------------------- losses


def pointwise_bce(
    scores: torch.Tensor, labels: torch.Tensor, group: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """Mean binary cross-entropy of logits `scores` against labels in [0, 1].

    `group` is unused by the maths and accepted so every loss has one signature.
    """
    _check(scores, labels, group)
    if scores.numel() == 0:
        return _zero(scores)
    return F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype))


def _pair_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    group: torch.Tensor | np.ndarray,
    *,
    binary: bool,
) -> torch.Tensor:
    _check(scores, labels, group)
    if scores.numel() == 0:
        return _zero(scores)
    lay = group_layout(group)
    s = pad_groups(scores, lay)
    y = pad_groups(labels.to(scores.dtype), lay)
    valid = lay.mask.unsqueeze(2) & lay.mask.unsqueeze(1)
    if binary:
        pos = y > 0
        pairs = pos.unsqueeze(2) & ~pos.unsqueeze(1) & valid
    else:
        pairs = (y.unsqueeze(2) > y.unsqueeze(1)) & valid
    if not bool(pairs.any()):
        return _zero(scores)
    diff = s.unsqueeze(2) - s.unsqueeze(1)  # [g, i, j] = s_i - s_j
    return F.softplus(-diff)[pairs].mean()


def pairwise_bpr(
    scores: torch.Tensor, labels: torch.Tensor, group: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """BPR: mean over every (positive, negative) pair of a group of -log σ(s+ - s-).

    Positive means label > 0, negative label == 0; the mean is over all pairs of the
    batch, so groups with more pairs weigh more. Groups with no pair add nothing.
    """
    return _pair_loss(scores, labels, group, binary=True)


def pairwise_ranknet(
    scores: torch.Tensor, labels: torch.Tensor, group: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """RankNet: mean over every ordered pair (i, j) of a group with label_i > label_j of
    -log σ(s_i - s_j). Equal to BPR for binary labels; uses the grades when labels are graded.
    """
    return _pair_loss(scores, labels, group, binary=False)


def listwise_softmax(
    scores: torch.Tensor, labels: torch.Tensor, group: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """ListNet top-1: cross-entropy between softmax(scores) and labels / sum(labels) per
    group, averaged over groups that have at least one positive label."""
    _check(scores, labels, group)
    if scores.numel() == 0:
        return _zero(scores)
    lay = group_layout(group)
    s = pad_groups(scores, lay)
    y = pad_groups(labels.to(scores.dtype), lay)
    total = y.sum(1)
    keep = total > 0
    if not bool(keep.any()):
        return _zero(scores)
    logp = torch.log_softmax(s.masked_fill(~lay.mask, float("-inf")), dim=1)
    logp = torch.where(lay.mask, logp, torch.zeros_like(logp))
    target = y / total.clamp_min(1e-12).unsqueeze(1)
    per_group = -(target * logp).sum(1)
    return per_group[keep].mean()


def lambda_loss(
    scores: torch.Tensor, labels: torch.Tensor, group: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """LambdaRank: RankNet pair losses weighted by |ΔNDCG| of swapping the pair in the
    current ranking (gain 2^label - 1, discount 1/log2(rank + 2), full-list NDCG).

    Per group the weighted pair losses are summed; the result is the mean over groups that
    have at least one pair with different labels. The weights carry no gradient.
    """
    _check(scores, labels, group)
    if scores.numel() == 0:
        return _zero(scores)
    lay = group_layout(group)
    s = pad_groups(scores, lay)
    y = pad_groups(labels.to(scores.dtype), lay)
    valid = lay.mask.unsqueeze(2) & lay.mask.unsqueeze(1)
    pairs = (y.unsqueeze(2) > y.unsqueeze(1)) & valid
    has_pair = pairs.flatten(1).any(1)
    if not bool(has_pair.any()):
        return _zero(scores)
    with torch.no_grad():
        ranked = s.detach().masked_fill(~lay.mask, float("-inf"))
        order = torch.argsort(ranked, dim=1, descending=True, stable=True)
        rank = torch.argsort(order, dim=1)
        gain = torch.where(lay.mask, torch.pow(2.0, y) - 1.0, torch.zeros_like(y))
        disc = 1.0 / torch.log2(rank.to(s.dtype) + 2.0)
        ideal_gain = torch.sort(gain, dim=1, descending=True).values
        positions = torch.arange(lay.max_len, dtype=s.dtype, device=s.device)
        idcg = (ideal_gain / torch.log2(positions + 2.0)).sum(1).clamp_min(1e-12)
        delta = (gain.unsqueeze(2) - gain.unsqueeze(1)).abs() * (
            disc.unsqueeze(2) - disc.unsqueeze(1)
        ).abs()
        delta = delta / idcg.view(-1, 1, 1)
    diff = s.unsqueeze(2) - s.unsqueeze(1)
    weighted = torch.where(pairs, delta * F.softplus(-diff), torch.zeros_like(diff))
    per_group = weighted.flatten(1).sum(1)
    return per_group[has_pair].mean()


LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | np.ndarray"], torch.Tensor]
LOSSES: dict[str, LossFn] = {
    "bce": pointwise_bce,
    "bpr": pairwise_bpr,
    "ranknet": pairwise_ranknet,
    "softmax": listwise_softmax,
    "lambda": lambda_loss,
}


# ---------------------------------------------------------------------------- metric


def grouped_ndcg(scores: np.ndarray, labels: np.ndarray, group: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over groups that have a positive label (gain 2^label - 1).

    Ties in score are broken against relevant rows (pessimistic), so a constant scorer
    does not look good. Returns NaN when no group has a positive label.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if scores.shape != labels.shape or scores.ndim != 1 or len(group) != len(scores):
        raise DataError(
            "scores, labels and group must be 1-d with the same length; got "
            f"{scores.shape}, {labels.shape}, {np.shape(group)}"
        )
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    offsets = group_offsets(group)
    sizes = np.diff(offsets)
    n_groups = len(sizes)
    if n_groups == 0:
        return float("nan")
    row_group = np.repeat(np.arange(n_groups), sizes)
    row_pos = np.arange(len(scores)) - offsets[row_group]
    width = int(sizes.max())
    s = np.full((n_groups, width), -np.inf)
    y = np.zeros((n_groups, width))
    s[row_group, row_pos] = np.nan_to_num(scores, nan=-np.inf)
    y[row_group, row_pos] = labels
    order = np.lexsort((y, -s), axis=-1)[:, :k]  # score desc, then label asc (pessimistic)
    gain = np.exp2(np.take_along_axis(y, order, axis=1)) - 1.0
    disc = 1.0 / np.log2(np.arange(order.shape[1]) + 2.0)
    dcg = (gain * disc).sum(1)
    ideal_labels = -np.sort(-y, axis=1)[:, :k]  # labels in descending order
    ideal = np.exp2(ideal_labels) - 1.0
    idcg = (ideal * disc).sum(1)
    keep = idcg > 0
    if not keep.any():
        return float("nan")
    return float((dcg[keep] / idcg[keep]).mean())
