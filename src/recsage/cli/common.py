"""The typer app, console and the options shared by every command group."""

from __future__ import annotations

import functools
import inspect
import os
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

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
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        from recsage import __version__

        typer.echo(f"recsage {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """recsage: LLM-enhanced recommendations — train, evaluate and serve."""


console = Console()


err_console = Console(stderr=True)


BASELINES = "pop,itemknn,ease,als"


DATA_PANEL = "Data (your own files)"


DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="Dataset name (ml-100k, ml-1m, amazon-scientific) or a path "
        "(.csv/.tsv/.parquet/.jsonl table, sequence .txt, RecBole/UniSRec folder).",
    ),
]


def _opt(*names: str, help: str, panel: str = DATA_PANEL) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel)


@dataclass
class DataOptions:
    """The dataset options every data-reading command shares (`@data_options`)."""

    dataset: Annotated[
        str | None,
        _opt("--dataset", "-d", help="Dataset name (ml-100k, ml-1m, amazon-scientific) or a "
             "path (.csv/.tsv/.parquet/.jsonl table, sequence .txt, RecBole/UniSRec folder); "
             "default ml-100k."),
    ] = None  # fmt: skip
    items: Annotated[
        Path | None, _opt("--items", help="Item table (id, title, category, description, ...).")
    ] = None
    user_col: Annotated[
        str | None,
        _opt("--user-col", help="User id column (default: found among user_id, customer_id, "
             "visitor_id, ...)."),
    ] = None  # fmt: skip
    item_col: Annotated[
        str | None,
        _opt("--item-col", help="Item id column of the interactions (default: found among "
             "item_id, product_id, sku, ...)."),
    ] = None  # fmt: skip
    time_col: Annotated[
        str | None,
        _opt("--time-col", help="Time column: epoch seconds (ms/us/ns recognised) or dates; "
             "'' = none (default: found among timestamp, time, date, ...)."),
    ] = None  # fmt: skip
    time_format: Annotated[
        str | None, _opt("--time-format", help="strftime format of the times, e.g. %d/%m/%Y.")
    ] = None
    value_col: Annotated[str | None, _opt("--value-col", help="Rating/value column.")] = None
    event_col: Annotated[
        str | None,
        _opt("--event-col", help="Event type column (default: found among event_type, event, "
             "action, ...; '' = none)."),
    ] = None  # fmt: skip
    event_weights: Annotated[
        str | None,
        _opt("--event-weights", help="Training weight per event type, e.g. "
             "purchase=3,cart=2,view=1 (0 drops a type; every type in the file needs one)."),
    ] = None  # fmt: skip
    item_id_col: Annotated[
        str | None,
        _opt("--item-id-col", help="Id column of --items (default: the interactions' item "
             "column name, else item_id, id, product_id, sku, ...)."),
    ] = None  # fmt: skip
    title_col: Annotated[
        str | None, _opt("--title-col", help="Title column of --items (default: title, name).")
    ] = None
    category_col: Annotated[
        str | None,
        _opt("--category-col", help="Category column of --items (default: categories, "
             "category, genres, genre, ...)."),
    ] = None  # fmt: skip
    category_sep: Annotated[
        str, _opt("--category-sep", help="Separator between several categories in one cell.")
    ] = "|"
    text_col: Annotated[
        str | None,
        _opt("--text-col", help="Description column(s) of --items, comma-separated (default: "
             "description, text, overview, ...)."),
    ] = None  # fmt: skip
    unknown_items: Annotated[
        str,
        _opt("--unknown-items", help="Interactions naming items missing from --items: error "
             "(refuse the file) or drop (drop and count them)."),
    ] = "error"  # fmt: skip
    sep: Annotated[
        str | None,
        _opt("--sep", help="Delimiter of .csv/.tsv files: a character, or tab / semicolon / "
             "pipe (default: detected from the header)."),
    ] = None  # fmt: skip
    encoding: Annotated[
        str | None,
        _opt("--encoding", help="Text encoding (default: UTF-8, with UTF-16 / Latin-1 / gzip "
             "detected and reported)."),
    ] = None  # fmt: skip

    @property
    def spec(self) -> str:
        return self.dataset or "ml-100k"

    def table_options(self) -> dict[str, Any]:
        """Keyword arguments of `load_table` for the options that were given."""
        if self.unknown_items not in ("error", "drop"):
            raise ConfigError(f"--unknown-items must be error or drop, not {self.unknown_items!r}")
        text_cols = [c.strip() for c in (self.text_col or "").split(",") if c.strip()] or None
        return {
            "user_col": self.user_col,
            "item_col": self.item_col,
            "time_col": self.time_col,
            "time_format": self.time_format,
            "value_col": self.value_col,
            "event_col": self.event_col,
            "event_weights": self.event_weights,
            "items_path": self.items,
            "item_id_col": self.item_id_col,
            "title_col": self.title_col,
            "category_col": self.category_col,
            "category_sep": self.category_sep,
            "text_cols": text_cols,
            "unknown_items": self.unknown_items,
            "sep": self.sep,
            "encoding": self.encoding,
        }

    def given_table_options(self) -> list[str]:
        """The table-only options set away from their defaults (for named datasets)."""
        defaults = {f.name: f.default for f in fields(self)}
        return [
            "--" + name.replace("_", "-")
            for name in defaults
            if name != "dataset" and getattr(self, name) != defaults[name]
        ]


_DATA_FIELDS = [f.name for f in fields(DataOptions)]
F = TypeVar("F", bound=Callable[..., Any])


def data_options(func: F) -> F:
    """Give a command every `DataOptions` option; it receives them as `data: DataOptions`.

    The options are defined once (above) and shown in their own help panel.
    """
    sig = inspect.signature(func, eval_str=True)
    resolved = typing.get_type_hints(DataOptions, include_extras=True)
    defaults = DataOptions()
    extra = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=getattr(defaults, name),
            annotation=resolved[name],
        )
        for name in _DATA_FIELDS
    ]
    params = [p for p in sig.parameters.values() if p.name != "data"]
    params = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is p.POSITIONAL_OR_KEYWORD else p
        for p in params
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        data = DataOptions(**{n: kwargs.pop(n) for n in _DATA_FIELDS if n in kwargs})
        return func(*args, data=data, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params + extra)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params + extra}
    return wrapper  # type: ignore[return-value]


def load_data(data: DataOptions | str, *, show_report: bool = True) -> Any:
    """Load the dataset the options describe, printing what was dropped or assumed."""
    from recsage.data.sources.readers import TABLE_SUFFIXES
    from recsage.data.sources.registry import load_dataset

    if isinstance(data, str):
        data = DataOptions(dataset=data)
    spec = data.spec
    options: dict[str, Any] = {}
    if Path(spec).suffix.lower() in TABLE_SUFFIXES:
        options = data.table_options()
    else:
        given = data.given_table_options()
        if given:
            raise ConfigError(
                f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to table files "
                f"(.csv/.tsv/.parquet/.jsonl); '{spec}' is not one"
            )
    with console.status(f"loading {spec}…"):
        ds = load_dataset(spec, **options)
    if show_report and ds.report is not None and (ds.report.rows_dropped or ds.report.notes):
        from rich.markup import escape

        for line in ds.report.lines():
            console.print(f"[yellow]{escape(line)}[/yellow]")
    return ds


ModelKind = Literal["model", "pipeline"]


def check_artifact(path: Path, want: ModelKind) -> None:
    """Refuse a saved pipeline given as --model (and the reverse), naming the right flag."""
    is_pipeline = (path / "pipeline.toml").is_file()
    is_model = (path / "state.safetensors").is_file() and not is_pipeline
    if want == "model" and is_pipeline:
        raise ConfigError(f"{path} is a saved pipeline, not a model: use --pipeline {path}")
    if want == "pipeline" and is_model:
        raise ConfigError(f"{path} is a saved model, not a pipeline: use --model {path}")


@contextmanager
def _steps(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with elapsed time for long work; the returned `log` prints finished steps
    and shows a message ending in '…' as the step now running."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task(title, total=None)

        def log(message: str) -> None:
            if message.endswith("…"):
                progress.update(task, description=f"{title}: {message}")
            else:
                console.print(f"[dim]{message}[/dim]")

        yield log


def warm_text_vectors(spec: dict[str, Any], dataset: Any) -> None:
    """Encode the catalogue's texts with a progress bar (cached, so the pipeline's own
    encoding that follows is instant): the first run on a catalogue takes a while."""
    text = spec.get("text", {})
    if not text.get("enabled", True):
        return
    from recsage.encoders.cache import default_cache_dir
    from recsage.encoders.text import TextEncoder, encode_dataset_items

    cache = Path(text["cache_dir"]) if text.get("cache_dir") else default_cache_dir()
    encoder = TextEncoder(text.get("model") or None, cache_dir=cache)
    encode_dataset_items(encoder, dataset, progress=True)


def fit_pipeline(pipe: Any, dataset: Any) -> None:
    """Fit a pipeline showing progress: text vectors, then each channel and stage."""
    warm_text_vectors(pipe.spec, dataset)
    start = time.perf_counter()
    with _steps("fitting the pipeline") as log:
        pipe.fit(dataset, log=log)
    console.print(f"[dim]pipeline fitted in {time.perf_counter() - start:.1f}s[/dim]")


def parse_ks(value: str | None) -> tuple[int, ...] | None:
    """`--k 5,10,20` -> (5, 10, 20); each a positive integer."""
    if value is None:
        return None
    try:
        ks = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise ConfigError(f"--k takes positive integers, e.g. 5,10,20; got {value!r}") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k takes positive integers, e.g. 5,10,20; got {value!r}")
    return ks


SMALL_EVAL = 50


def warn_small(results: list[Any]) -> None:
    """Say when the metrics are means over so few users that they are mostly noise."""
    if not results:
        return
    n = int(results[0].protocol.get("users", 0))
    if n >= SMALL_EVAL:
        return
    hr = results[0].metrics.get("hr@10")
    spread = ""
    if hr is not None and n:
        half = 1.96 * float(np.sqrt(max(hr * (1 - hr), 0.25 / n) / n))
        spread = f" (HR@10 of {results[0].model} is {hr:.2f} ± {half:.2f} at 95%)"
    err_console.print(
        f"[yellow]warning:[/yellow] only {n} users evaluated{spread}; with fewer than "
        f"{SMALL_EVAL} users these metrics are mostly noise"
    )


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


def run_models(
    dataset: Any,
    models: list[str],
    split: str,
    params: list[str],
    sampled: int | None,
    *,
    ks: tuple[int, ...] | None = None,
    target_events: tuple[str, ...] | None = None,
    cutoff: float | None = None,
    folds: int = 5,
    seed: int = 0,
    min_users: int = 1,
) -> tuple[Any, list[Any]]:
    """Fit and evaluate `models` on one split (or every fold of k-fold); returns (split,
    results), the split being the first fold's for k-fold."""
    from recsage.data.splits import kfold_splits, require_users
    from recsage.evaluation.folds import run_folds
    from recsage.evaluation.runner import make_split, parse_params, run_models

    parsed = parse_params(params)
    unknown = sorted(set(parsed) - set(models))
    if unknown:
        raise ConfigError(f"--param given for model(s) not being run: {', '.join(unknown)}")
    if split == "kfold":
        splits = kfold_splits(dataset, folds=folds, seed=seed, target_events=target_events)
    else:
        splits = [make_split(dataset, split, seed=seed, target_events=target_events,
                             cutoff=cutoff)]  # fmt: skip
    source = dataset.report.source if dataset.report is not None else None
    for sp_ in splits:
        require_users(sp_, dataset, minimum=min_users, path=source)
    kw: dict[str, Any] = {"ks": ks} if ks else {}
    with _progress() as progress:
        task = progress.add_task("fitting and evaluating", total=len(models) * len(splits))

        def one(sp_: Any) -> list[Any]:
            out = []
            for name in models:
                where = f" ({sp_.name})" if len(splits) > 1 else ""
                progress.update(task, description=f"{name}: fit + evaluation{where}")
                out += run_models(
                    dataset, [name], split=sp_, params={name: parsed.get(name, {})},
                    sampled_negatives=sampled, seed=seed, **kw,
                )  # fmt: skip
                progress.advance(task)
            return out

        results = run_folds(splits, one) if split == "kfold" else one(splits[0])
    return splits[0], results


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
