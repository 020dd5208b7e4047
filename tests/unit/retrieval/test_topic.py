"""The LDA topic channel recovers planted topics: items that share a topic with the history
are retrieved, and the fitted topics partition the catalogue like the planted ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsage.errors import RecsageError
from recsage.retrieval.channels.base import Resources
from recsage.retrieval.channels.topic import TopicChannel, item_documents
from recsage.testing import planted_topics, query_batch, tiny_dataset


@pytest.fixture(scope="module")
def fitted():
    data = tiny_dataset(0)
    ch = TopicChannel("topic", n_topics=4, seed=0)
    ch.fit(data, Resources())
    return data, ch


def test_documents_hold_titles_and_categories() -> None:
    data = tiny_dataset(0)
    docs = item_documents(data)
    assert docs[0] == "Galaxy Rocket Planet Space"


def test_fitted_topics_match_the_planted_ones(fitted) -> None:
    data, ch = fitted
    topics = ch.item_topics
    assert topics.shape == (data.n_items, 4) and topics.dtype == np.float32
    np.testing.assert_allclose(topics.sum(axis=1), 1.0, atol=1e-5)
    found, planted = topics.argmax(axis=1), planted_topics(data)
    # one LDA topic per planted topic, and each planted topic maps to one LDA topic
    for t in range(4):
        assert len(set(found[planted == t].tolist())) == 1
    assert len(set(found.tolist())) == 4


def test_a_history_in_one_topic_retrieves_that_topic(fitted) -> None:
    data, ch = fitted
    planted = planted_topics(data)
    hists = [np.flatnonzero(planted == t)[[1, 4]] for t in range(4)]
    batch = query_batch(data, [], unknown=hists)
    items, scores = ch.retrieve(batch, 8)  # a topic has 10 items, 2 are in the history
    for t in range(4):
        assert set(items[t].tolist()) == set(np.flatnonzero(planted == t).tolist()) - set(
            hists[t].tolist()
        )
    # the other topics' items come after, with lower scores
    items, scores = ch.retrieve(batch, 12)
    for t in range(4):
        assert (planted[items[t, 8:]] != t).all()
        assert scores[t, 7] > scores[t, 8]


def test_items_without_text_are_refused() -> None:
    data = tiny_dataset(0)
    data.item_table = pd.DataFrame({"title": [""] * data.n_items})
    with pytest.raises(RecsageError, match="no text"):
        TopicChannel("topic", n_topics=4).fit(data, Resources())
