"""Pipeline benchmark: full pipeline vs its single models, candidate recall, ablations,
objectives and latency — all in one run on one dataset.

    .venv/bin/python benchmarks/pipeline.py --dataset ml-1m --spec pipelines/ml1m.toml

Protocol: leave-one-out, full ranking (items outside the final list count as missed).
Channels are fitted on all but each user's last two items, the learned ranker on the
second-last items (validation), and the test uses histories that include the validation
item. Single models are evaluated under the same protocol (same fitted objects), so the
comparison isolates what retrieval + ranking adds.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, machine_line, write_result

from recsage.data.sources.registry import load_dataset
from recsage.data.splits import leave_one_out
from recsage.evaluation import evaluate
from recsage.evaluation.pipeline import evaluate_pipeline
from recsage.pipeline.pipeline import Pipeline
from recsage.types import Query, QueryBatch


def single_models(pipe: Pipeline, split, histories) -> list[dict[str, Any]]:
    rows = []
    for ch in pipe.model_channels:

        def fn(users, history=None, ch=ch):
            out = []
            for lo in range(0, len(users), 1024):
                u = users[lo : lo + 1024]
                out.append(ch.scores(QueryBatch(u, [histories[i] for i in u], pipe.n_items)))
            return np.concatenate(out)

        res = evaluate(fn, split, name=f"{ch.name} alone")
        rows.append({"name": res.model, "metrics": res.metrics})
    return rows


def candidate_recall(pipe: Pipeline, split, histories, ks=(200, 500)) -> dict[str, float]:
    spec_max = pipe.spec["merge"]["max_candidates"]
    pipe.spec["merge"]["max_candidates"] = max(ks)
    t = split.targets
    hits = {k: 0 for k in ks}
    try:
        for lo in range(0, len(split.users), 512):
            u = split.users[lo : lo + 512]
            cands = pipe._retrieve(QueryBatch(u, [histories[i] for i in u], pipe.n_items), None)
            tg = np.array([t.indices[t.indptr[x]] for x in u])
            pos = np.where(cands.items == tg[:, None])
            first = np.full(len(u), 10**9)
            np.minimum.at(first, pos[0], pos[1])
            for k in ks:
                hits[k] += int((first < k).sum())
    finally:
        pipe.spec["merge"]["max_candidates"] = spec_max
    return {f"recall@{k}": hits[k] / max(1, len(split.users)) for k in ks}


def variant(pipe: Pipeline, spec: dict[str, Any], loo) -> tuple[Pipeline, float]:
    t0 = time.perf_counter()
    p = pipe.derive(spec)
    if any(s["kind"] == "learned" for s in spec["stages"]):
        p.train_stages(loo.valid)
    return p, time.perf_counter() - t0


def latency(pipe: Pipeline, users: list[str], repeats: int = 1) -> dict[str, float]:
    times = []
    for u in users:
        for _ in range(repeats):
            t0 = time.perf_counter()
            pipe.run(Query(user=u, n=10))
            times.append((time.perf_counter() - t0) * 1000)
    a = np.array(times)
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "n": len(a)}


def fmt(m: dict[str, float]) -> str:
    return f"{m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['mrr']:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--spec", default="pipelines/default.toml")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--no-objectives", action="store_true")
    ap.add_argument("--latency-users", type=int, default=300)
    ap.add_argument(
        "--objective-learners", default="lgbm", help="rankers compared across objectives"
    )
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--save", type=Path, default=None, help="also save the fitted pipeline here (servable)"
    )
    args = ap.parse_args()

    ds = load_dataset(args.dataset)
    loo = leave_one_out(ds)
    t0 = time.perf_counter()
    pipe = Pipeline.from_toml(args.spec).fit(ds, log=lambda m: print("  " + m, flush=True))
    fit_s = time.perf_counter() - t0
    if args.save is not None:
        print(f"saved the fitted pipeline to {pipe.save(args.save)}", flush=True)
    hist = loo.test.train.sequences()
    full = evaluate_pipeline(pipe, split=loo.test)
    print(f"pipeline: {fmt(full.result.metrics)}  (fit {fit_s:.0f}s)", flush=True)
    singles = single_models(pipe, loo.test, hist)
    for s in singles:
        print(f"{s['name']}: {fmt(s['metrics'])}", flush=True)
    recall = candidate_recall(pipe, loo.test, hist)
    print("candidate", recall, flush=True)

    ablations: list[dict[str, Any]] = []
    if not args.no_ablation:
        for ch in pipe.channels:
            spec = copy.deepcopy(pipe.spec)
            spec["channels"] = [c for c in spec["channels"] if c["name"] != ch.name]
            if not spec["channels"]:
                continue
            p, _ = variant(pipe, spec, loo)
            m = evaluate_pipeline(p, split=loo.test).result.metrics
            ablations.append({"variant": f"without channel {ch.name}", "metrics": m})
            print(ablations[-1]["variant"], fmt(m), flush=True)
        for st in pipe.stages:
            spec = copy.deepcopy(pipe.spec)
            spec["stages"] = [s for s in spec["stages"] if s["name"] != st.name]
            if not spec["stages"]:
                continue
            p, _ = variant(pipe, spec, loo)
            m = evaluate_pipeline(p, split=loo.test).result.metrics
            ablations.append({"variant": f"without stage {st.name}", "metrics": m})
            print(ablations[-1]["variant"], fmt(m), flush=True)

    objectives: list[dict[str, Any]] = []
    learned = [s for s in pipe.spec["stages"] if s["kind"] == "learned"]
    if learned and not args.no_objectives:
        for learner in args.objective_learners.split(","):
            for obj in ("pointwise", "pairwise", "listwise"):
                spec = copy.deepcopy(pipe.spec)
                for s in spec["stages"]:
                    if s["kind"] == "learned":
                        if learner != s["learner"]:
                            s["params"] = {}  # the base learner's parameters may not apply
                        s["learner"], s["objective"] = learner, obj
                p, secs = variant(pipe, spec, loo)
                m = evaluate_pipeline(p, split=loo.test).result.metrics
                objectives.append(
                    {"learner": learner, "objective": obj, "metrics": m, "train_s": secs}
                )
                print(f"{learner} {obj}: {fmt(m)} ({secs:.0f}s)", flush=True)

    rng = np.random.default_rng(0)
    users = rng.choice(pipe.users.ids, size=min(args.latency_users, len(pipe.users)), replace=False)
    pipe.run(Query(user=str(users[0])))  # warm-up
    lat = latency(pipe, [str(u) for u in users])
    print("latency", lat, flush=True)

    m = machine()
    best = max(singles, key=lambda s: s["metrics"]["ndcg@10"]) if singles else None
    md = [
        f"### Pipeline on {ds.name}",
        "",
        f"Command: `python benchmarks/pipeline.py --dataset {args.dataset} --spec {args.spec}`  ",
        machine_line(m),
        "",
        "| variant | HR@10 | NDCG@10 | MRR |",
        "|---|---:|---:|---:|",
        f"| **full pipeline** | {fmt(full.result.metrics)} |",
        *[f"| {s['name']} (same protocol) | {fmt(s['metrics'])} |" for s in singles],
        *[f"| {a['variant']} | {fmt(a['metrics'])} |" for a in ablations],
        "",
    ]
    if best:
        gain = full.result.metrics["ndcg@10"] / max(1e-9, best["metrics"]["ndcg@10"]) - 1
        md.append(f"Full pipeline vs best single model ({best['name']}): NDCG@10 {gain:+.1%}.")
        md.append("")
    md += [
        "Candidate recall (target among the merged candidates): "
        + ", ".join(f"{k} = {v:.4f}" for k, v in recall.items())
        + ". Target kept after each stage: "
        + ", ".join(f"{k} {v:.4f}" for k, v in full.stage_recall.items())
        + ".",
        "",
        "Per-channel recall (unique): "
        + ", ".join(
            f"{k} {v:.3f} ({full.channel_unique[k]:.3f})" for k, v in full.channel_recall.items()
        )
        + ".",
        "",
    ]
    if objectives:
        md += [
            "| ranker | objective | HR@10 | NDCG@10 | MRR | train s |",
            "|---|---|---:|---:|---:|---:|",
        ]
        md += [
            f"| {o['learner']} | {o['objective']} | {fmt(o['metrics'])} | {o['train_s']:.0f} |"
            for o in objectives
        ]
        md.append("")
    md.append(
        f"Latency of one `Pipeline.run` (single user, no LLM stage, {lat['n']} users): "
        f"median {lat['median_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms. Per-stage mean per user "
        "in batch evaluation: "
        + ", ".join(f"{k} {1000 * v:.2f} ms" for k, v in full.seconds.items())
        + "."
    )
    markdown = "\n".join(md)
    out = args.out or f"pipeline_{ds.name}"
    write_result(
        out,
        {
            "machine": m,
            "dataset": ds.describe(),
            "spec": pipe.spec,
            "fit_seconds": fit_s,
            "pipeline": full.to_dict(),
            "singles": singles,
            "candidate_recall": recall,
            "ablations": ablations,
            "objectives": objectives,
            "latency": lat,
            "markdown": markdown,
        },
    )
    print(markdown)


if __name__ == "__main__":
    main()
