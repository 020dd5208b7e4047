"""Assertions shared by the conformance suites (plain functions, usable on their own)."""

from __future__ import annotations

import numpy as np


def assert_ranked_lists(
    items: np.ndarray, scores: np.ndarray, *, n: int | None = None, what: str = "result"
) -> None:
    """(B, n) int64 item lists padded with -1 at the end, float32 scores that are finite
    and non-increasing on filled slots and NaN or -inf on empty ones, no duplicates."""
    assert isinstance(items, np.ndarray) and items.dtype == np.int64, (
        f"{what}: items must be an int64 array, got {getattr(items, 'dtype', type(items))}"
    )
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float32, (
        f"{what}: scores must be a float32 array, got {getattr(scores, 'dtype', type(scores))}"
    )
    assert items.ndim == 2 and items.shape == scores.shape, (
        f"{what}: items {items.shape} and scores {scores.shape} must be the same 2-D shape"
    )
    if n is not None:
        assert items.shape[1] == n, f"{what}: asked for {n} columns, got {items.shape[1]}"
    assert (items >= -1).all(), f"{what}: item ids below -1"
    valid = items >= 0
    # padding only at the end of a row: once a slot is empty, all later ones are
    assert not (valid[:, 1:] & ~valid[:, :-1]).any(), f"{what}: -1 padding before an item"
    assert np.isfinite(scores[valid]).all(), f"{what}: non-finite score on a filled slot"
    pad = scores[~valid]
    assert (np.isnan(pad) | np.isneginf(pad)).all(), f"{what}: empty slots need NaN or -inf"
    for r in range(items.shape[0]):
        row = items[r][valid[r]]
        assert len(np.unique(row)) == len(row), f"{what}: row {r} repeats an item: {row}"
        s = scores[r][valid[r]]
        assert (np.diff(s) <= 1e-6 * np.maximum(1.0, np.abs(s[:-1]))).all(), (
            f"{what}: row {r} scores increase along the row: {s}"
        )


def assert_no_history_items(items: np.ndarray, histories: list[np.ndarray]) -> None:
    """No row returns an item of its own history."""
    for r, h in enumerate(histories):
        leaked = set(items[r][items[r] >= 0].tolist()) & {int(x) for x in h}
        assert not leaked, f"row {r} returned history items {sorted(leaked)}"


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row's true ids (ignoring -1) that `found` holds."""
    hits, total = 0, 0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        hits += len(set(f[f >= 0].tolist()) & set(t.tolist()))
        total += len(t)
    return hits / max(total, 1)
