"""Helpers shared by benchmark scripts: machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def machine() -> dict[str, Any]:
    """CPU model, core count, memory and library versions, stored with every result."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for mod in ("numpy", "scipy", "torch", "implicit", "faiss"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            continue
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json"""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def update_doc_section(name: str, markdown: str) -> None:
    """Replace (or append) the block between <!-- BEGIN name --> and <!-- END name -->."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    DOC.write_text(text)


def machine_line(m: dict[str, Any]) -> str:
    v = ", ".join(f"{k} {val}" for k, val in m["versions"].items())
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, "
        f"Python {m['python']} ({v}); commit {m['commit']}."
    )


def paired_ci(a: Any, b: Any, seed: int = 0, n_boot: int = 2000) -> list[float]:
    """Mean of b − a over the same users and its percentile-bootstrap 95% interval
    (users resampled `n_boot` times): [mean, low, high]."""
    import numpy as np

    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    if len(d) == 0:
        return [float("nan")] * 3
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    lo, hi = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    return [float(d.mean()), float(lo), float(hi)]
