"""The text encoder (real MiniLM, offline), the keyword encoder and the user encoders keep
the `EncoderTests` contract."""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recsage.testing import EncoderTests, item_texts, tiny_dataset

TEXTS = [
    "A rocket leaves the galaxy",
    "Pasta and tomato soup recipes for a small kitchen",
    "Pirates sail to a hidden island",
    "",
    "A knight, a dragon and a castle: the long quest for the throne of the northern kingdom",
]


@functools.cache
def _minilm() -> Any:
    """The bundled sentence-transformers model, loaded once for every encoder here."""
    from recsage.encoders.text import TextEncoder

    return TextEncoder().model


def _text_encoder(**kwargs: Any) -> Any:
    from recsage.encoders.text import TextEncoder

    enc = TextEncoder(**kwargs)
    enc._model = _minilm()
    return enc


class TestTextEncoder(EncoderTests):
    batch_atol = 1e-5

    def make_encoder(self) -> Any:
        return _text_encoder()

    def make_other_encoder(self) -> Any:
        """The same weights with one config file changed: another model to the cache."""
        from recsage.encoders.text import TextEncoder, default_model_path

        src = default_model_path()
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / "minilm-variant"
            shutil.copytree(
                src,
                dst,
                symlinks=False,
                ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.onnx"),
            )
            for weights in src.rglob("*.safetensors"):
                (dst / weights.relative_to(src)).symlink_to(weights)
            cfg = dst / "config.json"
            cfg.write_text(cfg.read_text().replace("{", '{"variant": 1, ', 1))
            other = TextEncoder(dst)
            _ = other.fingerprint  # hashed now, while the folder exists
        return other

    def inputs(self) -> Sequence[str]:
        return [*TEXTS, *item_texts(tiny_dataset(0))[:2]]

    def encode(self, encoder: Any, inputs: Sequence[str]) -> np.ndarray:
        return np.asarray(encoder.encode_items(list(inputs)))


class TestTextEncoderQueries(TestTextEncoder):
    """Queries go through the same model (with the query prefix)."""

    def make_encoder(self) -> Any:
        return _text_encoder(query_prefix="query: ")

    def make_other_encoder(self) -> Any:
        return _text_encoder(query_prefix="")  # another prefix: other vectors, other key

    def encode(self, encoder: Any, inputs: Sequence[str]) -> np.ndarray:
        return np.asarray(encoder.encode_queries(list(inputs)))


class TestKeywordEncoder(EncoderTests):
    def make_encoder(self) -> Any:
        from recsage.testing import keyword_encoder

        return keyword_encoder(256)

    def make_other_encoder(self) -> Any:
        from recsage.testing import keyword_encoder

        return keyword_encoder(128)

    def inputs(self) -> Sequence[str]:
        return TEXTS

    def encode(self, encoder: Any, inputs: Sequence[str]) -> np.ndarray:
        return np.asarray(encoder.encode_items(list(inputs)))


class _History(EncoderTests):
    pooling: ClassVar[str]
    has_fingerprint = False

    def make_encoder(self) -> Any:
        from recsage.encoders.user import HistoryUserEncoder
        from recsage.testing import keyword_encoder

        vectors = keyword_encoder(64).encode_items(item_texts(tiny_dataset(0)))
        return HistoryUserEncoder(vectors, pooling=self.pooling, batch_size=3)

    def inputs(self) -> Sequence[Any]:
        seqs = tiny_dataset(0).sequences()[:7]
        return [*seqs, np.array([5]), np.zeros(0, np.int64)]


class TestMeanHistory(_History):
    pooling = "mean"


class TestRecencyHistory(_History):
    pooling = "recency"


class TestAttentionHistory(_History):
    pooling = "attention"


class TestProfileEncoder(EncoderTests):
    has_fingerprint = False

    def make_encoder(self) -> Any:
        from recsage.encoders.user import ProfileUserEncoder
        from recsage.testing import keyword_encoder

        return ProfileUserEncoder(keyword_encoder(64))

    def inputs(self) -> Sequence[str]:
        return ["a 25 year old engineer", "a retired teacher who likes gardens", "", "a chef"]

    def encode(self, encoder: Any, inputs: Sequence[str]) -> np.ndarray:
        return np.asarray(encoder.encode_texts(list(inputs)))
