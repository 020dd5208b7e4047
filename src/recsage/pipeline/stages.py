"""Ranking stages: each scores the candidate batch, reorders it and keeps the top `keep`.

A stage never invents items; it only adds a score column, sorts and truncates.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recsage.errors import ConfigError
from recsage.pipeline.candidates import CandidateBatch


@dataclass
class StageContext:
    """What a stage may look at besides the candidates."""

    features: np.ndarray | None = None  # (B, N, F) dense features, built on demand
    feature_names: list[str] = field(default_factory=list)
    item_vectors: np.ndarray | None = None  # for diversity
    item_category: np.ndarray | None = None  # (I,) category code for caps
    histories: np.ndarray | None = None  # (B, L) last items, -1 padded, for target attention


class Stage(ABC):
    """Scores candidates, writes column `name`, sorts by it and keeps `keep`."""

    kind: ClassVar[str]
    needs_features: ClassVar[bool] = False

    def __init__(self, name: str, *, keep: int = 100, **params: Any) -> None:
        self.name = name
        self.keep = int(keep)
        if self.keep < 1:
            raise ConfigError(f"stage '{name}': keep must be >= 1")
        cfg_cls = getattr(self, "Config", None)
        names = {f.name for f in dataclasses.fields(cfg_cls)} if cfg_cls else set()
        bad = sorted(set(params) - names)
        if bad:
            raise ConfigError(
                f"stage '{name}' ({self.kind}): unknown parameter(s) {', '.join(bad)}; "
                f"valid: {', '.join(sorted(names)) or 'none'}"
            )
        self.config: Any = cfg_cls(**params) if cfg_cls else None

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "keep": self.keep}
        if self.config is not None:
            out |= dataclasses.asdict(self.config)
        return out

    def apply(self, cands: CandidateBatch, ctx: StageContext) -> CandidateBatch:
        cands.scores[self.name] = self.score(cands, ctx)
        return self.order(cands, ctx)

    def order(self, cands: CandidateBatch, ctx: StageContext) -> CandidateBatch:
        return cands.sort_by(self.name, self.keep)

    @abstractmethod
    def score(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray: ...

    def save(self, path: Path) -> None:  # noqa: B027
        """Persist learned state (stateless stages write nothing)."""

    def load(self, path: Path) -> None:  # noqa: B027
        """Restore learned state."""


class RRFStage(Stage):
    """Reciprocal-rank fusion of the channels: sum_c w_c / (k + rank_c). Cheap, no training."""

    kind = "rrf"

    @dataclass
    class Config:
        k: float = 60.0
        weights: dict[str, float] = field(default_factory=dict)

    def score(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray:
        total = np.zeros(cands.shape, np.float64)
        for c in cands.channel_names:
            r = cands.scores.get(f"{c}_rank")
            if r is None:
                continue
            w = self.config.weights.get(c, 1.0)
            total += np.where(np.isfinite(r), w / (self.config.k + r), 0.0)
        return np.where(cands.valid, total, np.nan).astype(np.float32)


class ColumnStage(Stage):
    """Order by an existing score column (e.g. one model's full score)."""

    kind = "column"

    @dataclass
    class Config:
        column: str = ""

    def score(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray:
        if self.config.column not in cands.scores:
            raise ConfigError(
                f"stage '{self.name}': no score column '{self.config.column}'; "
                f"have {sorted(cands.scores)}"
            )
        return cands.scores[self.config.column].copy()


class LearnedStage(Stage):
    """A learned ranker (FM / NFM / DeepFM / DIN / LightGBM) over candidate features."""

    kind = "learned"
    needs_features = True

    @dataclass
    class Config:
        learner: str = "lgbm"
        objective: str = "listwise"
        params: dict[str, Any] = field(default_factory=dict)
        negatives: int = 50
        seed: int = 0

    ranker: Any = None

    def make_ranker(self) -> Any:
        from recsage.ranking import create_ranker

        params = dict(self.config.params)
        params.setdefault("objective", self.config.objective)
        return create_ranker(self.config.learner, **params)

    def score(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray:
        from recsage.pipeline.training import ranking_data

        if self.ranker is None:
            raise ConfigError(f"stage '{self.name}' is not trained; fit the pipeline first")
        n_items = len(ctx.item_category) if ctx.item_category is not None else 0
        data, rows = ranking_data(cands, ctx, labels=None, n_items=n_items)
        out = np.full(cands.shape, np.nan, np.float32)
        if len(rows[0]):
            out[rows] = self.ranker.predict(data)
        return out

    def save(self, path: Path) -> None:
        if self.ranker is not None:
            self.ranker.save(path)

    def load(self, path: Path) -> None:
        from recsage.ranking import Ranker

        self.ranker = Ranker.load(path)


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
        col = self.config.column or _last_score_column(cands)
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
        keep = min(self.keep, n)
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


def _last_score_column(cands: CandidateBatch) -> str:
    names = [k for k in cands.scores if not k.endswith("_rank")]
    if not names:
        raise ConfigError("mmr stage needs an earlier score column")
    return names[-1]


STAGES: dict[str, type[Stage]] = {
    s.kind: s for s in (RRFStage, ColumnStage, LearnedStage, MMRStage)
}


#: stages in modules that import heavier libraries (loaded on first use)
LAZY_STAGES: dict[str, tuple[str, str]] = {
    "llm": ("recsage.llm.rerank", "LLMRerankStage"),
    "cross_encoder": ("recsage.knowledge.lm_ranker", "CrossEncoderStage"),
}


def create_stage(spec: dict[str, Any]) -> Stage:
    spec = dict(spec)
    kind = spec.pop("kind", None)
    name = spec.pop("name", kind)
    if kind in LAZY_STAGES and kind not in STAGES:
        import importlib

        module, cls = LAZY_STAGES[kind]
        STAGES[kind] = getattr(importlib.import_module(module), cls)
    if kind not in STAGES:
        known = sorted(set(STAGES) | set(LAZY_STAGES))
        raise ConfigError(f"stage '{name}': unknown kind {kind!r}; known: {known}")
    if "lambda" in spec:
        spec["lambda_"] = spec.pop("lambda")
    return STAGES[kind](str(name), **spec)
