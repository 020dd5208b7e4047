"""The typer app, console and the options shared by every command group."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from recsage.errors import ConfigError

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


def load_data(
    spec: str,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    value_col: str | None = None,
    items: Path | None = None,
) -> Any:
    from recsage.data.sources.registry import load_dataset

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


def run_models(dataset: Any, models: list[str], split: str, params: list[str], sampled: int | None):
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


def model_list(models: str) -> list[str]:
    from recsage.models.registry import model_names

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise ConfigError("--models is empty; e.g. --models pop,ease")
    known = model_names()
    for n in names:
        if n not in known:
            raise ConfigError(f"unknown model '{n}'; known: {', '.join(known)}")
    return names


def display_titles(dataset: Any) -> np.ndarray:
    return np.asarray(dataset.item_titles(), dtype=object)
