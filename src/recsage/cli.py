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
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # rich shows our own progress

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


# ---- the HTTP service ------------------------------------------------------------------------
def _service_settings(**overrides: Any) -> Any:
    try:
        from recsage.serving.settings import Settings
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"the service needs its extra: pip install 'recsage[service]' ({exc})"
        ) from None
    return Settings.load(**overrides)


def _open_store(settings: Any) -> Any:
    from recsage.serving.store import FeedbackStore

    return FeedbackStore.open(settings.resolved_store_url)


@app.command()
def serve(
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="Saved pipeline directory (registered as a version)."),
    ] = None,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    config: Annotated[Path | None, typer.Option(help="Settings TOML file.")] = None,
) -> None:
    """Serve recommendations over HTTP (settings from RECSAGE_* variables or --config)."""
    import logging

    import uvicorn

    from recsage.serving.app import create_app

    settings = _service_settings(config=config, model_dir=model)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    with console.status("loading the model…"):
        application = create_app(settings)
    version = application.state.runtime.served().version
    console.print(
        f"serving model {version} from {settings.models_dir} on http://{host}:{port} "
        f"(store {settings.resolved_store_url.split('@')[-1]}; "
        f"auth {'on' if settings.auth_required else 'OFF'})"
    )
    uvicorn.run(
        application, host=host, port=port, log_level=settings.log_level,
        access_log=settings.access_log,
    )  # fmt: skip


keys_app = typer.Typer(help="Manage API keys (stored as salted hashes).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="A name for the key (e.g. the client).")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read,feedback,admin.")] = "read",
) -> None:
    """Create a key and print it once (it cannot be shown again)."""
    from recsage.serving.auth import create_key

    store = _open_store(_service_settings())
    try:
        key = create_key(store, name, scopes)
    finally:
        store.close()
    err_console.print(f"created key '{name}' with scopes {scopes}; store it now, it is not kept:")
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (names, scopes, dates; never the keys themselves)."""
    import datetime as dt

    store = _open_store(_service_settings())
    try:
        records = store.keys()
    finally:
        store.close()
    table = Table(title="API keys")
    for col in ("name", "key id", "scopes", "created", "status"):
        table.add_column(col)
    for r in records:
        created = dt.datetime.fromtimestamp(r.created_at).isoformat(timespec="seconds")
        table.add_row(
            r.name, r.key_id, ",".join(r.scopes), created,
            "revoked" if r.revoked_at is not None else "active",
        )  # fmt: skip
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key (running services stop accepting it within seconds)."""
    store = _open_store(_service_settings())
    try:
        done = store.revoke_key(name)
    finally:
        store.close()
    if not done:
        raise ConfigError(f"no active key named '{name}' (see `recsage keys list`)")
    console.print(f"revoked key '{name}'")


@app.command("retrain")
def retrain_cmd(
    min_improvement: Annotated[
        float, typer.Option(help="Required holdout NDCG@10 gain over the serving model.")
    ] = 0.0,
    force: Annotated[bool, typer.Option(help="Swap even if the candidate is worse.")] = False,
) -> None:
    """Fit a new version on base data + stored feedback; swap it in if not worse."""
    from recsage.serving.retrain import retrain

    settings = _service_settings()
    with console.status("retraining…"):
        res = retrain(
            settings, min_improvement=min_improvement, force=force,
            log=lambda m: console.print(f"[dim]{m}[/dim]"),
        )  # fmt: skip
    if res.metrics:
        table = Table(title=f"holdout ({res.holdout_users} users, last event each)")
        for col in ("model", "HR@10", "NDCG@10"):
            table.add_column(col)
        for label, key in ((f"serving {res.serving_version}", "serving"), ("candidate", "new")):
            m = res.metrics[key]
            table.add_row(label, f"{m['hr@10']:.4f}", f"{m['ndcg@10']:.4f}")
        console.print(table)
    verdict = f"now serving {res.new_version}" if res.swapped else "kept the serving model"
    console.print(f"{verdict}: {res.reason} ({res.seconds:.1f}s)")


@app.command()
def rollback() -> None:
    """Point the service back at the previous model version."""
    from recsage.serving.retrain import rollback as do_rollback

    old, new = do_rollback(_service_settings())
    console.print(f"rolled back from {old} to {new} (running services reload within seconds)")


