"""CLI for work beyond one machine: `synth`, `tune`, and the executor options of
`recommend` / `evaluate` (the commands in `recsage.cli.data` call the functions below):

- `recommend --all-users | --users FILE --out recs.parquet|csv [--executor local|ray]`
  -> `recommend_batch(model=..., pipeline=..., all_users=..., users_file=..., out=..., n=...,
  executor=..., workers=...)` (when `all_users` or `users_file` is set; `--user` becomes
  optional).
- `evaluate --executor local|ray [--workers N]` -> `evaluate_with_executor(dataset, names,
  split=..., params=..., pipeline=..., executor=..., workers=...)`, returning the
  `EvalResult`s the command already prints and writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from recsage.cli.common import app, console
from recsage.errors import ConfigError

ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="local (default) or ray; RECSAGE_RAY_ADDRESS set -> ray on that cluster.",
    ),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Ray tasks in flight (default: cluster CPUs).")
]
AllUsersOpt = Annotated[
    bool, typer.Option("--all-users", help="Recommend for every known user (needs --out).")
]
UsersFileOpt = Annotated[
    Path | None, typer.Option("--users", help="File of user ids, one per line (needs --out).")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Write recommendations to a .parquet or .csv file.")
]


def _executor(name: str | None, workers: int | None) -> Any:
    from recsage.executor import make_executor

    return make_executor(name, workers=workers)


# ---- recommend --all-users / --users FILE ---------------------------------------------------
def recommend_batch(
    *,
    model: Path | None,
    pipeline: Path | None,
    all_users: bool,
    users_file: Path | None,
    out: Path | None,
    n: int = 10,
    executor: str | None = None,
    workers: int | None = None,
) -> Any:
    """Top-n for every user (or the listed ones) of a saved model or pipeline, to a file."""
    from recsage.pipeline.batch import read_users, write_recommendations

    if all_users and users_file is not None:
        raise ConfigError("give one of --all-users or --users FILE")
    if not all_users and users_file is None:
        raise ConfigError("batch recommendation needs --all-users or --users FILE")
    if out is None:
        raise ConfigError("--all-users/--users write a file: give --out recs.parquet (or .csv)")
    if (model is None) == (pipeline is None):
        raise ConfigError("give exactly one of --model DIR or --pipeline DIR")
    if n < 1:
        raise ConfigError("-n must be >= 1")
    target: Any
    with console.status("loading…"):
        from recsage.pipeline.pipeline import Pipeline

        target = Pipeline.open(pipeline if pipeline is not None else model)  # type: ignore[arg-type]
    users = read_users(users_file, target.users) if users_file is not None else None
    ex = _executor(executor, workers)
    with console.status(f"recommending top-{n} ({ex!r})…"):
        summary = write_recommendations(target, out, users=users, n=n, executor=ex)
    console.print(
        f"wrote {summary.rows:,} rows for {summary.users:,} users to {summary.path} "
        f"in {summary.seconds:.1f}s ({summary.users_per_second:,.0f} users/s, {summary.executor})"
    )
    return summary


# ---- evaluate --executor ------------------------------------------------------------------
def evaluate_with_executor(
    dataset: Any,
    names: list[str],
    *,
    split: str = "loo",
    params: list[str] | None = None,
    pipeline: Path | None = None,
    executor: str | None = None,
    workers: int | None = None,
) -> list[Any]:
    """Fit locally, evaluate sharded over users on the executor; same metrics as local."""
    from recsage.evaluation.runner import make_split, parse_params
    from recsage.evaluation.sharded import evaluate_sharded

    ex = _executor(executor, workers)
    if pipeline is not None:
        from recsage.data.splits import leave_one_out
        from recsage.pipeline.pipeline import Pipeline

        if split != "loo":
            raise ConfigError("--pipeline is evaluated with --split loo (its protocol)")
        pipe = Pipeline.from_toml(pipeline)
        with console.status("fitting the pipeline…"):
            pipe.fit(dataset)
        with console.status(f"evaluating ({ex!r})…"):
            return [evaluate_sharded(pipe, leave_one_out(dataset).test, executor=ex)]
    from recsage.models.registry import create_model

    parsed = parse_params(params or [])
    unknown = sorted(set(parsed) - set(names))
    if unknown:
        raise ConfigError(f"--param given for model(s) not being run: {', '.join(unknown)}")
    sp_ = make_split(dataset, split)
    results = []
    for name in names:
        with console.status(f"{name}: fit, then evaluation ({ex!r})…"):
            model = create_model(name, **parsed.get(name, {})).fit(sp_.train)
            res = evaluate_sharded(model, sp_, executor=ex, name=name)
        res.extra["fit_seconds"] = model.fit_seconds
        res.extra["config"] = parsed.get(name, {})
        results.append(res)
    return results


# ---- synth ----------------------------------------------------------------------------------
@app.command()
def synth(
    users: Annotated[int, typer.Option("--users", help="Number of users.")] = 10_000,
    items: Annotated[int, typer.Option("--items", help="Number of items.")] = 2_000,
    events: Annotated[int, typer.Option("--events", help="Number of interactions.")] = 200_000,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/synth"),
    fmt: Annotated[
        str, typer.Option("--format", help="atomic (load with -d DIR) or parquet.")
    ] = "atomic",
    categories: Annotated[int, typer.Option(help="Categories (0: about sqrt(items)/2).")] = 0,
    zipf: Annotated[float, typer.Option(help="Popularity power-law exponent.")] = 1.0,
    p_next: Annotated[float, typer.Option(help="Share of steps that follow a successor.")] = 0.5,
    p_category: Annotated[
        float, typer.Option(help="Share of steps from a favourite category.")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Synthetic data with power-law popularity, categories, sequences and item text."""
    from recsage.data.synth import SynthConfig, generate, write_synth

    cfg = SynthConfig(
        users=users, items=items, events=events, categories=categories, zipf=zipf,
        p_next=p_next, p_category=p_category, seed=seed,
    )  # fmt: skip
    with console.status(f"generating {events:,} events…"):
        ds = generate(cfg)
        paths = write_synth(ds, out, fmt=fmt)
    d = ds.describe()
    console.print(
        f"{d['users']:,} users, {d['items']:,} items ({cfg.n_categories()} categories), "
        f"{d['interactions']:,} events -> {', '.join(str(p) for p in paths)}"
    )
    if fmt == "atomic":
        console.print(f"next: recsage evaluate --dataset {out} --models pop,itemknn")
    else:
        console.print(f"next: recsage evaluate --dataset {paths[0]} --items {paths[1]}")


