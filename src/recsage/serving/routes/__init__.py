"""HTTP routes, one module per area; each module exposes `router`.

Routes only translate HTTP to library calls (pipeline, feedback store, runtime); adding an
area is one module here plus its entry in `ROUTERS`.
"""

from __future__ import annotations

from fastapi import APIRouter

from recsage.serving.routes import chat, feedback, items, ops, recommend, search

ROUTERS: tuple[APIRouter, ...] = tuple(
    m.router for m in (recommend, items, search, chat, feedback, ops)
)

__all__ = ["ROUTERS"]
