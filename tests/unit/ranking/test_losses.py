"""Grouped ranking losses and NDCG against small examples worked out by hand."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from recsage.errors import DataError
from recsage.ranking import (
    LOSSES,
    group_layout,
    group_offsets,
    grouped_ndcg,
    lambda_loss,
    listwise_softmax,
    pad_groups,
    pairwise_bpr,
    pairwise_ranknet,
    pointwise_bce,
)

LN2, LN3, LN4 = math.log(2.0), math.log(3.0), math.log(4.0)


def t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def g(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def test_layout_pads_contiguous_groups() -> None:
    group = g([7, 7, 7, 3, 3, 9])
    lay = group_layout(group)
    assert (lay.n_groups, lay.max_len) == (3, 3)
    padded = pad_groups(t([1, 2, 3, 4, 5, 6]), lay, fill=-1.0)
    assert padded.tolist() == [[1, 2, 3], [4, 5, -1], [6, -1, -1]]
    assert lay.mask.tolist() == [[True] * 3, [True, True, False], [True, False, False]]
    assert group_offsets(group.numpy()).tolist() == [0, 3, 5, 6]


def test_pointwise_bce_by_hand() -> None:
    # group 0: logits 0 and ln 3 (p = 1/2, 3/4), labels 1, 0 -> ln 2, -ln(1 - 3/4) = ln 4
    # group 1: logit -ln 3 (p = 1/4), label 1 -> -ln(1/4) = ln 4
    scores = t([0.0, LN3, -LN3])
    loss = pointwise_bce(scores, t([1, 0, 1]), g([0, 0, 1]))
    assert pytest.approx(1.1552453009332422) == (LN2 + 2 * LN4) / 3
    assert float(loss) == pytest.approx(1.1552453009332422, abs=1e-6)


def test_pairwise_bpr_by_hand() -> None:
    # group 0: s = (2, 1, 0), y = (1, 0, 0): pairs s+ - s- = 1 and 2
    # group 1: s = (0.5, 1.5), y = (0, 1): one pair, 1.5 - 0.5 = 1
    # -log σ(1) = 0.31326168751822286, -log σ(2) = 0.1269280110429725
    loss = pairwise_bpr(t([2, 1, 0, 0.5, 1.5]), t([1, 0, 0, 0, 1]), g([0, 0, 0, 1, 1]))
    expected = (0.31326168751822286 * 2 + 0.1269280110429725) / 3
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.25115046202647273)


def test_pairwise_ranknet_uses_grades_by_hand() -> None:
    # group 0: s = (0, 1, 3), y = (2, 1, 0): ordered pairs (0,1) -> -1, (0,2) -> -3, (1,2) -> -2
    # group 1: s = (0.5, 1.5), y = (0, 1): pair (1,0) -> +1
    # -log σ(-1) = 1.3132616875182228, -log σ(-3) = 3.048587351573742,
    # -log σ(-2) = 2.1269280110429727, -log σ(1) = 0.31326168751822286
    loss = pairwise_ranknet(t([0, 1, 3, 0.5, 1.5]), t([2, 1, 0, 0, 1]), g([0, 0, 0, 1, 1]))
    expected = 1.3132616875182228 + 3.048587351573742 + 2.1269280110429727 + 0.31326168751822286
    assert float(loss) == pytest.approx(expected / 4, abs=1e-6)
    # BPR only sees positive-vs-zero pairs: (0,2), (1,2) and group 1's pair
    bpr = pairwise_bpr(t([0, 1, 3, 0.5, 1.5]), t([2, 1, 0, 0, 1]), g([0, 0, 0, 1, 1]))
    expected_bpr = (3.048587351573742 + 2.1269280110429727 + 0.31326168751822286) / 3
    assert float(bpr) == pytest.approx(expected_bpr, abs=1e-6)


def test_listwise_softmax_by_hand() -> None:
    # group 0: s = (0, ln 3) -> softmax (1/4, 3/4); y = (1, 0) -> target (1, 0): -ln(1/4) = ln 4
    # group 1: s = (0, 0, 0) -> (1/3,)*3; y = (1, 1, 0) -> (1/2, 1/2, 0): ln 3
    loss = listwise_softmax(t([0, LN3, 0, 0, 0]), t([1, 0, 1, 1, 0]), g([4, 4, 9, 9, 9]))
    assert float(loss) == pytest.approx((LN4 + LN3) / 2, abs=1e-6)
    assert pytest.approx(1.2424533248940002) == (LN4 + LN3) / 2


def test_lambda_loss_by_hand() -> None:
    # Weights |Δgain| * |Δdiscount| / IDCG (gain 2^y - 1, discount 1/log2(rank + 2)), IDCG = 1.
    # group 0: s = (1, 2), y = (1, 0): ranked (row1, row0); swap moves the positive from
    #   discount 1/log2(3) = 0.6309297535714575 to 1: weight 0.36907024642854247,
    #   pair loss -log σ(1 - 2) = 1.3132616875182228
    # group 1: s = (0.5, 0, -1), y = (1, 0, 0): ranked as is, discounts (1, 0.63093, 0.5)
    #   pair (0,1): weight 0.36907024642854247, loss -log σ(0.5) = 0.4740769841801067
    #   pair (0,2): weight 0.5,                 loss -log σ(1.5) = 0.2014132779827524
    g0 = 0.36907024642854247 * 1.3132616875182228
    g1 = 0.36907024642854247 * 0.4740769841801067 + 0.5 * 0.2014132779827524
    loss = lambda_loss(t([1, 2, 0.5, 0, -1]), t([1, 0, 1, 0, 0]), g([0, 0, 1, 1, 1]))
    assert float(loss) == pytest.approx((g0 + g1) / 2, abs=1e-6)
    assert (g0 + g1) / 2 == pytest.approx(0.38018008150317123)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_flow_and_push_positives_up(name: str) -> None:
    scores = t([0.3, -0.2, 0.1, 0.0, 0.4]).requires_grad_()
    labels = t([0, 1, 0, 1, 0])
    loss = LOSSES[name](scores, labels, g([0, 0, 0, 1, 1]))
    loss.backward()
    assert scores.grad is not None
    grad = scores.grad.numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    assert (grad[[1, 3]] < 0).all() and (grad[[0, 2, 4]] > 0).all()  # descent raises positives


@pytest.mark.parametrize("fn", [pairwise_bpr, pairwise_ranknet, listwise_softmax, lambda_loss])
def test_groups_without_positives_add_nothing(fn: Callable[..., torch.Tensor]) -> None:
    base = fn(t([2, 1, 0.5, 1.5]), t([1, 0, 0, 1]), g([0, 0, 1, 1]))
    more = fn(t([2, 1, 0.5, 1.5, 9, -9]), t([1, 0, 0, 1, 0, 0]), g([0, 0, 1, 1, 2, 2]))
    assert float(more) == pytest.approx(float(base), abs=1e-6)
    scores = t([1, 2, 3]).requires_grad_()
    none = fn(scores, t([0, 0, 0]), g([0, 0, 1]))
    none.backward()
    assert none.item() == 0.0 and scores.grad is not None


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_do_not_depend_on_group_order(name: str) -> None:
    rng = np.random.default_rng(0)
    sizes = [5, 3, 7, 1, 4]
    scores = rng.normal(size=sum(sizes)).astype(np.float32)
    labels = (rng.random(sum(sizes)) < 0.4).astype(np.float32)
    group = np.repeat(np.arange(len(sizes)), sizes)
    perm = np.concatenate([np.flatnonzero(group == k) for k in [3, 0, 4, 2, 1]])
    a = LOSSES[name](torch.from_numpy(scores), torch.from_numpy(labels), torch.from_numpy(group))
    b = LOSSES[name](torch.from_numpy(scores[perm]), torch.from_numpy(labels[perm]), group[perm])
    assert float(a) == pytest.approx(float(b), abs=1e-6)


def test_non_contiguous_groups_are_rejected() -> None:
    with pytest.raises(DataError, match="contiguous"):
        pairwise_bpr(t([1, 2, 3]), t([1, 0, 1]), g([0, 1, 0]))
    with pytest.raises(DataError, match="group 0 appears in separate runs"):
        grouped_ndcg(np.array([1.0, 2, 3]), np.array([1.0, 0, 1]), np.array([0, 1, 0]))


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(DataError, match="same length"):
        listwise_softmax(t([1, 2, 3]), t([1, 0]), g([0, 0, 0]))
    with pytest.raises(DataError, match="same length"):
        grouped_ndcg(np.zeros(3), np.zeros(3), np.zeros(2, dtype=np.int64))


def test_grouped_ndcg_by_hand() -> None:
    scores = np.array([3.0, 2.0, 1.0, 1.0, 2.0, 0.0, 5.0, 4.0])
    labels = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    group = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    # group 0: positive at rank 2 -> 1/log2(3) = 0.6309297535714575, IDCG = 1
    # group 1: ranking (row4, row3, row5): DCG = 1/log2(3) + 1/log2(4), IDCG = 1 + 1/log2(3)
    #          -> 1.1309297535714575 / 1.6309297535714575 = 0.6934264036172708
    # group 2: no positive -> left out of the mean
    assert grouped_ndcg(scores, labels, group, k=10) == pytest.approx(0.6621780785943642)
    assert grouped_ndcg(scores, labels, group, k=1) == 0.0
    # ties are broken against the relevant row: constant scores put it last
    assert grouped_ndcg(np.ones(3), np.array([0.0, 0, 1]), np.zeros(3, np.int64)) == 0.5
    assert math.isnan(grouped_ndcg(np.ones(2), np.zeros(2), np.zeros(2, np.int64)))
