"""Pipeline specs: the TOML a pipeline is built from, its defaults and file names."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from recsage.errors import ConfigError

SPEC_FILE = "pipeline.toml"
ITEMS_FILE = "items.parquet"


def read_spec(path: str | Path) -> dict[str, Any]:
    """The spec dict of a TOML file, with a clear error for a missing or invalid file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"pipeline spec {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


DEFAULT_SPEC: dict[str, Any] = {
    "pipeline": {"name": "default"},
    "text": {"enabled": True},
    "merge": {"max_candidates": 300},
    "channels": [],
    "stages": [],
}


def normalise_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with every section filled from the defaults; unknown sections refused."""
    known = set(DEFAULT_SPEC)
    bad = sorted(set(spec) - known)
    if bad:
        raise ConfigError(
            f"pipeline spec: unknown section(s) {', '.join(bad)}; known: {sorted(known)}"
        )
    out = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in DEFAULT_SPEC.items()}
    for k, v in spec.items():
        base = out[k]
        out[k] = {**base, **v} if isinstance(base, dict) else list(v)
    if not out["channels"]:
        raise ConfigError("pipeline spec: at least one [[channels]] entry is required")
    return out
