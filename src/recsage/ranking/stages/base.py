"""Stage base: each stage writes one score column, sorts and keeps `keep` (never invents items)."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

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
            # spec files write Python-keyword fields without the trailing "_" (lambda)
            shown = sorted(n[:-1] if n.endswith("_") else n for n in names)
            raise ConfigError(
                f"stage '{name}' ({self.kind}): unknown parameter(s) {', '.join(bad)}; "
                f"valid: {', '.join(shown) or 'none'}"
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


def _last_score_column(cands: CandidateBatch) -> str:
    names = [k for k in cands.scores if not k.endswith("_rank")]
    if not names:
        raise ConfigError("mmr stage needs an earlier score column")
    return names[-1]
