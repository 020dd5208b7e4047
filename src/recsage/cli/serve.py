"""Service commands: serve, keys, retrain, rollback, versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from recsage.cli.common import app, console, err_console
from recsage.errors import ConfigError


# ---- the HTTP service ------------------------------------------------------------------------
def _service_settings(**overrides: Any) -> Any:
    try:
        from recsage.settings import Settings
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"the service needs its extra: pip install 'recsage[service]' ({exc})"
        ) from None
    return Settings.load(**overrides)


def _open_store(settings: Any) -> Any:
    from recsage.feedback.store import FeedbackStore

    return FeedbackStore.open(settings.resolved_store_url)


def serve_epilog() -> str:
    """The settings table (from the `Settings` model) and each route's key scope (from the
    routes' own checks), shown under `serve --help`; built only when help is asked for."""
    from recsage.settings import settings_help

    paras = [
        "[bold]Settings[/bold] (highest first: --config/--model, RECSAGE_* variables, the TOML "
        "file in RECSAGE_CONFIG or $RECSAGE_HOME/config.toml, defaults; TOML keys are the "
        "lowercase names, optionally under \\[service]):",
        "\n".join(
            f"  [cyan]{env}[/cyan] (default {escape(default)}): {escape(desc)}"
            for _name, env, default, desc in settings_help()
        ),
    ]
    paras.append(
        "[bold]Routes and the key scope each needs[/bold] (`recsage keys add NAME --scopes "
        "read,feedback,admin`; admin implies the others):"
    )
    try:
        from recsage.serving.routes import route_scopes
    except ImportError:  # pragma: no cover - the service extra is not installed
        paras.append("  (install 'recsage[service]' to list them)")
    else:
        lines = [f"  {m} {escape(p)}: {scope or 'no key'}" for m, p, scope in route_scopes()]
        lines.append("  /ui: the web page (signs in with a read key; see RECSAGE_UI_DEMO)")
        paras.append("\n".join(lines))
    return "\n\n".join(paras)


class _ServeCommand(TyperCommand):
    """`serve` with its settings and scopes generated into the help text."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.epilog = serve_epilog()
        super().format_help(ctx, formatter)


@app.command(cls=_ServeCommand)
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
    from recsage.feedback.retrain import retrain

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
    from recsage.feedback.retrain import rollback as do_rollback

    old, new = do_rollback(_service_settings())
    console.print(f"rolled back from {old} to {new} (running services reload within seconds)")


@app.command()
def versions() -> None:
    """List model versions; the current one is marked."""
    import datetime as dt

    from recsage.feedback.versions import VersionRegistry

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
