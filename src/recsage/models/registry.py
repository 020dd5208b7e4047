"""Model registry: names used on the command line and in manifests -> classes."""

from __future__ import annotations

from typing import Any

from recsage.errors import ConfigError
from recsage.models.base import Recommender
from recsage.models.baselines import ALS, EASE, ItemKNN, Popularity

MODELS: dict[str, type[Recommender]] = {cls.name: cls for cls in (Popularity, ItemKNN, EASE, ALS)}
#: models whose modules import torch: loaded on first use so `import recsage` stays light
LAZY: dict[str, str] = {
    "sasrec": "recsage.models.sasrec",
    "two_tower": "recsage.models.two_tower",
}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Add a model class under its `name` (used by later model modules)."""
    MODELS[cls.name] = cls
    return cls


def model_class(name: str) -> type[Recommender]:
    """The class registered under `name`, or a clear error listing the known ones."""
    if name not in MODELS and name in LAZY:
        import importlib

        module = importlib.import_module(LAZY[name])
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Recommender) and obj.name == name:
                MODELS[name] = obj
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(set(MODELS) | set(LAZY)))
        raise ConfigError(f"unknown model '{name}'; known: {known}") from None


def model_names() -> list[str]:
    """Every model name the registry can create (including lazily imported ones)."""
    return sorted(set(MODELS) | set(LAZY))


def create_model(name: str, **params: Any) -> Recommender:
    """Instantiate a registered model with keyword hyperparameters."""
    return model_class(name)(**params)
