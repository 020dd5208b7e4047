"""Every registered model keeps the `RecommenderTests` contract."""

from __future__ import annotations

from typing import Any, ClassVar

from recsage.models.base import Recommender
from recsage.models.registry import create_model
from recsage.testing import RecommenderTests

TINY_SASREC = {"dim": 16, "layers": 1, "heads": 1, "max_len": 12, "max_epochs": 2,
               "batch_size": 32, "threads": 1, "progress": False}  # fmt: skip
TINY_TWO_TOWER = {"dim": 16, "max_epochs": 2, "batch_size": 64, "use_text": False,
                  "profile_map": False, "threads": 1, "progress": False}  # fmt: skip


class _Named(RecommenderTests):
    model: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}

    def make_model(self) -> Recommender:
        if self.model == "kg":
            import recsage.knowledge.channel  # noqa: F401  (registers the KG model)
        return create_model(self.model, **self.params)


class TestPop(_Named):
    model = "pop"


class TestItemKNN(_Named):
    model = "itemknn"
    min_topic_share = 0.8


class TestEASE(_Named):
    model = "ease"
    params: ClassVar[dict[str, Any]] = {"l2": 10.0}
    min_topic_share = 0.8


class TestEASERecency(_Named):
    model = "ease"
    params: ClassVar[dict[str, Any]] = {"l2": 10.0, "half_life": 3.0}
    min_topic_share = 0.8


class TestALS(_Named):
    model = "als"
    params: ClassVar[dict[str, Any]] = {"factors": 8, "iterations": 5}


class TestSASRec(_Named):
    model = "sasrec"
    params: ClassVar[dict[str, Any]] = TINY_SASREC
    scores_csr_history = False


class TestTwoTower(_Named):
    model = "two_tower"
    params: ClassVar[dict[str, Any]] = TINY_TWO_TOWER


class TestKG(_Named):
    model = "kg"
    params: ClassVar[dict[str, Any]] = {"graph": "none", "dim": 16, "epochs": 30, "threads": 1}
    min_topic_share = 0.8


def test_every_registered_model_runs_the_suite() -> None:
    from recsage.models.registry import model_names

    covered = {c.model for c in _Named.__subclasses__()}
    assert set(model_names()) <= covered
