"""Cross-encoder re-ranking benchmark: NDCG@10 with and without the fine-tuned MiniLM stage,
plus its latency, side by side under one protocol.

Protocol (leave-one-out, full ranking; items outside the final list count as missed):

- channels (EASE with recency, co-occurrence, MiniLM text, popularity) are fitted on all
  but each user's last two items; the LightGBM listwise ranker on the validation targets
  of every validation user except the *tuning* users;
- the cross-encoder (bundled all-MiniLM-L6-v2 + a fresh 1-logit head) is fine-tuned with a
  listwise softmax loss on `--train-users` validation users: history text = top categories
  + the last 10 titles, candidate text = title, year, categories; 1 positive (the
  validation target, also when LightGBM ranks it below the top 30, unless
  `--no-outside-pool`) + `--negatives` hard negatives sampled from the pipeline's top 30;
- `--prior incoming` (default) makes it residual: score = logit + w·z(LightGBM) with the
  head started at zero, so training starts from LightGBM's own order; `--prior none` is
  the plain cross-encoder;
- the blend weight w (score = w·z(CE) + (1−w)·z(LightGBM) over the top `--top`) is chosen
  on the validation targets of `--tune-users` users that neither learner saw;
- test: `--test-users` random test users; base and re-ranked lists come from the same
  candidates, so the difference is the cross-encoder alone (paired bootstrap 95% CI of
  the per-user NDCG@10 difference).

    .venv/bin/python benchmarks/lm_ranker.py [--dataset ml-1m] [--train-users 1000]
"""

from __future__ import annotations

import argparse
import copy
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
from recsage.evaluation import evaluate
from recsage.llm.cross_encoder import CrossEncoderRanker, CrossEncoderStage, train_cross_encoder
from recsage.pipeline.pipeline import Pipeline
from recsage.types import Query, QueryBatch

WEIGHTS = tuple(round(float(w), 1) for w in np.linspace(0.0, 1.0, 11))


def spec(top: int, prior: str = "none") -> dict[str, Any]:
    return {
        "pipeline": {"name": "lm-ranker"},
        "text": {"enabled": True},
        "merge": {"max_candidates": 300},
        "channels": [
            {"name": "ease", "kind": "model", "model": "ease", "n": 200,
             "params": {"l2": 500.0, "half_life": 3.0}},
            {"name": "cooc", "kind": "cooccurrence", "n": 100},
            {"name": "text", "kind": "text", "n": 50},
            {"name": "pop", "kind": "popularity", "n": 50},
        ],
        "stages": [
            {"name": "prerank", "kind": "rrf", "keep": 150},
            {"name": "rank", "kind": "learned", "learner": "lgbm", "objective": "listwise",
             "keep": 50},
            {"name": "ce", "kind": "cross_encoder", "keep": 50, "top": top, "weight": 0.5,
             "prior": prior},
        ],
    }  # fmt: skip


def feature_spec(top: int) -> dict[str, Any]:
    """`spec` with the cross-encoder moved before LightGBM as a feature over RRF's top."""
    base = spec(top)
    rrf, rank, _ = base["stages"]
    ce = {"name": "ce", "kind": "cross_encoder", "keep": 150, "top": top, "mode": "feature",
          "column": "prerank"}  # fmt: skip
    return {**base, "stages": [rrf, ce, rank]}


def subset(split: Split, users: np.ndarray) -> Split:
    return dataclasses.replace(split, users=np.sort(np.asarray(users, np.int64)))


def rerank_scores(
    pipe: Pipeline, stage: CrossEncoderStage, split: Split, weights: tuple[float, ...]
) -> tuple[dict[float, np.ndarray], np.ndarray, float]:
    """Score matrices (users x items) of the final lists for each weight (plus the base
    order under key -1), cross-encoder scores computed once; and CE seconds."""
    idx = next(k for k, s in enumerate(pipe.stages) if s is stage)
    seqs = split.train.sequences()
    out: dict[float, list[np.ndarray]] = {w: [] for w in (-1.0, *weights)}
    t_ce = 0.0
    for lo in range(0, len(split.users), 100):
        u = split.users[lo : lo + 100]
        batch = QueryBatch(u, [seqs[i] for i in u], pipe.n_items)
        cands, ctx, _ = pipe._run_until(batch, idx)
        out[-1.0].append(cands.to_score_matrix(pipe.n_items))
        t0 = time.perf_counter()
        ce = stage.cross_scores(cands, ctx)
        t_ce += time.perf_counter() - t0
        for w in weights:
            c = copy.copy(cands)
            c.scores = dict(cands.scores)
            c.scores[stage.name] = stage.combine(cands, ce, w)
            out[w].append(stage.order(c, ctx).to_score_matrix(pipe.n_items))
        print(f"    {lo + len(u)}/{len(split.users)} users re-ranked", flush=True)
    return {w: np.concatenate(v) for w, v in out.items()}, split.users, t_ce


