"""Recommender models: one interface, baselines and learned models."""

from __future__ import annotations

from recsage.models.base import Recommender
from recsage.models.baselines import ALS, EASE, ItemKNN, Popularity
from recsage.models.registry import MODELS, create_model, model_class, register

__all__ = [
    "ALS",
    "EASE",
    "MODELS",
    "ItemKNN",
    "Popularity",
    "Recommender",
    "create_model",
    "model_class",
    "register",
]
