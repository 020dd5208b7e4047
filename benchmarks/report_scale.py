"""Render benchmarks/results/scale.json as the "Scale curves" section of docs/scale.md."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, machine_line

DOC = ROOT / "docs" / "scale.md"
BEGIN, END = "<!-- BEGIN scale -->", "<!-- END scale -->"


def _cell(p: dict[str, Any]) -> str:
    if p["status"] == "ok":
        return f"{p['seconds']:.1f} s / {p['peak_mb']:,.0f} MB"
    return {"refused": "refused (memory guard)", "skipped": "stopped (predicted > limit)",
            "timeout": "stopped (time limit)", "failed": "failed"}[p["status"]]  # fmt: skip


def curve_table(cur: dict[str, Any], label: str) -> list[str]:
    sizes = sorted({p["size"] for pts in cur["models"].values() for p in pts})
    lines = [f"| model | {' | '.join(f'{s:,} {label}' for s in sizes)} | k |",
             "|---|" + "---|" * (len(sizes) + 1)]  # fmt: skip
    for name, pts in cur["models"].items():
        by = {p["size"]: p for p in pts}
        cells = [_cell(by[s]) if s in by else "" for s in sizes]
        k = cur["exponents"].get(name)
        lines.append(f"| {name} | {' | '.join(cells)} | {'' if k is None else f'{k:.2f}'} |")
    return lines


def markdown(res: dict[str, Any]) -> str:
    items, events = res["curves"]["items"], res["curves"]["events"]
    out = [
        "Synthetic data (`recsage synth`), `nice -n 19 python benchmarks/scale.py` "
        f"(limit {res['limit_s']:.0f} s per run, {res['seconds'] / 60:.0f} min in all). "
        + machine_line(res["machine"]),
        "The machine is shared by several engineers (load average 4-6 on 2 cores during the "
        "run), so times are inflated and noisy: read orders of magnitude and exponents. Each "
        "cell is fit time / peak RSS increase of the fitting process; k is the exponent of "
        "cost ∝ size^k fitted over the finished points (log-log least squares). Model "
        "settings: " + "; ".join(f"{k}: {v}" for k, v in res["notes"].items()) + ".",
        "",
        "![scale curves](img/scale.png)",
        "",
        f"**Catalogue size** ({items['fixed']['events']:,} events, "
        f"{items['fixed']['users']:,} users):",
        "",
        *curve_table(items, "items"),
        "",
        f"**Log size** ({events['fixed']['items']:,} items, users = events / 20):",
        "",
        *curve_table(events, "events"),
        "",
        "Where a curve stops, and why:",
        "",
    ]
    for key, cur in (("items", items), ("events", events)):
        for name, pts in cur["models"].items():
            for p in pts:
                if p["status"] != "ok":
                    note = p.get("note", "").split(";")[0]
                    out.append(f"- {name}, {p['size']:,} {key}: {p['status']} - {note}")
    out += ["", "**Vector index** (64-d random vectors, 1,000 top-10 queries, FAISS defaults):",
            "", "| items | exact build | exact ms/query | HNSW build | HNSW ms/query |",
            "|---|---|---|---|---|"]  # fmt: skip
    for rec in items["index"]:
        cells = []
        for kind in ("exact", "hnsw"):
            v = rec.get(kind)
            if isinstance(v, dict):
                cells += [f"{v['build_s']:.1f} s", f"{v['query_ms_per_query']:.3f}"]
            else:
                cells += ["stopped (predicted > limit)", ""]
        out.append(f"| {rec['items']:,} | {' | '.join(cells)} |")
    b = res["batch"]
    sj = b["small_job_500_users"]
    out += [
        "",
        f"**Batch recommendation** (`write_recommendations`, ALS, {b['items']:,} items, top-"
        f"{b['n']} for {b['users']:,} users, Parquet out): local "
        f"{b['local']['users_per_s']:,.0f} users/s, Ray with 2 workers "
        f"{b['ray_2_workers']['users_per_s']:,.0f} users/s (same run). Ray's fixed costs: "
        f"starting a local Ray {b['ray_init_s']:.1f} s; a 500-user job takes "
        f"{sj['local'] * 1000:.0f} ms locally and {sj['ray_2_workers'] * 1000:.0f} ms on Ray "
        f"(+{sj['ray_overhead_s'] * 1000:.0f} ms overhead). Both runs share the same 2 cores "
        "(the local one through BLAS threads), so the speed-up is "
        f"{b['ray_2_workers']['users_per_s'] / b['local']['users_per_s']:.2f}x here; "
        "Ray pays off with more nodes, and is not worth it for jobs of a few seconds.",
        "",
    ]
    s = res["serving"]
    out.append(
        f"**In-process serving** (largest catalogue fitted: ALS, {s['items']:,} items): "
        f"one user's top-10 p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms; model arrays "
        f"{s['model_mb']:,.0f} MB. ({s['note']}.)"
    )
    return "\n".join(out)


def main() -> None:
    res = json.loads((RESULTS / "scale.json").read_text())
    text = DOC.read_text()
    block = f"{BEGIN}\n{markdown(res)}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.replace("<!-- filled in from benchmarks/results/scale.json after the run -->",
                            block)  # fmt: skip
    DOC.write_text(text)
    print(f"updated {DOC}")


if __name__ == "__main__":
    main()
