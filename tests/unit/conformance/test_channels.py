"""Every built-in retrieval channel kind keeps the `ChannelTests` contract."""

from __future__ import annotations

from typing import Any, ClassVar

from recsage.data.schema import Dataset
from recsage.retrieval.channels.base import Channel, Resources
from recsage.retrieval.channels.registry import create_channel
from recsage.testing import ChannelTests, text_resources

TINY_SASREC = {"dim": 16, "layers": 1, "heads": 1, "max_len": 12, "max_epochs": 2,
               "batch_size": 32, "threads": 1, "progress": False}  # fmt: skip
TINY_TWO_TOWER = {"dim": 16, "max_epochs": 2, "batch_size": 64, "use_text": False,
                  "profile_map": False, "threads": 1, "progress": False}  # fmt: skip
COVERED: set[str] = set()


class _Spec(ChannelTests):
    """A channel made from a spec dict (what a pipeline TOML entry says)."""

    spec: ClassVar[dict[str, Any]]
    text: ClassVar[bool] = False

    def make_channel(self) -> Channel:
        COVERED.add(self.spec["kind"])
        return create_channel({"name": "ch", "n": self.n, **self.spec})

    def make_resources(self, data: Dataset) -> Resources:
        return text_resources(data) if self.text else Resources()


class TestPopularity(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "popularity"}
    personalised = False


class TestTrending(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "popularity", "half_life_days": 2.0}
    personalised = False


class TestCooccurrence(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "cooccurrence", "window": 2}
    min_topic_share = 0.6  # noise clicks are neighbours too


class TestTopic(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "topic", "n_topics": 4}
    min_topic_share = 0.8


class TestText(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "text"}
    text = True
    min_topic_share = 0.8


class TestQuery(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "query"}
    text = True
    texts = ("rocket planet galaxy", "pasta soup recipe", "pirate whale island")


class TestModelEase(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "model", "model": "ease", "params": {"l2": 10.0}}
    min_topic_share = 0.8


class TestModelEaseRecency(_Spec):
    spec: ClassVar[dict[str, Any]] = {
        "kind": "model", "model": "ease", "params": {"l2": 10.0, "half_life": 3.0}
    }  # fmt: skip
    min_topic_share = 0.8


class TestModelALS(_Spec):
    spec: ClassVar[dict[str, Any]] = {
        "kind": "model", "model": "als", "params": {"factors": 8, "iterations": 5}
    }  # fmt: skip


class TestModelItemKNN(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "model", "model": "itemknn"}
    min_topic_share = 0.8


class TestModelPop(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "model", "model": "pop"}
    personalised = False


class TestModelALSFlatIndex(_Spec):
    spec: ClassVar[dict[str, Any]] = {
        "kind": "model", "model": "als", "index": "flat",
        "params": {"factors": 8, "iterations": 5},
    }  # fmt: skip


class TestModelSASRecHNSW(_Spec):
    spec: ClassVar[dict[str, Any]] = {
        "kind": "model", "model": "sasrec", "index": "hnsw", "params": TINY_SASREC
    }  # fmt: skip


class TestModelTwoTower(_Spec):
    spec: ClassVar[dict[str, Any]] = {
        "kind": "model", "model": "two_tower", "params": TINY_TWO_TOWER
    }  # fmt: skip


class TestCategory(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "category", "recent": 5}
    min_topic_share = 0.8
    may_come_up_empty = True  # a user who walked a whole topic has no unseen item left in it


class TestKG(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "kg", "graph": "none", "dim": 16, "epochs": 30,
                                      "threads": 1}  # fmt: skip
    min_topic_share = 0.8


class TestKGExactIndex(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "kg", "graph": "none", "dim": 16, "epochs": 3,
                                      "threads": 1, "index": "exact"}  # fmt: skip


def test_every_registered_channel_kind_runs_the_suite() -> None:
    from recsage.retrieval.channels.registry import CHANNELS

    kinds = {c.spec["kind"] for c in _Spec.__subclasses__()}
    assert set(CHANNELS) <= kinds
