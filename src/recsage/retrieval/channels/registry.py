"""Channel kinds by name: one lazy ``"module:attr"`` line per channel.

Adding a channel is one new module plus one line here (or an entry point in the
``recsage.channels`` group of a separate package). Entries load on first use, so the KG
channel's torch import only happens for pipelines that use it.
"""

from __future__ import annotations

from typing import Any

from recsage.component import Registry
from recsage.retrieval.channels.base import Channel

CHANNELS: Registry[Channel] = Registry("channel", base=Channel, noun="kind")
CHANNELS.register("popularity", "recsage.retrieval.channels.popularity:PopularityChannel")
CHANNELS.register("cooccurrence", "recsage.retrieval.channels.cooccurrence:CooccurrenceChannel")
CHANNELS.register("topic", "recsage.retrieval.channels.topic:TopicChannel")
CHANNELS.register("text", "recsage.retrieval.channels.text:TextChannel")
CHANNELS.register("query", "recsage.retrieval.channels.query:QueryChannel")
CHANNELS.register("model", "recsage.retrieval.channels.model:ModelChannel")
CHANNELS.register("kg", "recsage.knowledge.channel:KGChannel")
CHANNELS.register("category", "recsage.retrieval.channels.category:CategoryChannel")


def create_channel(spec: dict[str, Any]) -> Channel:
    """Channel from a spec dict {name, kind, n, ...params}."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    name = spec.pop("name", kind)
    return CHANNELS.get(kind, where=f"channel '{name}'")(str(name), **spec)
