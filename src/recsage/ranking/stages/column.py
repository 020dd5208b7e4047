"""Order by an existing score column."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsage.errors import ConfigError
from recsage.ranking.stages.base import Stage, StageContext
from recsage.types import CandidateBatch


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
