"""Extra item modalities (e.g. precomputed image vectors) and their fusion with text vectors.

`load_item_vectors` reads vectors keyed by external item id from `.npy` / `.npz` /
`.parquet` files and aligns them to a `Vocabulary`, flagging items without a vector
(never silently inventing one). `ConcatFusion` and `GatedFusion` are small PyTorch modules
that merge a text vector with such an extra vector into one item representation; items
whose extra vector is missing fall back to the text path.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from recsage.data.vocab import Vocabulary
from recsage.errors import ConfigError, DataError

FUSIONS = ("concat", "gated")
_VECTOR_COLUMNS = ("vector", "embedding", "vectors", "embeddings")


def _read_ids(ids: Sequence[object] | np.ndarray | str | Path) -> np.ndarray:
    """Ids from a sequence, or from a `.npy` array / text file with one id per line."""
    if isinstance(ids, str | Path):
        path = Path(ids)
        if not path.is_file():
            raise DataError("id file not found", path=str(path))
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.asarray([ln.strip() for ln in path.read_text().splitlines() if ln.strip()])
        return np.asarray(arr).astype(str).astype(object)
    return np.asarray(ids).astype(str).astype(object)


def _sibling_ids(path: Path) -> Path | None:
    for suffix in (".ids.npy", ".ids.txt"):
        cand = path.with_name(path.name[: -len(path.suffix)] + suffix)
        if cand.is_file():
            return cand
    return None


def _read_parquet(
    path: Path, id_column: str, vector_column: str | None
) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_parquet(path)
    if id_column not in frame.columns:
        raise DataError(
            f"missing id column '{id_column}' (found: {', '.join(map(str, frame.columns))})",
            path=str(path),
            column=id_column,
        )
    ids = frame[id_column].astype(str).to_numpy(dtype=object)
    col = vector_column or next((c for c in _VECTOR_COLUMNS if c in frame.columns), None)
    if col is not None:
        if col not in frame.columns:
            raise DataError(f"missing vector column '{col}'", path=str(path), column=col)
        cells = frame[col].tolist()
        lengths = {len(c) for c in cells if c is not None}
        if len(lengths) > 1:
            raise DataError(
                f"vectors have different lengths {sorted(lengths)}", path=str(path), column=col
            )
        dim = lengths.pop() if lengths else 0
        vectors = np.full((len(cells), dim), np.nan, np.float32)
        for i, c in enumerate(cells):
            if c is not None:
                vectors[i] = np.asarray(c, dtype=np.float32)
        return ids, vectors
    numeric = [c for c in frame.columns if c != id_column]
    bad = [c for c in numeric if not pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric or bad:
        raise DataError(
            f"expected a list column ({' / '.join(_VECTOR_COLUMNS)}) or only numeric columns "
            f"besides '{id_column}'"
            + (f"; non-numeric: {', '.join(map(str, bad))}" if bad else ""),
            path=str(path),
        )
    return ids, frame[numeric].to_numpy(dtype=np.float32)


def load_item_vectors(
    path: str | Path,
    items: Vocabulary,
    *,
    ids: Sequence[object] | np.ndarray | str | Path | None = None,
    id_column: str = "item_id",
    vector_column: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors aligned to `items`: (matrix (n_items, d) float32, mask (n_items,) bool).

    Formats: `.npy` (2-D array; ids from `ids=`, or a sibling `<name>.ids.npy` /
    `<name>.ids.txt`), `.npz` (arrays `ids` and `vectors`), `.parquet` (`id_column` plus a
    list column `vector`/`embedding`, or one numeric column per dimension). `mask` is False
    (and the row zero) for catalogue items without a vector or with a non-finite one. Ids
    not in the catalogue are ignored with a warning that counts them; duplicated ids raise.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("item vector file not found", path=str(path))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        vectors = np.load(path, allow_pickle=False)
        if ids is None:
            sib = _sibling_ids(path)
            if sib is None:
                raise DataError(
                    "a .npy vector file needs its item ids: pass ids=... or put them next to it "
                    f"as {path.stem}.ids.npy / {path.stem}.ids.txt (one id per row)",
                    path=str(path),
                )
            ids = sib
        file_ids = _read_ids(ids)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "vectors" not in z or ("ids" not in z and ids is None):
                raise DataError(
                    "a .npz vector file needs arrays 'ids' and 'vectors'", path=str(path)
                )
            vectors = z["vectors"]
            file_ids = _read_ids(ids if ids is not None else z["ids"])
    elif suffix == ".parquet":
        file_ids, vectors = _read_parquet(path, id_column, vector_column)
        if ids is not None:
            file_ids = _read_ids(ids)
    else:
        raise DataError(
            f"unsupported item vector format '{suffix}' (use .npy, .npz or .parquet)",
            path=str(path),
        )
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise DataError(f"expected a 2-D vector array, got shape {vectors.shape}", path=str(path))
    if len(file_ids) != len(vectors):
        raise DataError(f"{len(file_ids)} ids for {len(vectors)} vectors", path=str(path))
    uniq, counts = np.unique(file_ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise DataError(f"item id '{uniq[counts > 1][0]}' appears more than once", path=str(path))
    rows = items.lookup(file_ids)
    unknown = int((rows < 0).sum())
    if unknown:
        warnings.warn(
            f"{path}: {unknown:,} of {len(rows):,} vectors belong to items not in the catalogue "
            "(ignored)",
            stacklevel=2,
        )
    matrix = np.zeros((len(items), vectors.shape[1]), np.float32)
    mask = np.zeros(len(items), bool)
    known = rows >= 0
    finite = np.isfinite(vectors).all(axis=1)
    take = known & finite
    matrix[rows[take]] = vectors[take]
    mask[rows[take]] = True
    return matrix, mask


class ConcatFusion(nn.Module):
    """Concatenate [text, extra * present, present] and project: one linear layer."""

    def __init__(self, text_dim: int, extra_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(text_dim + extra_dim + 1, out_dim)

    def forward(
        self, text: torch.Tensor, extra: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        p = present.to(text.dtype).unsqueeze(-1)
        return self.proj(torch.cat([text, extra * p, p], dim=-1))


class GatedFusion(nn.Module):
    """Project each modality to `out_dim` and mix them with a learned per-dimension gate.

    out = g * T(text) + (1 - g) * E(extra), g = sigmoid(W [T(text); E(extra)]); items
    without an extra vector get g = 1 (pure text path). `last_gate` keeps the gate of the
    latest call for inspection.
    """

    def __init__(self, text_dim: int, extra_dim: int, out_dim: int) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_dim, out_dim)
        self.extra_proj = nn.Linear(extra_dim, out_dim)
        self.gate = nn.Linear(2 * out_dim, out_dim)
        self.last_gate: torch.Tensor | None = None

    def forward(
        self, text: torch.Tensor, extra: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        t = self.text_proj(text)
        e = self.extra_proj(extra)
        g = torch.sigmoid(self.gate(torch.cat([t, e], dim=-1)))
        g = torch.where(present.unsqueeze(-1), g, torch.ones_like(g))
        self.last_gate = g.detach()
        return g * t + (1 - g) * e


def make_fusion(kind: str, text_dim: int, extra_dim: int, out_dim: int) -> nn.Module:
    """A fusion module by name: "concat" or "gated"."""
    if kind == "concat":
        return ConcatFusion(text_dim, extra_dim, out_dim)
    if kind == "gated":
        return GatedFusion(text_dim, extra_dim, out_dim)
    raise ConfigError(f"fusion must be one of {FUSIONS}, got {kind!r}")


__all__ = ["FUSIONS", "ConcatFusion", "GatedFusion", "load_item_vectors", "make_fusion"]
