"""Data and model commands: quickstart, evaluate, train, recommend, info."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from recsage.cli.common import (
    BASELINES,
    DataOptions,
    app,
    check_artifact,
    console,
    data_options,
    display_titles,
    fit_pipeline,
    load_data,
    model_list,
    parse_ks,
    run_models,
    warn_small,
)
from recsage.cli.scale import (
    AllUsersOpt,
    ExecutorOpt,
    OutOpt,
    UsersFileOpt,
    WorkersOpt,
    evaluate_with_executor,
    recommend_batch,
)
from recsage.errors import ConfigError


@app.command()
def quickstart(
    user: Annotated[str, typer.Option(help="User whose recommendations are shown.")] = "1",
    out: Annotated[Path, typer.Option(help="Where models and reports go.")] = Path(
        "runs/quickstart"
    ),
) -> None:
    """Train the baselines on bundled MovieLens-100K, evaluate them, show one user's top-10."""
    from recsage.evaluation.report import rich_table, write_reports

    start = time.perf_counter()
    ds = load_data("ml-100k")
    console.print(
        f"[bold]MovieLens-100K[/bold] (GroupLens; bundled via the recbole wheel): "
        f"{ds.n_users:,} users, {ds.n_items:,} items, {len(ds.interactions):,} ratings"
    )
    _split, results = run_models(ds, BASELINES.split(","), "loo", [], None)
    console.print(
        rich_table(results, title="Leave-one-out, full ranking over all items (ties count against)")
    )
    paths = write_reports(results, out / "report", dataset=ds.describe())

    from recsage.models.registry import create_model

    best = max(results, key=lambda r: r.metrics["ndcg@10"]).model
    model = create_model(best).fit(ds)  # the final model sees every interaction
    model.save(out / best)
    from recsage.pipeline.pipeline import Pipeline

    with console.status("encoding item texts for search and chat (cached after the first run)…"):
        Pipeline.from_model(model, dataset=ds, text=True).save(out / "pipeline")
    u = ds.users.index_of(user, what="user")
    titles = display_titles(ds)
    seq = ds.sequences()[u]
    items, scores = model.recommend(np.array([u]), n=10)
    table = Table(title=f"User {user}: recent history and top-10 from {best}")
    table.add_column("#", justify="right")
    table.add_column("recently watched (newest first)")
    table.add_column("recommended")
    table.add_column("score", justify="right")
    recent = seq[::-1][:10]
    for i in range(10):
        h = titles[recent[i]] if i < len(recent) else ""
        r = titles[items[0, i]] if items[0, i] >= 0 else ""
        table.add_row(str(i + 1), str(h), str(r), f"{scores[0, i]:.3f}")
    console.print(table)
    console.print(
        f"reports: {paths['markdown']}, {paths['json']}, {paths['png']}; model: {out / best}\n"
        f"next: recsage recommend --model {out / best} --user 42 -n 10\n"
        f"serve it (API + web page at /ui): recsage serve --model {out / 'pipeline'}   "
        f"(done in {time.perf_counter() - start:.1f}s)"
    )


