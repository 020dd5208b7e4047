"""Dataset names and paths -> loaders (`load_dataset`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from recsage.data.schema import Dataset
from recsage.data.sources.amazon import load_amazon_unisrec
from recsage.data.sources.movielens import load_ml1m, load_ml100k
from recsage.data.sources.readers import TABLE_SUFFIXES, shared_data_dir
from recsage.data.sources.recbole import load_recbole_atomic
from recsage.data.sources.sequences import load_sequences
from recsage.data.sources.tables import load_table
from recsage.errors import DataError, RecsageError

__all__ = [
    "KNOWN_DATASETS",
    "load_amazon_unisrec",
    "load_dataset",
    "load_ml1m",
    "load_ml100k",
    "load_recbole_atomic",
    "load_sequences",
    "load_table",
    "shared_data_dir",
]


KNOWN_DATASETS: dict[str, str] = {
    "ml-100k": "MovieLens-100K (RecBole atomic files shipped in the recbole wheel)",
    "ml-1m": "MovieLens-1M sequences (SASRec version, shared data folder)",
    "amazon-scientific": "Amazon Industrial & Scientific, UniSRec format (shared data folder)",
}


_ALIASES = {"scientific": "amazon-scientific", "ml100k": "ml-100k", "ml1m": "ml-1m"}


def _unisrec_name(folder: Path) -> str | None:
    found = sorted(folder.glob("*.train.inter"))
    return found[0].name[: -len(".train.inter")] if found else None


def _atomic_name(folder: Path) -> str | None:
    found = sorted(
        p
        for p in folder.glob("*.inter")
        if not p.name.endswith((".train.inter", ".valid.inter", ".test.inter"))
    )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(
            f"several .inter files ({names}); load one with load_recbole_atomic", path=str(folder)
        )
    return found[0].name[: -len(".inter")] if found else None


def load_dataset(spec: str, **options: Any) -> Dataset:
    """A dataset by name (ml-100k, ml-1m, amazon-scientific) or by path.

    A folder with `*.train.inter` is UniSRec, with `*.inter` RecBole atomic, with
    `sequences/ml-1m.seq.txt` ML-1M; a `.txt` file is a sequence file; a table file
    (`.csv .tsv .parquet .jsonl .ndjson .json`) goes to `load_table(path, **options)`.
    """
    key = _ALIASES.get(spec.strip().lower(), spec.strip().lower())
    loaders: dict[str, Callable[[], Dataset]] = {
        "ml-100k": lambda: load_ml100k(**options),
        "ml-1m": lambda: load_ml1m(**options),
        "amazon-scientific": lambda: load_amazon_unisrec(
            options.pop("root", None) or shared_data_dir() / "amazon-scientific", **options
        ),
    }
    if key in loaders:
        return loaders[key]()
    path = Path(spec).expanduser()
    if path.is_dir():
        uni = _unisrec_name(path)
        if uni is not None:
            return load_amazon_unisrec(path, uni)
        atomic = _atomic_name(path)
        if atomic is not None:
            return load_recbole_atomic(path, atomic)
        if (path / "sequences" / "ml-1m.seq.txt").is_file():
            return load_ml1m(path)
        raise DataError(
            "folder holds no *.inter (RecBole / UniSRec) or sequences/ml-1m.seq.txt files",
            path=str(path),
        )
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".txt":
            return load_sequences(path, **options)
        if suffix in TABLE_SUFFIXES:
            return load_table(path, **options)
        raise DataError(
            f"unsupported file type '{suffix}' (use .txt sequences or {', '.join(TABLE_SUFFIXES)})",
            path=str(path),
        )
    known = ", ".join(f"{k} ({v})" for k, v in KNOWN_DATASETS.items())
    raise RecsageError(
        f"unknown dataset '{spec}': not a known name or an existing path. Known names: {known}"
    )
