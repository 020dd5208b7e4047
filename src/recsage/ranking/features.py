"""Features for (query, candidate) rows, shared by learned ranking stages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsage.data.schema import Dataset
from recsage.types import CandidateBatch, QueryBatch, history_matrix


@dataclass
class ItemStats:
    """Per-item facts computed once from the training data."""

    log_popularity: np.ndarray  # (I,)
    categories: sp.csr_matrix  # (I, G) multi-hot, rows L2-normalised
    first_category: np.ndarray  # (I,) int64 category code (0 = none)
    year: np.ndarray  # (I,) float32, standardized, 0 where unknown
    n_categories: int

    @classmethod
    def from_dataset(cls, data: Dataset) -> ItemStats:
        pop = np.bincount(data.interactions.item, minlength=data.n_items).astype(np.float32)
        table = data.item_table
        lists = (
            [c if isinstance(c, list | tuple | np.ndarray) else [] for c in table["categories"]]
            if "categories" in table.columns
            else [[] for _ in range(data.n_items)]
        )
        vocab = {c: i for i, c in enumerate(sorted({str(c) for row in lists for c in row}))}
        rows = np.repeat(np.arange(len(lists)), [len(r) for r in lists])
        cols = np.array([vocab[str(c)] for r in lists for c in r], np.int64)
        cats = sp.csr_matrix(
            (np.ones(len(cols), np.float32), (rows, cols)), shape=(len(lists), max(1, len(vocab)))
        )
        norms = np.sqrt(np.asarray(cats.multiply(cats).sum(axis=1)).ravel())
        cats = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ cats
        first = np.array([vocab[str(r[0])] + 1 if len(r) else 0 for r in lists], np.int64)
        if "year" in table.columns:
            year = pd.to_numeric(table["year"], errors="coerce").to_numpy(np.float64)
            ok = np.isfinite(year)
            mu, sd = (year[ok].mean(), year[ok].std() + 1e-6) if ok.any() else (0.0, 1.0)
            year = np.where(ok, (year - mu) / sd, 0.0).astype(np.float32)
        else:
            year = np.zeros(data.n_items, np.float32)
        return cls(np.log1p(pop), cats.tocsr().astype(np.float32), first, year, len(vocab) + 1)

    @classmethod
    def from_popularity(cls, counts: np.ndarray) -> ItemStats:
        """Stats of a catalogue known only by its interaction counts (a bare model)."""
        n = len(counts)
        cats = sp.csr_matrix((n, 1), dtype=np.float32)
        zeros = np.zeros(n, np.float32)
        return cls(np.log1p(counts.astype(np.float32)), cats, np.zeros(n, np.int64), zeros, 1)

    def extend(self, n_new: int) -> None:
        """Room for `n_new` items added after training: no popularity, category or year."""
        self.log_popularity = np.concatenate([self.log_popularity, np.zeros(n_new, np.float32)])
        self.first_category = np.concatenate([self.first_category, np.zeros(n_new, np.int64)])
        self.year = np.concatenate([self.year, np.zeros(n_new, np.float32)])
        pad = sp.csr_matrix((n_new, self.categories.shape[1]), dtype=np.float32)
        self.categories = sp.vstack([self.categories, pad]).tocsr()

    def arrays(self) -> dict[str, np.ndarray]:
        """For safetensors persistence."""
        c = self.categories
        return {
            "stats.log_popularity": self.log_popularity,
            "stats.first_category": self.first_category,
            "stats.year": self.year,
            "stats.cat.data": c.data,
            "stats.cat.indices": c.indices.astype(np.int64),
            "stats.cat.indptr": c.indptr.astype(np.int64),
            "stats.cat.shape": np.array(c.shape, np.int64),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> ItemStats:
        shape = tuple(int(x) for x in a["stats.cat.shape"])
        cats = sp.csr_matrix(
            (a["stats.cat.data"], a["stats.cat.indices"], a["stats.cat.indptr"]), shape=shape
        )
        first = a["stats.first_category"]
        return cls(
            a["stats.log_popularity"], cats, first, a["stats.year"], int(first.max(initial=0)) + 1
        )


def row_zscore(x: np.ndarray) -> np.ndarray:
    """Each row z-scored over its finite entries (NaN elsewhere; a constant row gives 0)."""
    x = np.asarray(x, np.float64)
    ok = np.isfinite(x)
    cnt = np.maximum(ok.sum(axis=1, keepdims=True), 1)
    mu = np.where(ok, x, 0.0).sum(axis=1, keepdims=True) / cnt
    var = np.where(ok, (x - mu) ** 2, 0.0).sum(axis=1, keepdims=True) / cnt
    return np.where(ok, (x - mu) / np.sqrt(var + 1e-12), np.nan)


def candidate_features(
    cands: CandidateBatch,
    batch: QueryBatch,
    stats: ItemStats,
    *,
    channel_names: tuple[str, ...],
    text_vectors: np.ndarray | None,
    extra_scores: tuple[str, ...] = (),
    stage_scores: tuple[str, ...] = (),
) -> tuple[np.ndarray, list[str]]:
    """Dense features (B, N, F) for every candidate slot, and their names.

    Per channel: score (0 if absent), presence, log rank. Plus item popularity, history
    length, category overlap with recent history, text similarity to the recent profile
    and to the last item, item year, any `extra_scores` columns (e.g. a model score), and
    per `stage_scores` column (an earlier stage's score over part of the list, e.g. a
    cross-encoder's top block): score, presence, and the score z-scored within its row's
    present slots (comparable across users whose scores sit at different levels).
    """
    b, n = cands.shape
    items = np.maximum(cands.items, 0)
    feats: list[np.ndarray] = []
    names: list[str] = []
    for c in channel_names:
        s = cands.scores.get(c)
        if s is None:
            s = np.full((b, n), np.nan, np.float32)
        present = np.isfinite(s)
        rank = cands.scores.get(f"{c}_rank", np.full((b, n), np.nan, np.float32))
        feats += [np.where(present, s, 0.0), present.astype(np.float32)]
        feats.append(np.where(np.isfinite(rank), np.log1p(rank), np.log1p(1000.0)))
        names += [f"{c}_score", f"{c}_present", f"{c}_logrank"]
    for col in extra_scores:
        s = cands.scores[col]
        feats.append(np.where(np.isfinite(s), s, 0.0))
        names.append(col)
    for col in stage_scores:
        s = np.where(cands.valid, cands.scores[col], np.nan)
        present = np.isfinite(s)
        feats += [np.where(present, s, 0.0), present.astype(np.float32)]
        feats.append(np.nan_to_num(row_zscore(s), nan=0.0))
        names += [col, f"{col}_present", f"{col}_z"]
    feats.append(stats.log_popularity[items])
    names.append("item_log_pop")
    hist_len = np.array([len(s) for s in batch.sequences], np.float32)
    feats.append(np.broadcast_to(np.log1p(hist_len)[:, None], (b, n)))
    names.append("user_log_history")
    recent = [s[-20:] for s in batch.sequences]
    h = history_matrix(recent, batch.n_items)
    prof = np.asarray((h @ stats.categories).todense())  # (B, G)
    prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
    cat_items = stats.categories[items.ravel()]  # (B*N, G)
    rows = np.repeat(np.arange(b), n)
    overlap = np.asarray(cat_items.multiply(prof[rows]).sum(axis=1)).reshape(b, n)
    feats.append(overlap)
    names.append("category_overlap")
    feats.append(stats.year[items])
    names.append("item_year")
    if text_vectors is not None:
        hw = history_matrix([s[-10:] for s in batch.sequences], batch.n_items, half_life=3.0)
        tp = np.asarray(hw @ text_vectors)
        tp /= np.maximum(np.linalg.norm(tp, axis=1, keepdims=True), 1e-12)
        iv = text_vectors[items]  # (B, N, D)
        feats.append(np.einsum("bnd,bd->bn", iv, tp))
        names.append("text_profile_sim")
        last = np.array([s[-1] if len(s) else 0 for s in batch.sequences])
        lv = text_vectors[last] * (hist_len > 0)[:, None]
        feats.append(np.einsum("bnd,bd->bn", iv, lv))
        names.append("text_last_sim")
    out = np.stack([np.asarray(f, np.float32) for f in feats], axis=-1)
    out[~cands.valid] = 0.0
    return out, names