@app.command()
def versions() -> None:
    """List model versions; the current one is marked."""
    import datetime as dt

    from recsage.serving.versions import VersionRegistry

    settings = _service_settings()
    registry = VersionRegistry(settings.models_dir)
    current = registry.current_name()
    table = Table(title=f"model versions in {settings.models_dir}")
    for col in ("", "version", "created", "source", "parent", "events through", "holdout NDCG@10"):
        table.add_column(col)
    for v in registry.list():
        created = dt.datetime.fromtimestamp(v.info.get("created_at", 0)).isoformat(
            timespec="seconds"
        )
        ndcg = v.info.get("metrics", {}).get("new", {}).get("ndcg@10")
        table.add_row(
            "*" if v.name == current else "", v.name, created, str(v.info.get("source", "")),
            v.parent or "", str(v.events_through), "" if ndcg is None else f"{ndcg:.4f}",
        )  # fmt: skip
    console.print(table)


@app.command()
def explain(
    user: Annotated[str, typer.Option("--user", "-u", help="External user id.")],
    item: Annotated[str, typer.Option("--item", "-i", help="External item id to explain.")],
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", "-d", help="Dataset name or path (ml-100k, lastfm, ...); default ml-100k."
        ),
    ] = None,
    pipeline: Annotated[
        Path | None, typer.Option("--pipeline", help="Saved pipeline directory.")
    ] = None,
    scorer: Annotated[
        str, typer.Option(help="Who weighs history items: auto | ease | text | attributes.")
    ] = "auto",
) -> None:
    """Why an item suits a user: channels, history items, shared attributes, KG paths.

    Every reason printed is re-checked against the data (history, item table, graph).
    """
    import re

    from rich.markup import escape

    from recsage.knowledge.explain import explain_command

    if dataset is not None and pipeline is not None:
        raise ConfigError("give one of --dataset or --pipeline")
    if pipeline is not None:
        from recsage.pipeline.pipeline import Pipeline

        with console.status(f"loading pipeline {pipeline}…"):
            res = explain_command(user, item, pipeline=Pipeline.load(pipeline), scorer=scorer)
    else:
        name = dataset or "ml-100k"
        if name.strip().lower() == "lastfm":
            from recsage.knowledge.graph import load_lastfm_kg

            ds, graph = load_lastfm_kg()
        else:
            ds, graph = _load(name), None
        with console.status("building the knowledge graph…"):
            res = explain_command(user, item, dataset=ds, graph=graph, scorer=scorer)
    exp = res.explanation

    def rich_line(text: str) -> str:
        return re.sub(r"\*([^*]+)\*", r"[italic]\1[/italic]", escape(text))

    table = Table(title=f"why {escape(exp.title)} (item {item}) for user {user}", show_lines=False)
    table.add_column("reason")
    for line in exp.lines():
        table.add_row(rich_line(line))
    console.print(table)
    for note in res.notes:
        console.print(f"[dim]note: {escape(note)}[/dim]")
    if res.faithful:
        for p in res.faithful:
            err_console.print(f"[red]unfaithful reason:[/red] {escape(p)}")
        raise typer.Exit(1)
    console.print("[dim]every reason re-checked against the data: ok[/dim]")


# ---- conversational recommendation and local LLMs -------------------------------------------
def _chat_session(
    user: str | None, llm: str, dataset: str, pipeline: Path | None, n: int, encoder: str
) -> Any:
    from recsage.llm.backends import create_backend, default_cache_dir
    from recsage.llm.conversation import Catalogue, ConversationSession, KeywordEncoder

    if encoder not in ("minilm", "keywords"):
        raise ConfigError("--encoder must be minilm or keywords")
    backend = create_backend(llm, cache_dir=default_cache_dir(), timeout=60.0)
    history = None
    pipe_scores = None
    if pipeline is not None:
        from recsage.pipeline.pipeline import Pipeline, Query

        with console.status("loading the pipeline…"):
            pipe = Pipeline.load(pipeline)
            cat = Catalogue.from_pipeline(pipe)
        if user is not None:
            assert pipe.users is not None and pipe.items is not None
            history = pipe.sequences[pipe.users.index_of(user, what="user")]
            recs = pipe.run(Query(user=user, n=200))
            pipe_scores = np.full(len(cat), -np.inf)
            idx = pipe.items.lookup([r.item for r in recs])
            pipe_scores[idx] = -np.arange(len(recs), dtype=np.float64)
    else:
        ds = _load(dataset)
        enc = KeywordEncoder() if encoder == "keywords" else None
        with console.status(f"encoding {ds.n_items:,} item texts (cached after the first run)…"):
            cat = Catalogue.from_dataset(ds, encoder=enc)
        if user is not None:
            history = ds.sequences()[ds.users.index_of(user, what="user")]
    if backend is not None:
        with console.status(f"loading {backend!r}…"):
            if hasattr(backend, "load"):
                backend.load()
    return ConversationSession(cat, backend=backend, history=history,
                               pipeline_scores=pipe_scores, n=n)  # fmt: skip


