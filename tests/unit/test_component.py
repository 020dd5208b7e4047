"""The component contract: one config validation path and one registry kind."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from recsage.component import (
    Registry,
    SupportsCatalogue,
    build_config,
    check_params,
    load_target,
    resolve_config,
)
from recsage.errors import ConfigError


# ---- config -----------------------------------------------------------------------------
@dataclass
class _Cfg:
    dim: int = 8
    lr: float = 0.1
    shuffle: bool = False
    name: str = "x"
    layers: tuple[int, ...] = (4,)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Checked:
    k: int = 1

    def validate(self) -> None:
        if self.k < 1:
            raise ConfigError(f"_Checked: k must be >= 1, got {self.k}")


def test_build_config_coerces_scalars_to_the_declared_type() -> None:
    cfg = build_config(_Cfg, {"dim": "16", "lr": 1, "shuffle": "yes", "name": "y"})
    assert cfg == _Cfg(dim=16, lr=1.0, shuffle=True, name="y")
    assert type(cfg.dim) is int and type(cfg.lr) is float
    assert build_config(_Cfg, {"shuffle": "0"}).shuffle is False
    assert build_config(_Cfg, {"shuffle": True}).shuffle is True
    # non-scalar fields pass through untouched
    assert build_config(_Cfg, {"layers": [1, 2], "extra": {"a": 1}}).layers == [1, 2]
    assert build_config(_Cfg, {}) == _Cfg()


def test_build_config_rejects_unknown_keys_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        build_config(_Cfg, {"dims": 3, "lrr": 0.1}, where="model 'm'")
    assert str(err.value) == (
        "model 'm': unknown parameter(s) dims, lrr; valid: dim, extra, layers, lr, name, shuffle"
    )
    with pytest.raises(ConfigError, match=r"^_Cfg: unknown parameter\(s\) zz; valid: dim"):
        build_config(_Cfg, {"zz": 1})


def test_build_config_names_a_value_of_the_wrong_type() -> None:
    with pytest.raises(ConfigError, match=r"parameter dim='abc': expected int"):
        build_config(_Cfg, {"dim": "abc"})
    with pytest.raises(ConfigError, match=r"parameter lr=None: expected float"):
        build_config(_Cfg, {"lr": None})


def test_validate_runs_on_built_and_on_given_configs() -> None:
    assert build_config(_Checked, {"k": "3"}).k == 3
    with pytest.raises(ConfigError, match="k must be >= 1, got 0"):
        build_config(_Checked, {"k": 0})
    with pytest.raises(ConfigError, match="k must be >= 1, got -2"):
        resolve_config(_Checked, _Checked(k=-2), {})
    given = _Checked(k=5)
    assert resolve_config(_Checked, given, {}) is given
    assert resolve_config(_Checked, None, {"k": 2}) == _Checked(k=2)
    with pytest.raises(ConfigError, match="not both"):
        resolve_config(_Checked, given, {"k": 2})


def test_check_params_for_a_component_without_settings() -> None:
    check_params({}, (), where="channel 'p' (popularity)")
    with pytest.raises(ConfigError, match=r"channel 'p' \(popularity\): .* foo; valid: none$"):
        check_params({"foo": 1}, (), where="channel 'p' (popularity)")


# ---- registry ---------------------------------------------------------------------------
class Base:
    def __init__(self, *args: Any, **params: Any) -> None:
        self.args, self.params = args, params


class One(Base):
    pass


class Two(Base):
    pass


PLUGIN = "recsage_test_plugin"
PLUGIN_BASE = "recsage_test_plugin_base"


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Throwaway importable modules: `recsage_test_plugin_base` (class PBase) and
    `recsage_test_plugin` (Plugin(PBase), NotBase), as a separate package would ship."""
    (tmp_path / f"{PLUGIN_BASE}.py").write_text(
        "class PBase:\n"
        "    def __init__(self, *args, **params):\n"
        "        self.args, self.params = args, params\n"
    )
    (tmp_path / f"{PLUGIN}.py").write_text(
        f"from {PLUGIN_BASE} import PBase\n\n"
        "class Plugin(PBase):\n    pass\n\n"
        "class NotBase:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (PLUGIN, PLUGIN_BASE):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield PLUGIN
    for name in (PLUGIN, PLUGIN_BASE):
        sys.modules.pop(name, None)


def _plugin_base() -> type[Any]:
    base: type[Any] = importlib.import_module(PLUGIN_BASE).PBase
    return base


def _no_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [])


