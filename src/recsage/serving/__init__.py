"""The recsage HTTP service: `create_app(settings)`, its store, keys, versions and retraining.

Needs the `service` extra: `pip install 'recsage[service]'`.
"""

from __future__ import annotations

from recsage.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from recsage.serving.app import create_app

        return create_app
    raise AttributeError(name)