@app.command()
@data_options
def evaluate(
    data: DataOptions,
    models: Annotated[str, typer.Option(help="Comma-separated model names.")] = BASELINES,
    split: Annotated[
        str,
        typer.Option(help="loo | loo-valid | temporal | random | kfold | cold-item | cold-user"),
    ] = "loo",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="MODEL.KEY=VALUE, repeatable.")
    ] = None,
    sampled: Annotated[
        int | None,
        typer.Option(
            help="Rank each target against N >= 1 sampled negatives instead of the whole "
            "catalogue (labelled 'sampled'); omit for full ranking."
        ),
    ] = None,
    k: Annotated[
        str | None, typer.Option("--k", help="Metric cut-offs, e.g. 5,10,20 (default 10).")
    ] = None,
    target_events: Annotated[
        str | None,
        typer.Option(
            help="Only these event types count as targets, e.g. purchase or purchase,cart "
            "(needs an event column)."
        ),
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option(help="Temporal split cutoff: a date (2024-03-01, UTC) or epoch seconds."),
    ] = None,
    folds: Annotated[int, typer.Option(help="Number of folds for --split kfold.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of random / kfold / cold-user splits.")] = 0,
    min_users: Annotated[
        int, typer.Option(help="Refuse splits that evaluate fewer users than this.")
    ] = 5,
    out: Annotated[Path | None, typer.Option(help="Write JSON/Markdown/PNG reports here.")] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(help="Evaluate a pipeline spec (TOML) instead of single models."),
    ] = None,
    executor: ExecutorOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Fit models (or a pipeline) and evaluate under full ranking (leave-one-out by default);
    `--executor ray` shards the evaluation over users (same metrics as local)."""
    from recsage.data.sources.events import parse_event_list
    from recsage.data.splits import parse_cutoff
    from recsage.evaluation.report import rich_table, write_reports

    if sampled is not None and sampled < 1:
        raise ConfigError(
            f"--sampled must be >= 1 (how many negatives each target is ranked against), got "
            f"{sampled}; omit it for full ranking"
        )
    if min_users < 1:
        raise ConfigError(f"--min-users must be >= 1, got {min_users}")
    ks = parse_ks(k)
    targets = parse_event_list(target_events)
    cut = parse_cutoff(cutoff) if cutoff is not None else None
    if cut is not None and split != "temporal":
        raise ConfigError("--cutoff sets the temporal split's cutoff; add --split temporal")
    if executor is not None or workers is not None:
        if sampled is not None or split not in ("loo", "temporal", "cold-item", "cold-user"):
            raise ConfigError("--executor runs full-ranking loo/temporal/cold splits")
        ds = load_data(data)
        results = evaluate_with_executor(
            ds, model_list(models), split=split, params=param, pipeline=pipeline,
            executor=executor, workers=workers,
        )  # fmt: skip
        console.print(rich_table(results, title=f"{ds.name}: {split}, full ranking", ks=ks))
        warn_small(results)
        if out is not None:
            paths = write_reports(results, out, dataset=ds.describe(), ks=ks)
            console.print(f"wrote {paths['json']}, {paths['markdown']}, {paths['png']}")
        return
    if pipeline is not None:
        _evaluate_pipeline(data, pipeline, split, ks, targets, cut, seed, min_users, sampled, out)
        return
    names = model_list(models)
    ds = load_data(data)
    sp_, results = run_models(
        ds, names, split, param or [], sampled, ks=ks, target_events=targets, cutoff=cut,
        folds=folds, seed=seed, min_users=min_users,
    )  # fmt: skip
    ranking = results[0].protocol["ranking"]
    shown = results[0].protocol["split"] if split == "kfold" else sp_.name
    console.print(rich_table(results, title=f"{ds.name}: {shown}, {ranking} ranking", ks=ks))
    if split == "kfold":
        for r in results:
            std = r.extra["fold_std"]
            key = "ndcg@10" if "ndcg@10" in std else next(iter(std))
            console.print(f"[dim]{r.model}: {key} {r.metrics[key]:.4f} ± {std[key]:.4f} "
                          f"(std over {folds} folds)[/dim]")  # fmt: skip
    for note in results[0].protocol.get("notes", sp_.notes):
        console.print(f"[dim]note: {note}[/dim]")
    warn_small(results)
    if out is not None:
        paths = write_reports(results, out, dataset=ds.describe(), ks=ks)
        console.print(f"wrote {paths['json']}, {paths['markdown']}, {paths['png']}")


def _evaluate_pipeline(
    data: DataOptions,
    spec: Path,
    split: str,
    ks: tuple[int, ...] | None,
    targets: tuple[str, ...] | None,
    cutoff: float | None,
    seed: int,
    min_users: int,
    sampled: int | None,
    out: Path | None,
) -> None:
    """`evaluate --pipeline`: fit on the split's training part, evaluate on its targets."""
    from recsage.data.splits import require_users
    from recsage.evaluation.pipeline import evaluate_pipeline
    from recsage.evaluation.report import rich_table, write_reports
    from recsage.evaluation.runner import make_split
    from recsage.pipeline.pipeline import Pipeline

    if split not in ("loo", "temporal", "random"):
        raise ConfigError(
            f"--pipeline is evaluated with --split loo, temporal or random, not {split}"
        )
    if sampled is not None:
        raise ConfigError("--pipeline is evaluated under full ranking; drop --sampled")
    pipe = Pipeline.from_toml(spec)
    ds = load_data(data)
    sp_ = make_split(ds, split, seed=seed, target_events=targets, cutoff=cutoff)
    require_users(sp_, ds, minimum=min_users,
                  path=ds.report.source if ds.report is not None else None)  # fmt: skip
    # plain leave-one-out keeps the pipeline's own protocol (channels see all but the last
    # two items); otherwise the pipeline only ever sees the split's training part
    train = ds if (split == "loo" and not targets) else sp_.train
    fit_pipeline(pipe, train)
    report = evaluate_pipeline(pipe, split=sp_, ks=ks or (10, 20))
    results = [report.result]
    title = f"{ds.name}: pipeline {spec.name}, {sp_.name}, full ranking"
    console.print(rich_table(results, title=title, ks=ks))
    console.print(report.stage_table())
    for note in sp_.notes:
        console.print(f"[dim]note: {note}[/dim]")
    warn_small(results)
    if out is not None:
        paths = write_reports(results, out, dataset=ds.describe(), ks=ks)
        console.print(f"wrote {paths['json']}, {paths['markdown']}, {paths['png']}")


