"""Natural-language search: the query's own item first, personalisation blended exactly as
documented (checked against hand-computed cosines on tiny vectors)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from recsage.errors import ConfigError
from recsage.retrieval.search import profile_vector, semantic_search
from recsage.testing import item_texts, keyword_encoder, tiny_dataset


class FixedEncoder:
    """Maps known query strings to fixed vectors."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.table[t] for t in texts], np.float32)


def unit(*v: float) -> list[float]:
    a = np.array(v, np.float64)
    return list(a / np.linalg.norm(a))


ITEMS = np.array([unit(1, 0, 0), unit(0, 1, 0), unit(1, 1, 0), unit(0, 0, 1)], np.float32)
ENC = FixedEncoder({"q": unit(1, 0.2, 0)})


def test_query_only_ranks_by_cosine() -> None:
    items, scores = semantic_search("q", ITEMS, ENC, k=4)
    q = np.array(unit(1, 0.2, 0))
    want = ITEMS @ q  # item 0: 0.981, item 2: 0.832, item 1: 0.196, item 3: 0
    assert items.tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(scores, want[[0, 2, 1, 3]], rtol=1e-6)


def test_personalised_search_blends_the_recency_profile() -> None:
    history = np.array([3, 1])  # oldest first: item 3, then item 1 (the most recent)
    # profile = 0.5**(1/5) * v3 + 1.0 * v1, normalised
    w_old = 0.5 ** (1 / 5)
    prof = np.array([0.0, 1.0, w_old]) / np.hypot(1.0, w_old)
    np.testing.assert_allclose(profile_vector(ITEMS, history), prof, rtol=1e-6)
    q = np.array(unit(1, 0.2, 0))
    want = 0.7 * (ITEMS @ q) + 0.3 * (ITEMS @ prof)
    items, scores = semantic_search("q", ITEMS, ENC, k=4, user_history=history)
    assert items.tolist() == list(np.argsort(-want, kind="stable"))
    np.testing.assert_allclose(scores, want[items], rtol=1e-5)
    # a strong taste overturns the query's first choice: item 1 beats item 0 at w = 0.9
    items, _ = semantic_search("q", ITEMS, ENC, k=4, user_history=history, personal_weight=0.9)
    assert items[0] == 1
    # exclude_history drops the history items, keeping the order of the rest
    items, _ = semantic_search("q", ITEMS, ENC, k=4, user_history=history, exclude_history=True)
    assert set(items.tolist()) == {0, 2}


def test_a_text_query_finds_the_item_whose_text_matches() -> None:
    data = tiny_dataset(0)
    enc = keyword_encoder(512)
    vectors = enc.encode_items(item_texts(data))
    titles = data.item_titles()
    for i in (3, 14, 27, 36):
        items, _ = semantic_search(str(titles[i]).lower(), vectors, enc, k=3)
        assert items[0] == i, f"query '{titles[i]}' found '{titles[items[0]]}' first"


def test_bad_queries_are_refused() -> None:
    with pytest.raises(ConfigError, match="empty"):
        semantic_search("  ", ITEMS, ENC)
    with pytest.raises(ConfigError, match="personal_weight"):
        semantic_search("q", ITEMS, ENC, user_history=np.array([1]), personal_weight=1.5)
