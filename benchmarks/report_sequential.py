"""Assemble the "sequential" section of docs/benchmarks.md from the saved results.

Reads benchmarks/results/sequential_*.json and transfer.json (whichever exist), adds the
published anchors, and rewrites the block between the section markers.

    .venv/bin/python benchmarks/report_sequential.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_line, update_doc_section

# docs/references.md (verified rows): HR@10, NDCG@10 on ML-1M, leave-one-out, full ranking
PUBLISHED_ML1M = [
    ("SASRec+ 3000 negatives (Klenitskiy & Vasilev, RecSys 2023)", 0.3159, 0.1857),
    ("SASRec+ full softmax (same)", 0.3152, 0.1821),
    ("eSASRec (blondered/transformer_benchmark)", 0.3133, 0.1772),
    ("SASRec full softmax in RecTools", 0.3058, 0.1779),
    ("gSASRec", 0.3003, 0.1726),
    ("HSTU-large (own preprocessing)", 0.3294, 0.1893),
]
TARGET = (0.32, 0.19)
# Recformer (KDD 2023, Table 2, second-hand; see docs/references.md): Scientific
PUBLISHED_SCI = [("Recformer, 2-stage fine-tune (paper)", 0.1448, 0.1027)]


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def best_row(p: dict[str, Any], prefix: str = "sasrec") -> dict[str, Any]:
    rows = [r for r in p["results"] if r["model"].startswith(prefix) and "test" in r]
    return max(rows, key=lambda r: r["test"]["ndcg@10"])


def run_block(title: str, p: dict[str, Any]) -> list[str]:
    """Heading, reproducing command, machine and the run's own table."""
    command = f"Command: `{p['command']}`  "
    return [title, "", command, machine_line(p["machine"]), "", p["markdown"]]


