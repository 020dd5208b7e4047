"""Conformance suites a component imports to prove it keeps its contract.

Each suite is a pytest base class (not collected itself: its name does not start with
``Test``); a test module subclasses it as ``Test…`` and says how to make the component:

- `ChannelTests` (retrieval channels): `make_channel()`, optional `make_resources(data)`.
- `StageTests` (ranking stages): `make_stage(data)`.
- `RecommenderTests` (models): `make_model()`.
- `EncoderTests` (text / user encoders): `make_encoder()`, `inputs()`, `encode(...)`.
- `VectorIndexTests` (ANN indexes): `make_index()`.

`tiny_dataset(seed)` is the small synthetic dataset they run on: planted topics (titles
and categories), within-topic sequential walks, real timestamps. The suites need pytest.
"""

from __future__ import annotations

from recsage.testing.channels import ChannelTests, channel_roundtrip, fit_channel
from recsage.testing.checks import assert_no_history_items, assert_ranked_lists, recall_at_k
from recsage.testing.data import (
    TOPIC_WORDS,
    item_texts,
    keyword_encoder,
    planted_topics,
    query_batch,
    text_resources,
    tiny_dataset,
    user_topics,
)
from recsage.testing.encoders import EncoderTests
from recsage.testing.indexes import VectorIndexTests, exact_top_k
from recsage.testing.models import RecommenderTests
from recsage.testing.stages import StageTests, stage_inputs, train_learned_stage

__all__ = [
    "TOPIC_WORDS",
    "ChannelTests",
    "EncoderTests",
    "RecommenderTests",
    "StageTests",
    "VectorIndexTests",
    "assert_no_history_items",
    "assert_ranked_lists",
    "channel_roundtrip",
    "exact_top_k",
    "fit_channel",
    "item_texts",
    "keyword_encoder",
    "planted_topics",
    "query_batch",
    "recall_at_k",
    "stage_inputs",
    "text_resources",
    "tiny_dataset",
    "train_learned_stage",
    "user_topics",
]
