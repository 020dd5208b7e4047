"""`EncoderTests`: the contract every encoder (text, keywords, user history) keeps.

Subclass it as ``Test…`` and implement `make_encoder()` and `inputs()`; override
`encode(encoder, inputs)` when the encoder's method is not ``encode`` (text encoders:
``encode_items``), and `make_other_encoder()` to check that the fingerprint tells models
apart. The suite checks: output (len(inputs), dim) float32 and finite; unit rows when
`normalized`; the same vectors on a second call and whether inputs come one at a time or
together (no batch or padding effects); empty input gives (0, dim) float32; a
fingerprint that is stable across instances and differs for another model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pytest


class EncoderTests:
    """Conformance suite for encoders (pytest collects subclasses)."""

    #: rows are L2-normalised (inner product = cosine)
    normalized: ClassVar[bool] = True
    #: the encoder exposes a `fingerprint` that keys caches and artifacts
    has_fingerprint: ClassVar[bool] = True
    #: tolerance between a one-at-a-time and an all-together encode
    batch_atol: ClassVar[float] = 1e-5

    def make_encoder(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must define make_encoder() (conformance suite hook)"
        )

    def make_other_encoder(self) -> Any | None:
        """An encoder of another model / setting (None: fingerprint change not checked)."""
        return None

    def inputs(self) -> Sequence[Any]:
        raise NotImplementedError(
            f"{type(self).__name__} must define inputs() (conformance suite hook)"
        )

    def encode(self, encoder: Any, inputs: Sequence[Any]) -> np.ndarray:
        return np.asarray(encoder.encode(list(inputs)))

    @pytest.fixture(scope="class")
    @classmethod
    def encoder(cls) -> Any:
        return cls().make_encoder()

    # ---- the contract ---------------------------------------------------------------
    def test_output_shape_type_and_dim(self, encoder: Any) -> None:
        inputs = self.inputs()
        out = self.encode(encoder, inputs)
        assert out.dtype == np.float32, f"vectors must be float32, got {out.dtype}"
        assert out.shape == (len(inputs), int(encoder.dim)), (
            f"{len(inputs)} inputs at dim {encoder.dim} gave shape {out.shape}"
        )
        assert np.isfinite(out).all()
        assert len({v.tobytes() for v in out}) > 1, "every input got the same vector"

    def test_rows_are_unit_length(self, encoder: Any) -> None:
        if not self.normalized:
            pytest.skip("this encoder does not normalise")
        out = self.encode(encoder, self.inputs())
        norms = np.linalg.norm(out, axis=1)
        np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-4)

    def test_deterministic_and_batch_independent(self, encoder: Any) -> None:
        inputs = list(self.inputs())
        a = self.encode(encoder, inputs)
        b = self.encode(encoder, inputs)
        np.testing.assert_array_equal(a, b)
        one = np.concatenate([self.encode(encoder, [x]) for x in inputs])
        np.testing.assert_allclose(one, a, atol=self.batch_atol)
        rev = self.encode(encoder, inputs[::-1])[::-1]
        np.testing.assert_allclose(rev, a, atol=self.batch_atol)

    def test_empty_input(self, encoder: Any) -> None:
        out = self.encode(encoder, [])
        assert out.shape == (0, int(encoder.dim)) and out.dtype == np.float32

    def test_fingerprint_is_stable_and_tells_models_apart(self, encoder: Any) -> None:
        if not self.has_fingerprint:
            pytest.skip("this encoder has no fingerprint")
        fp = encoder.fingerprint
        assert isinstance(fp, str) and fp
        assert self.make_encoder().fingerprint == fp, "same model, another fingerprint"
        other = self.make_other_encoder()
        if other is not None:
            assert other.fingerprint != fp, "another model, the same fingerprint"
