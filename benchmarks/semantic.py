"""Semantic layer benchmark: two-tower (ID + text, text-only) vs pop / EASE / ALS.

Four protocols per dataset, all full ranking with ties against the target:

(a) leave-one-out: pop, EASE (l2 picked on validation), ALS (small grid on validation),
    two-tower ID+text and text-only (early stopping on validation NDCG@10, then test
    users are scored from histories that include the validation item);
(b) cold items (`cold_item_split`): only cold items are ranked; popularity can only use
    training counts (all zero for cold items, so its ties rank every target last), a
    seeded random ranking is the reference, and the ID-only two-tower shows what a model
    without content does; the text two-tower scores cold items from text;
(c) cold users (`cold_user_split`): ML-1M with nothing given (demographics: one-hot
    features, or a profile sentence through `score_text`) and 2 given clicks; Amazon
    (no user table) with 1 and 2 given clicks;
(d) sparse data: the LOO test metrics of every model bucketed by training-history length.

Two-tower models trained on the cold splits reuse the epoch count chosen on the LOO
validation split for the same dataset (those splits have no validation data).

    .venv/bin/python benchmarks/semantic.py [--datasets ml-1m,amazon-scientific]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import scipy.sparse as sp
from _common import machine, machine_line, write_result

from recsage.data.schema import Dataset
from recsage.data.sources.registry import load_dataset
from recsage.data.splits import Split, cold_item_split, cold_user_split, leave_one_out
from recsage.encoders.templates import UserTextTemplate
from recsage.encoders.text import TextEncoder, encode_dataset_items
from recsage.encoders.user import ProfileUserEncoder
from recsage.evaluation import EvalResult, evaluate
from recsage.evaluation.protocol import item_category_features
from recsage.models import create_model
from recsage.models.two_tower.features import default_cache_dir
from recsage.models.two_tower.model import TwoTower, sequence_scorer

BUCKETS = ((0, 5, "≤5"), (6, 20, "6–20"), (21, 10**9, ">20"))
EASE_GRID = (30.0, 100.0, 300.0, 1000.0, 3000.0)
ALS_GRID = (
    {"factors": 64, "regularization": 0.05, "alpha": 1.0, "iterations": 15},
    {"factors": 128, "regularization": 1.0, "alpha": 10.0, "iterations": 15},
)
#: two-tower settings per dataset (an epoch is `samples_per_epoch` sampled positions).
#: temperature / ID dropout were picked on LOO validation NDCG@10 from {0.05, 0.1} x
#: {0.25, 0.5}; epoch budgets keep a full run near 25 minutes on a shared 2-core machine
#: (`max_minutes` is a safety net that does not bind on a quiet machine).
TT_BASE: dict[str, Any] = {"dim": 64, "progress": False, "profile_map": False, "patience": 2}
TT_DATASET: dict[str, dict[str, Any]] = {
    "ml-1m": {
        "samples_per_epoch": 150_000,
        "max_epochs": 6,
        "temperature": 0.05,
        "id_dropout": 0.25,
        "max_minutes": 6.0,
    },
    "amazon-scientific": {
        "samples_per_epoch": 60_000,
        "max_epochs": 15,
        "temperature": 0.1,
        "id_dropout": 0.5,
        "max_minutes": 4.0,
    },
}
#: ML-1M stores demographics as codes: spell them out for the profile sentence.
ML1M_AGE = {
    "1": "under 18",
    "18": "18 to 24",
    "25": "25 to 34",
    "35": "35 to 44",
    "45": "45 to 49",
    "50": "50 to 55",
    "56": "56 or older",
}
ML1M_OCCUPATION = dict(
    enumerate(
        [
            "person",
            "academic or educator",
            "artist",
            "clerical or admin worker",
            "college or graduate student",
            "customer service worker",
            "doctor or health care worker",
            "executive or manager",
            "farmer",
            "homemaker",
            "K-12 student",
            "lawyer",
            "programmer",
            "retired person",
            "sales or marketing worker",
            "scientist",
            "self-employed person",
            "technician or engineer",
            "tradesman or craftsman",
            "unemployed person",
            "writer",
        ]
    )
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def profile_template(dataset: str) -> UserTextTemplate:
    """Profile sentence template ("A male programmer aged 25 to 34" for ML-1M)."""
    if dataset == "ml-1m":
        return UserTextTemplate(
            parts=("A[ {gender}][ {occupation}][ aged {age}]",),
            value_maps={
                "gender": {"M": "male", "F": "female"},
                "age": ML1M_AGE,
                "occupation": {str(k): v for k, v in ML1M_OCCUPATION.items()},
            },
        )
    return UserTextTemplate()


def row(name: str, res: EvalResult, fit_s: float, **extra: Any) -> dict[str, Any]:
    m = res.metrics
    return {
        "model": name,
        "hr@10": m["hr@10"],
        "ndcg@10": m["ndcg@10"],
        "mrr": m["mrr"],
        "coverage@10": m.get("coverage@10", float("nan")),
        "users": res.protocol["users"],
        "ranked_items": res.protocol["ranked_items"],
        "fit_seconds": round(fit_s, 1),
        "eval_seconds": round(res.eval_seconds, 2),
        **extra,
    }


def buckets(res: EvalResult, split: Split) -> list[dict[str, Any]]:
    """HR@10 / NDCG@10 per training-history-length bucket (≤5, 6–20, >20)."""
    lengths = np.diff(split.train.matrix().indptr)
    users = split.train.users.lookup(res.per_user["user"].to_numpy())
    hl = lengths[users]
    out = []
    for lo, hi, label in BUCKETS:
        sel = (hl >= lo) & (hl <= hi)
        n = int(sel.sum())
        out.append(
            {
                "bucket": label,
                "users": n,
                "hr@10": float(res.per_user["hr@10"][sel].mean()) if n else float("nan"),
                "ndcg@10": float(res.per_user["ndcg@10"][sel].mean()) if n else float("nan"),
            }
        )
    return out


def random_scorer(n_items: int, seed: int = 0) -> Callable[..., np.ndarray]:
    rng = np.random.default_rng(seed)

    def score(users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
        return rng.random((len(users), n_items)).astype(np.float32)

    return score


def text_scorer(model: TwoTower, query_vectors: np.ndarray, mode: str) -> Callable[..., np.ndarray]:
    """Scores users from their profile-sentence vectors (row = dense user index)."""

    def score(users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
        return model.score_text(query_vectors=query_vectors[users], mode=mode)

    return score


def fit_tt(
    train: Dataset, text: np.ndarray, tt_cfg: dict[str, Any], **fit_kw: Any
) -> tuple[TwoTower, float]:
    t0 = time.perf_counter()
    model = TwoTower(**tt_cfg).fit(train, item_text_vectors=text, **fit_kw)
    return model, time.perf_counter() - t0


def run(name: str, threads: int, *, quick: bool = False) -> dict[str, Any]:
    t_start = time.perf_counter()
    ds = load_dataset(name)
    encoder = TextEncoder(cache_dir=default_cache_dir())
    t0 = time.perf_counter()
    text = encode_dataset_items(encoder, ds, progress=True)
    log(
        f"{name}: {ds.describe()}; item text vectors {text.shape} "
        f"in {time.perf_counter() - t0:.1f}s"
    )
    feats = item_category_features(ds.item_table)
    ev: dict[str, Any] = {"item_features": feats}
    tt_base = {**TT_BASE, **TT_DATASET.get(name, {}), "threads": threads}
    ease_grid, als_grid = EASE_GRID, ALS_GRID
    if quick:  # smoke test of every code path, numbers meaningless
        tt_base.update(samples_per_epoch=5_000, max_epochs=1)
        ease_grid, als_grid = EASE_GRID[:1], ALS_GRID[:1]

    # ---------------------------------------------------------------- (a) LOO
    loo = leave_one_out(ds)
    loo_rows: list[dict[str, Any]] = []
    bucket_rows: dict[str, list[dict[str, Any]]] = {}

    def record(label: str, res: EvalResult, fit_s: float, **extra: Any) -> None:
        loo_rows.append(row(label, res, fit_s, **extra))
        bucket_rows[label] = buckets(res, loo.test)
        log(
            f"{name} LOO {label}: HR@10={res.metrics['hr@10']:.4f} "
            f"NDCG@10={res.metrics['ndcg@10']:.4f} fit {fit_s:.1f}s {extra or ''}"
        )

    t0 = time.perf_counter()
    pop = create_model("pop").fit(loo.test.train)
    record("pop", evaluate(pop, loo.test, **ev), time.perf_counter() - t0)

    best_l2, best_val = ease_grid[0], -1.0
    for l2 in ease_grid:
        val = evaluate(create_model("ease", l2=l2).fit(loo.valid.train), loo.valid, ks=(10,), **ev)
        v = val.metrics["ndcg@10"]
        log(f"  ease l2={l2:g}: valid ndcg@10={v:.4f}")
        if v > best_val:
            best_l2, best_val = l2, v
    t0 = time.perf_counter()
    ease = create_model("ease", l2=best_l2).fit(loo.test.train)
    record(
        "EASE", evaluate(ease, loo.test, **ev), time.perf_counter() - t0, params=f"l2={best_l2:g}"
    )

    best_als, best_val = als_grid[0], -1.0
    for params in als_grid:
        val = evaluate(
            create_model("als", **params).fit(loo.valid.train), loo.valid, ks=(10,), **ev
        )
        v = val.metrics["ndcg@10"]
        log(f"  als {params}: valid ndcg@10={v:.4f}")
        if v > best_val:
            best_als, best_val = params, v
    t0 = time.perf_counter()
    als = create_model("als", **best_als).fit(loo.test.train)
    als_params = f"f={best_als['factors']}, reg={best_als['regularization']}, a={best_als['alpha']}"
    record("ALS", evaluate(als, loo.test, **ev), time.perf_counter() - t0, params=als_params)

    epochs: dict[str, int] = {}
    for label, kw in (("two-tower ID+text", {}), ("two-tower text-only", {"use_ids": False})):
        model, fit_s = fit_tt(loo.valid.train, text, {**tt_base, **kw}, valid=loo.valid)
        epochs[label] = model.best_epoch
        res = evaluate(sequence_scorer(model, loo.test.train), loo.test, **ev)
        record(
            label,
            res,
            fit_s,
            params=f"best epoch {model.best_epoch}/{len(model.history)}, "
            f"valid ndcg@10 {model.best_ndcg:.4f}",
        )
    tt_epochs = max(1, epochs["two-tower ID+text"])

    # ---------------------------------------------------------------- (b) cold items
    ci = cold_item_split(ds)
    ci_rows: list[dict[str, Any]] = []
    n_cold = 0 if ci.candidates is None else len(ci.candidates)
    log(f"{name} cold-item: {n_cold} cold items, {len(ci.users)} users")
    t0 = time.perf_counter()
    pop_ci = create_model("pop").fit(ci.train)
    ci_rows.append(
        row("pop (training counts)", evaluate(pop_ci, ci, **ev), time.perf_counter() - t0)
    )
    ci_rows.append(row("random (seed 0)", evaluate(random_scorer(ds.n_items), ci, **ev), 0.0))
    fixed = {**tt_base, "max_epochs": tt_epochs}
    variants = (
        ("two-tower ID-only", {"use_text": False, "use_categories": False}),
        ("two-tower ID+text", {}),
        ("two-tower text-only", {"use_ids": False}),
    )
    for label, kw in variants:
        model, fit_s = fit_tt(ci.train, text, {**fixed, **kw})
        res = evaluate(model, ci, **ev)
        ci_rows.append(row(label, res, fit_s))
    for r in ci_rows:
        log(f"{name} cold-item {r['model']}: HR@10={r['hr@10']:.4f} NDCG@10={r['ndcg@10']:.4f}")

    # ---------------------------------------------------------------- (c) cold users
    cu_rows: list[dict[str, Any]] = []
    givens = (0, 2) if ds.user_table is not None else (1, 2)
    base_split = cold_user_split(ds, n_given=givens[0])
    cu_train = base_split.train
    profile_vecs = None
    if ds.user_table is not None:
        prof = ProfileUserEncoder(encoder, profile_template(name))
        texts = prof.render(ds.user_table)
        profile_vecs = prof.encode_texts(texts)
        log(f"{name} profile sentence example: {texts[0]!r}")
    t0 = time.perf_counter()
    pop_cu = create_model("pop").fit(cu_train)
    pop_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ease_cu = create_model("ease", l2=best_l2).fit(cu_train)
    ease_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    als_cu = create_model("als", **best_als).fit(cu_train)
    als_s = time.perf_counter() - t0
    tt_cu, tt_s = fit_tt(
        cu_train,
        text,
        {**fixed, "profile_map": profile_vecs is not None},
        user_text_vectors=profile_vecs,
    )
    for given in givens:
        split = cold_user_split(ds, n_given=given)
        assert np.array_equal(split.users, base_split.users), "cold users differ across n_given"
        tag = f"n_given={given}"
        for label, model, fit_s in (
            ("pop", pop_cu, pop_s),
            ("EASE", ease_cu, ease_s),
            ("ALS (fold-in)", als_cu, als_s),
            ("two-tower ID+text", tt_cu, tt_s),
        ):
            if given == 0 and label in ("EASE", "ALS (fold-in)"):
                continue  # nothing to fold in: all-zero scores
            shown = (
                "two-tower (demographic features)" if given == 0 and "two-tower" in label else label
            )
            cu_rows.append(row(shown, evaluate(model, split, **ev), fit_s, given=tag))
        if given == 0 and profile_vecs is not None and tt_cu.profile_weights is not None:
            for mode in ("profile", "blend"):
                res = evaluate(text_scorer(tt_cu, profile_vecs, mode), split, **ev)
                cu_rows.append(row(f"two-tower profile text ({mode})", res, tt_s, given=tag))
    for r in cu_rows:
        log(
            f"{name} cold-user {r['given']} {r['model']}: HR@10={r['hr@10']:.4f} "
            f"NDCG@10={r['ndcg@10']:.4f}"
        )

    return {
        "dataset": ds.describe(),
        "seconds": round(time.perf_counter() - t_start, 1),
        "two_tower_config": tt_base,
        "loo": loo_rows,
        "buckets": bucket_rows,
        "cold_item": {"rows": ci_rows, "notes": ci.notes, "epochs": tt_epochs},
        "cold_user": {
            "rows": cu_rows,
            "notes": [
                f"{len(base_split.users):,} cold users (10%, seed 0), "
                f"n_given in {list(givens)}; the last interaction is the target"
            ],
            "epochs": tt_epochs,
        },
    }


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> list[str]:
    out = ["| " + " | ".join(h for h, _ in cols) + " |"]
    out.append(
        "|"
        + "|".join(
            "---" if k in ("model", "params", "given", "dataset") else "---:" for _, k in cols
        )
        + "|"
    )
    for r in rows:
        cells = []
        for _, k in cols:
            v = r.get(k, "")
            cells.append(
                f"{v:.4f}" if isinstance(v, float) and k not in ("fit_seconds",) else str(v)
            )
        out.append("| " + " | ".join(cells) + " |")
    return out


def markdown(results: list[dict[str, Any]], m: dict[str, Any], command: str) -> str:
    out = [
        "## Semantic layer: two-tower with text (LOO, cold items, cold users, sparse users)",
        "",
        f"Command: `{command}`  ",
        machine_line(m),
        "",
        "Full ranking, history excluded, ties against the target. Item text vectors: "
        "all-MiniLM-L6-v2 over title / year / categories (ML-1M) or title + category path "
        "+ brand (Amazon). Two-tower: dim 64, in-batch softmax with logQ correction, cosine "
        "similarity / temperature, attention pooling over the last 50 items with recency "
        "embeddings, ID dropout; early-stopped on LOO validation NDCG@10 and then scored "
        "from histories that include the validation item (pop / EASE / ALS are refitted on "
        "those histories). Models on the cold splits train for the epoch count chosen on "
        "LOO validation. Both datasets store sequence positions, not times, so 'cold items' "
        "are the items whose first appearance has the latest position. HR@10 with several "
        "targets per user (cold items) = at least one target in the top 10.",
    ]
    for r in results:
        d = r["dataset"]
        out += [
            "",
            f"### {d['name']} ({d['users']:,} users, {d['items']:,} items, "
            f"{d['interactions']:,} interactions; {r['seconds']:.0f} s)",
            "",
            "Two-tower settings: "
            + ", ".join(
                f"{k}={v}"
                for k, v in r["two_tower_config"].items()
                if k not in ("progress", "profile_map")
            )
            + ".",
            "",
            "**(a) Leave-one-out**",
            "",
        ]
        out += _table(
            r["loo"],
            [
                ("model", "model"),
                ("HR@10", "hr@10"),
                ("NDCG@10", "ndcg@10"),
                ("MRR", "mrr"),
                ("coverage@10", "coverage@10"),
                ("fit s", "fit_seconds"),
                ("params", "params"),
            ],
        )
        ci = r["cold_item"]
        text_hr = max(x["hr@10"] for x in ci["rows"] if "text" in x["model"])
        ref = max(x["hr@10"] for x in ci["rows"] if x["model"].startswith(("pop", "random")))
        out += [
            "",
            f"**(b) Cold items** ({'; '.join(ci['notes'])}; only cold items ranked; "
            f"two-towers trained {ci['epochs']} epochs). Best text two-tower HR@10 "
            f"{text_hr:.4f} = {text_hr / ref if ref > 0 else float('inf'):.1f}x the best of "
            "popularity / random.",
            "",
        ]
        out += _table(
            ci["rows"],
            [
                ("model", "model"),
                ("HR@10", "hr@10"),
                ("NDCG@10", "ndcg@10"),
                ("MRR", "mrr"),
                ("users", "users"),
                ("fit s", "fit_seconds"),
            ],
        )
        cu = r["cold_user"]
        out += ["", f"**(c) Cold users** ({'; '.join(cu['notes'])})", ""]
        out += _table(
            cu["rows"],
            [
                ("given", "given"),
                ("model", "model"),
                ("HR@10", "hr@10"),
                ("NDCG@10", "ndcg@10"),
                ("MRR", "mrr"),
                ("users", "users"),
            ],
        )
        out += ["", "**(d) LOO test by training-history length** (HR@10 / NDCG@10, users)", ""]
        labels = [b[2] for b in BUCKETS]
        first = next(iter(r["buckets"].values()))
        counts = {b["bucket"]: b["users"] for b in first}
        out.append(
            "| model | " + " | ".join(f"{lab} ({counts[lab]:,} users)" for lab in labels) + " |"
        )
        out.append("|---|" + "---:|" * len(labels))
        for model, rows in r["buckets"].items():
            cells = [
                "-" if not b["users"] else f"{b['hr@10']:.4f} / {b['ndcg@10']:.4f}" for b in rows
            ]
            out.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="ml-1m,amazon-scientific")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny budgets, no write")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads for two-tower training (1 is faster on a loaded machine)",
    )
    args = parser.parse_args()
    m = machine()
    results = [run(d, args.threads, quick=args.quick) for d in args.datasets.split(",")]
    command = ("python benchmarks/semantic.py " + " ".join(sys.argv[1:])).strip()
    md = markdown(results, m, command)
    print()
    print(md)
    if not (args.no_write or args.quick):
        path = write_result(
            "semantic", {"machine": m, "command": command, "results": results, "markdown": md}
        )
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