def test_register_get_create_and_names(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_entry_points(monkeypatch)
    reg: Registry[Base] = Registry("widget", base=Base)
    assert reg.group == "recsage.widgets"

    @reg.register("one")
    class Decorated(One):
        pass

    assert reg.register("two", Two) is Two
    assert reg.get("one") is Decorated and reg.get("two") is Two
    made = reg.create("two", "a", k=1)
    assert isinstance(made, Two) and made.args == ("a",) and made.params == {"k": 1}
    assert reg.names() == ["one", "two"] and list(reg) == ["one", "two"] and len(reg) == 2
    assert "one" in reg and "three" not in reg


def test_unknown_name_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_entry_points(monkeypatch)
    reg: Registry[Base] = Registry("channel", noun="kind")
    reg.register("b", Two)
    reg.register("a", "somewhere.not_imported:Thing")
    with pytest.raises(ConfigError) as err:
        reg.get("c", where="channel 'x'")
    assert str(err.value) == "channel 'x': unknown kind 'c'; known: a, b"
    with pytest.raises(ConfigError, match=r"^unknown kind 'c'; known: a, b$"):
        reg.get("c")


def test_duplicate_registration_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_entry_points(monkeypatch)
    reg: Registry[Base] = Registry("model")
    reg.register("one", One)
    reg.register("one", One)  # the same class again: a no-op
    with pytest.raises(ConfigError, match="model 'one' is already registered"):
        reg.register("one", Two)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("one", "elsewhere:Other")
    reg.register("lazy", "pkg.mod:Cls")
    reg.register("lazy", "pkg.mod:Cls")  # the same reference again: a no-op
    with pytest.raises(ConfigError, match=r"already registered \(pkg.mod:Cls\)"):
        reg.register("lazy", Two)
    assert reg.get("one") is One
    with pytest.raises(ConfigError, match="not 'module:attr'"):
        reg.register("bad", "no_colon_here")


def test_lazy_entries_import_on_first_get_only(
    plugin_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_entry_points(monkeypatch)
    reg: Registry[Any] = Registry("stage", base=_plugin_base())
    reg.register("plug", f"{plugin_module}:Plugin")
    reg.register("wrong", f"{plugin_module}:NotBase")
    reg.register("missing", "recsage_no_such_module_xyz:Thing")
    assert reg.names() == ["missing", "plug", "wrong"]
    assert plugin_module not in sys.modules  # listing names imports nothing
    cls = reg.get("plug")
    assert plugin_module in sys.modules and cls.__name__ == "Plugin"
    assert reg.get("plug") is cls  # cached
    with pytest.raises(ConfigError, match=r"'wrong' .* is not a PBase subclass"):
        reg.get("wrong")
    with pytest.raises(ConfigError, match="stage 'missing' could not be loaded from"):
        reg.get("missing")


def test_a_lazily_named_module_may_register_its_own_class(
    plugin_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SASRec's module decorates its class with `register` while the lazy entry loads it."""
    _no_entry_points(monkeypatch)
    reg: Registry[Any] = Registry("model", base=_plugin_base())
    reg.register("plug", f"{plugin_module}:Plugin")
    module = importlib.import_module(plugin_module)
    reg.register("plug", module.Plugin)  # fulfils the lazy entry
    assert reg.get("plug") is module.Plugin
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("plug", One)  # One lives elsewhere: a real clash


def test_entry_points_add_components_from_other_packages(
    plugin_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_groups: list[str] = []
    eps = [
        importlib.metadata.EntryPoint("plug", f"{plugin_module}:Plugin", "recsage.channels"),
        importlib.metadata.EntryPoint("one", f"{plugin_module}:Plugin", "recsage.channels"),
    ]

    def fake_entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        seen_groups.append(group)
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    reg: Registry[Any] = Registry("channel", base=_plugin_base())
    reg.register("one", One)
    assert reg.get("one") is One and seen_groups == []  # built-ins need no scan
    with pytest.warns(UserWarning, match="'one' is built in"):
        names = reg.names()
    assert names == ["one", "plug"] and seen_groups == ["recsage.channels"]
    assert plugin_module not in sys.modules
    made = reg.create("plug", "name", n=3)
    assert type(made).__name__ == "Plugin" and made.params == {"n": 3}
    assert reg.get("one") is One  # the plugin did not shadow the built-in
    reg.names()
    assert seen_groups == ["recsage.channels"]  # scanned once


def test_load_target_follows_dotted_attributes() -> None:
    assert load_target("recsage.component:Registry.register") is Registry.register
    with pytest.raises(ConfigError, match="not a 'module:attr' reference"):
        load_target("recsage.component")


# ---- the built-in registries --------------------------------------------------------------
def test_builtin_registries_list_every_component_and_load_lazily() -> None:
    from recsage.llm.backends.registry import BACKENDS
    from recsage.models.registry import MODELS
    from recsage.ranking.learners.registry import RANKERS
    from recsage.ranking.stages.registry import STAGES
    from recsage.retrieval.channels.registry import CHANNELS
    from recsage.retrieval.index import INDEXES

    assert {"pop", "itemknn", "ease", "als", "sasrec", "two_tower", "kg"} <= set(MODELS)
    assert {"popularity", "cooccurrence", "topic", "text", "query", "model", "kg"} <= set(CHANNELS)
    assert {"rrf", "column", "learned", "mmr", "llm", "cross_encoder"} <= set(STAGES)
    assert {"fm", "nfm", "deepfm", "din", "lgbm"} <= set(RANKERS)
    assert {"exact", "flat", "hnsw", "ivfpq"} <= set(INDEXES)
    assert {"llamacpp", "openai", "transformers"} <= set(BACKENDS)
    # every registered name matches the class's own name/kind (used in saved specs)
    for name in ("pop", "itemknn", "ease", "als"):
        assert MODELS.get(name).name == name
    for name in ("popularity", "cooccurrence", "topic", "text", "query", "model"):
        assert CHANNELS.get(name).kind == name
    for name in ("rrf", "column", "learned", "mmr"):
        assert STAGES.get(name).kind == name
    for name in ("exact", "flat", "hnsw", "ivfpq"):
        assert INDEXES.get(name).kind == name


def test_the_llm_stage_declares_its_catalogue_capability() -> None:
    from recsage.llm.rerank import LLMRerankStage
    from recsage.ranking.stages.rrf import RRFStage

    assert isinstance(LLMRerankStage("llm"), SupportsCatalogue)
    assert not isinstance(RRFStage("rrf"), SupportsCatalogue)
