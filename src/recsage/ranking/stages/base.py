"""Stage base: each stage writes one score column, sorts and keeps `keep` (never invents items)."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recsage.component import build_config, check_params
from recsage.errors import ConfigError
from recsage.types import CandidateBatch


@dataclass
class StageContext:
    """What a stage may look at besides the candidates."""

    features: np.ndarray | None = None  # (B, N, F) dense features, built on demand
    feature_names: list[str] = field(default_factory=list)
    item_vectors: np.ndarray | None = None  # for diversity
    item_category: np.ndarray | None = None  # (I,) category code for caps
    histories: np.ndarray | None = None  # (B, L) last items, -1 padded, for target attention
    item_texts: Sequence[str] | None = None  # item descriptions, for stages that read text
    min_keep: int = 0  # the request's n: no stage cuts the list below it


class Stage(ABC):
    """Scores candidates, writes column `name`, sorts by it and keeps `keep`."""

    kind: ClassVar[str]
    needs_features: ClassVar[bool] = False
    #: the settings dataclass (None: the stage takes no parameters besides `keep`)
    Config: ClassVar[type[Any] | None] = None

    def __init__(self, name: str, *, keep: int = 100, **params: Any) -> None:
        self.name = name
        self.keep = int(keep)
        if self.keep < 1:
            raise ConfigError(f"stage '{name}': keep must be >= 1")
        where = f"stage '{name}' ({self.kind})"
        cfg_cls = type(self).Config
        if cfg_cls is None:
            check_params(params, (), where=where)
        self.config: Any = None if cfg_cls is None else build_config(cfg_cls, params, where=where)

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "keep": self.keep}
        if self.config is not None:
            out |= dataclasses.asdict(self.config)
        return out

    def apply(self, cands: CandidateBatch, ctx: StageContext) -> CandidateBatch:
        cands.scores[self.name] = self.score(cands, ctx)
        return self.order(cands, ctx)

    def keep_for(self, ctx: StageContext) -> int:
        """How many candidates to keep: `keep`, or the request's n when that is larger."""
        return max(self.keep, ctx.min_keep)

    def order(self, cands: CandidateBatch, ctx: StageContext) -> CandidateBatch:
        return cands.sort_by(self.name, self.keep_for(ctx))

    @abstractmethod
    def score(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray: ...

    @property
    def feature_column(self) -> str | None:
        """The score column this stage offers later learned stages as a feature (None: its
        column is an ordering, not a feature)."""
        return None

    def train(self, pipe: Any, valid: Any, *, exclude: np.ndarray, say: Any) -> np.ndarray:
        """Fit-time training of a stage that is not a `LearnedStage` (e.g. a cross-encoder):
        called by `Pipeline.train_stages` in stage order with the validation split and the
        users earlier stages trained on; returns the users it trained on, which later
        learned stages then leave out. Default: nothing to train."""
        return np.zeros(0, np.int64)

    def save(self, path: Path) -> None:  # noqa: B027
        """Persist learned state (stateless stages write nothing)."""

    def load(self, path: Path) -> None:  # noqa: B027
        """Restore learned state."""


def last_score_column(cands: CandidateBatch) -> str:
    """Name of the latest score column (rank columns skipped), for stages that re-order it."""
    names = [k for k in cands.scores if not k.endswith("_rank")]
    if not names:
        raise ConfigError("mmr stage needs an earlier score column")
    return names[-1]
