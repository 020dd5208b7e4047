"""Entry point: bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import sys

from recsage import __version__
from recsage.cli.common import app, console, err_console
from recsage.errors import RecsageError


@app.command()
def version() -> None:
    """Print the package version."""
    console.print(__version__)


def main() -> None:
    """Entry point: bad input gives one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except RecsageError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
