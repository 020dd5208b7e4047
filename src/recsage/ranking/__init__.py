"""Learned ranking: stages (stages/), business filters, candidate features, ranking data,
grouped losses (pointwise / pairwise / listwise) and the learners (learners/).

Names are re-exported lazily (PEP 562): importing `recsage.ranking.stages` or `.filters`
does not load torch; the FM family and DIN load when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DINConfig": "recsage.ranking.learners.nets",
    "DINRanker": "recsage.ranking.learners.torch",
    "DeepFMRanker": "recsage.ranking.learners.torch",
    "FMRanker": "recsage.ranking.learners.torch",
    "FeatureSchema": "recsage.ranking.learners.data",
    "LGBMConfig": "recsage.ranking.learners.lgbm",
    "LGBMRanker": "recsage.ranking.learners.lgbm",
    "LOSSES": "recsage.ranking.losses",
    "MLPRankerConfig": "recsage.ranking.learners.nets",
    "NFMRanker": "recsage.ranking.learners.torch",
    "RANKERS": "recsage.ranking.learners.registry",
    "Ranker": "recsage.ranking.learners.base",
    "RankingData": "recsage.ranking.learners.data",
    "TorchRanker": "recsage.ranking.learners.torch",
    "TorchRankerConfig": "recsage.ranking.learners.nets",
    "create_ranker": "recsage.ranking.learners.registry",
    "group_layout": "recsage.ranking.losses",
    "group_offsets": "recsage.ranking.losses",
    "grouped_ndcg": "recsage.ranking.losses",
    "lambda_loss": "recsage.ranking.losses",
    "listwise_softmax": "recsage.ranking.losses",
    "pad_groups": "recsage.ranking.losses",
    "pairwise_bpr": "recsage.ranking.losses",
    "pairwise_ranknet": "recsage.ranking.losses",
    "pointwise_bce": "recsage.ranking.losses",
    "ranker_class": "recsage.ranking.learners.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'recsage.ranking' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
