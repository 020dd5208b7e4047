"""Ranking metrics from target positions, with ties broken against the target.

A target's position is the number of eligible items ranked above it: every non-target
item with a score >= the target's (ties count against it) plus the other targets with a
higher score (ties among targets by item index). Metrics follow from positions, so the
hand-checkable definitions live in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

MISSED = 2**62  # position of a target that cannot be ranked (excluded or unscorable)


@dataclass
class RankedBatch:
    """One batch of evaluated users: their scores over every item, the items that take
    part in the ranking (`eligible`: candidates minus history) and their targets."""

    users: np.ndarray
    scores: np.ndarray
    eligible: np.ndarray
    targets: sp.csr_matrix


def ranked_batches(
    score_fn: Callable[..., np.ndarray],
    users: np.ndarray,
    history: sp.csr_matrix,
    targets: sp.csr_matrix,
    *,
    pass_history: bool = False,
    candidates: np.ndarray | None = None,
    batch_size: int = 1024,
) -> Iterator[RankedBatch]:
    """Score `users` in batches with `score_fn(batch, history=...)` and mark what is ranked.

    `history` / `targets` are CSR rows indexed by user; `pass_history` hands each batch's
    history rows to the scorer (cold users) instead of None; `candidates` (item indices)
    restricts the ranking. The one batching step behind evaluation and model validation.
    """
    users = np.asarray(users)
    for lo in range(0, len(users), batch_size):
        batch = users[lo : lo + batch_size]
        hist = history[batch]
        scores = np.asarray(score_fn(batch, history=hist if pass_history else None))
        if candidates is None:
            eligible = np.ones(scores.shape, bool)
        else:
            mask = np.zeros(scores.shape[1], bool)
            mask[candidates] = True
            eligible = np.broadcast_to(mask, scores.shape).copy()
        eligible[hist.nonzero()] = False
        yield RankedBatch(batch, scores, eligible, targets[batch])


def target_positions(
    scores: np.ndarray, targets: sp.csr_matrix, eligible: np.ndarray
) -> list[np.ndarray]:
    """0-based list positions of each row's targets, sorted ascending.

    `scores` (B, I) float; `targets` (B, I) CSR of relevant items; `eligible` (B, I) bool
    marks items that take part in the ranking (not history, inside the candidate set).
    A target that is not eligible (or scored NaN/-inf) gets position MISSED (never a hit).
    """
    n_rows = scores.shape[0]
    out: list[np.ndarray] = []
    counts = np.diff(targets.indptr)
    if n_rows and (counts == 1).all():
        cols = targets.indices
        rows = np.arange(n_rows)
        s_t = scores[rows, cols]
        above = ((scores >= s_t[:, None]) & eligible).sum(axis=1) - 1
        ok = eligible[rows, cols] & np.isfinite(s_t)
        pos = np.where(ok, above, MISSED)
        return [pos[i : i + 1].astype(np.int64) for i in range(n_rows)]
    for b in range(n_rows):
        t = targets.indices[targets.indptr[b] : targets.indptr[b + 1]]
        if len(t) == 0:
            out.append(np.zeros(0, np.int64))
            continue
        row = scores[b]
        elig = eligible[b].copy()
        t_ok = elig[t] & np.isfinite(row[t])
        elig[t] = False
        others = np.sort(row[elig])
        st = row[t]
        # non-targets with score >= target score
        n_above = len(others) - np.searchsorted(others, st, side="left")
        order = np.lexsort((t, -st))
        pos = np.empty(len(t), np.int64)
        pos[order] = n_above[order] + np.arange(len(t))
        pos[~t_ok] = MISSED
        out.append(np.sort(pos))
    return out


def metrics_from_positions(
    positions: list[np.ndarray], ks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Per-row metrics: hr@K, recall@K, precision@K, ndcg@K, map@K for each K, and mrr."""
    n = len(positions)
    res: dict[str, np.ndarray] = {}
    first = np.array([p[0] if len(p) else MISSED for p in positions], np.float64)
    res["mrr"] = np.where(first < MISSED, 1.0 / (first + 1.0), 0.0)
    n_t = np.array([len(p) for p in positions], np.int64)
    single = bool(n) and bool((n_t == 1).all())
    for k in ks:
        if single:
            p = first
            hit = p < k
            res[f"hr@{k}"] = hit.astype(np.float64)
            res[f"recall@{k}"] = res[f"hr@{k}"]
            res[f"precision@{k}"] = hit / k
            res[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(np.minimum(p, k) + 2.0), 0.0)
            res[f"map@{k}"] = np.where(hit, 1.0 / (p + 1.0), 0.0)
            continue
        hr = np.zeros(n)
        rec = np.zeros(n)
        prec = np.zeros(n)
        ndcg = np.zeros(n)
        ap = np.zeros(n)
        for i, p in enumerate(positions):
            if len(p) == 0:
                continue
            hits = p[p < k]
            nh = len(hits)
            hr[i] = float(nh > 0)
            rec[i] = nh / len(p)
            prec[i] = nh / k
            idcg = (1.0 / np.log2(np.arange(min(len(p), k)) + 2.0)).sum()
            ndcg[i] = (1.0 / np.log2(hits + 2.0)).sum() / idcg
            ap[i] = ((np.arange(nh) + 1.0) / (hits + 1.0)).sum() / min(len(p), k)
        res[f"hr@{k}"] = hr
        res[f"recall@{k}"] = rec
        res[f"precision@{k}"] = prec
        res[f"ndcg@{k}"] = ndcg
        res[f"map@{k}"] = ap
    return res


def catalogue_coverage(lists: np.ndarray, n_candidates: int) -> float:
    """Share of the candidate catalogue that appears in at least one list."""
    items = lists[lists >= 0]
    return float(len(np.unique(items)) / max(1, n_candidates))


def novelty(lists: np.ndarray, popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Mean self-information -log2(p(item)) per list; p = share of users with the item."""
    p = np.clip(popularity / max(1, n_users), 1.0 / max(1, n_users), 1.0)
    info = -np.log2(p)
    valid = lists >= 0
    vals = np.where(valid, info[np.maximum(lists, 0)], 0.0)
    return vals.sum(axis=1) / np.maximum(1, valid.sum(axis=1))


def intra_list_diversity(lists: np.ndarray, features: np.ndarray) -> np.ndarray:
    """1 - mean pairwise cosine similarity of the items in each list (feature rows per item)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    valid = lists >= 0
    v = unit[np.maximum(lists, 0)] * valid[..., None]  # (B, K, D), padding rows zero
    sim = np.einsum("bkd,bjd->bkj", v, v)
    m = valid.sum(axis=1).astype(np.float64)
    off_diag = sim.sum(axis=(1, 2)) - np.einsum("bkk->b", sim)
    pairs = m * (m - 1)
    return np.where(pairs > 0, 1.0 - off_diag / np.where(pairs > 0, pairs, 1.0), 0.0)
