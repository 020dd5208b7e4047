"""Two-tower model: ID + text + category item tower, history/profile user tower."""

from __future__ import annotations

from recsage.models.two_tower.model import TwoTower, sequence_scorer
from recsage.models.two_tower.net import TwoTowerConfig

__all__ = ["TwoTower", "TwoTowerConfig", "sequence_scorer"]
