"""Search, explain and chat commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from recsage.cli.common import (
    DataOptions,
    app,
    check_artifact,
    console,
    data_options,
    display_titles,
    err_console,
    load_data,
    warm_text_vectors,
)
from recsage.errors import ConfigError


def _require_item_text(ds: Any) -> None:
    """Text search over bare ids ranks everything alike: refuse, naming the options."""
    table = ds.item_table
    if not any(c in table.columns for c in ("title", "text", "categories", "name")):
        raise ConfigError(
            f"dataset '{ds.name}' has no item text (title, description or category), so text "
            "search would only see item ids; pass --items FILE (with --title-col / --text-col "
            "/ --category-col if its columns have other names)"
        )


@app.command()
@data_options
def search(
    query: Annotated[str, typer.Argument(help="What you are looking for, in your own words.")],
    data: DataOptions,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Blend in this user's taste.")
    ] = None,
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
    title = f"search: {query!r}" + (f" for user {user}" if user else "")
    if pipeline is not None:
        from recsage.pipeline.pipeline import Pipeline

        if data.dataset is not None:
            raise ConfigError("give one of --dataset or --pipeline")
        check_artifact(pipeline, "pipeline")
        recs = Pipeline.open(pipeline).search(
            query, user=user, n=n, personal_weight=personal_weight
        )
        table = Table(title=title)
        for col in ("rank", "item", "title", "score"):
            table.add_column(col)
        for r in recs:
            table.add_row(str(r.rank), r.item, r.title, f"{r.score:.3f}")
        console.print(table)
        return
    else:
        from recsage.encoders.cache import default_cache_dir
        from recsage.encoders.text import TextEncoder, encode_dataset_items

        ds = load_data(data)
        _require_item_text(ds)
        encoder = TextEncoder(cache_dir=default_cache_dir())
        vectors = encode_dataset_items(encoder, ds, progress=True)  # bar only when not cached
        titles, items_vocab, users_vocab = display_titles(ds), ds.items, ds.users
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
@data_options
def explain(
    user: Annotated[str, typer.Option("--user", "-u", help="External user id.")],
    item: Annotated[str, typer.Option("--item", "-i", help="External item id to explain.")],
    data: DataOptions,
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

    if data.dataset is not None and pipeline is not None:
        raise ConfigError("give one of --dataset or --pipeline")
    if pipeline is not None:
        from recsage.pipeline.pipeline import Pipeline

        check_artifact(pipeline, "pipeline")
        with console.status(f"loading pipeline {pipeline}…"):
            res = explain_command(user, item, pipeline=Pipeline.open(pipeline), scorer=scorer)
    else:
        if data.spec.strip().lower() == "lastfm":
            from recsage.knowledge.graph import load_lastfm_kg

            ds, graph = load_lastfm_kg()
        else:
            ds, graph = load_data(data), None
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
    user: str | None, llm: str, data: DataOptions, pipeline: Path | None, n: int, encoder: str
) -> Any:
    from recsage.llm.backends.base import default_cache_dir
    from recsage.llm.backends.registry import create_backend
    from recsage.llm.conversation.catalogue import Catalogue, KeywordEncoder
    from recsage.llm.conversation.session import ConversationSession

    if encoder not in ("minilm", "keywords"):
        raise ConfigError("--encoder must be minilm or keywords")
    backend = create_backend(llm, cache_dir=default_cache_dir(), timeout=60.0)
    history = None
    pipe_scores = None
    if pipeline is not None:
        from recsage.pipeline.pipeline import Pipeline
        from recsage.types import Query

        if data.dataset is not None:
            raise ConfigError("give one of --dataset or --pipeline")
        check_artifact(pipeline, "pipeline")
        with console.status("loading the pipeline…"):
            pipe = Pipeline.open(pipeline)
            cat = Catalogue.from_pipeline(pipe)
        if user is not None:
            assert pipe.users is not None and pipe.items is not None
            history = pipe.sequences[pipe.users.index_of(user, what="user")]
            recs = pipe.run(Query(user=user, n=200))
            pipe_scores = np.full(len(cat), -np.inf)
            idx = pipe.items.lookup([r.item for r in recs])
            pipe_scores[idx] = -np.arange(len(recs), dtype=np.float64)
    else:
        ds = load_data(data)
        _require_item_text(ds)
        enc = KeywordEncoder() if encoder == "keywords" else None
        if enc is None:
            warm_text_vectors({"text": {}}, ds)  # progress bar the first time, then cached
        with console.status(f"preparing {ds.n_items:,} items…"):
            cat = Catalogue.from_dataset(ds, encoder=enc)
        if user is not None:
            history = ds.sequences()[ds.users.index_of(user, what="user")]
    if backend is not None:
        with console.status(f"loading {backend!r}…"):
            backend.load()
    return ConversationSession(cat, backend=backend, history=history,
                               pipeline_scores=pipe_scores, n=n)  # fmt: skip


@app.command()
@data_options
def chat(
    data: DataOptions,
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
    session = _chat_session(user, llm, data, pipeline, n, encoder)
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
