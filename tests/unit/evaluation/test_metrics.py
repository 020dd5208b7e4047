"""Metrics checked against hand-computed cases, including ties and multiple targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsage.metrics import (
    MISSED,
    catalogue_coverage,
    intra_list_diversity,
    metrics_from_positions,
    novelty,
    target_positions,
)
from recsage.types import top_k


def _targets(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [i for i, row in enumerate(rows) for _ in row]
    c = [j for row in rows for j in row]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def test_single_target_position_and_ties_count_against_target() -> None:
    scores = np.array(
        [
            [0.9, 0.5, 0.7, 0.1],  # target 2: only item 0 above -> position 1
            [0.5, 0.5, 0.5, 0.2],  # target 1 ties with items 0 and 2 -> both ahead -> 2
            [0.3, 0.2, 0.1, 0.4],  # target 3 is the best -> 0
        ]
    )
    eligible = np.ones_like(scores, dtype=bool)
    pos = target_positions(scores, _targets([[2], [1], [3]], 4), eligible)
    assert [p.tolist() for p in pos] == [[1], [2], [0]]


def test_excluded_items_do_not_count_and_excluded_target_is_missed() -> None:
    scores = np.array([[0.9, 0.5, 0.7, 0.1], [0.9, 0.5, 0.7, 0.1]])
    eligible = np.ones_like(scores, dtype=bool)
    eligible[0, 0] = False  # history item above the target no longer counts
    eligible[1, 2] = False  # the target itself is excluded
    pos = target_positions(scores, _targets([[2], [2]], 4), eligible)
    assert pos[0].tolist() == [0]
    assert pos[1].tolist() == [MISSED]


def test_single_target_metrics_by_hand() -> None:
    positions = [np.array([0]), np.array([3]), np.array([12])]
    m = metrics_from_positions(positions, (10,))
    assert m["hr@10"].tolist() == [1.0, 1.0, 0.0]
    assert m["ndcg@10"] == pytest.approx([1.0, 1 / math.log2(5), 0.0])
    assert m["mrr"] == pytest.approx([1.0, 0.25, 1 / 13])
    assert m["map@10"] == pytest.approx([1.0, 0.25, 0.0])
    assert m["precision@10"] == pytest.approx([0.1, 0.1, 0.0])


def test_multi_target_positions_and_metrics_by_hand() -> None:
    # items 0..5; targets {1, 4}; scores: 0:.9 1:.8 2:.8 3:.1 4:.95 5:.2
    scores = np.array([[0.9, 0.8, 0.8, 0.1, 0.95, 0.2]])
    eligible = np.ones_like(scores, dtype=bool)
    pos = target_positions(scores, _targets([[1, 4]], 6), eligible)
    # list: 4 (pos 0), 0 (1), 2 before 1 on the tie (2), 1 (3)
    assert pos[0].tolist() == [0, 3]
    m = metrics_from_positions(pos, (2, 5))
    assert m["hr@2"][0] == 1.0
    assert m["recall@2"][0] == 0.5
    assert m["precision@2"][0] == 0.5
    idcg2 = 1 + 1 / math.log2(3)
    assert m["ndcg@2"][0] == pytest.approx(1.0 / idcg2)
    assert m["ndcg@5"][0] == pytest.approx((1 + 1 / math.log2(5)) / idcg2)
    # AP@5 = (1/1 + 2/4) / 2
    assert m["map@5"][0] == pytest.approx(0.75)
    assert m["mrr"][0] == 1.0


def test_tied_targets_are_ordered_among_themselves() -> None:
    scores = np.array([[0.5, 0.5, 0.5]])
    pos = target_positions(scores, _targets([[0, 2]], 3), np.ones((1, 3), bool))
    # non-target item 1 ties with both and goes first; the two targets take 1 and 2
    assert pos[0].tolist() == [1, 2]


def test_top_k_respects_eligibility_and_pads() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7]])
    eligible = np.array([[True, False, True, True]])
    assert top_k(scores, eligible, 2).tolist() == [[3, 2]]
    eligible = np.array([[False, False, True, False]])
    assert top_k(scores, eligible, 3).tolist() == [[2, -1, -1]]


def test_beyond_accuracy_metrics_by_hand() -> None:
    lists = np.array([[0, 1], [1, 2]])
    assert catalogue_coverage(lists, 4) == 0.75
    pop = np.array([4, 2, 1, 0])
    nov = novelty(lists, pop, n_users=4)
    assert nov == pytest.approx([(0 + 1) / 2, (1 + 2) / 2])
    feats = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ild = intra_list_diversity(np.array([[0, 1], [0, 2], [0, -1]]), feats)
    assert ild == pytest.approx([0.0, 1.0, 0.0])
