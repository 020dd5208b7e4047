"""User encoders against hand-computed examples (mean, recency, attention, combiner)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsage.encoders.user import (
    CombinedUserEncoder,
    HistoryUserEncoder,
    ProfileUserEncoder,
    attention_pool,
    combine_user_vectors,
    flatten_histories,
    mean_pool,
    recency_pool,
    recency_weights,
)
from recsage.errors import ConfigError, RecsageError

ITEMS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.0]], np.float32)


def test_mean_by_hand() -> None:
    out = mean_pool(
        ITEMS, [np.array([0, 1]), np.array([3]), np.array([], np.int64)], normalize=False
    )
    assert out.tolist() == [[0.5, 0.5], [3.0, 0.0], [0.0, 0.0]]
    unit = mean_pool(ITEMS, [[0, 1]])
    assert unit[0] == pytest.approx([2**-0.5, 2**-0.5])


def test_csr_and_lists_agree() -> None:
    csr = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1]], np.float32))
    a = mean_pool(ITEMS, csr, normalize=False)
    b = mean_pool(ITEMS, [[0, 1], [2, 3]], normalize=False)
    assert a == pytest.approx(b)


def test_recency_weights_by_hand() -> None:
    # ages 2, 1, 0 with half-life 1 -> weights 1/4, 1/2, 1
    assert recency_weights(np.array([3]), 1.0).tolist() == [0.25, 0.5, 1.0]
    out = recency_pool(ITEMS, [[0, 1, 3]], half_life=1.0, normalize=False)
    expected = (0.25 * ITEMS[0] + 0.5 * ITEMS[1] + 1.0 * ITEMS[3]) / 1.75
    assert out[0] == pytest.approx(expected)
    # a huge half-life is the plain mean; order matters otherwise
    assert recency_pool(ITEMS, [[0, 1]], half_life=1e9, normalize=False)[0] == pytest.approx(
        [0.5, 0.5]
    )
    assert recency_pool(ITEMS, [[1, 0]], half_life=1.0)[0, 0] > 0.8


def test_last_keeps_newest() -> None:
    items, offsets = flatten_histories([[0, 1, 2], [3]], last=2)
    assert items.tolist() == [1, 2, 3] and offsets.tolist() == [0, 2, 3]
    assert mean_pool(ITEMS, [[3, 0, 1]], last=2, normalize=False)[0].tolist() == [0.5, 0.5]


def test_attention_by_hand() -> None:
    # parameter-free: query = unit mean of [e0, e0, e1] = (2, 1)/sqrt(5)
    hist = [[0, 0, 1]]
    q = np.array([2.0, 1.0]) / np.sqrt(5)
    sims = np.array([q[0], q[0], q[1]])
    w = np.exp(sims / 0.5)
    w /= w.sum()
    expected = w[0] * ITEMS[0] + w[1] * ITEMS[0] + w[2] * ITEMS[1]
    out = attention_pool(ITEMS, hist, temperature=0.5, normalize=False)
    assert out[0] == pytest.approx(expected, rel=1e-5)
    # an explicit query picks the matching item; low temperature -> nearly one-hot
    picked = attention_pool(ITEMS, [[0, 1]], query=np.array([0.0, 1.0]), temperature=0.01)
    assert picked[0] == pytest.approx([0.0, 1.0], abs=1e-6)
    assert attention_pool(ITEMS, [[]])[0].tolist() == [0.0, 0.0]


def test_history_encoder_batches_match() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(30, 8)).astype(np.float32)
    hists = [rng.integers(0, 30, size=rng.integers(0, 7)) for _ in range(25)]
    for pooling in ("mean", "recency", "attention"):
        big = HistoryUserEncoder(vecs, pooling=pooling, batch_size=1000).encode(hists)
        small = HistoryUserEncoder(vecs, pooling=pooling, batch_size=4).encode(hists)
        assert big.shape == (25, 8)
        assert big == pytest.approx(small, abs=1e-6)


def test_errors() -> None:
    with pytest.raises(ConfigError):
        HistoryUserEncoder(ITEMS, pooling="max")
    with pytest.raises(RecsageError, match="out of range"):
        mean_pool(ITEMS, [[7]])
    with pytest.raises(ConfigError):
        recency_pool(ITEMS, [[0]], half_life=0.0)


def test_combiner_weights_and_missing_views() -> None:
    a = np.array([[2.0, 0.0], [0.0, 0.0]], np.float32)
    b = np.array([[0.0, 5.0], [0.0, 3.0]], np.float32)
    out = combine_user_vectors([a, b], [3.0, 1.0])
    assert out[0] == pytest.approx(np.array([3.0, 1.0]) / np.sqrt(10))
    assert out[1] == pytest.approx([0.0, 1.0])  # view a is empty for this user
    combo = CombinedUserEncoder([HistoryUserEncoder(ITEMS), HistoryUserEncoder(ITEMS)])
    assert combo.encode([[0]])[0] == pytest.approx([1.0, 0.0])


class _FakeTextEncoder:
    dim = 3

    def encode_queries(self, texts: list[str], **_: object) -> np.ndarray:
        return np.array([[len(t), 1.0, 0.0] for t in texts], np.float32)


def test_profile_encoder_renders_and_skips_empty() -> None:
    import pandas as pd

    enc = ProfileUserEncoder(_FakeTextEncoder())  # type: ignore[arg-type]
    table = pd.DataFrame({"age": [24, None], "gender": ["M", None]})
    texts = enc.render(table)
    assert texts[0] == "A 24-year-old male" and texts[1] == ""
    vecs = enc.encode(table)
    assert np.linalg.norm(vecs[0]) == pytest.approx(1.0)
    assert vecs[1].tolist() == [0.0, 0.0, 0.0]