def section_ml1m(p: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    """The side-by-side run; the published comparison and the verdict use the full SASRec
    run with the best *validation* NDCG@10 among `runs` (never picked by test)."""
    ours = max((best_row(r) for r in runs), key=lambda r: r["valid"]["ndcg@10"])
    hr, nd = ours["test"]["hr@10"], ours["test"]["ndcg@10"]
    met = hr >= TARGET[0] and nd >= TARGET[1]
    lines = [
        *run_block("### ML-1M", p),
        "",
        f"SASRec config (best on validation): `{json.dumps(ours['params'])}`. Training wall "
        "time is the sum of the "
        f"epochs (CPU seconds in brackets); validation cost {ours['validation_seconds']:.0f} s "
        f"on top. users/s: batched full-catalogue scoring; 1-user ms: one new history → user "
        f"vector (median; p95 {ours['user_vector_ms_p95']:.1f} ms), the feedback loop's cost "
        "per click. Load average at start/end: "
        f"{p['load_average_start'][0]:.1f} / {p['load_average_end'][0]:.1f} (another "
        "benchmark ran on the second core).",
        "",
        "Published anchors (same data family, leave-one-out, full ranking; "
        "docs/references.md) next to our full run with the best validation NDCG@10 "
        "(every run is listed below):",
        "",
        "| model | HR@10 | NDCG@10 |",
        "|---|---:|---:|",
        *[f"| {n} | {h:.4f} | {d:.4f} |" for n, h, d in PUBLISHED_ML1M],
        f"| **recsage SASRec, 1 CPU thread, {ours['train_seconds'] / 60:.0f} min** | "
        f"**{hr:.4f}** | **{nd:.4f}** |",
        f"| target | ≥ {TARGET[0]:.2f} | ≥ {TARGET[1]:.2f} |",
        "",
        f"**Target {'met' if met else 'not met'}**: HR@10 {hr:.4f} vs ≥ {TARGET[0]}, "
        f"NDCG@10 {nd:.4f} vs ≥ {TARGET[1]} (validation: HR@10 {ours['valid']['hr@10']:.4f}, "
        f"NDCG@10 {ours['valid']['ndcg@10']:.4f}).",
    ]
    return lines


def section_other_runs(main: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    """Every full ML-1M SASRec run (test scored once each), so no test result is hidden."""
    base = best_row(main)["params"]
    lines = [
        "",
        "#### Every full ML-1M SASRec run",
        "",
        "Each configuration below was chosen from validation evidence (the ablation and the "
        "longer-schedule run); each was scored on the test split once, and all are listed.",
        "",
        "| run | test HR@10 | test NDCG@10 | MRR | valid NDCG@10 | train min | epochs (best) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in [main, *runs]:
        r = best_row(p)
        diff = {k: v for k, v in r["params"].items() if base.get(k) != v}
        label = (
            "the side-by-side run above"
            if p is main
            else ", ".join(f"{k}={v}" for k, v in diff.items())
        )
        t = r["test"]
        lines.append(
            f"| {label} | {t['hr@10']:.4f} | {t['ndcg@10']:.4f} | {t['mrr']:.4f} | "
            f"{r['valid']['ndcg@10']:.4f} | {r['train_seconds'] / 60:.0f} | "
            f"{r['epochs_run']} ({r['best_epoch']}) |"
        )
    lines += ["", *[f"- `{p['command']}`" for p in [main, *runs]]]
    return lines


def section_budget(p: dict[str, Any]) -> list[str]:
    """A validation-only run with a longer schedule: what more CPU time buys."""
    r = p["results"][0]
    curve = [h for h in r["history"] if "ndcg@10" in h]
    pts = ", ".join(f"{int(h['epoch'])}: {h['ndcg@10']:.4f}" for h in curve)
    return [
        "",
        "#### Longer schedule (validation only)",
        "",
        f"Command: `{p['command']}`  ",
        f"The max_len-{r['params']['max_len']} recipe with a "
        f"{r['params']['max_epochs']}-epoch cosine schedule, "
        f"{r['train_seconds'] / 60:.0f} min of training ({r['seconds_per_epoch']:.1f} s/epoch, "
        f"one thread, the other core busy). Validation NDCG@10 by epoch: {pts}. Best "
        f"{r['valid']['ndcg@10']:.4f} (epoch {r['best_epoch']}).",
    ]


def section_amazon(p: dict[str, Any]) -> list[str]:
    rows = {r["model"]: r for r in p["results"]}
    lines = [
        "",
        *run_block("### Amazon-Scientific", p),
        "",
        "Published (different preprocessing; see docs/references.md): "
        + "; ".join(f"{n}: HR@10 {h:.4f}, NDCG@10 {d:.4f}" for n, h, d in PUBLISHED_SCI)
        + ". No SASRec/UniSRec figure for this dataset could be read and cited.",
    ]
    ids, add = rows.get("sasrec"), rows.get("sasrec text=add")
    only = rows.get("sasrec text=text_only")
    if ids and add and only:
        lines += [
            "",
            "What the text representations add over ID-only SASRec (test NDCG@10): "
            f"ID {ids['test']['ndcg@10']:.4f} → ID + text adapter "
            f"{add['test']['ndcg@10']:.4f} ({add['test']['ndcg@10'] - ids['test']['ndcg@10']:+.4f}"
            f"), text only {only['test']['ndcg@10']:.4f} "
            f"({only['test']['ndcg@10'] - ids['test']['ndcg@10']:+.4f}).",
        ]
    return lines


def section_ablation(p: dict[str, Any]) -> list[str]:
    return [
        "",
        "### Ablations (ML-1M, validation split, short budget)",
        "",
        "One factor changed at a time from the max_len-200 recipe, each trained on a 5-epoch "
        "cosine schedule (the budget the CPU allows for nine runs) and reported on the "
        "validation split only.",
        "",
        *run_block("", p)[2:],
    ]


def main() -> None:
    parts = [
        "## Sequential Transformer: SASRec with language-model item representations (issue 4)",
        "",
        "Protocol: leave-one-out, full ranking over all items, the user's history excluded, "
        "ties count against the target. SASRec trains on all but each user's last two items "
        "and early-stops on the second-last (validation) item's NDCG@10; the test item is "
        "then predicted once from the history up to and including the validation item. "
        "EASE's l2 (and half-life) and every other setting were chosen on the validation "
        "split; the test split was scored once per reported run.",
        "",
        "**Comparability (ML-1M).** `../shared/data/ml-1m` holds SASRec's ML-1M sequences "
        "(6,040 users, 3,416 items after the <5-interaction filter, 999,611 interactions, "
        "chronological, the same file family the SASRec+ and BERT4Rec papers use), rebuilt "
        "from several sources (PROVENANCE.md): for 5,527 users the second-last item was read "
        "page by page, so a same-length misread of that item cannot be ruled out. That item "
        "is the validation target and part of the test history, never the test target, so "
        "the test targets are exact; a misread could only perturb one history position. The "
        "data has no timestamps or ratings: order within a user is the file order. eSASRec, "
        "RecTools and gSASRec rows use raw ML-1M (3,706 items, unfiltered), and HSTU its own "
        "preprocessing; only the SASRec+ rows share this exact item set.",
        "",
    ]
    ml = load("sequential_ml-1m")
    others = [load(n) for n in ("sequential_ml-1m_len200", "sequential_ml-1m_3layers")]
    if ml:
        extra = [o for o in others if o]
        parts += section_ml1m(ml, [ml, *extra])
        parts += section_other_runs(ml, extra)
    longer = load("sequential_ml-1m_long")
    if longer:
        parts += section_budget(longer)
    amazon = load("sequential_amazon-scientific")
    if amazon:
        parts += section_amazon(amazon)
    abl = load("sequential_ablation_ml-1m")
    if abl:
        parts += section_ablation(abl)
    transfer = load("transfer")
    if transfer:
        parts += ["", transfer["markdown"]]
    update_doc_section("sequential", "\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
