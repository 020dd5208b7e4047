"""Ranker names -> classes: one lazy ``"module:attr"`` line per ranker.

Torch rankers load on first use; a separate package adds one through the
``recsage.rankers`` entry-point group.
"""

from __future__ import annotations

from typing import Any

from recsage.component import Registry
from recsage.ranking.learners.base import Ranker

RANKERS: Registry[Ranker] = Registry("ranker", base=Ranker)
RANKERS.register("fm", "recsage.ranking.learners.torch:FMRanker")
RANKERS.register("nfm", "recsage.ranking.learners.torch:NFMRanker")
RANKERS.register("deepfm", "recsage.ranking.learners.torch:DeepFMRanker")
RANKERS.register("din", "recsage.ranking.learners.torch:DINRanker")
RANKERS.register("lgbm", "recsage.ranking.learners.lgbm:LGBMRanker")


def ranker_class(name: str) -> type[Ranker]:
    """The ranker class registered under `name`, or a clear error listing the known ones."""
    return RANKERS.get(name)


def create_ranker(name: str, **params: Any) -> Ranker:
    """Instantiate a registered ranker with keyword hyper-parameters."""
    return RANKERS.create(name, **params)
