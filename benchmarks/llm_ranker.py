"""Fine-tuned LLM ranker: NDCG@10 of the pipeline with and without the `llm_ranker` stage,
in one run, with a learning curve over the number of training prompts.

Protocol (leave-one-out, single target, full ranking; a target outside the final top 10
scores 0):

- the pipeline's channels (EASE with recency, popularity) are fitted on all but each
  user's last two items; the base ranking is EASE's order (`column` stage); the LLM stage
  re-ranks EASE's top `--top` (one prompt per user: the last `--history` titles newest
  first, the candidates under labels A, B, … in shuffled order; label logits = scores);
- the bundled SmolLM2-135M-Instruct gets LoRA adapters on its last `--lora-layers` blocks,
  trained on the *validation* targets of `--train-users` sampled users (their training
  sequences as history; users whose target is not in EASE's top are skipped, counted);
  training runs in chunks (`--curve`, cumulative prompts), one pass each, and after each
  chunk the same test users are scored, which gives the learning curve;
- test: `--test-users` random test users disjoint from the training users; per user
  NDCG@10 of the base order, the LLM order (w = 1) and a fixed 50/50 z-score blend
  (w = 0.5; both configurations declared up front, none chosen on test); paired bootstrap
  95% CI of the difference over users; LLM seconds per user (one prompt per user, 1 thread).

    .venv/bin/python benchmarks/llm_ranker.py [--dataset ml-1m] [--curve 0,48,144]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import machine, machine_line, paired_ci, write_result

from recsage.data.sources.registry import load_dataset
from recsage.data.splits import Split, leave_one_out
from recsage.llm.cross_encoder import TextCatalogue
from recsage.llm.finetune import LMRanker
from recsage.llm.llm_ranker import LLMRankerStage, ranker_examples
from recsage.pipeline.pipeline import Pipeline
from recsage.types import QueryBatch


def spec(top: int, history: int) -> dict[str, Any]:
    return {
        "pipeline": {"name": "llm-ranker"},
        "text": {"enabled": False},
        "merge": {"max_candidates": 200},
        "channels": [
            {"name": "ease", "kind": "model", "model": "ease", "n": 200,
             "params": {"l2": 500.0, "half_life": 3.0}},
            {"name": "pop", "kind": "popularity", "n": 50},
        ],
        "stages": [
            {"name": "base", "kind": "column", "column": "ease", "keep": 50},
            {"name": "llm", "kind": "llm_ranker", "keep": 50, "top": top, "weight": 1.0,
             "history": history},
        ],
    }  # fmt: skip


def subset(split: Split, users: np.ndarray) -> Split:
    return dataclasses.replace(split, users=np.sort(np.asarray(users, np.int64)))


def ndcg10(order: np.ndarray, target: int) -> float:
    hit = np.flatnonzero(order[:10] == target)
    return float(1.0 / np.log2(hit[0] + 2)) if len(hit) else 0.0


def evaluate_users(
    pipe: Pipeline, stage: LLMRankerStage, split: Split, weights: tuple[float, ...]
) -> tuple[dict[str, np.ndarray], float]:
    """Per-user NDCG@10 of the base order and of the stage at each blend weight (LLM
    scores computed once per user); and the LLM seconds spent."""
    idx = next(k for k, s in enumerate(pipe.stages) if s is stage)
    seqs = split.train.sequences()
    targets = split.targets.tocsr()
    out: dict[str, list[float]] = {"base": [], **{f"w={w}": [] for w in weights}}
    secs = 0.0
    for lo in range(0, len(split.users), 25):
        u = split.users[lo : lo + 25]
        cands, ctx, _ = pipe._run_until(QueryBatch(u, [seqs[i] for i in u], pipe.n_items), idx)
        t0 = time.perf_counter()
        llm = stage.cross_scores(cands, ctx)
        secs += time.perf_counter() - t0
        base = cands.sort_by(stage.incoming(cands), cands.shape[1])
        lists = {"base": base.items}
        for w in weights:
            c = dataclasses.replace(cands, scores=dict(cands.scores))
            c.scores[stage.name] = stage.combine(cands, llm, w)
            lists[f"w={w}"] = c.sort_by(stage.name, c.shape[1]).items
        for r, user in enumerate(u.tolist()):
            (t,) = targets.indices[targets.indptr[user] : targets.indptr[user + 1]]
            for k, items in lists.items():
                out[k].append(ndcg10(items[r], int(t)))
        print(f"    {lo + len(u)}/{len(split.users)} test users scored", flush=True)
    return {k: np.array(v) for k, v in out.items()}, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--train-users", type=int, default=600, help="sampled validation users")
    ap.add_argument("--test-users", type=int, default=150)
    ap.add_argument("--curve", default="0,48,144", help="cumulative training prompts")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--history", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lora-layers", type=int, default=8)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=640)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="llm_ranker")
    args = ap.parse_args()
    t_all = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    curve = sorted({int(c) for c in args.curve.split(",") if c.strip()})

    ds = load_dataset(args.dataset)
    loo = leave_one_out(ds)
    pipe = Pipeline(spec(args.top, args.history))
    say = lambda m: print("  " + m, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    pipe.items, pipe.users, pipe.item_table = ds.items, ds.users, ds.item_table
    pipe.sequences, pipe.data_fingerprint = ds.sequences(), ds.fingerprint()
    pipe._prepare_resources(ds, say)
    pipe.fit_on(loo.valid.train, say=say)
    base_fit_s = time.perf_counter() - t0
    stage = next(s for s in pipe.stages if isinstance(s, LLMRankerStage))
    assert pipe.item_table is not None
    stage.catalogue = TextCatalogue.from_item_table(pipe.item_table)
    lm = LMRanker(model=args.model, lr=args.lr, batch_size=args.batch, epochs=1,
                  lora_layers=args.lora_layers, lora_rank=args.lora_rank,
                  max_tokens=args.max_tokens, threads=args.threads, seed=args.seed)  # fmt: skip
    stage.lm = lm.ready()

    perm = rng.permutation(loo.valid.users)
    train_users = np.sort(perm[: args.train_users])
    pool = np.setdiff1d(loo.test.users, train_users)
    test_users = rng.choice(pool, size=min(args.test_users, len(pool)), replace=False)
    test_split = subset(loo.test, test_users)
    t0 = time.perf_counter()
    data = ranker_examples(pipe, loo.valid, stage, users=train_users)
    build_s = time.perf_counter() - t0
    order = rng.permutation(len(data.examples))
    print(f"{len(data.examples)} training prompts from {len(train_users)} validation users "
          f"({data.skipped} skipped: target not in EASE's top {args.top}); mean prompt "
          f"{np.mean([len(e.ids) for e in data.examples]):.0f} tokens", flush=True)  # fmt: skip

    points: list[dict[str, Any]] = []
    done, train_s = 0, 0.0
    weights = (1.0, 0.5)
    for n in curve:
        n = min(n, len(order))
        if n > done:
            chunk = [data.examples[i] for i in order[done:n]]
            t0 = time.perf_counter()
            res = lm.fit(chunk, progress=False)
            train_s += time.perf_counter() - t0
            print(f"  trained on prompts {done}..{n}: loss {res.history[-1]['loss']:.3f} "
                  f"(total {train_s / 60:.1f} min)", flush=True)  # fmt: skip
            done = n
        per_user, llm_s = evaluate_users(pipe, stage, test_split, weights)
        point = {
            "train_prompts": done,
            "train_minutes": train_s / 60,
            "ndcg@10": {k: float(v.mean()) for k, v in per_user.items()},
            "delta_ci": {
                k: paired_ci(per_user["base"], v, args.seed)
                for k, v in per_user.items()
                if k != "base"
            },
            "llm_seconds_per_user": llm_s / max(1, len(test_users)),
        }
        points.append(point)
        print(f"  N={done}: {point}", flush=True)
        if n >= len(order):
            break

    payload: dict[str, Any] = {
        "machine": machine(),
        "command": "python benchmarks/llm_ranker.py " + " ".join(sys.argv[1:]),
        "dataset": ds.describe(),
        "args": vars(args),
        "train_prompts_available": len(data.examples),
        "train_users_skipped": data.skipped,
        "test_users": len(test_users),
        "base_fit_seconds": base_fit_s,
        "prompt_build_seconds": build_s,
        "curve": points,
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    payload["markdown"] = markdown(payload)
    path = write_result(args.name, payload)
    print(payload["markdown"])
    print(f"wrote {path}")


def markdown(p: dict[str, Any]) -> str:
    a = p["args"]
    lines = [
        f"## Fine-tuned LLM ranker ({a['model']}) on {a['dataset']}: NDCG@10, "
        f"{p['test_users']} test users",
        "",
        f"Command: `{p['command'].strip()}`  ",
        machine_line(p["machine"]),
        "",
        f"Base: EASE's order; the LLM re-ranks its top {a['top']} (history {a['history']} "
        f"titles). LoRA rank {a['lora_rank']} on the last {a['lora_layers']} blocks, lr "
        f"{a['lr']}, batch {a['batch']}; {p['train_prompts_available']} training prompts "
        f"available ({p['train_users_skipped']} of {a['train_users']} validation users "
        "skipped). Δ = paired mean over users with its bootstrap 95% CI.",
        "",
        "| training prompts | train min | base NDCG@10 | LLM (w=1) | Δ (95% CI) | blend w=0.5 "
        "| Δ (95% CI) | LLM s/user |",
        "|---:|---:|---:|---:|---|---:|---|---:|",
    ]
    for pt in p["curve"]:
        n, d = pt["ndcg@10"], pt["delta_ci"]

        def ci(k: str, d: dict[str, list[float]] = d) -> str:
            m, lo, hi = d[k]
            return f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]"

        lines.append(
            f"| {pt['train_prompts']} | {pt['train_minutes']:.1f} | {n['base']:.4f} | "
            f"{n['w=1.0']:.4f} | {ci('w=1.0')} | {n['w=0.5']:.4f} | {ci('w=0.5')} | "
            f"{pt['llm_seconds_per_user']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
