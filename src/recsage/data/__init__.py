"""Data layer: columnar interactions, vocabularies, and loaders that validate at the edge."""

from __future__ import annotations

from recsage.data.schema import Dataset, Interactions, LoadReport
from recsage.data.sources.amazon import load_amazon_unisrec
from recsage.data.sources.movielens import load_ml1m, load_ml100k
from recsage.data.sources.recbole import load_recbole_atomic
from recsage.data.sources.registry import KNOWN_DATASETS, load_dataset, shared_data_dir
from recsage.data.sources.sequences import load_sequences
from recsage.data.sources.tables import load_table
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
