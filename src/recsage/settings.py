"""Deployment settings of the service: one `Settings` from `RECSAGE_*` variables and/or TOML.

Precedence (highest first): keyword overrides, environment variables, the TOML file
(`RECSAGE_CONFIG`, else `$RECSAGE_HOME/config.toml` when it exists), defaults. Every field
`name` has the variable `RECSAGE_NAME` (lists are comma-separated).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from recsage.errors import ConfigError

ENV_PREFIX = "RECSAGE_"


def _default_home() -> Path:
    return Path.home() / ".recsage"


class Settings(BaseModel):
    """Paths, store, limits and security switches of one service deployment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    home: Path = Field(default_factory=_default_home, description="State directory.")
    model_dir: Path | None = Field(
        default=None, description="Pipeline directory to serve (registered as a version)."
    )
    store_url: str | None = Field(
        default=None,
        description="sqlite:///path (default $home/feedback.db) or postgresql://...",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body; bigger ones get 413."
    )
    max_events_per_request: int = Field(
        default=1000, ge=1, le=100_000, description="Most events in one POST /v1/feedback."
    )
    rate_limit: float = Field(default=50.0, ge=0, description="Requests/s per key; 0 = off.")
    rate_burst: int = Field(
        default=100, ge=1, description="Token-bucket size: requests a key may send in one burst."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (comma-separated); empty = CORS off.",
    )
    auth_required: bool = Field(
        default=True, description="Require an API key (false only for local experiments)."
    )
    reload_interval: float = Field(
        default=5.0, ge=0, description="Seconds between checks of the current version; 0 = off."
    )
    batch_max: int = Field(
        default=16,
        ge=1,
        description="Most concurrent /v1/recommend queries run as one pipeline batch; 1 = off.",
    )
    holdout_events: int = Field(
        default=5000, ge=1, description="Recent events for the retrain holdout."
    )
    min_holdout_users: int = Field(
        default=5, ge=1, description="Fewest holdout users for `retrain` to compare models."
    )
    min_improvement: float = Field(
        default=0.0, description="Holdout NDCG@10 gain a retrained model needs to be swapped in."
    )
    access_log: bool = Field(default=False, description="Log every request (uvicorn).")
    ui_demo: bool = Field(
        default=False, description="Web page: one-click demo sign-in for loopback visitors."
    )
    report_dir: Path | None = Field(
        default=None,
        description="Evaluation report shown on /ui/admin (default: newest under $home/reports).",
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [o.strip() for o in v.split(",") if o.strip()]
        return v

    @field_validator("store_url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("store_url must start with sqlite:/// or postgresql://")
        return v

    # ---- derived ----------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{(self.home / 'feedback.db').resolve()}"

    # ---- loading ----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        config: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Settings from (in order) defaults, a TOML file, `RECSAGE_*` variables, overrides."""
        env = os.environ if env is None else env
        from_env: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in env and env[key] != "":
                from_env[name] = env[key]
        home = Path(overrides.get("home") or from_env.get("home") or _default_home())
        path = config or env.get(ENV_PREFIX + "CONFIG")
        from_file: dict[str, Any] = {}
        if path:
            from_file = _read_toml(Path(path))
        elif (home / "config.toml").exists():
            from_file = _read_toml(home / "config.toml")
        values = {**from_file, **from_env, **{k: v for k, v in overrides.items() if v is not None}}
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid service settings: {problems}") from None


def settings_help() -> list[tuple[str, str, str, str]]:
    """(TOML key, environment variable, default, description) of every setting, from the
    model itself, for `serve --help` and the docs."""
    rows = []
    for name, f in Settings.model_fields.items():
        if f.default_factory is not None:
            default = "$HOME/.recsage" if name == "home" else "(empty)"
        elif f.default is None:
            default = "(none)"
        elif isinstance(f.default, bool):
            default = str(f.default).lower()
        else:
            default = str(f.default)
        rows.append((name, ENV_PREFIX + name.upper(), default, f.description or ""))
    return rows


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"settings file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    return dict(data.get("service", data))
