"""The page's way into the service: in-process calls to the public JSON API, plus the item
details (categories, year, text) that the API's item lists leave out.

Calls go through the whole ASGI app (its middleware, auth, scopes, rate limits, metrics and
error bodies), with the session's key as the bearer token, so the page can do exactly what
that key can do over HTTP and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import numpy as np
import pandas as pd
from fastapi import Request

from recsage.serving.ui.sessions import UISession

INTERNAL_BASE = "http://recsage.internal"


class ApiCallError(Exception):
    """A non-2xx answer of the JSON API: its status and `{"error": {...}}` body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = str(err.get("code", "error"))
        self.message = str(err.get("message", f"the API answered {status}"))
        super().__init__(f"{status} {self.code}: {self.message}")


async def call(
    request: Request,
    session: UISession | None,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """`method path` on this app, as the session's key; the decoded JSON (or text for
    non-JSON answers). Raises ApiCallError for a non-2xx status."""
    headers = {"accept": "application/json"}
    if session is not None and session.key is not None:
        headers["authorization"] = f"Bearer {session.key}"
    transport = httpx.ASGITransport(app=request.app, client=("127.0.0.1", 0))
    async with httpx.AsyncClient(transport=transport, base_url=INTERNAL_BASE) as client:
        r = await client.request(method, path, json=json, params=params, headers=headers)
    is_json = r.headers.get("content-type", "").startswith("application/json")
    body = r.json() if is_json else r.text
    if r.status_code >= 400:
        raise ApiCallError(r.status_code, body if isinstance(body, dict) else {})
    return body


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    return value


def item_details(request: Request, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{item id: {title, categories, year, text}} from the served catalogue (unknown ids
    left out)."""
    ids = list(dict.fromkeys(str(i) for i in item_ids))
    if not ids:
        return {}
    sm = request.app.state.runtime.served()
    pipe = sm.pipeline
    out: dict[str, dict[str, Any]] = {}
    with sm.lock.read():
        if pipe.items is None or pipe.item_table is None:
            return {}
        table = pipe.item_table
        idx = pipe.items.lookup(ids)
        for item, i in zip(ids, idx.tolist(), strict=True):
            if i < 0 or i >= len(table):
                continue
            row = table.iloc[int(i)]
            cats = row["categories"] if "categories" in table.columns else None
            cats = [str(c) for c in cats] if isinstance(cats, list | tuple | np.ndarray) else []
            year = _plain(row["year"]) if "year" in table.columns else None
            text = _plain(row["text"]) if "text" in table.columns else None
            title = _plain(row["title"]) if "title" in table.columns else None
            out[item] = {
                "title": str(title) if title is not None else item,
                "categories": cats,
                "year": int(year) if year is not None else None,
                "text": str(text) if text is not None else None,
            }
    return out


def enrich(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's items with categories and year added (for display only)."""
    details = item_details(request, (it["item_id"] for it in items))
    for it in items:
        d = details.get(str(it["item_id"]), {})
        it["categories"] = d.get("categories", [])
        it["year"] = d.get("year")
    return items


def channel_kinds(version: Mapping[str, Any]) -> dict[str, str]:
    """{channel name: kind} from a `/version` answer's pipeline spec."""
    spec = version.get("spec") or {}
    out: dict[str, str] = {}
    for ch in spec.get("channels", []) or []:
        if isinstance(ch, Mapping) and "name" in ch:
            out[str(ch["name"])] = str(ch.get("kind", "model"))
    return out


def list_label(cold_start: bool, items: list[dict[str, Any]], kinds: Mapping[str, str]) -> str:
    """What the list is, told from the channels that actually found its items."""
    found = [s for it in items for s in it.get("sources", [])]
    used = list(dict.fromkeys(found))
    used_kinds = {kinds.get(s, s) for s in used}
    named = ", ".join(f"{s} ({kinds[s]})" if s in kinds else s for s in used) or "no channel"
    if not items:
        return "No recommendations" + (" for a new visitor." if cold_start else ".")
    if cold_start:
        if used_kinds <= {"popularity", "fallback:popular"}:
            return (
                "New visitor, no history yet: showing what is popular with everyone "
                "(cold-start fallback)."
            )
        return f"New visitor, no history yet: these come from {named}."
    return f"Picked for you from your history by {named}."