def metrics_of(scores: np.ndarray, split: Split) -> dict[str, Any]:
    """Mean metrics, plus the per-user NDCG@10 (users in `split.users` order) for CIs."""
    pos = {int(u): i for i, u in enumerate(split.users)}
    res = evaluate(lambda us, history=None: scores[[pos[int(x)] for x in us]], split, ks=(10, 20))
    out: dict[str, Any] = {
        k: v for k, v in res.metrics.items() if k in ("hr@10", "ndcg@10", "mrr", "ndcg@20")
    }
    out["per_user_ndcg@10"] = res.per_user["ndcg@10"].to_numpy()
    return out


def final_scores(pipe: Pipeline, split: Split, batch: int = 100) -> np.ndarray:
    """(users, items) score matrix of the pipeline's final lists for `split.users`."""
    seqs = split.train.sequences()
    mats = []
    for lo in range(0, len(split.users), batch):
        u = split.users[lo : lo + batch]
        cands, _ = pipe.run_batch(QueryBatch(u, [seqs[i] for i in u], pipe.n_items), min_keep=10)
        mats.append(cands.to_score_matrix(pipe.n_items))
        print(f"    {lo + len(u)}/{len(split.users)} users ranked", flush=True)
    return np.concatenate(mats)


def gain_importance(pipe: Pipeline, split: Split) -> dict[str, float]:
    """LightGBM's total split gain per feature name (share of all gain), top 12."""
    stage = pipe.stages[-1]
    booster = getattr(stage.ranker, "_booster", None)
    if booster is None:
        return {}
    u = split.users[:2]
    seqs = split.train.sequences()
    _, ctx, _ = pipe._run_until(QueryBatch(u, [seqs[i] for i in u], pipe.n_items),
                                len(pipe.stages) - 1)  # fmt: skip
    gain = booster.feature_importance("gain")
    names = [*ctx.feature_names, *[f"cat_{j}" for j in range(len(gain) - len(ctx.feature_names))]]
    total = float(gain.sum()) or 1.0
    order = np.argsort(-gain)[:12]
    return {names[j]: round(float(gain[j]) / total, 4) for j in order}


def fit_channels(pipe: Pipeline, ds: Any, loo: Any, say: Any) -> None:
    """Fit the channels on the LOO validation training part (stages are trained apart)."""
    pipe.items, pipe.users, pipe.item_table = ds.items, ds.users, ds.item_table
    pipe.sequences, pipe.data_fingerprint = ds.sequences(), ds.fingerprint()
    pipe._prepare_resources(ds, say)
    pipe.fit_on(loo.valid.train, say=say)