# ---- tune -----------------------------------------------------------------------------------
@app.command()
def tune(
    pipeline: Annotated[Path, typer.Option("--pipeline", help="Pipeline spec (TOML).")],
    space: Annotated[Path, typer.Option("--space", help="Search space (TOML, [space]).")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name or path.")] = (
        "ml-100k"
    ),
    trials: Annotated[int, typer.Option("--trials", help="Number of sampled settings.")] = 8,
    out: Annotated[Path, typer.Option("--out", help="Best spec (TOML) goes here.")] = Path(
        "runs/tune/best.toml"
    ),
    workers: WorkersOpt = None,
    seed: Annotated[int, typer.Option(help="Search seed.")] = 0,
) -> None:
    """Ray Tune search over a pipeline spec; ASHA on validation NDCG@10 (test never used)."""
    import tomllib

    from recsage.data.sources.registry import load_dataset
    from recsage.evaluation.tune import load_space, tune_pipeline, write_tune_outputs

    if not pipeline.is_file():
        raise ConfigError(f"pipeline spec {pipeline} does not exist")
    try:
        spec = tomllib.loads(pipeline.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pipeline}: invalid TOML ({exc})") from None
    params = load_space(space)
    with console.status(f"loading {dataset}…"):
        ds = load_dataset(dataset)
    with console.status(f"tuning: {trials} trials…"):
        result = tune_pipeline(
            spec, ds, params, trials=trials, seed=seed, workers=workers,
            storage=out.parent / "ray_results",
        )  # fmt: skip
    table = Table(title=f"{ds.name}: validation NDCG@10 per trial (ASHA)")
    cols = ["trial", *[p.path for p in params], "ndcg@10", "users", "stopped early"]
    for c in cols:
        table.add_column(c)
    for r in sorted(result.rows, key=lambda r: -(r["ndcg@10"] or -1.0)):
        vals = [f"{r[p.path]:.4g}" if isinstance(r[p.path], float) else str(r[p.path])
                for p in params]  # fmt: skip
        ndcg = "" if r["ndcg@10"] is None else f"{r['ndcg@10']:.4f}"
        flag = "error" if r["error"] else ("yes" if r["stopped_early"] else "")
        table.add_row(str(r["trial"]), *vals, ndcg, str(r["users"]), flag)
    console.print(table)
    paths = write_tune_outputs(result, out)
    console.print(
        f"best: trial {result.best['trial']} (NDCG@10 {result.best['ndcg@10']:.4f}); "
        f"wrote {paths[0]} and {paths[1]}"
    )


__all__ = [
    "AllUsersOpt",
    "ExecutorOpt",
    "OutOpt",
    "UsersFileOpt",
    "WorkersOpt",
    "evaluate_with_executor",
    "recommend_batch",
]
