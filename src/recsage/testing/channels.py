"""`ChannelTests`: the contract every retrieval channel keeps.

Subclass it in a test module, name the subclass ``Test…`` and implement `make_channel`
(and `make_resources` for channels that read item text vectors)::

    class TestMyChannel(ChannelTests):
        def make_channel(self) -> Channel:
            return MyChannel("mine", n=10)

The suite fits the channel once per class on `tiny_dataset(seed)` and checks: (B, n)
int64 items with -1 padding at the end and float32 scores, no history items, no
duplicates, non-increasing scores, results that depend on the history and not on the
user index (an unknown user with a history gets what a known user with that history
gets), a faithful `spec()`, identical retrieval after a save/load round-trip and a
deterministic fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from recsage.data.schema import Dataset
from recsage.retrieval.channels.base import Channel, Resources
from recsage.testing.checks import assert_no_history_items, assert_ranked_lists
from recsage.testing.data import planted_topics, query_batch, tiny_dataset
from recsage.types import QueryBatch


def fit_channel(channel: Channel, data: Dataset, resources: Resources) -> Channel:
    """Fit as the pipeline does (and record the catalogue size it saw)."""
    channel.fit(data, resources)
    channel.n_items_fitted = data.n_items
    return channel


def channel_roundtrip(channel: Channel, resources: Resources, folder: Path) -> Channel:
    """Persist a fitted channel the way a saved pipeline does (`Channel.save`) and load it
    into a fresh one made from its `spec()`."""
    from recsage.retrieval.channels.registry import create_channel

    channel.save(folder)
    fresh = create_channel(channel.spec())
    fresh.n_items_fitted = channel.n_items_fitted
    fresh.load(folder, resources)
    return fresh


class ChannelTests:
    """Conformance suite for `Channel` implementations (pytest collects subclasses)."""

    #: seed of the tiny dataset
    seed: ClassVar[int] = 0
    #: list length asked of the channel
    n: ClassVar[int] = 8
    #: known users queried (dense indices into the tiny dataset)
    users: ClassVar[tuple[int, ...]] = (0, 1, 2, 3, 5, 8)
    #: free-text query per row for channels that read `QueryBatch.texts` (None: no text)
    texts: ClassVar[tuple[str | None, ...] | None] = None
    #: False for channels whose result does not depend on the history (e.g. popularity)
    personalised: ClassVar[bool] = True
    #: at least this share of returned items (over all rows) lies in the planted topic of
    #: the row's history; None skips the check (channels without topical signal)
    min_topic_share: ClassVar[float | None] = None
    #: True for channels that may rightly find nothing for a row (e.g. the category channel
    #: once a history has used up its categories); others must retrieve something for each
    may_come_up_empty: ClassVar[bool] = False

    # ---- what a subclass provides ---------------------------------------------------
    def make_channel(self) -> Channel:
        """A new, unfitted channel."""
        raise NotImplementedError(
            f"{type(self).__name__} must define make_channel() (conformance suite hook)"
        )

    def make_resources(self, data: Dataset) -> Resources:
        """Shared resources the channel fits with (item text vectors, encoder)."""
        return Resources()

    # ---- fixtures -------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Dataset:
        return tiny_dataset(cls.seed)

    @pytest.fixture(scope="class")
    @classmethod
    def resources(cls, data: Dataset) -> Resources:
        return cls().make_resources(data)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: Dataset, resources: Resources) -> Channel:
        return fit_channel(cls().make_channel(), data, resources)

    @pytest.fixture(scope="class")
    @classmethod
    def batch(cls, data: Dataset) -> QueryBatch:
        seqs = data.sequences()
        unknown = [seqs[cls.users[0]][:3], seqs[cls.users[1]]]
        texts = cls._texts(len(cls.users) + len(unknown))
        return query_batch(data, cls.users, unknown=unknown, texts=texts)

    @classmethod
    def _texts(cls, rows: int) -> list[str | None]:
        if not cls.texts:
            return [None] * rows
        return [cls.texts[i % len(cls.texts)] for i in range(rows)]

    def retrieve(self, channel: Channel, batch: QueryBatch, n: int | None = None) -> Any:
        return channel.retrieve(batch, self.n if n is None else n)

    # ---- the contract ---------------------------------------------------------------
    def test_result_shapes_types_and_order(self, fitted: Channel, batch: QueryBatch) -> None:
        items, scores = self.retrieve(fitted, batch)
        assert_ranked_lists(items, scores, n=self.n, what=f"channel {fitted.kind}")
        assert items.shape[0] == len(batch)
        if not self.may_come_up_empty:
            assert (items >= 0).sum(axis=1).min() >= 1, "every row should retrieve something"
        assert (items >= 0).any(), "no row retrieved anything"
        assert (items < batch.n_items).all(), "item index past the catalogue"

    def test_never_returns_history_items(self, fitted: Channel, batch: QueryBatch) -> None:
        items, _ = self.retrieve(fitted, batch)
        assert_no_history_items(items, batch.sequences)
        # also with a list long enough to reach the history items if they were eligible
        items, _ = self.retrieve(fitted, batch, batch.n_items)
        assert_no_history_items(items, batch.sequences)

    def test_long_lists_pad_with_minus_one(self, fitted: Channel, batch: QueryBatch) -> None:
        n = batch.n_items + 5
        items, scores = self.retrieve(fitted, batch, n)
        assert_ranked_lists(items, scores, n=n, what=f"channel {fitted.kind} (n > catalogue)")
        lengths = np.array([len(np.unique(s)) for s in batch.sequences])
        assert ((items >= 0).sum(axis=1) <= batch.n_items - lengths).all()
        assert (items[:, -5:] == -1).all()

    def test_unknown_user_gets_what_the_history_says(self, fitted: Channel, data: Dataset) -> None:
        seqs = data.sequences()
        u = self.users[2]
        known = query_batch(data, [u], texts=self._texts(1))
        cold = query_batch(data, [], unknown=[seqs[u]], texts=self._texts(1))
        a_items, a_scores = self.retrieve(fitted, known)
        b_items, b_scores = self.retrieve(fitted, cold)
        assert (b_items >= 0).any(), "an unknown user with a history got nothing"
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)

    def test_history_drives_the_result(self, fitted: Channel, data: Dataset) -> None:
        if not self.personalised:
            pytest.skip("this channel does not personalise")
        topic = planted_topics(data)
        a = [i for i in range(data.n_items) if topic[i] == 0][:4]
        b = [i for i in range(data.n_items) if topic[i] == 1][:4]
        batch = query_batch(data, [], unknown=[a, b], texts=self._texts(2))
        items, _ = self.retrieve(fitted, batch)
        assert items[0].tolist() != items[1].tolist(), "two unrelated histories, one answer"

    def test_results_follow_the_planted_topics(self, fitted: Channel, data: Dataset) -> None:
        if self.min_topic_share is None:
            pytest.skip("no topical expectation for this channel")
        topic = planted_topics(data)
        seqs = data.sequences()
        # short histories leave most of their topic's items to retrieve
        hists = [seqs[u][:3] for u in range(8)]
        batch = query_batch(data, [], unknown=hists, texts=self._texts(len(hists)))
        items, _ = self.retrieve(fitted, batch, 5)
        same = total = 0
        for r, h in enumerate(hists):
            want = np.bincount(topic[h]).argmax()
            got = items[r][items[r] >= 0]
            same += int((topic[got] == want).sum())
            total += len(got)
        assert total and same / total >= self.min_topic_share, (
            f"{same}/{total} retrieved items share the history's planted topic"
        )

    def test_empty_history_is_not_an_error(self, fitted: Channel, data: Dataset) -> None:
        batch = query_batch(data, [], unknown=[[]], texts=self._texts(1))
        items, scores = self.retrieve(fitted, batch)
        assert_ranked_lists(items, scores, n=self.n, what="empty history")

    def test_spec_recreates_the_channel(self, fitted: Channel) -> None:
        from recsage.retrieval.channels.registry import create_channel

        again = create_channel(fitted.spec())
        assert type(again) is type(fitted) and again.spec() == fitted.spec()

    def test_save_load_roundtrip_retrieves_the_same(
        self, fitted: Channel, resources: Resources, batch: QueryBatch, tmp_path: Path
    ) -> None:
        back = channel_roundtrip(fitted, resources, tmp_path / "channel")
        a_items, a_scores = self.retrieve(fitted, batch)
        b_items, b_scores = self.retrieve(back, batch)
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)

    def test_fit_is_deterministic(
        self, fitted: Channel, data: Dataset, resources: Resources, batch: QueryBatch
    ) -> None:
        again = fit_channel(self.make_channel(), data, resources)
        a_items, a_scores = self.retrieve(fitted, batch)
        b_items, b_scores = self.retrieve(again, batch)
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)
