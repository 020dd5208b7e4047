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


def main() -> None:
    parts = [
        "## Knowledge graph, explanations' sources and the fine-tuned LM ranker (issue 6)",
        "",
        "Each subsection is one benchmark run, written by the script named in its command.",
    ]
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
