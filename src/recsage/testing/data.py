"""Tiny synthetic data for conformance suites: planted topics, sequential walks, item text.

`tiny_dataset(seed)` builds a small `Dataset` whose structure every component can find:
items belong to one of a few planted topics (their titles use that topic's words, their
category is the topic's name), and each user walks the items of one topic in a fixed
cyclic order with a little noise from other topics. So co-occurrence, sequence, factor,
text and topic models all have a signal, and a test can check a result against the
planted topic without trusting any model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsage.data.schema import Dataset, Interactions
from recsage.data.vocab import Vocabulary
from recsage.types import QueryBatch

#: topic name -> ten words used in its item titles (distinct across topics)
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "Space": ("galaxy", "rocket", "astronaut", "planet", "orbit", "nebula", "starship",
              "comet", "asteroid", "telescope"),
    "Cooking": ("recipe", "kitchen", "chef", "baking", "pasta", "soup", "bread", "spice",
                "dessert", "grill"),
    "Ocean": ("ocean", "sailing", "pirate", "whale", "island", "reef", "harbor", "shipwreck",
              "dolphin", "lighthouse"),
    "Castle": ("castle", "knight", "dragon", "sword", "wizard", "kingdom", "quest", "throne",
               "armor", "sorcerer"),
    "Garden": ("garden", "flower", "tulip", "orchard", "seedling", "compost", "greenhouse",
               "rose", "meadow", "vineyard"),
    "Music": ("guitar", "violin", "orchestra", "melody", "drummer", "piano", "concert",
              "symphony", "saxophone", "choir"),
}  # fmt: skip

DAY = 86400.0


def tiny_dataset(
    seed: int = 0,
    *,
    n_users: int = 48,
    n_topics: int = 4,
    items_per_topic: int = 10,
    min_length: int = 6,
    max_length: int = 10,
    noise: float = 0.1,
) -> Dataset:
    """A small dataset with planted topics and cyclic within-topic walks.

    Item ``t * items_per_topic + j`` belongs to topic t; its title joins three of the
    topic's words, its `categories` is ``[topic name]`` and its `year` 1960 + 10 t + j
    (one decade per topic). User u prefers topic ``u % n_topics`` and starts at a random
    point of that topic's cycle;
    each next item is the cycle's successor, except that with probability `noise` it is a
    random item of another topic. No user sees an item twice. Interactions are one day
    apart (timestamps in seconds), so time-decayed channels see a real time axis.
    """
    if not 1 <= n_topics <= len(TOPIC_WORDS):
        raise ValueError(f"n_topics must be in 1..{len(TOPIC_WORDS)}, got {n_topics}")
    if not 3 <= items_per_topic <= 10:
        raise ValueError(f"items_per_topic must be in 3..10, got {items_per_topic}")
    if not 2 <= min_length <= max_length <= items_per_topic:
        raise ValueError("need 2 <= min_length <= max_length <= items_per_topic")
    rng = np.random.default_rng(seed)
    topics = list(TOPIC_WORDS)[:n_topics]
    n_items = n_topics * items_per_topic
    titles, categories, years = [], [], []
    for t, name in enumerate(topics):
        words = TOPIC_WORDS[name]
        for j in range(items_per_topic):
            w = [words[j], words[(j + 1) % items_per_topic], words[(j + 3) % items_per_topic]]
            titles.append(" ".join(x.capitalize() for x in w))
            categories.append([name])
            years.append(1960 + 10 * t + j)
    users: list[int] = []
    items: list[int] = []
    times: list[float] = []
    for u in range(n_users):
        topic = u % n_topics
        pos = int(rng.integers(items_per_topic))
        seen: set[int] = set()
        length = int(rng.integers(min_length, max_length + 1))
        for step in range(length):
            item = topic * items_per_topic + (pos + step) % items_per_topic
            if n_topics > 1 and rng.random() < noise:
                other = int(rng.integers(n_items - items_per_topic))
                other += items_per_topic if other >= topic * items_per_topic else 0
                item = other
            if item in seen:
                continue
            seen.add(item)
            users.append(u)
            items.append(item)
            times.append(1.6e9 + step * DAY + u)
    inter = Interactions.build(np.array(users), np.array(items), timestamp=np.array(times))
    table = pd.DataFrame({"title": titles, "categories": categories, "year": years})
    return Dataset(
        f"tiny-{seed}",
        inter,
        Vocabulary([f"u{u}" for u in range(n_users)]),
        Vocabulary([f"i{i}" for i in range(n_items)]),
        table,
    )


def planted_topics(data: Dataset) -> np.ndarray:
    """(n_items,) int64 planted topic code of each item (from its first category)."""
    names = list(TOPIC_WORDS)
    return np.array([names.index(str(c[0])) for c in data.item_table["categories"]], np.int64)


def user_topics(data: Dataset) -> np.ndarray:
    """(n_users,) int64 planted topic each user prefers (the majority of their items)."""
    topic = planted_topics(data)
    out = np.zeros(data.n_users, np.int64)
    for u, seq in enumerate(data.sequences()):
        if len(seq):
            out[u] = int(np.bincount(topic[seq]).argmax())
    return out


def query_batch(
    data: Dataset,
    users: Sequence[int] | np.ndarray,
    *,
    unknown: Sequence[Sequence[int] | np.ndarray] = (),
    texts: Sequence[str | None] | None = None,
) -> QueryBatch:
    """Known `users` with their full histories, then one unknown user (-1) per history in
    `unknown`; `texts` (one per row) are the free-text queries."""
    seqs = data.sequences()
    users = [int(u) for u in users]
    rows = [seqs[u] for u in users] + [np.asarray(h, np.int64) for h in unknown]
    ids = np.array(users + [-1] * len(unknown), np.int64)
    return QueryBatch(ids, rows, data.n_items, texts=list(texts) if texts else [])


def keyword_encoder(dim: int = 256) -> Any:
    """A deterministic hashed bag-of-words text encoder (no model download, no torch)."""
    from recsage.llm.conversation import KeywordEncoder

    return KeywordEncoder(dim)


def item_texts(data: Dataset) -> list[str]:
    """The text each item is encoded from (the library's one item-text template)."""
    from recsage.encoders.templates import ItemTextTemplate

    return ItemTextTemplate().render(data.item_table)


def text_resources(data: Dataset, encoder: Any = None) -> Any:
    """Channel `Resources` with item text vectors from `encoder` (default: keywords)."""
    from recsage.retrieval.channels.base import Resources

    enc = encoder if encoder is not None else keyword_encoder()
    vectors = np.asarray(enc.encode_items(item_texts(data)), np.float32)
    return Resources(item_text_vectors=vectors, text_encoder=enc)


__all__ = [
    "TOPIC_WORDS",
    "item_texts",
    "keyword_encoder",
    "planted_topics",
    "query_batch",
    "text_resources",
    "tiny_dataset",
    "user_topics",
]
