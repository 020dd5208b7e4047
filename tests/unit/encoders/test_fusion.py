"""Extra item vectors: loading keyed by item id (missing items flagged) and fusion modules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsage.data.vocab import Vocabulary
from recsage.encoders.fusion import ConcatFusion, GatedFusion, load_item_vectors, make_fusion
from recsage.errors import ConfigError, DataError

ITEMS = Vocabulary(["a", "b", "c", "d"])


def test_npy_with_ids_argument_and_sibling_file(tmp_path) -> None:
    vecs = np.arange(6, dtype=np.float32).reshape(3, 2)
    path = tmp_path / "img.npy"
    np.save(path, vecs)
    with pytest.raises(DataError, match="needs its item ids"):
        load_item_vectors(path, ITEMS)
    with pytest.warns(UserWarning, match="1 of 3"):
        m, mask = load_item_vectors(path, ITEMS, ids=["c", "a", "zzz"])
    assert mask.tolist() == [True, False, True, False]
    assert m[0].tolist() == [2.0, 3.0] and m[2].tolist() == [0.0, 1.0]
    assert m[1].tolist() == [0.0, 0.0]
    (tmp_path / "img.ids.txt").write_text("d\nb\na\n")
    m2, mask2 = load_item_vectors(path, ITEMS)
    assert mask2.tolist() == [True, True, False, True]
    assert m2[3].tolist() == [0.0, 1.0]


def test_npz_and_bad_rows(tmp_path) -> None:
    path = tmp_path / "v.npz"
    vecs = np.array([[1.0, np.nan], [2.0, 2.0]], np.float32)
    np.savez(path, ids=np.array(["a", "b"]), vectors=vecs)
    m, mask = load_item_vectors(path, ITEMS)
    assert mask.tolist() == [False, True, False, False]  # NaN row counts as missing
    assert m[1].tolist() == [2.0, 2.0]
    np.savez(path, ids=np.array(["a", "a"]), vectors=vecs)
    with pytest.raises(DataError, match="more than once"):
        load_item_vectors(path, ITEMS)


def test_parquet_list_column_and_wide_columns(tmp_path) -> None:
    path = tmp_path / "v.parquet"
    frame = pd.DataFrame({"item_id": ["b", "d"], "embedding": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]})
    frame.to_parquet(path)
    m, mask = load_item_vectors(path, ITEMS)
    assert m.shape == (4, 3) and mask.tolist() == [False, True, False, True]
    assert m[3].tolist() == [4.0, 5.0, 6.0]
    wide = pd.DataFrame({"item_id": ["a"], "x0": [0.5], "x1": [1.5]})
    wide.to_parquet(path)
    m, mask = load_item_vectors(path, ITEMS)
    assert m.shape == (4, 2) and m[0].tolist() == [0.5, 1.5] and mask.sum() == 1
    pd.DataFrame({"id": ["a"], "x": [1.0]}).to_parquet(path)
    with pytest.raises(DataError, match="missing id column"):
        load_item_vectors(path, ITEMS)


def test_fusion_shapes_and_gating() -> None:
    torch.manual_seed(0)
    text, extra = torch.randn(5, 8), torch.randn(5, 3)
    present = torch.tensor([True, True, False, True, False])
    concat = ConcatFusion(8, 3, 4)
    assert concat(text, extra, present).shape == (5, 4)
    # a missing extra vector contributes nothing, whatever its stored values
    a = concat(text, extra, present)
    b = concat(text, extra * 100, present)
    assert torch.allclose(a[~present], b[~present])
    gated = GatedFusion(8, 3, 4)
    out = gated(text, extra, present)
    assert out.shape == (5, 4)
    g = gated.last_gate
    assert g is not None and g.shape == (5, 4)
    assert torch.all((g > 0) & (g <= 1))
    assert torch.all(g[~present] == 1.0)
    # gate 1 -> pure text projection
    assert torch.allclose(out[~present], gated.text_proj(text)[~present])
    assert isinstance(make_fusion("gated", 8, 3, 4), GatedFusion)
    with pytest.raises(ConfigError):
        make_fusion("sum", 8, 3, 4)
