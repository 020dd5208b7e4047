"""Sequential recommendation benchmark: popularity, EASE and SASRec variants side by side.

Leave-one-out, full ranking over the catalogue, history items excluded, ties against the
target. SASRec trains on all but the last two items per user and early-stops on the
validation item (NDCG@10); the test split is then scored once from each user's history up
to and including the validation item (the standard SASRec protocol). EASE's l2 is chosen
on validation from a small grid, then EASE is refitted on all but the last item.

    .venv/bin/python benchmarks/sequential.py --dataset ml-1m --config max_minutes=28
    .venv/bin/python benchmarks/sequential.py --dataset amazon-scientific --text
    .venv/bin/python benchmarks/sequential.py --dataset ml-1m --ablation --epochs 8

`--ablation` changes one factor at a time from the base configuration (loss, depth,
max_len, text adapter) and reports validation metrics only: it is for choosing, so the
test split stays out of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine

from recsage.component import build_config
from recsage.data.schema import Dataset
from recsage.data.sources.registry import load_dataset
from recsage.data.splits import leave_one_out
from recsage.evaluation import evaluate
from recsage.models import EASE, Popularity
from recsage.models.sasrec.model import SASRec, sequence_scorer
from recsage.models.sasrec.net import SASRecConfig

EASE_GRID = (50.0, 100.0, 200.0, 500.0, 1000.0)
EASE_RECENCY_GRID = tuple(
    {"l2": l2, "half_life": h} for l2 in (100.0, 500.0) for h in (5.0, 10.0, 30.0)
)
# The recipes found on the validation split (see the module docstring of models/sasrec.py):
# on CPU budgets a higher learning rate, an SVD warm start of the item table and every
# max_len window of long histories buy the most quality per minute.
RECIPE: dict[str, Any] = {
    "lr": 6e-3,
    "dropout": 0.1,
    "batch_size": 64,
    "emb_init": "svd",
    "window": "all",
    "schedule": "cosine",
    "max_epochs": 40,
    "eval_every": 2,
    "patience": 10,
}
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "ml-1m": {**RECIPE, "max_minutes": 28.0},
    # short, sparse sequences: a short window, strong dropout, early stopping every epoch
    "amazon-scientific": {
        **RECIPE,
        "lr": 3e-3,
        "max_len": 50,
        "dropout": 0.5,
        "batch_size": 128,
        "schedule": "constant",
        "max_epochs": 200,
        "eval_every": 1,
    },
}


def ablation_variants(base: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """One change at a time from `base`: loss, depth, history length, text adapter."""
    max_len = int(base.get("max_len", SASRecConfig.max_len))
    layers = int(base.get("layers", SASRecConfig.layers))
    base_cfg = vars(build_config(SASRecConfig, base))
    variants = [
        ("base", {}),
        ("loss=sampled (256 uniform negatives)", {"loss": "sampled", "negatives": 256}),
        ("loss=bce (1 negative)", {"loss": "bce"}),
        (f"layers={layers - 1}", {"layers": layers - 1}),
        (f"layers={layers + 1}", {"layers": layers + 1}),
        (f"max_len={max_len // 4}", {"max_len": max_len // 4}),
        (f"max_len={max_len // 2}", {"max_len": max_len // 2}),
        ("emb_init=xavier", {"emb_init": "xavier"}),
        ("text=add", {"text": "add"}),
    ]
    # drop changes that are no change (e.g. emb_init=xavier when the base already is)
    return [(k, v) for k, v in variants if not v or any(base_cfg[a] != b for a, b in v.items())]


METRICS = ("hr@10", "ndcg@10", "mrr")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings -> dict (values converted by the config dataclass)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--config expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def throughput(score: Callable[[np.ndarray], np.ndarray], users: np.ndarray) -> float:
    """Users scored per second over the whole catalogue (batches of 1024)."""
    start = time.perf_counter()
    for lo in range(0, len(users), 1024):
        score(users[lo : lo + 1024])
    return len(users) / max(time.perf_counter() - start, 1e-9)


def single_user_latency(model: SASRec, seqs: list[np.ndarray], n: int = 200) -> dict[str, float]:
    """Milliseconds to embed one new history, and to score the catalogue for it."""
    rng = np.random.default_rng(0)
    picks = rng.choice(len(seqs), size=min(n, len(seqs)), replace=False)
    model.user_vectors([seqs[picks[0]]])  # warm-up
    items = model.item_vectors()
    vec_ms, score_ms = [], []
    for u in picks:
        t0 = time.perf_counter()
        v = model.user_vectors([seqs[u]])
        t1 = time.perf_counter()
        _ = v @ items.T
        t2 = time.perf_counter()
        vec_ms.append(1000 * (t1 - t0))
        score_ms.append(1000 * (t2 - t0))
    return {
        "user_vector_ms_median": float(np.median(vec_ms)),
        "user_vector_ms_p95": float(np.percentile(vec_ms, 95)),
        "score_one_user_ms_median": float(np.median(score_ms)),
    }


def pick(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(metrics[k]), 4) for k in (*METRICS, "hr@20", "ndcg@20") if k in metrics}


def run_baselines(loo: Any, ds_name: str) -> list[dict[str, Any]]:
    """Popularity and EASE (l2 from the grid, chosen on validation)."""
    rows = []
    start = time.perf_counter()
    pop = Popularity().fit(loo.test.train)
    fit_s = time.perf_counter() - start
    res = evaluate(pop, loo.test, ks=(10, 20))
    rows.append(
        {
            "model": "popularity",
            "params": {},
            "test": pick(res.metrics),
            "train_seconds": fit_s,
            "users_per_second": throughput(pop.score, loo.test.users),
        }
    )
    best_l2, best_val, valid_scores = EASE_GRID[0], -1.0, {}
    for l2 in EASE_GRID:
        m = EASE(l2=l2).fit(loo.valid.train)
        val = evaluate(m, loo.valid, ks=(10,)).metrics["ndcg@10"]
        valid_scores[l2] = round(val, 4)
        print(f"  [{ds_name}] ease l2={l2:g}: valid ndcg@10={val:.4f}", flush=True)
        if val > best_val:
            best_l2, best_val = l2, val
    start = time.perf_counter()
    ease = EASE(l2=best_l2).fit(loo.test.train)
    fit_s = time.perf_counter() - start
    res = evaluate(ease, loo.test, ks=(10, 20))
    rows.append(
        {
            "model": "ease",
            "params": {"l2": best_l2},
            "valid_grid_ndcg@10": valid_scores,
            "valid": {"ndcg@10": round(best_val, 4)},
            "test": pick(res.metrics),
            "train_seconds": fit_s,
            "users_per_second": throughput(ease.score, loo.test.users),
        }
    )
    # EASE scoring recency-weighted histories: the strongest foundation baseline on LOO
    best_p, best_val, grid = EASE_RECENCY_GRID[0], -1.0, {}
    for p in EASE_RECENCY_GRID:
        val = evaluate(EASE(**p).fit(loo.valid.train), loo.valid, ks=(10,)).metrics["ndcg@10"]
        grid[f"l2={p['l2']:g},half_life={p['half_life']:g}"] = round(val, 4)
        if val > best_val:
            best_p, best_val = p, val
    print(f"  [{ds_name}] ease+recency valid ndcg@10 {grid}", flush=True)
    start = time.perf_counter()
    ease_r = EASE(**best_p).fit(loo.test.train)
    fit_s = time.perf_counter() - start
    res = evaluate(ease_r, loo.test, ks=(10, 20))
    rows.append(
        {
            "model": "ease + recency",
            "params": best_p,
            "valid_grid_ndcg@10": grid,
            "valid": {"ndcg@10": round(best_val, 4)},
            "test": pick(res.metrics),
            "train_seconds": fit_s,
            "users_per_second": throughput(ease_r.score, loo.test.users),
        }
    )
    for row in rows:
        print(f"  [{ds_name}] {row['model']}: test {row['test']}", flush=True)
    return rows


def run_two_tower(loo: Any, ds_name: str, text: np.ndarray) -> dict[str, Any]:
    """The semantic layer's two-tower (ID + text) with benchmarks/semantic.py's settings,
    early-stopped on validation, then scored from histories that include the valid item."""
    from semantic import TT_BASE, TT_DATASET

    from recsage.models.two_tower.model import TwoTower
    from recsage.models.two_tower.model import sequence_scorer as tt_scorer

    params = {**TT_BASE, **TT_DATASET.get(ds_name, {}), "threads": 1}
    start = time.perf_counter()
    model = TwoTower(**params).fit(loo.valid.train, item_text_vectors=text, valid=loo.valid)
    fit_s = time.perf_counter() - start
    scorer = tt_scorer(model, loo.test.train)
    res = evaluate(scorer, loo.test, ks=(10, 20), name="two-tower")
    row = {
        "model": "two-tower ID+text",
        "params": params,
        "test": pick(res.metrics),
        "train_seconds": fit_s,
        "users_per_second": throughput(lambda u: scorer(u), loo.test.users),
    }
    print(f"  [{ds_name}] two-tower: test {row['test']} ({fit_s:.0f}s)", flush=True)
    return row


def run_sasrec(
    label: str,
    params: dict[str, Any],
    loo: Any,
    *,
    text_vectors: np.ndarray | None,
    test: bool = True,
    checkpoint_dir: Path | None = None,
) -> dict[str, Any]:
    """Train with early stopping on validation; score the test split once (if asked)."""
    cfg: SASRecConfig = build_config(SASRecConfig, params)
    model = SASRec(cfg)
    vecs = text_vectors if cfg.text != "none" else None
    print(f"  [{label}] training {params}", flush=True)
    model.fit(
        loo.valid.train, valid=loo.valid, item_text_vectors=vecs, checkpoint_dir=checkpoint_dir
    )
    epochs = model.history
    train_s = float(sum(r["seconds"] for r in epochs))
    train_cpu_s = float(sum(r.get("cpu_seconds", 0.0) for r in epochs))
    eval_s = float(sum(r.get("eval_seconds", 0.0) for r in epochs))
    valid = evaluate(model, loo.valid, ks=(10, 20))
    row: dict[str, Any] = {
        "model": label,
        "params": {k: v for k, v in vars(cfg).items() if k != "progress"},
        "valid": pick(valid.metrics),
        "epochs_run": len(epochs),
        "best_epoch": model.best_epoch,
        "train_seconds": train_s,
        "train_cpu_seconds": train_cpu_s,
        "validation_seconds": eval_s,
        "fit_wall_seconds": model.fit_seconds,
        "seconds_per_epoch": train_s / max(1, len(epochs)),
        "history": [{k: round(float(v), 5) for k, v in r.items()} for r in epochs],
    }
    if test:
        scorer = sequence_scorer(model, loo.test.train)
        res = evaluate(scorer, loo.test, ks=(10, 20), name=label)
        row["test"] = pick(res.metrics)
        row["users_per_second"] = throughput(lambda u: scorer(u), loo.test.users)
        seqs = [np.asarray(s) for s in loo.test.train.sequences()]
        row.update(single_user_latency(model, seqs))
        print(f"  [{label}] test {row['test']}", flush=True)
    print(
        f"  [{label}] valid {row['valid']} epochs={len(epochs)} best={model.best_epoch} "
        f"train={train_s:.0f}s ({row['seconds_per_epoch']:.1f}s/epoch)",
        flush=True,
    )
    return row


def _train_cell(row: dict[str, Any]) -> str:
    cell = f"{row['train_seconds']:.0f}"
    if row.get("train_cpu_seconds"):
        cell += f" ({row['train_cpu_seconds']:.0f})"
    return cell


def markdown_table(rows: list[dict[str, Any]], split: str) -> str:
    head = (
        "| model | HR@10 | NDCG@10 | MRR | train s (CPU s) | s/epoch | epochs (best) | users/s | "
        "1-user ms |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        m = r.get(split, {})
        epochs = f"{r['epochs_run']} ({r['best_epoch']})" if "epochs_run" in r else "–"
        spe = f"{r['seconds_per_epoch']:.1f}" if "seconds_per_epoch" in r else "–"
        ups = f"{r['users_per_second']:,.0f}" if "users_per_second" in r else "–"
        lat = f"{r['user_vector_ms_median']:.1f}" if "user_vector_ms_median" in r else "–"
        lines.append(
            f"| {r['model']} | {m.get('hr@10', float('nan')):.4f} | "
            f"{m.get('ndcg@10', float('nan')):.4f} | {m.get('mrr', float('nan')):.4f} | "
            f"{_train_cell(r)} | {spe} | {epochs} | {ups} | {lat} |"
        )
    return "\n".join(lines)


def load_text_vectors(ds: Dataset) -> tuple[np.ndarray | None, str]:
    """MiniLM item vectors from recsage.encoders.text (disk-cached), or None with the reason."""
    try:
        from recsage.encoders.text import TextEncoder, encode_dataset_items

        root = os.environ.get("RECSAGE_CACHE_DIR")
        cache = (Path(root) if root else Path.home() / ".cache" / "recsage") / "embeddings"
        start = time.perf_counter()
        vecs = encode_dataset_items(TextEncoder(cache_dir=cache), ds)
        return np.asarray(vecs, np.float32), f"encoded in {time.perf_counter() - start:.1f}s"
    except Exception as exc:  # the encoder is optional: report why it is missing
        return None, f"text encoder unavailable: {exc}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="ml-1m", help="name or path (load_dataset)")
    ap.add_argument("--epochs", type=int, default=None, help="max epochs (default: config)")
    ap.add_argument("--config", nargs="*", default=[], help="SASRec key=value overrides")
    ap.add_argument("--out", default=None, help="JSON path")
    ap.add_argument("--ablation", action="store_true", help="one-factor ablation (validation)")
    ap.add_argument("--text", action="store_true", help="also run text=add and text=text_only")
    ap.add_argument("--no-baselines", action="store_true", help="skip popularity and EASE")
    ap.add_argument("--checkpoint-dir", default=None, help="checkpoint folder (resumable)")
    ap.add_argument(
        "--valid-only", action="store_true", help="report validation only (for tuning runs)"
    )
    args = ap.parse_args(argv)

    ds_key = Path(args.dataset).name if os.sep in args.dataset else args.dataset
    out = Path(args.out or f"benchmarks/results/sequential_{ds_key}.json")
    load_avg_start = os.getloadavg()
    ds = load_dataset(args.dataset)
    loo = leave_one_out(ds)
    base: dict[str, Any] = {"progress": False, **DATASET_DEFAULTS.get(ds.name, {})}
    base.update(parse_overrides(args.config))
    if args.epochs is not None:
        base["max_epochs"] = args.epochs
    print(f"{ds.describe()} base SASRec config {base}", flush=True)

    needs_text = args.text or args.ablation or not args.no_baselines
    text_vectors, text_note = load_text_vectors(ds) if needs_text else (None, "not requested")
    if needs_text:
        print(f"  text vectors: {text_note}", flush=True)

    rows: list[dict[str, Any]] = []
    if args.ablation:
        for label, change in ablation_variants(base):
            if change.get("text", "none") != "none" and text_vectors is None:
                continue
            rows.append(
                run_sasrec(
                    f"sasrec {label}",
                    {**base, **change},
                    loo,
                    text_vectors=text_vectors,
                    test=False,
                )
            )
        split = "valid"
    else:
        if not args.no_baselines:
            rows.extend(run_baselines(loo, ds.name))
            if text_vectors is not None:
                rows.append(run_two_tower(loo, ds.name, text_vectors))
        ckpt = Path(args.checkpoint_dir) if args.checkpoint_dir else None
        rows.append(
            run_sasrec(
                "sasrec",
                base,
                loo,
                text_vectors=None,
                checkpoint_dir=ckpt,
                test=not args.valid_only,
            )
        )
        if args.text and text_vectors is not None:
            for mode in ("add", "text_only"):
                rows.append(
                    run_sasrec(
                        f"sasrec text={mode}",
                        {**base, "text": mode},
                        loo,
                        text_vectors=text_vectors,
                        test=not args.valid_only,
                    )
                )
        split = "valid" if args.valid_only else "test"

    table = markdown_table(rows, split)
    title = (
        f"**{ds.name}** ({ds.n_users:,} users, {ds.n_items:,} items, "
        f"{len(ds.interactions):,} interactions), leave-one-out, full ranking, "
        f"history excluded, ties against the target; {split} split"
        + ("; one factor changed at a time from the base config" if args.ablation else "")
    )
    payload = {
        "benchmark": "sequential-ablation" if args.ablation else "sequential",
        "dataset": ds.describe(),
        "command": "python benchmarks/sequential.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "torch_threads": base.get("threads", SASRecConfig.threads),
        "load_average_start": load_avg_start,
        "load_average_end": os.getloadavg(),
        "text_vectors": text_note,
        "base_config": base,
        "protocol": {
            "split": "leave-one-out",
            "ranking": "full",
            "history_excluded": True,
            "ties": "against target",
            "sasrec_test_input": "history up to and including the validation item",
            "reported_split": split,
        },
        "results": rows,
        "markdown": title + "\n\n" + table,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(payload["markdown"])
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
