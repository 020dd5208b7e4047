"""LLM re-ranking of EASE's top-20: NDCG@10 with and without it, per local model.

Protocol: leave-one-out, full ranking (ties against the target). The base is EASE with
recency-weighted histories (`create_model("ease", l2=500, half_life=3)`), fitted on the
validation training data for validation users and on the test training data for test
users. For a seeded random sample of test users (default 200) and a disjoint sample of
validation users (default 100), the LLM re-orders the base top-20 (listwise: numbered list
in, permutation out; pointwise: P(yes) per candidate). The final order is the rank blend
(1 - w) * base + w * LLM; w is picked on the validation users from a grid and applied to the
test users. A target outside the top-20 is a miss either way, so HR@20 is the ceiling.
Responses are cached on disk (re-runs are free); latencies are the model time behind each
answer, kept in the cache, so a re-run reports the same figures.

    .venv/bin/python benchmarks/llm_rerank.py [--datasets ml-1m,amazon-scientific]
        [--models smollm2,qwen2.5-coder-0.5b] [--modes listwise] [--users 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import machine, machine_line, write_result

from recsage.data.sources.registry import load_dataset
from recsage.data.splits import Split, leave_one_out
from recsage.llm import models as local_models
from recsage.llm.backends.llamacpp import LlamaCppBackend
from recsage.llm.rerank import LLMReranker, blend, catalogue_texts
from recsage.models import create_model
from recsage.types import top_k

W_GRID = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 11))
DOMAIN = {"ml-1m": "movies", "amazon-scientific": "industrial and scientific products"}


def ndcg10(pos: np.ndarray) -> float:
    """Mean NDCG@10 of single targets at 0-based positions (>= 10: miss)."""
    pos = np.asarray(pos, np.float64)
    return float(np.where(pos < 10, 1.0 / np.log2(np.minimum(pos, 10) + 2.0), 0.0).mean())


def base_lists(split: Split, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """EASE top-k per user (history excluded, ties against the target) and target ids."""
    model = create_model("ease", l2=500.0, half_life=3.0).fit(split.train)
    scores = model.score(users)
    targets = np.array([split.targets[u].indices[0] for u in users])
    rows = np.arange(len(users))
    # ties against the target: it ranks after every item with an equal score
    scores[rows, targets] = np.nextafter(scores[rows, targets], -np.inf)
    eligible = np.asarray(split.history[users].toarray() == 0)
    return top_k(scores, eligible, k), targets


def positions(lists: np.ndarray, targets: np.ndarray, orders: list[list[int]] | None) -> np.ndarray:
    """Target position in each (re-ordered) list; 10**6 when it is not in the list."""
    out = np.full(len(targets), 10**6)
    for r, (lst, t) in enumerate(zip(lists, targets, strict=True)):
        seq = lst if orders is None else lst[orders[r]]
        hit = np.flatnonzero(seq == t)
        if len(hit):
            out[r] = int(hit[0])
    return out


def llm_orders(
    reranker: LLMReranker,
    lists: np.ndarray,
    split: Split,
    users: np.ndarray,
    texts: list[str],
    history: int,
) -> tuple[list[list[int]], list[dict[str, Any]]]:
    seqs = split.train.sequences()
    orders, info = [], []
    for r, u in enumerate(users):
        hist = [texts[i] for i in seqs[u][-history:]]
        cands = [texts[i] for i in lists[r] if i >= 0]
        res = reranker.llm_order(hist, cands)
        order = res.llm_order + list(range(len(res.llm_order), lists.shape[1]))
        orders.append(order)
        info.append({"latency": res.model_latency_s, "cached": res.cached, "calls": res.calls,
                     "fallback": res.fallback, "named": res.named})  # fmt: skip
        if (r + 1) % 25 == 0:
            print(f"    {r + 1}/{len(users)} users", flush=True)
    return orders, info


def blended(orders: list[list[int]], w: float) -> list[list[int]]:
    return [blend(o, w) for o in orders]


def run_dataset(name: str, args: argparse.Namespace, backends: dict[str, Any]) -> list[dict]:
    t0 = time.perf_counter()
    ds = load_dataset(name)
    loo = leave_one_out(ds)
    texts = catalogue_texts(ds.item_table)
    rng = np.random.default_rng(args.seed)
    test_users = rng.choice(
        loo.test.users, size=min(args.users, len(loo.test.users)), replace=False
    )
    pool = np.setdiff1d(loo.valid.users, test_users)
    valid_users = rng.choice(pool, size=min(args.valid_users, len(pool)), replace=False)
    v_lists, v_t = base_lists(loo.valid, valid_users, args.top_k)
    t_lists, t_t = base_lists(loo.test, test_users, args.top_k)
    base = {"valid": ndcg10(positions(v_lists, v_t, None)),
            "test": ndcg10(positions(t_lists, t_t, None))}  # fmt: skip
    hr20 = float((positions(t_lists, t_t, None) < args.top_k).mean())
    rand_orders = [list(np.random.default_rng(args.seed + i).permutation(args.top_k))
                   for i in range(len(test_users))]  # fmt: skip
    random_ndcg = ndcg10(positions(t_lists, t_t, rand_orders))
    print(f"{name}: base EASE NDCG@10 test {base['test']:.4f}, HR@20 {hr20:.3f} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)  # fmt: skip
    rows = []
    for model_name, backend in backends.items():
        for mode in args.modes:
            print(f"  {model_name} {mode}", flush=True)
            rr = LLMReranker(backend, mode=mode, weight=1.0, domain=DOMAIN.get(name, "items"),
                             item_chars=args.item_chars, timeout_s=args.timeout)  # fmt: skip
            v_orders, _ = llm_orders(rr, v_lists, loo.valid, valid_users, texts, args.history)
            t_orders, t_info = llm_orders(rr, t_lists, loo.test, test_users, texts, args.history)
            v_curve = {w: ndcg10(positions(v_lists, v_t, blended(v_orders, w))) for w in W_GRID}
            best_w = max(W_GRID, key=lambda w: (round(v_curve[w], 10), -w))
            t_curve = {w: ndcg10(positions(t_lists, t_t, blended(t_orders, w))) for w in W_GRID}
            lat = np.array([i["latency"] for i in t_info])
            fallbacks = sum(1 for i in t_info if i["fallback"])
            rows.append({
                "dataset": name, "model": model_name, "mode": mode,
                "test_users": len(test_users), "valid_users": len(valid_users),
                "ndcg@10_base": base["test"], "ndcg@10_llm_only": t_curve[1.0],
                "ndcg@10_blend": t_curve[best_w], "w": best_w,
                "ndcg@10_random_top20": random_ndcg, "hr@20": hr20,
                "valid_curve": v_curve, "test_curve": t_curve,
                "identity_answers": sum(1 for o in t_orders if o == sorted(o)),
                "fallbacks": fallbacks,
                "latency_s_mean": float(lat.mean()) if len(lat) else None,
                "latency_s_p95": float(np.percentile(lat, 95)) if len(lat) else None,
                "cached_users": sum(1 for i in t_info if i["cached"]),
                "calls_per_user": float(np.mean([i["calls"] for i in t_info])),
            })  # fmt: skip
            r = rows[-1]
            print(f"    base {r['ndcg@10_base']:.4f}  llm-only {r['ndcg@10_llm_only']:.4f}  "
                  f"blend(w={best_w}) {r['ndcg@10_blend']:.4f}  random {random_ndcg:.4f}  "
                  f"latency {r['latency_s_mean']}", flush=True)  # fmt: skip
    return rows


def markdown(rows: list[dict], args: argparse.Namespace, m: dict[str, Any]) -> str:
    lines = [
        "### LLM re-ranking of EASE's top-20 (LOO, full ranking)",
        "",
        f"Base: EASE (l2=500, recency half-life 3). Prompt: the user's last {args.history} "
        f"items and the 20 candidates, each cut to {args.item_chars} characters. Seeded random "
        f"sample of {args.users} test users and {args.valid_users} disjoint validation users "
        f"per dataset (seed {args.seed}); "
        "the LLM re-orders the base top-20; w (LLM weight in the rank blend) is picked on the "
        "validation users. 'random' shuffles the top-20; HR@20 is the ceiling any re-ranker "
        "of the top-20 has. Latency: mean / p95 model seconds per user, llama.cpp on one "
        "CPU thread of a shared 2-core machine.",
        "",
        "| dataset | model | mode | NDCG@10 base | LLM only (w=1) | blend (w) | random top-20 "
        "| HR@20 | identity answers | fallbacks | s/user (p95) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lat = (f"{r['latency_s_mean']:.1f} ({r['latency_s_p95']:.1f})"
               if r["latency_s_mean"] is not None else "cached")  # fmt: skip
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['mode']} | {r['ndcg@10_base']:.4f} "
            f"| {r['ndcg@10_llm_only']:.4f} | {r['ndcg@10_blend']:.4f} ({r['w']}) "
            f"| {r['ndcg@10_random_top20']:.4f} | {r['hr@20']:.3f} "
            f"| {r['identity_answers']}/{r['test_users']} | {r['fallbacks']} | {lat} |"
        )
    lines += ["", machine_line(m)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="ml-1m,amazon-scientific")
    ap.add_argument("--models", default="smollm2,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    ap.add_argument("--modes", default="listwise")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--valid-users", type=int, default=100)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--item-chars", type=int, default=60)
    ap.add_argument("--history", type=int, default=5, help="history items in the prompt")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "recsage" / "llm"))
    ap.add_argument("--name", default="llm_rerank")
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    backends: dict[str, Any] = {}
    skipped = []
    for name in [m for m in args.models.split(",") if m]:
        if not local_models.is_available(name):
            skipped.append(name)
            print(
                f"skipping {name}: not installed ({local_models.model_spec(name).install_hint()})"
            )
            continue
        backends[name] = LlamaCppBackend(name, cache_dir=args.cache_dir, timeout=args.timeout,
                                         n_ctx=4096).load()  # fmt: skip
    rows = []
    for ds in [d for d in args.datasets.split(",") if d]:
        rows += run_dataset(ds, args, backends)
    m = machine()
    md = markdown(rows, args, m)
    if skipped:
        md += f"\n\nNot run (model not installed): {', '.join(skipped)}."
    payload = {"protocol": vars(args) | {"w_grid": W_GRID}, "machine": m, "results": rows,
               "skipped": skipped, "markdown": md}  # fmt: skip
    path = write_result(args.name, payload)
    print(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
