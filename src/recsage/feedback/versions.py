"""Model versions: immutable directories `models/vN/` (a saved pipeline + `version.json`)
and a `models/current` pointer file swapped atomically with `os.replace`.

A version is written under a temporary name and renamed into place, so a half-written
version is never visible. `rollback` points `current` back at the version that was
serving when the current one was made (its `parent`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsage import __version__
from recsage.errors import ConfigError

INFO_FILE = "version.json"
POINTER = "current"
PIPELINE_DIR = "pipeline"
_NAME = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: its name (`vN`), directory and `version.json` contents."""

    name: str
    path: Path
    info: dict[str, Any]

    @property
    def number(self) -> int:
        m = _NAME.match(self.name)
        return int(m.group(1)) if m else -1

    @property
    def pipeline_dir(self) -> Path:
        return self.path / PIPELINE_DIR

    @property
    def parent(self) -> str | None:
        p = self.info.get("parent")
        return str(p) if p else None

    @property
    def events_through(self) -> int:
        """Store seq of the last event this version was trained on (0: none)."""
        return int(self.info.get("events_through", 0))

    @property
    def items_through(self) -> int:
        """Store seq of the last item update included in this version's catalogue."""
        return int(self.info.get("items_through", 0))


def source_hash(pipeline_dir: Path) -> str:
    """Identity of a saved pipeline (manifest + spec) or saved model (manifest) directory."""
    h = hashlib.sha256()
    manifest = pipeline_dir / "manifest.json"
    if not manifest.exists():
        raise ConfigError(
            f"{pipeline_dir} is not a saved pipeline or model (missing manifest.json)"
        )
    for f in (manifest, pipeline_dir / "pipeline.toml"):
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()[:20]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VersionRegistry:
    """The `models/` directory of one service home."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # ---- reading ----------------------------------------------------------------------
    def list(self) -> list[ModelVersion]:
        out = []
        for d in self.root.iterdir():
            if d.is_dir() and _NAME.match(d.name) and (d / INFO_FILE).exists():
                out.append(ModelVersion(d.name, d, json.loads((d / INFO_FILE).read_text())))
        return sorted(out, key=lambda v: v.number)

    def get(self, name: str) -> ModelVersion:
        d = self.root / name
        if not _NAME.match(name) or not (d / INFO_FILE).exists():
            known = ", ".join(v.name for v in self.list()) or "none"
            raise ConfigError(f"no model version '{name}' (known: {known})")
        return ModelVersion(name, d, json.loads((d / INFO_FILE).read_text()))

    def current_name(self) -> str | None:
        p = self.root / POINTER
        if not p.exists():
            return None
        name = p.read_text().strip()
        return name or None

    def current(self) -> ModelVersion | None:
        name = self.current_name()
        return self.get(name) if name else None

    def find_source(self, digest: str) -> ModelVersion | None:
        for v in reversed(self.list()):
            if v.info.get("source_hash") == digest:
                return v
        return None

    # ---- writing ----------------------------------------------------------------------
    def set_current(self, name: str) -> ModelVersion:
        """Point `current` at `name` atomically (write a temp file, fsync, os.replace)."""
        version = self.get(name)
        tmp = self.root / f".{POINTER}.{secrets.token_hex(4)}"
        with open(tmp, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / POINTER)
        _fsync_dir(self.root)
        return version

    def create(self, write: Callable[[Path], object], info: dict[str, Any]) -> ModelVersion:
        """Write a new version with `write(pipeline_dir)`; returns it (not made current)."""
        tmp = self.root / f".tmp-{secrets.token_hex(6)}"
        tmp.mkdir()
        try:
            write(tmp / PIPELINE_DIR)
            full = {"created_at": time.time(), "package_version": __version__, **info}
            (tmp / INFO_FILE).write_text(json.dumps(full, indent=1, default=str))
            n = max((v.number for v in self.list()), default=0) + 1
            while True:
                target = self.root / f"v{n}"
                try:
                    os.rename(tmp, target)
                    break
                except OSError:
                    if not target.exists():
                        raise
                    n += 1
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(f"v{n}")

    def import_dir(self, source: Path, **info: Any) -> ModelVersion:
        """Register a saved pipeline directory (copied) as a new version."""
        source = Path(source).resolve()
        digest = source_hash(source)

        def copy(dest: Path) -> None:
            shutil.copytree(source, dest)

        return self.create(
            copy, {"source": f"import:{source}", "source_hash": digest, "parent": None, **info}
        )

    def ensure_imported(self, source: Path) -> ModelVersion:
        """Register `source` as a new version and make it current, once: when `source` is
        already registered, the current version stays (so a restart with the same
        `--model` keeps a retrained or rolled-back version)."""
        digest = source_hash(Path(source))
        current = self.current()
        found = self.find_source(digest)
        if found is None:
            found = self.import_dir(source, parent=current.name if current else None)
        elif current is not None:
            return current
        return self.set_current(found.name)

    def rollback(self) -> tuple[ModelVersion, ModelVersion]:
        """Point `current` at the current version's parent; returns (from, to)."""
        current = self.current()
        if current is None:
            raise ConfigError("no current model version to roll back")
        if current.parent is None:
            raise ConfigError(f"{current.name} has no previous version to roll back to")
        return current, self.set_current(current.parent)
