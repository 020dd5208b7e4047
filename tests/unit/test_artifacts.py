"""The artifact helper: round trip, atomic replace, and errors that say what a folder holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsage.artifacts import (
    MODEL,
    PIPELINE,
    RANKER,
    ArtifactFormat,
    describe_artifact,
    format_of,
    is_artifact,
    read_artifact,
    write_artifact,
)
from recsage.errors import ArtifactError


def _write(path: Path, **kw: object) -> Path:
    args: dict = {
        "name": "ease",
        "config": {"l2": 5.0, "sizes": (1, 2)},
        "data_fingerprint": "abc",
        "arrays": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "extra": {"n_items": 3},
    }
    args.update(kw)
    return write_artifact(path, MODEL, **args)  # type: ignore[arg-type]


def test_round_trip_keeps_arrays_manifest_and_native_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "m", write=lambda d: (d / "model.txt").write_text("trees"))
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json", "model.txt", "state.safetensors"
    ]  # fmt: skip
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "recsage-model" and manifest["format_version"] == 1
    assert manifest["model"] == "ease" and manifest["n_items"] == 3
    art = read_artifact(path, MODEL)
    assert art.name == "ease" and art.data_fingerprint == "abc"
    assert art.config == {"l2": 5.0, "sizes": [1, 2]}
    np.testing.assert_array_equal(art.arrays()["w"], np.arange(6).reshape(2, 3))
    assert art.file("model.txt").read_text() == "trees"
    assert is_artifact(path, MODEL) and not is_artifact(path, RANKER)
    assert describe_artifact(path) == "a recsage model (load it with Recommender.load / --model)"


def test_torch_tensors_are_saved_too(tmp_path: Path) -> None:
    import torch

    path = _write(tmp_path / "t", arrays={"a": torch.ones(2, 2), "b": np.zeros(3, np.int64)})
    art = read_artifact(path, MODEL)
    assert art.arrays()["a"].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert art.tensors()["b"].dtype == torch.int64


def test_rewrite_replaces_the_old_artifact_without_leftovers(tmp_path: Path) -> None:
    _write(tmp_path / "m", write=lambda d: (d / "old.txt").write_text("x"))
    _write(tmp_path / "m", arrays={"w": np.ones(2, np.float32)})
    assert not (tmp_path / "m" / "old.txt").exists()
    assert read_artifact(tmp_path / "m", MODEL).arrays()["w"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folders left


def test_a_failed_write_keeps_the_previous_artifact(tmp_path: Path) -> None:
    _write(tmp_path / "m")

    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"\0")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _write(tmp_path / "m", arrays={"w": np.ones(1, np.float32)}, write=broken)
    assert read_artifact(tmp_path / "m", MODEL).arrays()["w"].shape == (2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_refuses_to_replace_a_folder_that_is_not_an_artifact(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="refusing to replace"):
        _write(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ArtifactError, match="reserved"):
        _write(tmp_path / "x", extra={"config": 1})


def test_missing_and_wrong_kind_name_what_the_folder_holds(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"nothing: not a recsage model .* does not exist"):
        read_artifact(tmp_path / "nothing", MODEL)
    pipe = tmp_path / "runs" / "pipe"
    pipe.mkdir(parents=True)
    (pipe / "pipeline.toml").write_text("")
    with pytest.raises(ArtifactError) as err:
        read_artifact(pipe, MODEL)
    msg = str(err.value)
    assert msg.startswith(f"{pipe}: not a recsage model (missing manifest.json)")
    assert "looks like a recsage pipeline" in msg and "--pipeline" in msg
    ranker = write_artifact(tmp_path / "r", RANKER, name="fm", arrays={})
    with pytest.raises(ArtifactError, match=r"not a recsage model; it holds a recsage ranker"):
        read_artifact(ranker, MODEL)
    with pytest.raises(ArtifactError, match=r"missing pipeline\.toml"):
        read_artifact(write_artifact(tmp_path / "p", PIPELINE, name="x", arrays={}), PIPELINE)


def test_corrupt_and_unknown_versions_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 9}))
    with pytest.raises(ArtifactError, match=r"format version 9 is not supported.*upgrade"):
        read_artifact(path, MODEL)
    (path / "manifest.json").write_text("{oops")
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        read_artifact(path, MODEL)
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "state.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="unreadable safetensors"):
        read_artifact(path, MODEL).arrays()
    (path / "state.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"missing state\.safetensors"):
        read_artifact(path, MODEL)


def test_older_spelling_and_readable_versions() -> None:
    assert format_of({"format": "recsage-model/1"}) == ("recsage-model", 1)
    assert format_of({"format": "recsage-model", "format_version": 3}) == ("recsage-model", 3)
    fmt = ArtifactFormat("x", 3, "thing", "a thing", readable=(2, 3))
    assert fmt.reads(2) and fmt.reads(3) and not fmt.reads(1)
