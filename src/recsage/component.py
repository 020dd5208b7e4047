"""The component contract every pluggable part follows: one config path, one registry.

Every model, channel, stage, ranker, vector index and LLM backend takes its settings as a
typed config dataclass built by `build_config` (unknown keys rejected with the valid ones
listed, strings and numbers coerced to the declared scalar type, `validate()` run when the
config defines one) and is found by name in a `Registry`. Registries hold classes eagerly,
or lazily as ``"module:attr"`` strings so that `import recsage` stays light (torch-using
classes load on first use), and pick up Python entry points in the group
``recsage.<kind>s`` (e.g. ``recsage.channels``), so a separate package can add a component::

    [project.entry-points."recsage.channels"]
    my_channel = "my_package.channels:MyChannel"

Capabilities that several layers share are typed protocols here (`TextEncoderLike`,
`SupportsCatalogue`); model capabilities live in `recsage.models.base`.

Core layer: imports only the standard library, numpy and `recsage.errors`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import keyword
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, overload, runtime_checkable

import numpy as np

from recsage.errors import ConfigError

C = TypeVar("C")
T = TypeVar("T")


# ---- capabilities -----------------------------------------------------------------------
class TextEncoderLike(Protocol):
    """Turns item and query texts into vectors in one space (`TextEncoder`, test stand-ins).

    `fingerprint` names the model and settings, so cached vectors are never mixed up.
    (Not runtime-checkable: an `isinstance` check would evaluate properties that load a model.)
    """

    @property
    def fingerprint(self) -> str: ...

    def encode_items(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class SupportsCatalogue(Protocol):
    """A component that reads item descriptions (by dense item index), e.g. an LLM re-rank
    stage; the pipeline hands it the current catalogue after fit, load and item updates."""

    def set_catalogue(self, texts: Sequence[str]) -> None: ...


# ---- config -----------------------------------------------------------------------------
@runtime_checkable
class SupportsValidate(Protocol):
    """A config that checks its own values (raises ConfigError naming the bad one)."""

    def validate(self) -> None: ...


def check_params(params: Iterable[str], valid: Iterable[str], *, where: str) -> None:
    """Raise ConfigError if `params` holds a name outside `valid`, listing the valid ones.

    The message reads ``<where>: unknown parameter(s) a, b; valid: x, y, z`` ("valid: none"
    for a component without settings).
    """
    names = set(valid)
    bad = sorted(set(params) - names)
    if bad:
        # fields named after Python keywords (lambda_) are written without the "_" in specs
        shown = sorted(
            n[:-1] if n.endswith("_") and keyword.iskeyword(n[:-1]) else n for n in names
        )
        raise ConfigError(
            f"{where}: unknown parameter(s) {', '.join(bad)}; valid: {', '.join(shown) or 'none'}"
        )


def config_fields(cls: type[Any]) -> list[str]:
    """Field names of a config dataclass, in declaration order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    return [f.name for f in dataclasses.fields(cls)]


