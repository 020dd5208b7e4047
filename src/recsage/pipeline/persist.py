"""Saving and loading a fitted pipeline as one artifact folder (recsage.artifacts)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsage.artifacts import PIPELINE, read_artifact, write_artifact
from recsage.data.vocab import Vocabulary
from recsage.encoders.cache import default_cache_dir
from recsage.errors import RecsageError
from recsage.pipeline.spec import ITEMS_FILE, SPEC_FILE, read_spec
from recsage.ranking.features import ItemStats

if TYPE_CHECKING:
    from recsage.pipeline.pipeline import Pipeline


def save_pipeline(pipe: Pipeline, path: str | Path) -> Path:
    """An artifact folder: the spec (`pipeline.toml`), the manifest, histories and text
    vectors (`state.safetensors`), the item table and every fitted part."""
    import tomli_w

    if pipe.stats is None or pipe.items is None or pipe.users is None:
        raise RecsageError("cannot save an unfitted pipeline")
    item_table = pipe.item_table
    assert item_table is not None
    lengths = np.array([len(s) for s in pipe.sequences], np.int64)
    arrays = {
        "seq.lengths": lengths,
        "seq.items": np.concatenate(pipe.sequences).astype(np.int64)
        if len(pipe.sequences) else np.zeros(0, np.int64),
    }  # fmt: skip
    if pipe.resources.item_text_vectors is not None:
        arrays["item_text_vectors"] = pipe.resources.item_text_vectors
    arrays |= pipe.stats.arrays()

    encoder = pipe.resources.text_encoder

    def write(folder: Path) -> None:
        (folder / SPEC_FILE).write_text(tomli_w.dumps(pipe.spec))
        item_table.to_parquet(folder / ITEMS_FILE)
        for ch in pipe.channels:
            ch.save(folder / "channels" / ch.name)
        for st in pipe.stages:
            st.save(folder / "stages" / st.name)

    return write_artifact(
        path,
        PIPELINE,
        name=str(pipe.spec.get("pipeline", {}).get("name", "")),
        data_fingerprint=pipe.data_fingerprint,
        arrays=arrays,
        extra={
            "encoder_fingerprint": None if encoder is None else encoder.fingerprint,
            "users": pipe.users.ids.tolist(),
            "items": pipe.items.ids.tolist(),
            "fit_seconds": pipe.fit_seconds,
            "channel_items": {ch.name: ch.n_items_fitted for ch in pipe.channels},
        },
        write=write,
    )


def load_pipeline(cls: type[Pipeline], path: str | Path) -> Pipeline:
    """Load a saved pipeline; needs nothing but the directory (and the text model)."""
    art = read_artifact(path, PIPELINE)
    path = art.path
    p = cls(read_spec(path / SPEC_FILE))
    p.items = Vocabulary(art.get("items"))
    p.users = Vocabulary(art.get("users"))
    p.data_fingerprint = art.data_fingerprint
    p.fit_seconds = art.get("fit_seconds", {})
    res = art.arrays()
    bounds = np.concatenate([[0], np.cumsum(res["seq.lengths"])])
    p.sequences = [res["seq.items"][bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
    p.item_table = pd.read_parquet(art.file(ITEMS_FILE))
    if "categories" in p.item_table.columns:
        p.item_table["categories"] = [
            list(c) if c is not None else [] for c in p.item_table["categories"]
        ]
    if "item_text_vectors" in res:
        p.resources.item_text_vectors = res["item_text_vectors"]
        from recsage.encoders.text import TextEncoder

        text = p.spec["text"]
        cache = Path(text["cache_dir"]) if text.get("cache_dir") else default_cache_dir()
        p.resources.text_encoder = TextEncoder(text.get("model") or None, cache_dir=cache)
    p.stats = ItemStats.from_arrays(res)
    channel_items = art.get("channel_items") or {}
    for ch in p.channels:
        ch.n_items_fitted = int(channel_items.get(ch.name, p.n_items))
        ch.load(path / "channels" / ch.name, p.resources)
    for st in p.stages:
        if (path / "stages" / st.name).exists():
            st.load(path / "stages" / st.name)
    p.sync_stage_catalogue()
    return p
