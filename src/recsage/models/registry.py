"""Model registry: names used on the command line and in manifests -> classes."""

from __future__ import annotations

from typing import Any

from recsage.errors import ConfigError
from recsage.models.base import Recommender
from recsage.models.baselines import ALS, EASE, ItemKNN, Popularity

MODELS: dict[str, type[Recommender]] = {cls.name: cls for cls in (Popularity, ItemKNN, EASE, ALS)}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Add a model class under its `name` (used by later model modules)."""
    MODELS[cls.name] = cls
    return cls


def model_class(name: str) -> type[Recommender]:
    """The class registered under `name`, or a clear error listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; known: {', '.join(sorted(MODELS))}") from None


def create_model(name: str, **params: Any) -> Recommender:
    """Instantiate a registered model with keyword hyperparameters."""
    return model_class(name)(**params)
