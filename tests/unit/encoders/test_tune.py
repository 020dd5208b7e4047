"""Contrastive tuning of the text encoder on co-occurring items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsage.encoders.text import TextEncoder
from recsage.encoders.tune import cooccurrence_pairs, tune_encoder
from recsage.errors import ConfigError, RecsageError


def test_pairs_are_the_items_that_follow_within_the_window() -> None:
    seqs = [np.array([1, 2, 2, 3]), np.array([5]), np.array([4, 1])]
    got = sorted(map(tuple, cooccurrence_pairs(seqs, window=1).tolist()))
    assert got == [(1, 2), (2, 3), (4, 1)]  # (2, 2) is no pair; a 1-item history has none
    got2 = sorted(map(tuple, cooccurrence_pairs(seqs, window=2).tolist()))
    assert got2 == [(1, 2), (1, 2), (2, 3), (2, 3), (4, 1)]
    sample = cooccurrence_pairs(seqs, window=2, max_pairs=3, seed=1)
    assert len(sample) == 3 and {tuple(p) for p in sample} <= set(got2)
    with pytest.raises(ConfigError, match="window"):
        cooccurrence_pairs(seqs, window=0)


def test_tuning_pulls_co_occurring_texts_together(tmp_path: Path) -> None:
    # items 0..7 and 8..15 are unrelated words; every pair (i, i + 8) co-occurs
    words = ["apple", "river", "guitar", "planet", "violin", "forest", "rocket", "castle",
             "tax", "oxygen", "lizard", "carpet", "poem", "engine", "glacier", "soup"]  # fmt: skip
    pairs = np.array([(i, i + 8) for i in range(8)] * 8)

    def paired_cos(folder: Path | None) -> float:
        enc = TextEncoder(folder, threads=1) if folder else TextEncoder(threads=1)
        v = enc.encode_items(words)
        return float(np.mean([v[i] @ v[i + 8] for i in range(8)]))

    before = paired_cos(None)
    rec = tune_encoder(words, pairs, tmp_path / "enc", epochs=4, batch_size=8, lr=1e-4,
                       warmup=0.0)  # fmt: skip
    after = paired_cos(tmp_path / "enc")
    assert after > before + 0.1
    assert rec["pairs"] == 64 and rec["history"][-1]["loss"] < rec["history"][0]["loss"]
    with pytest.raises(RecsageError, match="fewer than one batch"):
        tune_encoder(words, pairs[:4], tmp_path / "x", batch_size=8)
    with pytest.raises(RecsageError, match="without a text"):
        tune_encoder(words[:4], pairs, tmp_path / "x", batch_size=8)
