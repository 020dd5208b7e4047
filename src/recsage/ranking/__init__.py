"""Learned ranking: grouped losses (pointwise / pairwise / listwise) and rankers."""

from __future__ import annotations

from recsage.ranking.learners.base import Ranker
from recsage.ranking.learners.data import FeatureSchema, RankingData
from recsage.ranking.learners.lgbm import LGBMConfig, LGBMRanker
from recsage.ranking.learners.nets import DINConfig, MLPRankerConfig, TorchRankerConfig
from recsage.ranking.learners.registry import RANKERS, create_ranker, ranker_class
from recsage.ranking.learners.torch import DeepFMRanker, DINRanker, FMRanker, NFMRanker, TorchRanker
from recsage.ranking.losses import (
    LOSSES,
    group_layout,
    group_offsets,
    grouped_ndcg,
    lambda_loss,
    listwise_softmax,
    pad_groups,
    pairwise_bpr,
    pairwise_ranknet,
    pointwise_bce,
)

__all__ = [
    "LOSSES",
    "RANKERS",
    "DINConfig",
    "DINRanker",
    "DeepFMRanker",
    "FMRanker",
    "FeatureSchema",
    "LGBMConfig",
    "LGBMRanker",
    "MLPRankerConfig",
    "NFMRanker",
    "Ranker",
    "RankingData",
    "TorchRanker",
    "TorchRankerConfig",
    "create_ranker",
    "group_layout",
    "group_offsets",
    "grouped_ndcg",
    "lambda_loss",
    "listwise_softmax",
    "pad_groups",
    "pairwise_bpr",
    "pairwise_ranknet",
    "pointwise_bce",
    "ranker_class",
]
