"""Model capabilities are typed protocols; the model channel decides by them alone."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from recsage.errors import ConfigError
from recsage.models.base import (
    SupportsFoldIn,
    SupportsItemVectors,
    SupportsItemWeights,
    SupportsSequenceScores,
    SupportsUserVectors,
)
from recsage.models.registry import MODELS
from recsage.retrieval.channels.base import Resources
from recsage.retrieval.channels.model import ModelChannel
from recsage.types import QueryBatch

CAPABILITIES = {
    "item_vectors": SupportsItemVectors,
    "user_vectors": SupportsUserVectors,
    "fold_in": SupportsFoldIn,
    "sequence_scores": SupportsSequenceScores,
    "item_weights": SupportsItemWeights,
}
EXPECTED = {
    "pop": set(),
    "itemknn": {"item_weights"},
    "ease": {"item_weights"},
    "als": {"item_vectors", "fold_in"},
    "sasrec": {"item_vectors", "user_vectors", "sequence_scores"},
    "two_tower": {"item_vectors", "user_vectors", "sequence_scores"},
    "kg": {"item_vectors", "user_vectors", "sequence_scores"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_builtin_model_declares_exactly_its_capabilities(name: str) -> None:
    cls = MODELS.get(name)
    has = {cap for cap, proto in CAPABILITIES.items() if issubclass(cls, proto)}
    assert has == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fit_options_match_the_fit_signature(name: str) -> None:
    cls = MODELS.get(name)
    params = inspect.signature(cls.fit).parameters.values()
    keyword_only = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert cls.fit_options == keyword_only


def test_ann_retrieval_over_als_vectors_matches_full_scoring(tiny) -> None:
    """ALS through an exact index: query = fold-in of the history, items = item factors;
    the result must equal the top items of fold_in @ item_factors.T minus the history."""
    ch = ModelChannel(
        "als", n=3, model="als", params={"factors": 4, "iterations": 3}, index="exact"
    )
    ch.fit(tiny, Resources())
    seqs = [np.array([0, 1]), np.array([3]), np.array([4, 2, 0])]
    batch = QueryBatch(np.array([0, 1, 2]), seqs, tiny.n_items)
    items, scores = ch.retrieve(batch, 2)

    model = ch.model
    expected = model.fold_in(batch.history) @ model.item_factors.T
    for r, seq in enumerate(seqs):
        s = expected[r].astype(np.float64)
        s[seq] = -np.inf
        top = np.argsort(-s, kind="stable")[:2]
        np.testing.assert_array_equal(np.sort(items[r]), np.sort(top))
        np.testing.assert_allclose(np.sort(scores[r]), np.sort(s[top]), rtol=1e-5, atol=1e-6)
        assert not set(items[r].tolist()) & set(seq.tolist())


def test_an_index_on_a_model_without_vectors_is_refused(tiny) -> None:
    ch = ModelChannel("ease", n=3, model="ease", params={"l2": 1.0}, index="exact")
    with pytest.raises(ConfigError, match="model 'ease' exposes no item vectors"):
        ch.fit(tiny, Resources())
