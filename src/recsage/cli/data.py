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
    DatasetOpt,
    ItemColOpt,
    ItemsOpt,
    TimeColOpt,
    UserColOpt,
    ValueColOpt,
    app,
    console,
    display_titles,
    load_data,
    model_list,
    run_models,
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
def evaluate(
    dataset: DatasetOpt = "ml-100k",
    models: Annotated[str, typer.Option(help="Comma-separated model names.")] = BASELINES,
    split: Annotated[
        str, typer.Option(help="loo | loo-valid | temporal | cold-item | cold-user")
    ] = "loo",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="MODEL.KEY=VALUE, repeatable.")
    ] = None,
    sampled: Annotated[
        int | None,
        typer.Option(help="Rank against N sampled negatives instead (labelled 'sampled')."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write JSON/Markdown/PNG reports here.")] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(help="Evaluate a pipeline spec (TOML) instead of single models."),
    ] = None,
    user_col: UserColOpt = "user_id",
    item_col: ItemColOpt = "item_id",
    time_col: TimeColOpt = "timestamp",
    value_col: ValueColOpt = None,
    items: ItemsOpt = None,
) -> None:
    """Fit models (or a pipeline) and evaluate under full ranking (leave-one-out by default)."""
    from recsage.evaluation.report import rich_table, write_reports

    ds = load_data(
        dataset, user_col=user_col, item_col=item_col, time_col=time_col, value_col=value_col,
        items=items,
    )  # fmt: skip
    if pipeline is not None:
        if split != "loo":
            raise ConfigError("--pipeline is evaluated with --split loo (its protocol)")
        from recsage.evaluation.pipeline import evaluate_pipeline
        from recsage.pipeline.pipeline import Pipeline

        pipe = Pipeline.from_toml(pipeline)
        with console.status("fitting the pipeline (channels, then learned stages)…"):
            pipe.fit(ds, log=lambda m: console.print(f"[dim]{m}[/dim]"))
        report = evaluate_pipeline(pipe, ds)
        results = [report.result]
        console.print(rich_table(results, title=f"{ds.name}: pipeline {pipeline.name}, loo, full"))
        console.print(report.stage_table())
        if out is not None:
            paths = write_reports(results, out, dataset=ds.describe())
            console.print(f"wrote {paths['json']}, {paths['markdown']}, {paths['png']}")
        return
    names = model_list(models)
    sp_, results = run_models(ds, names, split, param or [], sampled)
    ranking = results[0].protocol["ranking"]
    console.print(rich_table(results, title=f"{ds.name}: {sp_.name}, {ranking} ranking"))
    for note in sp_.notes:
        console.print(f"[dim]note: {note}[/dim]")
    if out is not None:
        paths = write_reports(results, out, dataset=ds.describe())
        console.print(f"wrote {paths['json']}, {paths['markdown']}, {paths['png']}")


@app.command()
def train(
    dataset: DatasetOpt = "ml-100k",
    model: Annotated[str, typer.Option(help="Model name.")] = "ease",
    out: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("runs/model"),
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, repeatable.")
    ] = None,
    pipeline: Annotated[
        Path | None, typer.Option(help="Train this pipeline spec (TOML) instead of one model.")
    ] = None,
    user_col: UserColOpt = "user_id",
    item_col: ItemColOpt = "item_id",
    time_col: TimeColOpt = "timestamp",
    value_col: ValueColOpt = None,
    items: ItemsOpt = None,
) -> None:
    """Fit one model (or a pipeline spec) on a dataset and save it."""
    from recsage.evaluation.runner import parse_params
    from recsage.models.registry import create_model

    ds = load_data(
        dataset, user_col=user_col, item_col=item_col, time_col=time_col, value_col=value_col,
        items=items,
    )  # fmt: skip
    if pipeline is not None:
        from recsage.pipeline.pipeline import Pipeline

        pipe = Pipeline.from_toml(pipeline)
        with console.status("fitting the pipeline…"):
            pipe.fit(ds, log=lambda m: console.print(f"[dim]{m}[/dim]"))
        pipe.save(out)
        console.print(f"saved pipeline {pipeline.name} to {out}")
        return
    model_list(model)
    params = parse_params([f"{model}.{p}" for p in (param or [])]).get(model, {})
    with console.status(f"fitting {model} on {len(ds.interactions):,} interactions…"):
        m = create_model(model, **params).fit(ds)
    m.save(out)
    console.print(f"saved {model} to {out} (fit {m.fit_seconds:.2f}s)")


@app.command()
def recommend(
    user: Annotated[str, typer.Option("--user", "-u", help="External user id.")],
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Saved model directory.")
    ] = None,
    pipeline: Annotated[
        Path | None, typer.Option("--pipeline", help="Saved pipeline directory.")
    ] = None,
    n: Annotated[int, typer.Option("-n", help="How many items.")] = 10,
) -> None:
    """Top-n items for a user from a saved model or pipeline (seen items excluded); a user
    the model has never seen gets the popularity fallback, labelled as such."""
    from recsage.pipeline.pipeline import Pipeline
    from recsage.types import Query

    if n < 1:
        raise ConfigError("-n must be >= 1")
    if (model is None) == (pipeline is None):
        raise ConfigError("give exactly one of --model DIR or --pipeline DIR")
    source = pipeline if pipeline is not None else model
    assert source is not None
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
def info(
    dataset: DatasetOpt = "ml-100k",
    user_col: UserColOpt = "user_id",
    item_col: ItemColOpt = "item_id",
    time_col: TimeColOpt = "timestamp",
    value_col: ValueColOpt = None,
    items: ItemsOpt = None,
) -> None:
    """Load a dataset, validate it and print its counts and load report."""
    ds = load_data(
        dataset, user_col=user_col, item_col=item_col, time_col=time_col, value_col=value_col,
        items=items,
    )  # fmt: skip
    table = Table(title=f"dataset {ds.name}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for k, v in ds.describe().items():
        table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    console.print(table)
    if ds.report is not None:
        for line in ds.report.lines():
            console.print(line)
