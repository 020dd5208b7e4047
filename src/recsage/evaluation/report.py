"""Evaluation reports: a rich table on screen, JSON + Markdown + PNG chart on disk."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from recsage import __version__
from recsage.evaluation.protocol import EvalResult

HEADLINE = ("hr@10", "ndcg@10", "mrr", "map@10", "precision@10", "coverage@10", "novelty@10",
            "diversity@10")  # fmt: skip


def headline_columns(results: Sequence[EvalResult], ks: Sequence[int] | None = None) -> list[str]:
    """Metric columns to show, headline ones first, in a stable order.

    With `ks` (e.g. `--k 5,10,20`), hr@K and ndcg@K are shown for exactly those cut-offs.
    """
    keys: list[str] = []
    for r in results:
        for k in r.metrics:
            if k not in keys:
                keys.append(k)
    first = [k for k in HEADLINE if k in keys]
    sampled = [k for k in keys if k.startswith("sampled")]
    if ks is None:
        return first + [k for k in sampled if k.endswith("@10") or k.endswith("mrr")]
    acc = [f"{m}@{k}" for k in sorted(set(ks)) for m in ("hr", "ndcg") if f"{m}@{k}" in keys]
    rest = [k for k in first if not k.startswith(("hr@", "ndcg@"))]
    wanted = {f"@{k}" for k in ks}
    samp = [k for k in sampled if k.endswith("mrr") or any(k.endswith(w) for w in wanted)]
    return acc + rest + [k for k in samp if k.split("_", 1)[1].startswith(("hr@", "ndcg@", "mrr"))]


SHORT = {"coverage@10": "cov@10", "novelty@10": "nov@10", "diversity@10": "div@10",
         "precision@10": "p@10"}  # fmt: skip


def rich_table(
    results: Sequence[EvalResult], *, title: str, ks: Sequence[int] | None = None
) -> Table:
    """The comparison table printed by the CLI (compact enough for 80 columns), with the
    number of evaluated users; `ks` picks the cut-offs shown (default: @10)."""
    cols = [c for c in headline_columns(results, ks) if not c.startswith(("map@", "precision@"))]
    if ks is not None and len(ks) > 1:  # several cut-offs: keep it to accuracy (fits 100 cols)
        cols = [c for c in cols if not c.startswith(("coverage@", "novelty@", "diversity@"))]
    table = Table(title=title)
    table.add_column("model", no_wrap=True)
    table.add_column("users", justify="right")  # how many users the means are over
    for c in cols:
        table.add_column(SHORT.get(c, c), justify="right", no_wrap=True)
    table.add_column("fit s", justify="right")
    table.add_column("eval s", justify="right")
    for r in results:
        fit = r.extra.get("fit_seconds")
        table.add_row(
            r.model,
            f"{int(r.protocol.get('users', len(r.per_user))):,}",
            *[f"{r.metrics[c]:.4f}" if c in r.metrics else "-" for c in cols],
            f"{fit:.2f}" if isinstance(fit, float) else "-",
            f"{r.eval_seconds:.2f}",
        )
    return table


def markdown_table(results: Sequence[EvalResult], ks: Sequence[int] | None = None) -> str:
    """GitHub Markdown version of the same table."""
    cols = headline_columns(results, ks)
    head = "| model | users | " + " | ".join(cols) + " | fit s | eval s |"
    sep = "|---|---:|" + "---:|" * (len(cols) + 2)
    rows = []
    for r in results:
        fit = r.extra.get("fit_seconds")
        vals = [f"{r.metrics[c]:.4f}" if c in r.metrics else "-" for c in cols]
        fit_s = f"{fit:.2f}" if isinstance(fit, float) else "-"
        users = int(r.protocol.get("users", len(r.per_user)))
        rows.append(
            f"| {r.model} | {users:,} | "
            + " | ".join(vals)
            + f" | {fit_s} | {r.eval_seconds:.2f} |"
        )
    return "\n".join([head, sep, *rows])


def write_reports(
    results: Sequence[EvalResult],
    out_dir: str | Path,
    *,
    dataset: dict[str, Any],
    ks: Sequence[int] | None = None,
) -> dict[str, Path]:
    """Write results.json, report.md, metrics.png and per-user CSVs into `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "recsage_version": __version__,
        "dataset": dataset,
        "results": [r.to_dict() for r in results],
    }
    paths = {
        "json": out / "results.json",
        "markdown": out / "report.md",
        "png": out / "metrics.png",
    }
    paths["json"].write_text(json.dumps(payload, indent=2, default=str))
    protocol = results[0].protocol if results else {}
    md = [
        f"# Evaluation on {dataset.get('name', '?')}",
        "",
        f"Protocol: split `{protocol.get('split')}`, {protocol.get('ranking')} ranking over "
        f"{protocol.get('ranked_items')} items, {protocol.get('users')} users, "
        f"ties {protocol.get('ties')}, history items excluded.",
        "",
        markdown_table(results, ks),
        "",
    ]
    md += [f"- {n}" for n in protocol.get("notes", [])]
    paths["markdown"].write_text("\n".join(md) + "\n")
    for r in results:
        r.per_user.to_csv(out / f"per_user_{r.model}.csv", index=False)

    cols = [c for c in headline_columns(results, ks) if not c.startswith(("novelty", "sampled"))]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(cols)), 4))
    width = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        xs = [j + i * width for j in range(len(cols))]
        ax.bar(xs, [r.metrics.get(c, 0.0) for c in cols], width=width, label=r.model)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cols))], cols, rotation=20)
    ax.set_title(f"{dataset.get('name', '')} — {protocol.get('split')}, {protocol.get('ranking')}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths
