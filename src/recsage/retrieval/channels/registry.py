"""Channel kinds by name."""

from __future__ import annotations

from typing import Any

from recsage.errors import ConfigError
from recsage.retrieval.channels.base import Channel
from recsage.retrieval.channels.cooccurrence import CooccurrenceChannel
from recsage.retrieval.channels.model import ModelChannel
from recsage.retrieval.channels.popularity import PopularityChannel
from recsage.retrieval.channels.query import QueryChannel
from recsage.retrieval.channels.text import TextChannel
from recsage.retrieval.channels.topic import TopicChannel

CHANNELS: dict[str, type[Channel]] = {
    c.kind: c
    for c in (
        PopularityChannel,
        CooccurrenceChannel,
        TopicChannel,
        TextChannel,
        QueryChannel,
        ModelChannel,
    )
}


def create_channel(spec: dict[str, Any]) -> Channel:
    """Channel from a spec dict {name, kind, n, ...params}."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    name = spec.pop("name", kind)
    if kind == "kg" and kind not in CHANNELS:  # imports torch: loaded on first use
        from recsage.knowledge.channel import KGChannel

        CHANNELS["kg"] = KGChannel
    if kind not in CHANNELS:
        raise ConfigError(f"channel '{name}': unknown kind {kind!r}; known: {sorted(CHANNELS)}")
    return CHANNELS[kind](str(name), **spec)
