"""Data layer: columnar interactions, vocabularies, and loaders that validate at the edge."""

from __future__ import annotations

from recsage.data.loaders import (
    KNOWN_DATASETS,
    load_amazon_unisrec,
    load_dataset,
    load_ml1m,
    load_ml100k,
    load_recbole_atomic,
    load_sequences,
    load_table,
    shared_data_dir,
)
from recsage.data.schema import Dataset, Interactions, LoadReport
from recsage.data.vocab import Vocabulary

__all__ = [
    "KNOWN_DATASETS",
    "Dataset",
    "Interactions",
    "LoadReport",
    "Vocabulary",
    "load_amazon_unisrec",
    "load_dataset",
    "load_ml1m",
    "load_ml100k",
    "load_recbole_atomic",
    "load_sequences",
    "load_table",
    "shared_data_dir",
]
