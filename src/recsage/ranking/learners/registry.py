"""Ranker names -> classes."""

from __future__ import annotations

from typing import Any

from recsage.errors import ConfigError
from recsage.ranking.learners.base import Ranker
from recsage.ranking.learners.lgbm import LGBMRanker
from recsage.ranking.learners.torch import DeepFMRanker, DINRanker, FMRanker, NFMRanker

RANKERS: dict[str, type[Ranker]] = {
    cls.name: cls for cls in (FMRanker, NFMRanker, DeepFMRanker, DINRanker, LGBMRanker)
}


def ranker_class(name: str) -> type[Ranker]:
    """The ranker class registered under `name`, or a clear error listing the known ones."""
    try:
        return RANKERS[name]
    except KeyError:
        raise ConfigError(f"unknown ranker '{name}'; known: {', '.join(sorted(RANKERS))}") from None


def create_ranker(name: str, **params: Any) -> Ranker:
    """Instantiate a registered ranker with keyword hyper-parameters."""
    return ranker_class(name)(**params)
