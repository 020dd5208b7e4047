"""Domain transfer of the text-only (inductive) SASRec: source → target, side by side.

A text-only SASRec has no per-item parameters: items enter through an adapter over their
frozen MiniLM text vectors, so a model trained on one catalogue can read and rank another.
This benchmark trains it on the source dataset (early stopping on the source validation
split), then on the target dataset reports, under one protocol (leave-one-out, full ranking,
history excluded):

- zero-shot: the source model as it is, fed the target's histories and item text;
- fine-tuned: the source weights trained further on the target (`--finetune-minutes`);
- from scratch: the same text-only model trained on the target alone (same budget);
- ID-only SASRec from scratch, EASE and popularity on the target, for reference.

Every model early-stops on the target's validation split; the test split is scored once.

    .venv/bin/python benchmarks/transfer.py --source ml-1m --target ml-100k
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, machine_line, write_result
from sequential import load_text_vectors, pick

from recsage.component import build_config
from recsage.data.sources.registry import load_dataset
from recsage.data.splits import leave_one_out
from recsage.evaluation import evaluate
from recsage.models import EASE, Popularity
from recsage.models.sasrec.model import SASRec
from recsage.models.sasrec.net import SASRecConfig

# small-data settings (not tuned on the target): short windows, strong dropout
TARGET_CONFIG: dict[str, Any] = {
    "lr": 3e-3,
    "dropout": 0.3,
    "batch_size": 64,
    "max_len": 50,
    "eval_every": 1,
    "patience": 5,
    "max_epochs": 200,
    "progress": False,
}


def scorer_for(model: SASRec, dataset: Any, text: np.ndarray | None) -> Any:
    """`evaluate` callable: each user's ordered history (through the given catalogue text)."""
    seqs = [np.asarray(s, np.int64) for s in dataset.sequences()]

    def score(users: np.ndarray, history: Any = None) -> np.ndarray:
        return model.score_sequences([seqs[u] for u in np.asarray(users)], item_text_vectors=text)

    return score


def train(
    label: str,
    params: dict[str, Any],
    loo: Any,
    text: np.ndarray | None,
    init: SASRec | None = None,
) -> tuple[SASRec, dict[str, Any]]:
    cfg = build_config(SASRecConfig, params)
    model = SASRec(cfg)
    print(f"  [{label}] training {params}", flush=True)
    start = time.perf_counter()
    model.fit(loo.valid.train, valid=loo.valid, item_text_vectors=text, init_from=init)
    row = {
        "model": label,
        "params": {k: v for k, v in vars(cfg).items() if k != "progress"},
        "train_seconds": time.perf_counter() - start,
        "epochs_run": len(model.history),
        "best_epoch": model.best_epoch,
        "valid_ndcg@10": round(float(model.best_ndcg), 4),
    }
    return model, row


