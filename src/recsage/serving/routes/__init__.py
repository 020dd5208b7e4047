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


def route_scopes() -> list[tuple[str, str, str | None]]:
    """(method, path, scope) of every API route, read from the routes' own key checks
    (None: no key needed); `serve --help` and the docs list it."""
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute

    def scope_of(dep: Dependant) -> str | None:
        found = getattr(dep.call, "recsage_scope", None)
        for sub in dep.dependencies:
            found = found or scope_of(sub)
        return found

    out = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                path = route.path_format
                for method in sorted(set(route.methods or ()) - {"HEAD"}):
                    out.append((method, path, scope_of(route.dependant)))
    return out


__all__ = ["ROUTERS", "route_scopes"]
