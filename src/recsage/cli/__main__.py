"""`python -m recsage.cli`: the same entry point as the `recsage` command."""

from __future__ import annotations

from recsage.cli.main import main

main()
