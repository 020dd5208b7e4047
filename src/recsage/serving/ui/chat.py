"""Chips for the chat panel: the constraints a conversation holds, one removable chip each.

Turns go through `POST /v1/chat`, which keeps each conversation's state server-side (keyed
by model version and session id). The API answers the understood constraints as one line
of text; the chips are read from the same state object that line describes, so every chip
matches a real constraint, and removing one removes exactly that constraint before the
list is ranked again (`/v1/chat` has no "forget" request; this is the one place the page
goes past the JSON API, and it only touches the session the signed-in browser owns).
"""

from __future__ import annotations

from typing import Any

from recsage.errors import RecsageError


def find_session(app: Any, version: str, session_id: str) -> Any:
    """The `/v1/chat` conversation for (model version, session id), or None."""
    sessions = getattr(app.state, "chat_sessions", None)
    if sessions is None:
        return None
    return sessions.get((version, session_id))


def chips(session: Any) -> list[dict[str, str]]:
    """[{id, label, kind}] for every constraint the conversation holds, in display order."""
    c, cat = session.constraints, session.cat
    name = cat.genre_names.get
    out = []
    for g in sorted(c.include_genres):
        out.append({"id": f"include:{g}", "label": f"+{name(g, g)}", "kind": "include"})
    for g in sorted(c.exclude_genres):
        out.append({"id": f"exclude:{g}", "label": f"not {name(g, g)}", "kind": "exclude"})
    if c.year_min is not None or c.year_max is not None:
        lo = "" if c.year_min is None else str(c.year_min)
        hi = "" if c.year_max is None else str(c.year_max)
        label = f"{lo}–{hi}" if lo and hi else (f"from {lo}" if lo else f"up to {hi}")
        out.append({"id": "years", "label": label, "kind": "years"})
    if c.mood:
        out.append({"id": "mood", "label": f"mood: {c.mood}", "kind": "mood"})
    for a in c.anchors:
        out.append({"id": f"like:{a}", "label": f"like {cat.display(a)}", "kind": "like"})
    if c.rejected:
        n = len(c.rejected)
        out.append({"id": "rejected", "label": f"{n} rejected", "kind": "rejected"})
    return out


def remove(session: Any, chip_id: str) -> None:
    """Drop the constraint behind `chip_id` from the conversation's state."""
    c = session.constraints
    kind, _, value = chip_id.partition(":")
    if kind == "include" and value in c.include_genres:
        c.include_genres.discard(value)
    elif kind == "exclude" and value in c.exclude_genres:
        c.exclude_genres.discard(value)
    elif kind == "years" and (c.year_min is not None or c.year_max is not None):
        c.year_min = c.year_max = None
    elif kind == "mood" and c.mood:
        c.mood = None
    elif kind == "like" and value.lstrip("-").isdigit() and int(value) in c.anchors:
        c.anchors.remove(int(value))
    elif kind == "rejected" and c.rejected:
        c.rejected.clear()
    else:
        raise RecsageError(f"the conversation has no constraint '{chip_id}'")
