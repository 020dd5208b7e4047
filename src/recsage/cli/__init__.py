"""The `recsage` command line (typer + rich): one module per command group.

Importing this package registers every command on `app`; `main` is the console entry point.
"""

from __future__ import annotations

from recsage.cli import data, llm, scale, search, serve  # noqa: F401  (registers commands)
from recsage.cli.common import app
from recsage.cli.main import main

__all__ = ["app", "main"]
