"""Merging channel lists and the stateless stages, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recsage.errors import ConfigError
from recsage.ranking.stages.base import StageContext
from recsage.ranking.stages.registry import create_stage
from recsage.retrieval.merge import merge_channels
from recsage.types import CandidateBatch, history_matrix

NAN = np.nan


def _two_channels():
    a = ("a", np.array([[5, 3, 1], [2, -1, -1]]), np.array([[0.9, 0.8, 0.7], [0.5, NAN, NAN]]))
    b = ("b", np.array([[3, 7], [4, 2]]), np.array([[0.6, 0.4], [0.3, 0.2]]))
    return [a, b]


def test_merge_interleaves_by_rank_dedupes_and_keeps_provenance() -> None:
    m = merge_channels(_two_channels(), max_candidates=10)
    # row 0 priorities (rank * 2 + channel): 5:0, 3:min(2, 1)=1, 7:3, 1:4
    assert m.items.tolist() == [[5, 3, 7, 1], [2, 4, -1, -1]]
    assert m.row_sources(0, 1) == ["a", "b"]  # item 3 found by both
    assert m.row_sources(0, 2) == ["b"]
    np.testing.assert_allclose(m.scores["a"][0], [0.9, 0.8, NAN, 0.7])
    np.testing.assert_allclose(m.scores["b_rank"][1], [1, 0, NAN, NAN])


def test_merge_quotas_and_cap() -> None:
    m = merge_channels(_two_channels(), max_candidates=2, quotas={"a": 1})
    assert m.items.tolist() == [[5, 3], [2, 4]]


def test_rrf_by_hand() -> None:
    m = merge_channels(_two_channels(), max_candidates=10)
    out = create_stage({"name": "p", "kind": "rrf", "keep": 3, "k": 1.0}).apply(m, StageContext())
    # row 0: 5: 1/1, 3: 1/2 + 1/1 = 1.5, 7: 1/2, 1: 1/3 -> order 3, 5, 7
    assert out.items[0].tolist() == [3, 5, 7]
    assert out.scores["p"][0] == pytest.approx([1.5, 1.0, 0.5])


def test_mmr_category_cap_and_diversity() -> None:
    cands = CandidateBatch(
        np.array([[0, 1, 2, 3]]), {"s": np.array([[4.0, 3.0, 2.0, 1.0]], np.float32)}
    )
    cats = np.array([1, 1, 1, 2])
    capped = create_stage({"name": "m", "kind": "mmr", "keep": 3, "lambda": 1.0,
                           "category_cap": 2})  # fmt: skip
    out = capped.apply(cands, StageContext(item_category=cats))
    assert out.items[0].tolist() == [0, 1, 3]  # the third category-1 item is capped
    vecs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    cands = CandidateBatch(
        np.array([[0, 1, 2, 3]]), {"s": np.array([[4.0, 3.9, 3.0, 1.0]], np.float32)}
    )
    div = create_stage({"name": "m", "kind": "mmr", "keep": 2, "lambda": 0.5})
    out = div.apply(cands, StageContext(item_vectors=vecs))
    # item 1 duplicates item 0's vector; MMR takes the orthogonal item 2 second
    assert out.items[0].tolist() == [0, 2]


def test_to_score_matrix_marks_non_candidates_missing() -> None:
    c = CandidateBatch(np.array([[2, 0, -1]]))
    m = c.to_score_matrix(4)
    assert m[0, 2] > m[0, 0] > -np.inf
    assert np.isneginf(m[0, [1, 3]]).all()


def test_history_matrix_recency() -> None:
    h = history_matrix([np.array([3, 1]), np.array([], np.int64)], 4, half_life=1.0).toarray()
    assert h[0].tolist() == [0.0, 1.0, 0.0, 0.5]
    assert h[1].sum() == 0


def test_unknown_stage_and_parameters() -> None:
    with pytest.raises(ConfigError, match="unknown kind"):
        create_stage({"name": "x", "kind": "nope"})
    with pytest.raises(ConfigError, match="valid: k, weights"):
        create_stage({"name": "x", "kind": "rrf", "kk": 1})