def feature_main(args: argparse.Namespace) -> None:
    """`--as-feature`: LightGBM with vs without the cross-encoder's score as a feature."""
    t_all = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    ds = load_dataset(args.dataset)
    loo = leave_one_out(ds)
    valid_users = rng.permutation(loo.valid.users)
    ce_users = valid_users[: args.train_users]
    rank_users = valid_users[args.train_users : args.train_users + args.ranker_users]
    test = rng.choice(loo.test.users, size=min(args.test_users, len(loo.test.users)),
                      replace=False)  # fmt: skip
    say = lambda m: print("  " + m, flush=True)  # noqa: E731
    pipe = Pipeline(feature_spec(args.top))
    t0 = time.perf_counter()
    fit_channels(pipe, ds, loo, say)
    base_spec = spec(args.top)
    base_spec["stages"] = base_spec["stages"][:2]
    base = pipe.derive(base_spec)
    channels_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ranker = CrossEncoderRanker(max_length=args.max_length, epochs=args.epochs, seed=args.seed,
                                threads=args.threads)  # fmt: skip
    data = train_cross_encoder(
        pipe, loo.valid, ranker=ranker, users=ce_users, negatives=args.negatives, pool=30,
        seed=args.seed, progress=True, max_minutes=args.max_minutes,
    )  # fmt: skip
    ce_fit_s = time.perf_counter() - t0
    if args.save is not None:
        ranker.save(args.save)
    print(f"cross-encoder: {len(data.queries)} lists ({data.outside_pool} with the target "
          f"below the top 30, {data.skipped} users skipped) in {ce_fit_s:.0f}s; "
          f"{ranker.history}", flush=True)  # fmt: skip
    stage = next(s for s in pipe.stages if isinstance(s, CrossEncoderStage))

    rank_split = subset(loo.valid, rank_users)
    t0 = time.perf_counter()
    base.train_stages(rank_split, say=say)
    base_rank_s = time.perf_counter() - t0
    t0, pairs0, ce0 = time.perf_counter(), stage.pairs, stage.seconds
    pipe.train_stages(rank_split, say=say)
    feat_rank_s = time.perf_counter() - t0
    train_pairs = stage.pairs - pairs0
    train_ce_s = stage.seconds - ce0

    test_split = subset(loo.test, test)
    rows = {"pipeline (LightGBM), no cross-encoder": metrics_of(final_scores(base, test_split),
                                                                test_split)}  # fmt: skip
    pairs0, ce0 = stage.pairs, stage.seconds
    rows["+ cross-encoder score as a LightGBM feature"] = metrics_of(
        final_scores(pipe, test_split), test_split
    )
    test_pairs, test_ce_s = stage.pairs - pairs0, stage.seconds - ce0
    compare_to_base(rows, args.seed)
    importance = gain_importance(pipe, test_split)
    print(f"LightGBM gain share (with the feature): {importance}", flush=True)
    payload = {
        "machine": machine(),
        "command": "python benchmarks/lm_ranker.py " + " ".join(sys.argv[1:]),
        "dataset": ds.describe(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "users": {
            "train_lists": len(data.queries),
            "train_skipped": data.skipped,
            "train_outside_pool": data.outside_pool,
            "ranker": len(rank_users),
            "test": len(test),
        },
        "fit_seconds": {
            "channels": round(channels_s, 1),
            "cross_encoder": round(ce_fit_s, 1),
            "lgbm_without": round(base_rank_s, 1),
            "lgbm_with_feature": round(feat_rank_s, 1),
            "ce_scoring_for_lgbm_training": round(train_ce_s, 1),
        },
        "ce_history": ranker.history,
        "results": rows,
        "gain_share": importance,
        "latency": {
            "ce_ms_per_user_batched": 1000 * test_ce_s / max(1, len(test)),
            "pairs_per_user": test_pairs / max(1, len(test)),
            "train_pairs": train_pairs,
        },
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    payload["markdown"] = feature_markdown(payload)
    path = write_result(args.name, payload)
    print(payload["markdown"])
    print(f"wrote {path}")


def compare_to_base(rows: dict[str, dict[str, Any]], seed: int) -> None:
    """Give every row after the first (the base) its paired Δ NDCG@10 CI; print the rows."""
    base = next(iter(rows.values()))["per_user_ndcg@10"]
    for v in list(rows.values())[1:]:
        v["delta_ndcg@10_ci"] = paired_ci(base, v["per_user_ndcg@10"], seed)
    for k, v in rows.items():
        v.pop("per_user_ndcg@10")
        print(f"{k}: {v}", flush=True)


def results_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: each ranking's metrics and its paired Δ NDCG@10 against the base."""
    lines = [
        "| ranking | HR@10 | NDCG@10 | MRR | NDCG@20 | Δ NDCG@10 [95% CI] |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, m in results.items():
        ci = m.get("delta_ndcg@10_ci")
        delta = f"{ci[0]:+.4f} [{ci[1]:+.4f}, {ci[2]:+.4f}]" if ci else "–"
        lines.append(
            f"| {name} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['mrr']:.4f} | "
            f"{m['ndcg@20']:.4f} | {delta} |"
        )
    return lines


def feature_markdown(p: dict[str, Any]) -> str:
    a, u, f = p["args"], p["users"], p["fit_seconds"]
    lines = [
        f"## Cross-encoder score as a LightGBM feature ({a['dataset']}, leave-one-out, "
        "full ranking)",
        "",
        f"Command: `{p['command'].strip()}`  ",
        machine_line(p["machine"]),
        "",
        "Channels: EASE (recency) + co-occurrence + MiniLM text + popularity → RRF (keep 150). "
        f"The cross-encoder (all-MiniLM-L6-v2 + a fresh head, fine-tuned listwise on "
        f"{u['train_lists']:,} validation lists of its own users, 1 positive + "
        f"{a['negatives']} hard negatives from RRF's top 30, {f['cross_encoder']:.0f}s) scores "
        f"RRF's top {a['top']}; LightGBM (listwise) reads its score, presence and z within the "
        f"block as three more features. Both LightGBMs train on the same {u['ranker']:,} other "
        f"validation users (without: {f['lgbm_without']:.0f}s; with: "
        f"{f['lgbm_with_feature']:.0f}s, "
        f"of which {f['ce_scoring_for_lgbm_training']:.0f}s cross-encoder scoring). Test: "
        f"{u['test']} random test users, paired.",
        "",
        *results_table(p["results"]),
    ]
    lat = p["latency"]
    gains = ", ".join(f"{k} {v:.1%}" for k, v in p["gain_share"].items())
    lines += [
        "",
        f"LightGBM's split-gain share with the feature (top 12): {gains}.",
        "",
        f"Cost: {lat['pairs_per_user']:.0f} cross-encoder pairs per user, "
        f"{lat['ce_ms_per_user_batched']:.0f} ms per user (batched over 100 users, "
        f"{a.get('threads', 2)} thread(s)).",
    ]
    return "\n".join(lines)


def latency(pipe: Pipeline, users: list[str]) -> dict[str, float]:
    times = []
    for u in users:
        t0 = time.perf_counter()
        pipe.run(Query(user=u, n=10))
        times.append((time.perf_counter() - t0) * 1000)
    a = np.array(times)
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "n": len(a)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--train-users", type=int, default=1000)
    ap.add_argument("--tune-users", type=int, default=300)
    ap.add_argument("--test-users", type=int, default=500)
    ap.add_argument("--negatives", type=int, default=4)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--latency-users", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="cap on CE fine-tuning")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the cross-encoder")
    ap.add_argument("--save", type=Path, default=None, help="save the fine-tuned ranker here")
    ap.add_argument("--prior", choices=["incoming", "none"], default="incoming")
    ap.add_argument(
        "--no-outside-pool",
        dest="outside_pool",
        action="store_false",
        help="skip users whose validation target LightGBM ranks below the top 30",
    )
    ap.add_argument("--name", default="lm_ranker", help="result file name")
    ap.add_argument(
        "--as-feature",
        action="store_true",
        help="measure the cross-encoder's score as a LightGBM feature instead",
    )
    ap.add_argument(
        "--ranker-users",
        type=int,
        default=1500,
        help="--as-feature: validation users both LightGBMs train on",
    )
    args = ap.parse_args()
    if args.as_feature:
        feature_main(args)
        return
    t_all = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    ds = load_dataset(args.dataset)
    loo = leave_one_out(ds)
    valid_users = rng.permutation(loo.valid.users)
    tune = valid_users[: args.tune_users]
    train = valid_users[args.tune_users : args.tune_users + args.train_users]
    test = rng.choice(loo.test.users, size=min(args.test_users, len(loo.test.users)),
                      replace=False)  # fmt: skip

    pipe = Pipeline(spec(args.top, args.prior))
    say = lambda m: print("  " + m, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    fit_channels(pipe, ds, loo, say)
    pipe.train_stages(subset(loo.valid, np.setdiff1d(loo.valid.users, tune)), say=say)
    base_fit_s = time.perf_counter() - t0
    stage = next(s for s in pipe.stages if isinstance(s, CrossEncoderStage))

    t0 = time.perf_counter()
    residual = args.prior == "incoming"
    ranker = CrossEncoderRanker(
        max_length=args.max_length, epochs=args.epochs, seed=args.seed, threads=args.threads,
        prior_weight=1.0 if residual else 0.0, zero_head=residual,
    )  # fmt: skip
    data = train_cross_encoder(
        pipe, loo.valid, ranker=ranker, users=train, negatives=args.negatives, pool=30,
        seed=args.seed, progress=True, max_minutes=args.max_minutes,
        outside_pool=args.outside_pool,
    )  # fmt: skip
    ce_fit_s = time.perf_counter() - t0
    if args.save is not None:
        ranker.save(args.save)
    print(f"cross-encoder: {len(data.queries)} lists ({data.outside_pool} with the target "
          f"below the top 30, {data.skipped} users skipped) in {ce_fit_s:.0f}s; "
          f"{ranker.history}", flush=True)  # fmt: skip

    tune_split = subset(loo.valid, tune)
    mats, _, _ = rerank_scores(pipe, stage, tune_split, WEIGHTS)
    tuning = {w: metrics_of(m, tune_split)["ndcg@10"] for w, m in mats.items()}
    best_w = max(WEIGHTS, key=lambda w: (tuning[w], -w))
    print(f"validation ndcg@10 by weight: {tuning}; chosen w={best_w}", flush=True)
    stage.config.weight = best_w

    test_split = subset(loo.test, test)
    pairs0 = stage.pairs
    mats, _, ce_secs = rerank_scores(pipe, stage, test_split, (best_w, 1.0))
    rows = {
        "pipeline (LightGBM), no cross-encoder": metrics_of(mats[-1.0], test_split),
        f"+ cross-encoder, blended (w={best_w})": metrics_of(mats[best_w], test_split),
        "+ cross-encoder only (w=1)": metrics_of(mats[1.0], test_split),
    }
    compare_to_base(rows, args.seed)
    ce_ms_per_user = 1000 * ce_secs / max(1, len(test))
    pairs_per_user = (stage.pairs - pairs0) / max(1, len(test))

    lat_users = [str(ds.users.ids[u]) for u in test[: args.latency_users]]
    base_pipe = pipe.derive({**copy.deepcopy(pipe.spec),
                             "stages": [s.spec() for s in pipe.stages[:-1]]})  # fmt: skip
    base_pipe.stages = pipe.stages[:-1]  # the same trained ranker
    lat = {"without": latency(base_pipe, lat_users), "with": latency(pipe, lat_users)}

    m = machine()
    payload = {
        "machine": m,
        "command": "python benchmarks/lm_ranker.py " + " ".join(sys.argv[1:]),
        "dataset": ds.describe(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "users": {
            "train_lists": len(data.queries),
            "train_skipped": data.skipped,
            "train_outside_pool": data.outside_pool,
            "tune": len(tune),
            "test": len(test),
        },
        "fit_seconds": {"pipeline": round(base_fit_s, 1), "cross_encoder": round(ce_fit_s, 1)},
        "ce_history": ranker.history,
        "learned_prior_weight": ranker.config.prior_weight,
        "tuning_ndcg10": {str(k): v for k, v in tuning.items()},
        "chosen_weight": best_w,
        "results": rows,
        "latency": {
            "ce_ms_per_user_batched": ce_ms_per_user,
            "pairs_per_user": pairs_per_user,
            "end_to_end_ms": lat,
        },
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    payload["markdown"] = markdown(payload)
    path = write_result(args.name, payload)
    print(payload["markdown"])
    print(f"wrote {path}")


def markdown(p: dict[str, Any]) -> str:
    a, u = p["args"], p["users"]
    lines = [
        f"## Fine-tuned cross-encoder re-ranker ({a['dataset']}, leave-one-out, full ranking)",
        "",
        f"Command: `{p['command'].strip()}`  ",
        machine_line(p["machine"]),
        "",
        "Base: EASE (recency) + co-occurrence + MiniLM text + popularity → RRF → LightGBM "
        "(listwise). Cross-encoder: all-MiniLM-L6-v2 with a fresh 1-logit head"
        + (
            f", residual over z(LightGBM) (head started at zero, so training starts from "
            f"LightGBM's order; learned prior weight {p['learned_prior_weight']:.2f})"
            if a.get("prior", "none") == "incoming"
            else ""
        )
        + f", fine-tuned listwise (1 positive + {a['negatives']} hard negatives from the top "
        f"30) on {u['train_lists']:,} validation lists ({u.get('train_outside_pool', 0):,} "
        f"with the target below the top 30; {u['train_skipped']:,} sampled users skipped), "
        f"{a['epochs']} epoch(s), max length {a['max_length']}, "
        f"word embeddings frozen, in {p['fit_seconds']['cross_encoder']:.0f}s. It re-ranks the "
        f"top {a['top']}; blend weight w = {p['chosen_weight']} chosen on {u['tune']} held-out "
        f"validation users (NDCG@10 by w: "
        + ", ".join(f"{k}: {v:.4f}" for k, v in p["tuning_ndcg10"].items() if k != "-1.0")
        + f"; base {p['tuning_ndcg10']['-1.0']:.4f}). Test: {u['test']} random test users, "
        "same candidates for every row.",
        "",
        *results_table(p["results"]),
    ]
    lat = p["latency"]
    e2e = lat["end_to_end_ms"]
    lines += [
        "",
        f"Latency ({a.get('threads', 2)} CPU thread(s), shared machine): the cross-encoder scores "
        f"{lat['pairs_per_user']:.0f} pairs per user in {lat['ce_ms_per_user_batched']:.0f} ms "
        f"per user (batched over 100 users); one request end to end: median "
        f"{e2e['without']['median_ms']:.0f} ms without, {e2e['with']['median_ms']:.0f} ms with "
        f"the cross-encoder (p90 {e2e['without']['p90_ms']:.0f} / {e2e['with']['p90_ms']:.0f} ms, "
        f"{e2e['with']['n']} users).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