def test_row(row: dict[str, Any], model: SASRec, loo: Any, text: np.ndarray | None) -> None:
    use_text = text if model.config.text == "text_only" else None
    res = evaluate(scorer_for(model, loo.test.train, use_text), loo.test, ks=(10, 20))
    row["test"] = pick(res.metrics)
    print(f"  [{row['model']}] test {row['test']}", flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--source", default="ml-1m", help="dataset name or path (load_dataset)")
    ap.add_argument("--target", default="ml-100k", help="dataset name or path (load_dataset)")
    ap.add_argument("--source-minutes", type=float, default=12.0)
    ap.add_argument("--finetune-minutes", type=float, default=4.0)
    ap.add_argument("--source-config", nargs="*", default=[], help="key=value overrides")
    ap.add_argument("--name", default="transfer")
    args = ap.parse_args(argv)
    from sequential import parse_overrides

    src_ds, tgt_ds = load_dataset(args.source), load_dataset(args.target)
    src_loo, tgt_loo = leave_one_out(src_ds), leave_one_out(tgt_ds)
    src_text, note_s = load_text_vectors(src_ds)
    tgt_text, note_t = load_text_vectors(tgt_ds)
    if src_text is None or tgt_text is None:
        raise SystemExit(f"text vectors needed: {note_s}; {note_t}")
    print(f"source {src_ds.describe()}\ntarget {tgt_ds.describe()}", flush=True)

    shared = {"dim": 64, "layers": 2, "heads": 1, "max_len": 50, "text": "text_only"}
    src_params = {
        **TARGET_CONFIG,
        **shared,
        "dropout": 0.2,
        "eval_every": 2,
        "max_epochs": 60,
        "max_minutes": args.source_minutes,
        **parse_overrides(args.source_config),
    }
    source, src_row = train(f"source: text-only on {src_ds.name}", src_params, src_loo, src_text)
    src_row["role"] = "source"
    test_row(src_row, source, src_loo, src_text)

    rows: list[dict[str, Any]] = []
    budget = {**TARGET_CONFIG, **shared, "max_minutes": args.finetune_minutes}

    zs = {"model": "zero-shot (source model as is)", "train_seconds": 0.0}
    test_row(zs, source, tgt_loo, tgt_text)
    val = evaluate(scorer_for(source, tgt_loo.valid.train, tgt_text), tgt_loo.valid, ks=(10,))
    zs["valid_ndcg@10"] = round(float(val.metrics["ndcg@10"]), 4)
    rows.append(zs)

    for label, params, init in (
        ("fine-tuned from the source", budget, source),
        ("text-only from scratch", budget, None),
    ):
        model, row = train(label, params, tgt_loo, tgt_text, init)
        test_row(row, model, tgt_loo, tgt_text)
        row["curve"] = [
            {"epoch": int(r["epoch"]), "ndcg@10": round(float(r["ndcg@10"]), 4)}
            for r in model.history
            if "ndcg@10" in r
        ]
        rows.append(row)
    id_params = {**budget, "text": "none"}
    model, row = train("ID-only SASRec from scratch", id_params, tgt_loo, None)
    test_row(row, model, tgt_loo, None)
    rows.append(row)

    for label, m in (("EASE (l2=200)", EASE(l2=200.0)), ("popularity", Popularity())):
        t0 = time.perf_counter()
        m.fit(tgt_loo.test.train)
        res = evaluate(m, tgt_loo.test, ks=(10, 20))
        rows.append(
            {"model": label, "train_seconds": time.perf_counter() - t0, "test": pick(res.metrics)}
        )

    command = "python benchmarks/transfer.py " + " ".join(argv or sys.argv[1:])
    payload = {
        "benchmark": "transfer",
        "command": command,
        "machine": machine(),
        "source": src_ds.describe(),
        "target": tgt_ds.describe(),
        "text_vectors": {"source": note_s, "target": note_t},
        "source_model": src_row,
        "results": rows,
        "load_average_end": os.getloadavg(),
    }
    payload["markdown"] = markdown(payload, src_ds.name, tgt_ds.name, command)
    write_result(args.name, payload)
    print(payload["markdown"])
    return payload


def markdown(p: dict[str, Any], src: str, tgt: str, command: str) -> str:
    s = p["source_model"]
    lines = [
        f"### Transfer: text-only SASRec {src} → {tgt}",
        "",
        f"Command: `{command}`  ",
        machine_line(p["machine"]),
        "",
        f"Source model: text-only SASRec (MiniLM item vectors → adapter, no ID embeddings; "
        f"dim {s['params']['dim']}, {s['params']['layers']} layers, max_len "
        f"{s['params']['max_len']}) trained on {src} in {s['train_seconds']:.0f} s "
        f"({s['epochs_run']} epochs, best {s['best_epoch']}); its own {src} test: "
        f"HR@10 {s['test']['hr@10']:.4f}, NDCG@10 {s['test']['ndcg@10']:.4f}. On {tgt} "
        "(leave-one-out, full ranking, history excluded), every trained row early-stops on "
        f"{tgt}'s validation split; training budget per row "
        f"{p['results'][1]['params']['max_minutes']:g} min.",
        "",
        f"| on {tgt} | HR@10 | NDCG@10 | MRR | valid NDCG@10 | train s | epochs (best) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in p["results"]:
        t = r["test"]
        ep = f"{r['epochs_run']} ({r['best_epoch']})" if "epochs_run" in r else "–"
        val = f"{r['valid_ndcg@10']:.4f}" if "valid_ndcg@10" in r else "–"
        lines.append(
            f"| {r['model']} | {t['hr@10']:.4f} | {t['ndcg@10']:.4f} | {t['mrr']:.4f} | "
            f"{val} | {r['train_seconds']:.0f} | {ep} |"
        )
    curves = [r for r in p["results"] if r.get("curve")]
    if curves:
        lines += ["", "Validation NDCG@10 by epoch on the target (first 8 epochs):", ""]
        for r in curves:
            pts = ", ".join(f"{c['ndcg@10']:.3f}" for c in r["curve"][:8])
            lines.append(f"- {r['model']}: {pts}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
