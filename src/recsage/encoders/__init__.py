"""Encoders: item/user text and behaviour -> float32 vectors with a cache-keying fingerprint.

Heavy libraries (torch, sentence-transformers) load only when a model is first used;
`recsage.encoders.user` (numpy) and `recsage.encoders.fusion` (torch) are imported directly.
"""

from __future__ import annotations

from recsage.encoders.cache import EmbeddingCache
from recsage.encoders.templates import ItemTextTemplate, TextTemplate, UserTextTemplate
from recsage.encoders.text import (
    ENCODER_VERSION,
    CacheStats,
    TextEncoder,
    default_model_path,
    encode_dataset_items,
)

__all__ = [
    "ENCODER_VERSION",
    "CacheStats",
    "EmbeddingCache",
    "ItemTextTemplate",
    "TextEncoder",
    "TextTemplate",
    "UserTextTemplate",
    "default_model_path",
    "encode_dataset_items",
]
