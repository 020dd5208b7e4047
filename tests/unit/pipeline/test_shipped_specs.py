"""Every shipped pipeline spec (pipelines/*.toml) loads, fits and serves on tiny data, with
its own channels and stages; only sizes, epochs and time budgets shrink."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsage.pipeline.pipeline import Pipeline
from recsage.testing import tiny_dataset
from recsage.types import Query

SPECS = sorted((Path(__file__).resolve().parents[3] / "pipelines").glob("*.toml"))
#: model settings that make one epoch of a torch model take a fraction of a second here
SMALL_MODELS: dict[str, dict[str, Any]] = {
    "sasrec": {"max_epochs": 1, "max_minutes": 0.5, "dim": 16, "max_len": 12, "batch_size": 32},
    "two_tower": {"max_epochs": 1, "max_minutes": 0.5, "dim": 16, "samples_per_epoch": 400},
}


def shrink(spec: dict[str, Any], cache: Path) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    out["text"]["cache_dir"] = str(cache)
    for ch in out["channels"]:
        if ch["kind"] == "model" and ch["model"] in SMALL_MODELS:
            ch["params"] = {**ch.get("params", {}), **SMALL_MODELS[ch["model"]]}
    for st in out["stages"]:
        if st["kind"] == "learned":  # one thread: all-core LightGBM spins on a shared box
            st["params"] = {**st.get("params", {}), "n_estimators": 30, "threads": 1}
        if st["kind"] == "cross_encoder" and st.get("train_users", 0) > 0:
            st["train_users"] = 12  # fit-time fine-tuning on a few lists (real MiniLM)
    return out


def test_every_spec_is_found() -> None:
    assert {p.stem for p in SPECS} >= {"default", "ml1m", "amazon"}


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for all specs: the text model loads once, then serves hits."""
    return tmp_path_factory.mktemp("text-cache")


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_fits_and_serves_on_tiny_data(path: Path, text_cache: Path) -> None:
    spec = tomllib.loads(path.read_text())
    assert Pipeline.from_toml(path).spec["channels"] == Pipeline(spec).spec["channels"]
    small = shrink(spec, text_cache)
    data = tiny_dataset(0)
    pipe = Pipeline(small).fit(data)
    if any(st["kind"] == "llm_ranker" for st in spec["stages"]):
        # the LLM stage is trained separately (`recsage llm finetune`): here on the
        # validation split with a tiny random Llama, one epoch
        from recsage.data.splits import leave_one_out
        from recsage.llm.finetune import LMRanker
        from recsage.llm.llm_ranker import train_llm_ranker

        lm = LMRanker(model="tiny", max_tokens=2048, epochs=1)
        examples = train_llm_ranker(pipe, leave_one_out(data).valid, lm=lm)
        assert len(examples.examples) > 0
    names = [c["name"] for c in spec["channels"]]
    assert [c.name for c in pipe.channels] == names
    assert [s.name for s in pipe.stages] == [s["name"] for s in spec["stages"]]
    seen = set(data.items.decode(data.sequences()[0]).tolist())
    recs = pipe.run(Query(user="u0", n=5))
    assert [r.rank for r in recs] == [1, 2, 3, 4, 5]
    assert not {r.item for r in recs} & seen
    assert len({r.item for r in recs}) == 5
    for r in recs:
        assert r.sources and set(r.sources) <= set(names)
        assert np.isfinite(r.score)
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    cold = pipe.run(Query(history=["i0", "i1", "i2"], n=5))  # a new user, Space walk
    assert len(cold) == 5 and not {r.item for r in cold} & {"i0", "i1", "i2"}
