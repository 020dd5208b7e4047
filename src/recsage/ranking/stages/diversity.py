"""MMR diversity re-rank and per-category caps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsage.ranking.stages.base import Stage, StageContext, last_score_column
from recsage.types import CandidateBatch


class MMRStage(Stage):
    """Maximal marginal relevance: trade the previous stage's score for diversity.

    Picks greedily argmax λ·relevance − (1−λ)·max similarity to items already picked;
    relevance is the incoming order's score min-max scaled per row. With `category_cap`,
    at most that many items of one (first) category make the list.
    """

    kind = "mmr"

    @dataclass
    class Config:
        lambda_: float = 0.8
        column: str = ""
        category_cap: int = 0

    def score(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray:
        return np.zeros(cands.shape, np.float32)  # the order is computed in `apply`

    def apply(self, cands: CandidateBatch, ctx: StageContext) -> CandidateBatch:
        b, n = cands.shape
        col = self.config.column or last_score_column(cands)
        rel = np.where(cands.valid, cands.scores[col], np.nan).astype(np.float64)
        finite = np.isfinite(rel)
        lo = np.where(finite, rel, np.inf).min(axis=1, initial=np.inf)
        hi = np.where(finite, rel, -np.inf).max(axis=1, initial=-np.inf)
        span = np.where(np.isfinite(hi - lo), np.maximum(hi - lo, 1e-12), 1.0)
        rel = np.where(finite, (rel - np.where(np.isfinite(lo), lo, 0.0)[:, None]) / span[:, None],
                       -np.inf)  # fmt: skip
        allowed = cands.valid & finite
        if self.config.category_cap > 0 and ctx.item_category is not None:
            cat = np.where(cands.valid, ctx.item_category[np.maximum(cands.items, 0)], -1)
            # earlier same-category items in the incoming order (exact greedy equivalent)
            same = (cat[:, :, None] == cat[:, None, :]) & np.tri(n, k=-1, dtype=bool)[None]
            allowed &= (same.sum(axis=2) < self.config.category_cap) | (cat <= 0)
        keep = min(self.keep_for(ctx), n)
        lam = self.config.lambda_
        if ctx.item_vectors is None or lam >= 1.0:
            order = np.argsort(-np.where(allowed, rel, -np.inf), axis=1, kind="stable")[:, :keep]
        else:
            v = ctx.item_vectors[np.maximum(cands.items, 0)]
            v = v / np.maximum(np.linalg.norm(v, axis=2, keepdims=True), 1e-12)
            sim = np.einsum("bnd,bmd->bnm", v, v)
            order = np.zeros((b, keep), np.int64)
            max_sim = np.zeros((b, n))
            avail = allowed.copy()
            rows = np.arange(b)
            for t in range(keep):
                val = np.where(avail, lam * rel - (1 - lam) * max_sim, -np.inf)
                j = np.argmax(val, axis=1)
                order[:, t] = j
                avail[rows, j] = False
                max_sim = np.maximum(max_sim, sim[rows, j])
        ok = np.take_along_axis(allowed, order, axis=1)
        out = cands.take(order, keep)
        out.items = np.where(ok, out.items, -1)
        position_score = (keep - np.arange(keep, dtype=np.float32))[None, :]
        out.scores[self.name] = np.where(out.valid, position_score, np.nan).astype(np.float32)
        return out