def _field_types(cls: type[Any]) -> dict[str, str]:
    """Declared type of each field as text ('int', 'float | None', ...)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # names only resolvable where the class was defined: use the text
        hints = {}
    out = {}
    for f in dataclasses.fields(cls):
        t = hints.get(f.name, f.type)
        out[f.name] = t.__name__ if isinstance(t, type) else str(t).strip("'\"")
    return out


def _coerce(key: str, value: Any, type_name: str) -> Any:
    """Plain scalars to the declared scalar type (e.g. "3" -> 3 for an int field)."""
    try:
        if type_name == "int" and not isinstance(value, int):
            return int(value)
        if type_name == "float" and not isinstance(value, float):
            return float(value)
        if type_name == "bool" and isinstance(value, str):
            return value.lower() in ("1", "true", "yes")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"parameter {key}={value!r}: expected {type_name}") from exc
    return value


def build_config(cls: type[C], params: Mapping[str, Any], *, where: str | None = None) -> C:
    """The one validation path: a config dataclass from keyword parameters.

    Unknown keys raise ConfigError listing the valid ones (prefixed by `where`, default the
    class name); int/float/bool fields accept numbers and strings ("3", "0.5", "yes");
    the config's own `validate()` runs when it defines one.
    """
    check_params(params, config_fields(cls), where=where or cls.__name__)
    types = _field_types(cls)
    config = cls(**{k: _coerce(k, v, types[k]) for k, v in params.items()})
    if isinstance(config, SupportsValidate):
        config.validate()
    return config


def resolve_config(
    cls: type[C], config: C | None, params: Mapping[str, Any], *, where: str | None = None
) -> C:
    """A component's config from either a ready config object or keyword parameters.

    Passing both is an error; a ready object is validated like a built one.
    """
    if config is None:
        return build_config(cls, params, where=where)
    if params:
        raise ConfigError("pass either a config object or keyword parameters, not both")
    if isinstance(config, SupportsValidate):
        config.validate()
    return config


# ---- registry ---------------------------------------------------------------------------
def load_target(target: str) -> Any:
    """The object a ``"package.module:attr"`` (attr may be dotted) string names."""
    if not _is_reference(target):
        raise ConfigError(f"{target!r} is not a 'module:attr' reference")
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[C]):
    """Component classes by name: eager classes, lazy ``"module:attr"`` strings, entry points.

    `kind` names the component in messages ("model", "channel", ...); `noun` overrides the
    wording of the unknown-name error ("unknown <noun> 'x'; known: ..."); `group` is the
    entry-point group (default ``recsage.<kind>s``); `base`, when given, is the class every
    registered one must derive from (checked when it is loaded).
    """

    def __init__(
        self,
        kind: str,
        *,
        base: type[C] | None = None,
        group: str | None = None,
        noun: str | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self.noun = noun or kind
        self.group = group or f"recsage.{kind.replace(' ', '_')}s"
        self._loaded: dict[str, type[C]] = {}
        self._lazy: dict[str, str] = {}
        self._plugins: dict[str, str] = {}  # entry-point name -> "module:attr"
        self._scanned = False

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"

    # ---- registration ---------------------------------------------------------------
    @overload
    def register(self, name: str) -> Callable[[type[C]], type[C]]: ...
    @overload
    def register(self, name: str, obj: type[C]) -> type[C]: ...
    @overload
    def register(self, name: str, obj: str) -> str: ...

    def register(self, name: str, obj: type[C] | str | None = None) -> Any:
        """Add a class under `name`: `@reg.register("x")`, `reg.register("x", Cls)`, or
        `reg.register("x", "package.module:Cls")` (imported on first `get`).

        A name already taken by another class is refused; registering the same class again
        is a no-op, and a module named by a lazy entry may register the class itself while
        it is being imported.
        """
        if obj is None:

            def decorator(cls: type[C]) -> type[C]:
                self._add(name, cls)
                return cls

            return decorator
        self._add(name, obj)
        return obj

    def _add(self, name: str, obj: type[C] | str) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if isinstance(obj, str):
            if not _is_reference(obj):
                raise ConfigError(f"lazy {self.kind} '{name}': {obj!r} is not 'module:attr'")
            if self._lazy.get(name) == obj:
                return
            if name in self._loaded and self._is_target(self._loaded[name], obj):
                return
            self._refuse_taken(name)
            self._lazy[name] = obj
            return
        if self._loaded.get(name) is obj:
            return
        pending = self._lazy.get(name)
        if pending is not None and self._is_target(obj, pending):
            self._loaded[name] = obj  # the lazily named module registering its own class
            return
        self._refuse_taken(name)
        self._loaded[name] = obj

    def _refuse_taken(self, name: str) -> None:
        if name in self._loaded or name in self._lazy:
            where = self._lazy.get(name) or _qualname(self._loaded[name])
            raise ConfigError(f"{self.kind} '{name}' is already registered ({where})")

    @staticmethod
    def _is_target(obj: Any, target: str) -> bool:
        """Whether `obj` is (or is defined under the module of) the lazy `target`."""
        module = target.partition(":")[0]
        own = str(getattr(obj, "__module__", ""))
        return own == module or own.startswith(module + ".")

    # ---- lookup ---------------------------------------------------------------------
    def get(self, name: str, *, where: str = "") -> type[C]:
        """The class registered as `name` (importing it if lazy), or ConfigError listing
        the known names (prefixed by `where`, e.g. "channel 'recent'", when given)."""
        if name in self._loaded:
            return self._loaded[name]
        target = self._lazy.get(name)
        if target is None:
            self._scan_entry_points()
            target = self._plugins.get(name)
        if target is None:
            prefix = f"{where}: " if where else ""
            known = ", ".join(self.names())
            raise ConfigError(f"{prefix}unknown {self.noun} {name!r}; known: {known}")
        try:
            obj = load_target(target)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"{self.kind} '{name}' could not be loaded from {target}: {exc}"
            ) from exc
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise ConfigError(
                f"{self.kind} '{name}' ({target}) is not a {self.base.__name__} subclass"
            )
        self._loaded[name] = obj
        return obj

    def create(self, name: str, /, *args: Any, **params: Any) -> C:
        """An instance of the class registered as `name`."""
        return self.get(name)(*args, **params)

    def names(self) -> list[str]:
        """Every name this registry can create (built-in, lazy and entry points), sorted."""
        self._scan_entry_points()
        return sorted(set(self._loaded) | set(self._lazy) | set(self._plugins))

    def __contains__(self, name: object) -> bool:
        if name in self._loaded or name in self._lazy:
            return True
        self._scan_entry_points()
        return name in self._plugins

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _scan_entry_points(self) -> None:
        """Read the entry-point group once; a plugin cannot shadow a registered name."""
        if self._scanned:
            return
        self._scanned = True
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name in self._loaded or ep.name in self._lazy:
                warnings.warn(
                    f"entry point {ep.value!r} ({self.group}) ignored: {self.kind} "
                    f"'{ep.name}' is built in",
                    stacklevel=3,
                )
                continue
            target = f"{ep.module}:{ep.attr}" if ep.attr else ep.value
            if not _is_reference(target):
                warnings.warn(
                    f"entry point {ep.name}={ep.value!r} ({self.group}) ignored: "
                    "it must name 'module:attr'",
                    stacklevel=3,
                )
                continue
            self._plugins[ep.name] = target


def _is_reference(text: str) -> bool:
    module, sep, attr = text.partition(":")
    return bool(sep and module.strip() and attr.strip())


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


__all__ = [
    "Registry",
    "SupportsCatalogue",
    "SupportsValidate",
    "TextEncoderLike",
    "build_config",
    "check_params",
    "config_fields",
    "load_target",
    "resolve_config",
]