@app.command()
def chat(
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Blend in this user's long-term taste.")
    ] = None,
    llm: Annotated[
        str,
        typer.Option(
            help="none (rules + embeddings), smollm2, a .gguf path, a model folder "
            "or an OpenAI-compatible http(s) URL."
        ),
    ] = "none",
    dataset: DatasetOpt = "ml-100k",
    pipeline: Annotated[
        Path | None, typer.Option(help="Use a saved pipeline's catalogue and ranking.")
    ] = None,
    n: Annotated[int, typer.Option("-n", help="Recommendations per turn.")] = 5,
    encoder: Annotated[
        str, typer.Option(help="minilm (pretrained, default) or keywords (no torch).")
    ] = "minilm",
) -> None:
    """Conversational recommendations: one line per turn, typed or piped on stdin."""
    from rich.markup import escape as esc

    if n < 1:
        raise ConfigError("-n must be >= 1")
    session = _chat_session(user, llm, dataset, pipeline, n, encoder)
    interactive = sys.stdin.isatty()
    if interactive:
        console.print("[dim]say what you feel like watching; 'start over' resets, "
                      "'quit' ends[/dim]")  # fmt: skip
    while True:
        if interactive:
            try:
                line = console.input("[bold]you>[/bold] ")
            except EOFError:
                break
        else:
            raw = sys.stdin.readline()
            if not raw:
                break
            line = raw.strip()
            if line:
                console.print(f"[bold]you>[/bold] {esc(line)}")
        if not line.strip():
            continue
        if line.strip().lower() in ("quit", "exit", "bye"):
            break
        turn = session.turn(line)
        note = f" [yellow](LLM: {esc(turn.llm_error)})[/yellow]" if turn.llm_error else ""
        console.print(f"[dim]understood ({turn.source}): {esc(turn.understood)}[/dim]{note}")
        if not turn.recommendations:
            console.print("nothing in the catalogue fits all of that; try 'start over'")
        for r in turn.recommendations:
            console.print(f"  {r.rank}. {esc(r.title)}")


llm_app = typer.Typer(help="Local generative models (GGUF via llama.cpp).", no_args_is_help=True)
app.add_typer(llm_app, name="llm")


@llm_app.command("list")
def llm_list() -> None:
    """Known local models, whether each is ready, and its licence."""
    from recsage.llm import models

    table = Table(title=f"local models (assembled ones live in {models.models_dir()})")
    for col in ("name", "ready", "licence", "what"):
        table.add_column(col)
    for m in models.MODELS.values():
        table.add_row(m.name, "yes" if models.is_available(m.name) else "no", m.licence,
                      m.description)  # fmt: skip
    console.print(table)


@llm_app.command("fetch")
def llm_fetch(
    names: Annotated[list[str], typer.Argument(help="Model names (see `recsage llm list`).")],
) -> None:
    """Assemble chunked models from their installed packages into RECSAGE_HOME/models,
    verifying size and sha256 (install the chunks first: `make install-qwen`)."""
    from recsage.llm import models

    for name in names:
        with console.status(f"assembling and verifying {name}…"):
            path = models.assemble(name)
        console.print(f"{name}: {path} (sha256 verified)")


@llm_app.command("serve")
def llm_serve(
    model: Annotated[str, typer.Option(help="Local model name or .gguf path.")] = "smollm2",
    host: Annotated[str, typer.Option(help="Interface (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8081,
    key_env: Annotated[
        str | None, typer.Option(help="Require the bearer key held in this variable.")
    ] = None,
) -> None:
    """Serve a local model as an OpenAI-compatible chat-completions endpoint."""
    from recsage.llm.backends import LlamaCppBackend
    from recsage.llm.server import start_server

    key = os.environ.get(key_env) if key_env else None
    if key_env and not key:
        raise ConfigError(f"--key-env {key_env}: that variable is not set")
    with console.status(f"loading {model}…"):
        backend = LlamaCppBackend(model).load()
    server = start_server(backend, host=host, port=port, api_key=key, model_name=str(model))
    console.print(f"serving {model} on {server.url}/v1/chat/completions "
                  f"(auth {'on' if key else 'off'}); Ctrl-C stops")  # fmt: skip
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.close()


__import__("recsage.cli_scale").cli_scale.register(app)  # synth, tune (issue 16)


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
