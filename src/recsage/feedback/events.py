"""The one event vocabulary of the feedback loop.

Every event type the store accepts is declared here once, with what it means downstream:
whether it is a positive interaction that trains models and extends a user's serving
history, and its weight in the trending counts. The store, the runtime (online updates,
trending) and retraining all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventType:
    """One kind of feedback event."""

    name: str
    #: a positive interaction: retraining learns from it and it extends the user's history
    trains: bool
    #: weight in the decayed trending counts (0 = not counted)
    trending_weight: float


EVENTS: dict[str, EventType] = {
    e.name: e
    for e in (
        EventType("impression", trains=False, trending_weight=0.0),
        EventType("click", trains=True, trending_weight=1.0),
        EventType("purchase", trains=True, trending_weight=3.0),
        EventType("rating", trains=True, trending_weight=1.0),
        EventType("skip", trains=False, trending_weight=0.0),
    )
}
#: every type the store accepts, in a stable order
EVENT_TYPES: tuple[str, ...] = tuple(EVENTS)
#: the positive types: training data, serving history, trending
TRAINING_TYPES: tuple[str, ...] = tuple(n for n, e in EVENTS.items() if e.trains)


def trending_weight(name: str) -> float:
    """Weight of one event of type `name` in the trending counts."""
    event = EVENTS.get(name)
    return event.trending_weight if event is not None else 0.0
