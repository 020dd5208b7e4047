"""The `recsage` command line (typer + rich)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from recsage import __version__
from recsage.errors import ConfigError, RecsageError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

app = typer.Typer(
    name="recsage",
    help="recsage: LLM-enhanced recommendations — train, evaluate and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

BASELINES = "pop,itemknn,ease,als"

DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="Dataset name (ml-100k, ml-1m, amazon-scientific) or a path "
        "(.csv/.tsv/.parquet/.jsonl table, sequence .txt, RecBole/UniSRec folder).",
    ),
]
UserColOpt = Annotated[str, typer.Option("--user-col", help="User id column of a table.")]
ItemColOpt = Annotated[str, typer.Option("--item-col", help="Item id column of a table.")]
TimeColOpt = Annotated[str, typer.Option("--time-col", help="Timestamp column of a table.")]
ValueColOpt = Annotated[
    str | None, typer.Option("--value-col", help="Rating/value column of a table.")
]
ItemsOpt = Annotated[
    Path | None, typer.Option("--items", help="Item table (id, title, ...) for a table dataset.")
]


def _load(
    spec: str,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    value_col: str | None = None,
    items: Path | None = None,
) -> Any:
    from recsage.data.loaders import load_dataset

    options: dict[str, Any] = {}
    if Path(spec).suffix.lower() in (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson", ".json"):
        options = {
            "user_col": user_col,
            "item_col": item_col,
            "time_col": time_col or None,
            "value_col": value_col,
            "items_path": items,
        }
    with console.status(f"loading {spec}…"):
        ds = load_dataset(spec, **options)
    if ds.report is not None and (ds.report.rows_dropped or ds.report.notes):
        for line in ds.report.lines():
            console.print(f"[yellow]{line}[/yellow]")
    return ds


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _run(dataset: Any, models: list[str], split: str, params: list[str], sampled: int | None):
    from recsage.evaluation.runner import make_split, parse_params, run_models

    parsed = parse_params(params)
    unknown = sorted(set(parsed) - set(models))
    if unknown:
        raise ConfigError(f"--param given for model(s) not being run: {', '.join(unknown)}")
    sp_ = make_split(dataset, split)
    results = []
    with _progress() as progress:
        task = progress.add_task("fitting and evaluating", total=len(models))
        for name in models:
            progress.update(task, description=f"{name}: fit + full-ranking evaluation")
            results += run_models(
                dataset, [name], split=sp_, params={name: parsed.get(name, {})},
                sampled_negatives=sampled,
            )  # fmt: skip
            progress.advance(task)
    return sp_, results


def _model_list(models: str) -> list[str]:
    from recsage.models.registry import model_names

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise ConfigError("--models is empty; e.g. --models pop,ease")
    known = model_names()
    for n in names:
        if n not in known:
            raise ConfigError(f"unknown model '{n}'; known: {', '.join(known)}")
    return names


def _display_titles(dataset: Any) -> np.ndarray:
    import pandas as pd

    titles = dataset.item_titles().astype(object)
    if "year" in dataset.item_table.columns:
        years = pd.to_numeric(dataset.item_table["year"], errors="coerce").to_numpy()
        for i, y in enumerate(years):
            if np.isfinite(y):
                titles[i] = f"{titles[i]} ({int(y)})"
    return titles


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
    ds = _load("ml-100k")
    console.print(
        f"[bold]MovieLens-100K[/bold] (GroupLens; bundled via the recbole wheel): "
        f"{ds.n_users:,} users, {ds.n_items:,} items, {len(ds.interactions):,} ratings"
    )
    _split, results = _run(ds, BASELINES.split(","), "loo", [], None)
    console.print(
        rich_table(results, title="Leave-one-out, full ranking over all items (ties count against)")
    )
    paths = write_reports(results, out / "report", dataset=ds.describe())

    from recsage.models.registry import create_model

    best = max(results, key=lambda r: r.metrics["ndcg@10"]).model
    model = create_model(best).fit(ds)  # the final model sees every interaction
    model.save(out / best)
    u = ds.users.index_of(user, what="user")
    titles = _display_titles(ds)
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
        f"next: recsage recommend --model {out / best} --user 42 -n 10   "
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

    ds = _load(
        dataset, user_col=user_col, item_col=item_col, time_col=time_col, value_col=value_col,
        items=items,
    )  # fmt: skip
    if pipeline is not None:
        if split != "loo":
            raise ConfigError("--pipeline is evaluated with --split loo (its protocol)")
        from recsage.pipeline.evaluation import evaluate_pipeline
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
    names = _model_list(models)
    sp_, results = _run(ds, names, split, param or [], sampled)
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

    ds = _load(
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
    _model_list(model)
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
    """Top-n items for a user from a saved model or pipeline (seen items excluded)."""
    from recsage.models.base import Recommender

    if n < 1:
        raise ConfigError("-n must be >= 1")
    if (model is None) == (pipeline is None):
        raise ConfigError("give exactly one of --model DIR or --pipeline DIR")
    if pipeline is not None:
        from recsage.pipeline.pipeline import Pipeline, Query

        recs = Pipeline.load(pipeline).run(Query(user=user, n=n))
        table = Table(title=f"top-{n} for user {user} (pipeline)")
        for col in ("rank", "item", "title", "score", "found by"):
            table.add_column(col)
        for r in recs:
            table.add_row(str(r.rank), r.item, r.title, f"{r.score:.3f}", ",".join(r.sources))
        console.print(table)
        return
    assert model is not None
    m = Recommender.load(model)
    assert m.users is not None and m.items is not None
    u = m.users.index_of(user, what="user")
    items, scores = m.recommend(np.array([u]), n=n)
    table = Table(title=f"top-{n} for user {user} ({m.name})")
    table.add_column("rank", justify="right")
    table.add_column("item")
    table.add_column("title")
    table.add_column("score", justify="right")
    titles = m.item_titles or [""] * m.n_items
    for rank, (i, s) in enumerate(zip(items[0], scores[0], strict=True), start=1):
        if i < 0:
            break
        table.add_row(str(rank), str(m.items.ids[i]), str(titles[i]), f"{s:.4f}")
    console.print(table)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What you are looking for, in your own words.")],
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Blend in this user's taste.")
    ] = None,
    dataset: DatasetOpt = "ml-100k",
    pipeline: Annotated[
        Path | None, typer.Option(help="Use a saved pipeline's catalogue and vectors.")
    ] = None,
    n: Annotated[int, typer.Option("-n", help="How many items.")] = 10,
    personal_weight: Annotated[
        float, typer.Option(help="Weight of the user's taste when --user is given.")
    ] = 0.3,
) -> None:
    """Semantic search of the catalogue for free text (offline, pretrained MiniLM)."""
    from recsage.retrieval.search import semantic_search

    if n < 1:
        raise ConfigError("-n must be >= 1")
    if pipeline is not None:
        from recsage.pipeline.pipeline import Pipeline

        pipe = Pipeline.load(pipeline)
        vectors, encoder = pipe.resources.item_text_vectors, pipe.resources.text_encoder
        if vectors is None:
            raise ConfigError(f"pipeline {pipeline} was trained without text vectors")
        titles, items_vocab, users_vocab = pipe.item_titles(), pipe.items, pipe.users
        seqs = pipe.sequences
    else:
        from recsage.encoders.text import TextEncoder, encode_dataset_items
        from recsage.pipeline.pipeline import _default_cache_dir

        ds = _load(dataset)
        encoder = TextEncoder(cache_dir=_default_cache_dir())
        with console.status(f"encoding {ds.n_items:,} item texts (cached after the first run)…"):
            vectors = encode_dataset_items(encoder, ds)
        titles, items_vocab, users_vocab = _display_titles(ds), ds.items, ds.users
        seqs = ds.sequences() if user is not None else []
    history = None
    if user is not None:
        assert users_vocab is not None
        history = seqs[users_vocab.index_of(user, what="user")]
    assert items_vocab is not None
    found, scores = semantic_search(
        query, vectors, encoder, k=n, user_history=history, personal_weight=personal_weight
    )
    table = Table(title=f"search: {query!r}" + (f" for user {user}" if user else ""))
    for col in ("rank", "item", "title", "score"):
        table.add_column(col)
    for rank, (i, s) in enumerate(zip(found, scores, strict=True), start=1):
        table.add_row(str(rank), str(items_vocab.ids[i]), str(titles[i]), f"{s:.3f}")
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
    ds = _load(
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


@app.command()
def version() -> None:
    """Print the package version."""
    console.print(__version__)


def main() -> None:
    """Entry point: bad input gives one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except RecsageError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