@app.command()
@data_options
def train(
    data: DataOptions,
    model: Annotated[str, typer.Option(help="Model name.")] = "ease",
    out: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("runs/model"),
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, repeatable.")
    ] = None,
    pipeline: Annotated[
        Path | None, typer.Option(help="Train this pipeline spec (TOML) instead of one model.")
    ] = None,
) -> None:
    """Fit one model (or a pipeline spec) on a dataset and save it."""
    from recsage.evaluation.runner import parse_params
    from recsage.models.registry import create_model

    if pipeline is not None:
        from recsage.pipeline.pipeline import Pipeline

        pipe = Pipeline.from_toml(pipeline)
        ds = load_data(data)
        fit_pipeline(pipe, ds)
        pipe.save(out)
        weights = pipe.event_weights
        w = (
            f" (event weights {', '.join(f'{k}={v:g}' for k, v in weights.items())})"
            if weights
            else ""
        )
        console.print(f"saved pipeline {pipeline.name} to {out}{w}")
        return
    model_list(model)
    params = parse_params([f"{model}.{p}" for p in (param or [])]).get(model, {})
    ds = load_data(data)
    with console.status(f"fitting {model} on {len(ds.interactions):,} interactions…"):
        m = create_model(model, **params).fit(ds)
    m.save(out)
    console.print(f"saved {model} to {out} (fit {m.fit_seconds:.2f}s)")


@app.command()
def recommend(
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="External user id (one user).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Saved model directory.")
    ] = None,
    pipeline: Annotated[
        Path | None, typer.Option("--pipeline", help="Saved pipeline directory.")
    ] = None,
    n: Annotated[int, typer.Option("-n", help="How many items.")] = 10,
    all_users: AllUsersOpt = False,
    users: UsersFileOpt = None,
    out: OutOpt = None,
    executor: ExecutorOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Top-n items for a user from a saved model or pipeline (seen items excluded); a user
    the model has never seen gets the popularity fallback, labelled as such. With
    --all-users or --users FILE, top-n for each of them to --out (.parquet or .csv)."""
    from recsage.pipeline.pipeline import Pipeline
    from recsage.types import Query

    if n < 1:
        raise ConfigError("-n must be >= 1")
    if (model is None) == (pipeline is None):
        raise ConfigError("give exactly one of --model DIR or --pipeline DIR")
    if all_users or users is not None:
        if user is not None:
            raise ConfigError("give --user for one user, or --all-users / --users FILE")
        recommend_batch(
            model=model, pipeline=pipeline, all_users=all_users, users_file=users, out=out,
            n=n, executor=executor, workers=workers,
        )  # fmt: skip
        return
    if user is None:
        raise ConfigError("give --user ID (or --all-users / --users FILE with --out)")
    source = pipeline if pipeline is not None else model
    assert source is not None
    check_artifact(source, "pipeline" if pipeline is not None else "model")
    pipe = Pipeline.open(source)
    recs = pipe.run(Query(user=user, n=n))
    kind = "pipeline" if pipeline is not None else pipe.channels[0].name
    table = Table(title=f"top-{n} for user {user} ({kind})")
    table.add_column("rank", justify="right")
    for col in ("item", "title"):
        table.add_column(col)
    table.add_column("score", justify="right")
    table.add_column("found by")
    for r in recs:
        table.add_row(str(r.rank), r.item, r.title, f"{r.score:.4f}", ",".join(r.sources))
    console.print(table)


@app.command()
@data_options
def info(data: DataOptions) -> None:
    """Load a dataset, validate it and print its counts, what each column of each file was
    used as, and the load report (rows dropped or altered, and why)."""
    from rich.markup import escape

    ds = load_data(data, show_report=False)
    table = Table(title=f"dataset {ds.name}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, v in ds.describe().items():
        table.add_row(key, f"{v:,}" if isinstance(v, int) else str(v))
    ts = ds.interactions.timestamp
    if len(ts) and float(ts.min()) >= 86400 * 365:  # real dates, not positions
        from recsage.data.splits import when_text

        table.add_row("time range", f"{when_text(float(ts.min()))} .. {when_text(float(ts.max()))}")
    if ds.event_weights:
        table.add_row("event weights", ", ".join(f"{k}={v:g}" for k, v in ds.event_weights.items()))
    console.print(table)
    if ds.report is not None and ds.report.columns:
        cols = Table(title="columns read")
        for c in ("file", "column", "used as"):
            cols.add_column(c)
        for f, c, use in ds.report.columns:
            cols.add_row(escape(f), escape(c), escape(use))
        console.print(cols)
    if ds.report is not None:
        for line in ds.report.lines():
            console.print(escape(line))
