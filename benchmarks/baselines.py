"""Baseline table: pop / item-kNN / EASE / ALS on ML-100K, ML-1M and Amazon-Scientific.

Leave-one-out, full ranking. Hyperparameters are chosen on the validation split (second-last
item) from small grids; the test split is evaluated once with the chosen values.

    .venv/bin/python benchmarks/baselines.py [--datasets ml-100k,ml-1m,amazon-scientific]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, machine_line, update_doc_section, write_result

from recsage.data.sources.registry import load_dataset
from recsage.data.splits import leave_one_out
from recsage.evaluation import evaluate
from recsage.models import create_model

GRIDS: dict[str, list[dict[str, Any]]] = {
    "pop": [{}],
    "itemknn": [{"neighbors": k} for k in (50, 100, 200, 400)],
    "ease": [{"l2": v} for v in (10.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)],
    # EASE scored on recency-weighted histories (same closed form, see EASEConfig)
    "ease_recent": [
        {"l2": v, "half_life": h} for v in (25.0, 100.0, 500.0) for h in (3.0, 5.0, 10.0, 30.0)
    ],
    "als": [
        {"factors": f, "regularization": r, "alpha": a, "iterations": 15}
        for f in (64, 128)
        for r in (0.05, 1.0)
        for a in (1.0, 10.0)
    ],
}


MODEL_OF = {"ease_recent": "ease"}


def run(dataset_name: str, models: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    ds = load_dataset(dataset_name)
    load_s = time.perf_counter() - t0
    loo = leave_one_out(ds)
    rows = []
    for name in models:
        best_params, best_val = {}, -1.0
        for params in GRIDS[name]:
            m = create_model(MODEL_OF.get(name, name), **params).fit(loo.valid.train)
            val = evaluate(m, loo.valid, ks=(10,)).metrics["ndcg@10"]
            print(f"  [{dataset_name}] {name} {params}: valid ndcg@10={val:.4f}", flush=True)
            if val > best_val:
                best_params, best_val = params, val
        model = create_model(MODEL_OF.get(name, name), **best_params)
        start = time.perf_counter()
        model.fit(loo.test.train)
        fit_s = time.perf_counter() - start
        res = evaluate(model, loo.test, ks=(10, 20))
        rows.append(
            {
                "model": name,
                "params": best_params,
                "valid_ndcg@10": best_val,
                "metrics": res.metrics,
                "fit_seconds": fit_s,
                "eval_seconds": res.eval_seconds,
                "protocol": res.protocol,
            }
        )
        print(
            f"{dataset_name:>18} {name:>8}: HR@10={res.metrics['hr@10']:.4f} "
            f"NDCG@10={res.metrics['ndcg@10']:.4f} MRR={res.metrics['mrr']:.4f} "
            f"cov={res.metrics['coverage@10']:.3f} fit={fit_s:.1f}s eval={res.eval_seconds:.2f}s",
            flush=True,
        )
    return {"dataset": ds.describe(), "load_seconds": load_s, "rows": rows}


def markdown(results: list[dict[str, Any]], m: dict[str, Any], command: str) -> str:
    out = [
        "## Baselines (leave-one-out, full ranking)",
        "",
        f"Command: `{command}`  ",
        machine_line(m),
        "",
        "Per user the last interaction is the test target and the second-last the validation "
        "target; every item of the catalogue is ranked, the user's history is excluded and "
        "ties count against the target. Hyperparameters were picked on validation NDCG@10 "
        "(grids in `benchmarks/baselines.py`); the test split was evaluated once.",
        "",
        "| dataset | model | params | HR@10 | NDCG@10 | MRR | coverage@10 | fit s | eval s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = r["dataset"]["name"]
        for row in r["rows"]:
            mt = row["metrics"]
            params = ", ".join(f"{k}={v}" for k, v in row["params"].items()) or "-"
            out.append(
                f"| {name} | {row['model']} | {params} | {mt['hr@10']:.4f} | "
                f"{mt['ndcg@10']:.4f} | {mt['mrr']:.4f} | {mt['coverage@10']:.3f} | "
                f"{row['fit_seconds']:.1f} | {row['eval_seconds']:.2f} |"
            )
    out.append("")
    out.append(
        "Datasets: "
        + "; ".join(
            f"{r['dataset']['name']}: {r['dataset']['users']:,} users, "
            f"{r['dataset']['items']:,} items, {r['dataset']['interactions']:,} interactions"
            for r in results
        )
        + "."
    )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="ml-100k,ml-1m,amazon-scientific")
    parser.add_argument("--models", default="pop,itemknn,ease,ease_recent,als")
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    m = machine()
    results = [run(d, args.models.split(",")) for d in args.datasets.split(",")]
    command = "python benchmarks/baselines.py " + " ".join(sys.argv[1:])
    md = markdown(results, m, command.strip())
    write_result(
        "baselines", {"machine": m, "command": command, "results": results, "markdown": md}
    )
    if not args.no_doc:
        update_doc_section("baselines", md)
    print(md)


if __name__ == "__main__":
    main()
