"""Model registry: names used on the command line and in manifests -> classes.

Built-in models are lazy ``"module:attr"`` entries, so torch-using ones (SASRec, two-tower,
the KG model) load on first use and `import recsage` stays light. A separate package adds
a model through the ``recsage.models`` entry-point group.
"""

from __future__ import annotations

from typing import Any

from recsage.component import Registry
from recsage.models.base import Recommender

MODELS: Registry[Recommender] = Registry("model", base=Recommender)
MODELS.register("pop", "recsage.models.baselines:Popularity")
MODELS.register("itemknn", "recsage.models.baselines:ItemKNN")
MODELS.register("ease", "recsage.models.baselines:EASE")
MODELS.register("als", "recsage.models.baselines:ALS")
MODELS.register("sasrec", "recsage.models.sasrec.model:SASRec")
MODELS.register("two_tower", "recsage.models.two_tower.model:TwoTower")
MODELS.register("kg", "recsage.knowledge.channel:KGModel")


def register(cls: type[Recommender]) -> type[Recommender]:
    """Add a model class under its `name` (a class decorator for model modules)."""
    return MODELS.register(cls.name, cls)


def model_class(name: str) -> type[Recommender]:
    """The class registered under `name`, or a clear error listing the known ones."""
    return MODELS.get(name)


def model_names() -> list[str]:
    """Every model name the registry can create (including lazily imported ones)."""
    return MODELS.names()


def create_model(name: str, **params: Any) -> Recommender:
    """Instantiate a registered model with keyword hyperparameters."""
    return MODELS.create(name, **params)
