"""One error family whose messages say what was wrong, where, and how to fix it."""

from __future__ import annotations


class RecsageError(Exception):
    """Base class for every error recsage raises on purpose (bad input, bad config...)."""


class DataError(RecsageError):
    """Input data is malformed; the message names the file, line and column when known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(RecsageError):
    """A configuration value or command-line option is invalid."""


class ArtifactError(RecsageError):
    """A saved model/artifact is missing, incomplete or from an incompatible version."""
