"""A text-enabled pipeline (MiniLM, offline from its package) behind the service: a new item
is searchable and recommendable at once, through its text vector."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsage.data.schema import Dataset, Interactions
from recsage.data.vocab import Vocabulary
from recsage.pipeline.pipeline import Pipeline

from .conftest import start_service

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TITLES = [
    "Cooking pasta at home",
    "Italian kitchen secrets",
    "Baking sourdough bread",
    "Mountain hiking guide",
    "Trail running for beginners",
    "Camping under the stars",
    "Jazz piano lessons",
    "History of the blues",
    "Learning the violin",
    "Gardening with tomatoes",
    "Growing roses",
    "Composting basics",
]


def tiny_text_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(30):
        topic = u % 4  # each user mostly stays within one topic of three items
        for _ in range(6):
            users.append(f"u{u}")
            items.append(f"i{3 * topic + int(rng.integers(3))}")
    uv = Vocabulary.from_values(users)
    iv = Vocabulary([f"i{j}" for j in range(len(TITLES))])
    inter = Interactions.build(uv.encode(users), iv.encode(items))
    table = pd.DataFrame({"item_id": iv.ids, "title": TITLES})
    return Dataset("tiny-text", inter, uv, iv, table)


@pytest.fixture(scope="module")
def text_pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sentence_transformers")
    cache = tmp_path_factory.mktemp("emb")
    spec = {
        "text": {"enabled": True, "cache_dir": str(cache)},
        "merge": {"max_candidates": 12},
        "channels": [
            {"name": "query", "kind": "query", "n": 5},
            {"name": "text", "kind": "text", "n": 5},
            {"name": "pop", "kind": "popularity", "n": 5},
        ],
        "stages": [{"name": "prerank", "kind": "rrf", "keep": 8}],
    }
    pipe = Pipeline(spec).fit(tiny_text_dataset())
    return pipe.save(tmp_path_factory.mktemp("textpipe") / "p")


def test_new_item_is_searchable_and_recommendable_at_once(
    tmp_path: Path, text_pipeline_dir: Path
) -> None:
    svc = start_service(tmp_path / "home", text_pipeline_dir)
    c, h = svc.client, svc.auth("admin")
    r = c.post("/v1/search", json={"query": "electric guitar solos", "n": 3}, headers=h)
    assert r.status_code == 200 and r.json()["items"][0]["item_id"] in {"i6", "i7", "i8"}
    new = {
        "item_id": "guitar",
        "title": "Electric guitar solos",
        "text": "Rock guitar riffs and solos on an electric guitar.",
    }
    r = c.post("/v1/items", json={"items": [new]}, headers=h)
    assert r.json()["added"] == 1 and r.json()["text_vectors"] is True
    r = c.post("/v1/search", json={"query": "electric guitar solos", "n": 3}, headers=h)
    assert r.json()["items"][0]["item_id"] == "guitar"
    # personalised search blends in the user's taste but still finds the query
    r = c.post("/v1/search", json={"query": "electric guitar solos", "user_id": "u2"}, headers=h)
    assert r.json()["personalised"] and "guitar" in [i["item_id"] for i in r.json()["items"]]
    # recommendable: the query channel and the text channel both see the new vector
    r = c.post("/v1/recommend", json={"user_id": "u2", "query": "guitar solos"}, headers=h)
    found = {i["item_id"]: i for i in r.json()["items"]}
    assert "guitar" in found and "query" in found["guitar"]["sources"]
    r = c.post("/v1/recommend", json={"history": ["i7", "i6"], "n": 5}, headers=h)
    assert "guitar" in [i["item_id"] for i in r.json()["items"]]
    sim = c.get("/v1/items/guitar/similar?n=3", headers=h).json()
    assert sim["method"] == "text" and len(sim["items"]) == 3
    assert "guitar" not in [i["item_id"] for i in sim["items"]]
    svc.runtime.store.close()


def test_chat_keeps_state_across_turns(tmp_path: Path, text_pipeline_dir: Path) -> None:
    svc = start_service(tmp_path / "home", text_pipeline_dir)
    c, h = svc.client, svc.auth("read")
    assert c.post("/v1/chat", json={"session_id": "s", "message": "hi"}).status_code == 401
    first = c.post(
        "/v1/chat", json={"session_id": "s1", "message": "electric guitar solos", "n": 3}, headers=h
    )
    assert first.status_code == 200, first.text
    shown = [i["item_id"] for i in first.json()["items"]]
    assert len(shown) == 3 and shown[0] in {"i6", "i7", "i8"}
    second = c.post(
        "/v1/chat", json={"session_id": "s1", "message": "not that", "n": 3}, headers=h
    ).json()
    # "not that" rejects what was just shown: state carried over from the first turn
    assert not set(shown) & {i["item_id"] for i in second["items"]}
    other = c.post(
        "/v1/chat", json={"session_id": "s2", "message": "not that", "n": 3}, headers=h
    ).json()
    assert other["session_id"] == "s2"  # a fresh session has nothing to reject
    svc.runtime.store.close()


def test_bulk_items_encode_outside_the_lock_and_slash_ids_are_reachable(
    tmp_path: Path,
    text_pipeline_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import threading

    from recsage.serving import runtime

    monkeypatch.setattr(runtime, "BULK_LOG_ITEMS", 5)  # 6 items count as a bulk add here
    caplog.set_level(logging.INFO, logger="recsage.serving")
    svc = start_service(tmp_path / "home", text_pipeline_dir)
    c, h = svc.client, svc.auth("admin")
    sm = svc.runtime.served()
    encoder = sm.pipeline.resources.text_encoder
    seen: list[tuple[bool, int, int]] = []
    threads: list[str] = []
    real = encoder.encode_items

    def watching(texts: list[str], **kw: object) -> np.ndarray:
        # while texts are encoded the served catalogue is unchanged and no writer holds
        # (or waits for) the model lock, so requests keep being answered
        seen.append((sm.lock._writer or sm.lock._waiting > 0, len(sm.pipeline.items), len(texts)))
        threads.append(threading.current_thread().name)
        return real(texts, **kw)

    encoder.encode_items = watching  # type: ignore[method-assign]
    before = len(sm.pipeline.items)
    items = [{"item_id": f"shop/{k}", "title": f"Garden hose model {k}"} for k in range(5)]
    items.append({"item_id": "a/b", "title": "Electric guitar solos", "text": "Rock riffs."})
    r = c.post("/v1/items", json={"items": items}, headers=h)
    assert r.status_code == 200 and r.json()["added"] == 6
    assert seen == [(False, before, 6)]
    assert threads == ["recsage-items"]  # the low-priority worker thread
    logged = [r.getMessage() for r in caplog.records]
    assert any("adding 6 items" in m for m in logged)
    assert any("encoded 6/6 item texts" in m for m in logged)
    assert any("6 items added, 0 updated" in m for m in logged)
    assert len(sm.pipeline.items) == before + 6
    # an id with "/" is reachable when the slash is percent-encoded
    sim = c.get("/v1/items/a%2Fb/similar?n=3", headers=h)
    assert sim.status_code == 200, sim.text
    assert sim.json()["item_id"] == "a/b" and len(sim.json()["items"]) == 3
    assert "a/b" not in [i["item_id"] for i in sim.json()["items"]]
    assert c.get("/v1/items/no%2Fsuch/similar", headers=h).status_code == 404
    # the new vector is searchable, and the title cache holds the new items
    r = c.post("/v1/search", json={"query": "electric guitar solos", "n": 1}, headers=h)
    assert r.json()["items"][0]["item_id"] == "a/b"
    assert r.json()["items"][0]["title"] == "Electric guitar solos"
    svc.runtime.store.close()


def test_prepared_items_leave_the_pipeline_alone_until_committed(text_pipeline_dir: Path) -> None:
    pipe = Pipeline.open(text_pipeline_dir)
    assert pipe.items is not None and pipe.resources.item_text_vectors is not None
    n, vecs = len(pipe.items), pipe.resources.item_text_vectors
    frame = pd.DataFrame({"item_id": ["i0", "new"], "title": ["Cooking rice", "Ukulele songs"]})
    calls: list[tuple[int, int]] = []
    prepared = pipe.prepare_items(frame, progress=lambda d, t: calls.append((d, t)), chunk=1)
    assert calls == [(1, 2), (2, 2)]
    assert len(pipe.items) == n and pipe.resources.item_text_vectors is vecs
    assert pipe.item_table is not None and pipe.item_table.at[0, "title"] == TITLES[0]
    assert pipe.commit_items(prepared) == (1, 1)
    assert len(pipe.items) == n + 1 and pipe.item_table.at[0, "title"] == "Cooking rice"
    new_vecs = pipe.resources.item_text_vectors
    assert new_vecs is not None and new_vecs.shape[0] == n + 1
    assert np.array_equal(new_vecs[1:n], vecs[1:n])  # untouched items keep their vectors
    assert not np.allclose(new_vecs[0], vecs[0])  # the updated one is re-encoded
    with pytest.raises(Exception, match="catalogue changed"):
        pipe.commit_items(prepared)  # stale: built against the old vocabulary
