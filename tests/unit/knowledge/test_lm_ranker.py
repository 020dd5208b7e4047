"""The cross-encoder ranker (tiny random BERT, plus one real MiniLM step) and its stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsage.errors import ConfigError
from recsage.llm.cross_encoder import (
    CrossEncoderRanker,
    CrossEncoderStage,
    TextCatalogue,
    blend,
    tiny_cross_encoder,
)
from recsage.ranking.stages.base import StageContext
from recsage.types import CandidateBatch

from .conftest import tiny_table

WORDS = ["apple", "river", "guitar", "planet", "violin", "forest", "rocket", "castle"]


def _lists() -> tuple[list[str], list[list[str]]]:
    """Query 'likes W'; the positive doc says 'yes W', the two negatives 'no ...'."""
    queries, docs = [], []
    for k, w in enumerate(WORDS):
        queries.append(f"likes {w}")
        docs.append([f"yes {w}", f"no {WORDS[(k + 3) % 8]}", f"no {WORDS[(k + 5) % 8]}"])
    return queries, docs


def test_listwise_training_loss_decreases() -> None:
    ranker = tiny_cross_encoder(lr=2e-2, epochs=10, lists_per_step=4, max_length=16, warmup=0.0)
    queries, docs = _lists()
    ranker.fit(queries, docs)
    assert ranker.history[-1]["steps"] == 20
    assert ranker.history[-1]["loss"] < 0.5 * ranker.history[0]["loss"]
    pairs = [(q, x) for q, d in zip(queries, docs, strict=True) for x in d]
    s = ranker.score([q for q, _ in pairs], [x for _, x in pairs])
    assert (s.reshape(8, 3).argmax(axis=1) == 0).all()


def test_pointwise_training_and_save_load(tmp_path: Path) -> None:
    ranker = tiny_cross_encoder(loss="pointwise", lr=3e-3, epochs=1, max_length=16)
    queries, docs = _lists()
    labels = [[1.0, 0.0, 0.0] for _ in queries]
    ranker.fit(queries, docs, labels)
    s = ranker.score(["likes apple", "likes river"], ["yes apple", "no castle"])
    twin = tiny_cross_encoder(loss="pointwise", lr=3e-3, epochs=1, max_length=16)
    twin.fit(queries, docs, labels)  # same seed, same data: same weights
    np.testing.assert_array_equal(
        twin.score(["likes apple", "likes river"], ["yes apple", "no castle"]), s
    )
    back = CrossEncoderRanker.load(ranker.save(tmp_path / "ce"))
    again = back.score(["likes apple", "likes river"], ["yes apple", "no castle"])
    np.testing.assert_allclose(again, s, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "ce" / "model.safetensors").is_file()
    assert not list((tmp_path / "ce").glob("*.bin"))
    with pytest.raises(Exception, match="labels"):
        ranker.fit(queries, docs)


def test_blend_by_hand() -> None:
    base = np.array([[3.0, 2.0, 1.0, np.nan]])
    ce = np.array([[-1.0, 0.0, 1.0, np.nan]])
    np.testing.assert_allclose(blend(base, ce, 0.0)[0, :3], [1.2247449, 0.0, -1.2247449])
    np.testing.assert_allclose(blend(base, ce, 0.5)[0, :3], [0.0, 0.0, 0.0], atol=1e-6)
    assert np.isnan(blend(base, ce, 0.5)[0, 3])


def test_text_catalogue() -> None:
    cat = TextCatalogue.from_item_table(tiny_table())
    assert cat.docs[0] == "Alien (1979). Categories: Sci-Fi, Horror"
    assert cat.names[4] == "Orphan" and cat.docs[4] == "Orphan"
    q = cat.query([3, 0, 1], n=2)
    assert q == "Top categories: Sci-Fi, Comedy, Horror. Recent: Aliens (1986); Alien (1979)"
    assert TextCatalogue.from_json(cat.to_json()) == cat


def _stage(weight: float, top: int = 3) -> CrossEncoderStage:
    stage = CrossEncoderStage("ce", keep=5, weight=weight, top=top, column="rank")
    stage.ranker = tiny_cross_encoder(max_length=32)
    stage.catalogue = TextCatalogue.from_item_table(tiny_table())
    return stage


def test_stage_reranks_only_the_top_block() -> None:
    cands = CandidateBatch(
        items=np.array([[4, 2, 1, 3, -1]]),
        scores={"rank": np.array([[0.9, 0.8, 0.7, 0.6, np.nan]], np.float32)},
    )
    ctx = StageContext(histories=np.array([[-1, 0, 3]]))
    out = _stage(0.0).apply(cands, ctx)  # weight 0: the incoming order, unchanged
    assert out.items.tolist() == [[4, 2, 1, 3, -1]]
    stage = _stage(1.0)
    cands2 = CandidateBatch(cands.items.copy(), {"rank": cands.scores["rank"].copy()})
    out = stage.apply(cands2, ctx)
    ce = stage.cross_scores(cands, ctx)[0, :3]
    assert out.items[0, :3].tolist() == [[4, 2, 1][k] for k in np.argsort(-ce, kind="stable")]
    assert out.items[0, 3] == 3 and out.items[0, 4] == -1  # below the block: as before
    assert stage.pairs == 6  # 3 top slots, scored twice


def test_stage_without_ranker_is_a_clear_error() -> None:
    stage = CrossEncoderStage("ce", keep=5)
    cands = CandidateBatch(np.array([[0, 1]]), {"rank": np.array([[1.0, 0.5]], np.float32)})
    with pytest.raises(ConfigError, match="no trained cross-encoder"):
        stage.apply(cands, StageContext(histories=np.array([[0]])))


def test_real_minilm_loads_offline_and_takes_one_step() -> None:
    ranker = CrossEncoderRanker(max_length=32, lists_per_step=1, lr=1e-4)
    head = ranker.model.classifier.weight.detach().clone()
    before = ranker.score(["Recent: Alien (1979)"], ["Aliens (1986). Categories: Sci-Fi"])
    ranker.fit(["Recent: Alien (1979)"], [["Aliens (1986)", "Toy Story (1995)"]])
    assert ranker.history[-1]["steps"] == 1
    assert not np.allclose(head.numpy(), ranker.model.classifier.weight.detach().numpy())
    after = ranker.score(["Recent: Alien (1979)"], ["Aliens (1986). Categories: Sci-Fi"])
    assert np.isfinite(before).all() and np.isfinite(after).all()
    assert ranker.model.bert.embeddings.word_embeddings.weight.requires_grad is False


def test_stage_save_load_keeps_scores(tmp_path: Path) -> None:
    stage = _stage(0.5)
    cands = CandidateBatch(np.array([[2, 1, 0]]), {"rank": np.array([[3.0, 2.0, 1.0]], np.float32)})
    ctx = StageContext(histories=np.array([[3, 0]]))
    before = stage.cross_scores(cands, ctx)
    stage.save(tmp_path / "ce")
    back = CrossEncoderStage("ce", keep=5, weight=0.5, top=3, column="rank")
    back.load(tmp_path / "ce")
    np.testing.assert_allclose(back.cross_scores(cands, ctx), before, rtol=1e-5, atol=1e-6)
    assert back.catalogue == stage.catalogue


def test_residual_ranker_starts_at_its_prior_and_learns_a_correction() -> None:
    """A zero head scores prior_weight x prior exactly; training moves the positive up."""
    ranker = tiny_cross_encoder(
        prior_weight=1.0, zero_head=True, lr=2e-2, epochs=10, lists_per_step=4, max_length=16,
        warmup=0.0,
    )  # fmt: skip
    queries, docs = _lists()
    # the prior prefers the first negative (1.0) over the positive (0.0) in every list
    priors = [[0.0, 1.0, -1.0] for _ in queries]
    flat_q = [q for q, d in zip(queries, docs, strict=True) for _ in d]
    flat_d = [x for d in docs for x in d]
    flat_p = np.array([p for ps in priors for p in ps], np.float32)
    np.testing.assert_allclose(ranker.score(flat_q, flat_d, flat_p), flat_p, atol=1e-6)
    with pytest.raises(Exception, match="priors"):
        ranker.score(flat_q, flat_d)
    with pytest.raises(Exception, match="one prior per doc"):
        ranker.fit(queries, docs, priors=[[0.0]] * len(queries))
    ranker.fit(queries, docs, priors=priors)
    assert ranker.config.prior_weight > 0  # the learned weight is kept (and saved)
    s = ranker.score(flat_q, flat_d, flat_p).reshape(len(queries), 3)
    assert (s.argmax(axis=1) == 0).all()  # the text overrode the misleading prior


def test_residual_stage_prior_is_the_top_block_z_score() -> None:
    stage = CrossEncoderStage("ce", keep=5, weight=1.0, top=3, column="rank", prior="incoming")
    stage.ranker = tiny_cross_encoder(max_length=32, prior_weight=2.0, zero_head=True)
    stage.catalogue = TextCatalogue.from_item_table(tiny_table())
    base = np.array([[0.9, 0.6, 0.3, 0.1, np.nan]], np.float32)
    cands = CandidateBatch(np.array([[4, 2, 1, 3, -1]]), {"rank": base})
    prior = stage.prior_scores(cands, stage.top_slots(cands))
    top = np.array([0.9, 0.6, 0.3])
    want = (base[0, :4] - top.mean()) / (top.std() + 1e-6)
    np.testing.assert_allclose(prior[0, :4], want, rtol=1e-5, atol=1e-6)
    ce = stage.cross_scores(cands, StageContext(histories=np.array([[0, 3]])))
    np.testing.assert_allclose(ce[0, :3], 2.0 * want[:3], rtol=1e-5, atol=1e-6)  # zero head
    assert np.isnan(ce[0, 3:]).all()
    out = stage.apply(cands, StageContext(histories=np.array([[0, 3]])))
    assert out.items[0].tolist() == [4, 2, 1, 3, -1]  # the start keeps the incoming order
    with pytest.raises(ConfigError, match="prior"):
        CrossEncoderStage("ce", keep=5, prior="cosine")


def test_training_lists_keep_targets_below_the_pool_and_carry_priors() -> None:
    from recsage.data.splits import leave_one_out
    from recsage.llm.cross_encoder import training_lists
    from recsage.pipeline.pipeline import Pipeline
    from recsage.testing import tiny_dataset

    data = tiny_dataset(0)
    loo = leave_one_out(data)
    spec = {
        "text": {"enabled": False},
        "channels": [{"name": "pop", "kind": "popularity", "n": 30}],
        "stages": [
            {"name": "prerank", "kind": "rrf", "keep": 30},
            {"name": "ce", "kind": "cross_encoder", "keep": 30, "top": 5, "prior": "incoming"},
        ],
    }
    pipe = Pipeline(spec).fit(data)
    stage = pipe.stages[-1]
    assert isinstance(stage, CrossEncoderStage)
    n = data.n_items
    stage.catalogue = TextCatalogue([f"<{i}>" for i in range(n)], [f"<{i}>" for i in range(n)],
                                    [[] for _ in range(n)])  # fmt: skip
    split = loo.valid
    strict = training_lists(pipe, split, stage, pool=3, negatives=2, outside_pool=False)
    loose = training_lists(pipe, split, stage, pool=3, negatives=2)
    assert strict.skipped > 0 and strict.outside_pool == 0
    # every target the pipeline retrieved now gives a list; only unretrieved ones are skipped
    assert len(loose.queries) == len(strict.queries) + loose.outside_pool
    assert loose.skipped == strict.skipped - loose.outside_pool
    targets = split.targets.tocsr()
    for user, docs, priors in zip(loose.users, loose.docs, loose.priors, strict=True):
        (t,) = targets.indices[targets.indptr[user] : targets.indptr[user + 1]]
        assert docs[0] == f"<{t}>" and f"<{t}>" not in docs[1:]
        assert len(priors) == len(docs) and np.isfinite(priors).all()
    # a target ranked below the pool has a lower prior than the pool's negatives
    below = [p for d, p in zip(loose.docs, loose.priors, strict=True) if p[0] < min(p[1:])]
    assert len(below) >= loose.outside_pool


def test_feature_mode_writes_the_top_block_and_moves_nothing() -> None:
    stage = CrossEncoderStage("ce", keep=2, top=3, column="rank", mode="feature")
    stage.ranker = tiny_cross_encoder(max_length=32)
    stage.catalogue = TextCatalogue.from_item_table(tiny_table())
    assert stage.feature_column == "ce"
    base = np.array([[0.1, 0.9, 0.5, 0.7, np.nan]], np.float32)
    cands = CandidateBatch(np.array([[4, 2, 1, 3, -1]]), {"rank": base.copy()})
    ctx = StageContext(histories=np.array([[0, 3]]))
    out = stage.apply(cands, ctx)
    assert out.items.tolist() == [[4, 2, 1, 3, -1]]  # no sort, no cut (keep=2 ignored)
    col = out.scores["ce"][0]
    assert np.isfinite(col[[1, 2, 3]]).all() and np.isnan(col[[0, 4]]).all()  # the top 3
    assert CrossEncoderStage("x", keep=5).feature_column is None
    with pytest.raises(ConfigError, match="mode"):
        CrossEncoderStage("ce", keep=5, mode="blend")


def test_stage_scores_become_score_presence_and_row_z_features() -> None:
    from recsage.ranking.features import ItemStats, candidate_features
    from recsage.types import QueryBatch

    ce = np.array([[2.0, np.nan, 0.0, 1.0], [np.nan, 5.0, np.nan, np.nan]], np.float32)
    cands = CandidateBatch(np.array([[0, 1, 2, 3], [1, 2, 3, -1]]), {"ce": ce})
    batch = QueryBatch(np.array([0, 1]), [np.array([4]), np.array([0])], 5)
    stats = ItemStats.from_popularity(np.array([3, 1, 0, 2, 5]))
    f, names = candidate_features(
        cands, batch, stats, channel_names=(), text_vectors=None, stage_scores=("ce",)
    )
    got = {n: f[..., names.index(n)] for n in ("ce", "ce_present", "ce_z")}
    np.testing.assert_allclose(got["ce"], [[2, 0, 0, 1], [0, 5, 0, 0]])
    np.testing.assert_allclose(got["ce_present"], [[1, 0, 1, 1], [0, 1, 0, 0]])
    sd = np.std([2.0, 0.0, 1.0])  # row 0: mean 1 over the three present slots
    np.testing.assert_allclose(got["ce_z"][0], [1 / sd, 0, -1 / sd, 0], rtol=1e-5)
    np.testing.assert_allclose(got["ce_z"][1], [0, 0, 0, 0], atol=1e-6)  # one slot: z = 0


def test_pipeline_fit_trains_a_feature_cross_encoder_before_the_ranker_that_reads_it(
    tmp_path: Path,
) -> None:
    from recsage.data.splits import leave_one_out
    from recsage.pipeline.pipeline import Pipeline
    from recsage.testing import tiny_dataset
    from recsage.types import Query, QueryBatch

    data = tiny_dataset(0)
    spec = {
        "text": {"enabled": False},
        "channels": [{"name": "pop", "kind": "popularity", "n": 30}],
        "stages": [
            {"name": "prerank", "kind": "rrf", "keep": 30},
            {"name": "ce", "kind": "cross_encoder", "top": 5, "mode": "feature",
             "train_users": 12},
            {"name": "rank", "kind": "learned", "learner": "lgbm", "keep": 10,
             "params": {"n_estimators": 5}},
        ],
    }  # fmt: skip
    said: list[str] = []
    pipe = Pipeline(spec).fit(data, log=said.append)
    ce = pipe.stages[1]
    assert isinstance(ce, CrossEncoderStage) and ce.ranker is not None
    n_valid = len(leave_one_out(data).valid.users)
    # the ranker after it trains on the validation users the cross-encoder did not see
    assert f"training stage rank (lgbm) on {n_valid - 12:,} users…" in said
    batch = QueryBatch(np.array([0, 1]), [pipe.sequences[0], pipe.sequences[1]], pipe.n_items)
    _, ctx, _ = pipe._run_until(batch, 2)
    assert {"ce", "ce_present", "ce_z"} <= set(ctx.feature_names)
    assert ctx.features is not None
    assert ctx.features[..., ctx.feature_names.index("ce_present")].sum(axis=1).max() == 5
    back = Pipeline.load(pipe.save(tmp_path / "p"))
    q = pipe.sequences[0]
    ids = [str(x) for x in pipe.items.ids[q[:3]]] if pipe.items is not None else []
    assert [r.item for r in back.run(Query(history=ids, n=5))] == [
        r.item for r in pipe.run(Query(history=ids, n=5))
    ]
    no_ranker = {**spec, "stages": spec["stages"][:2]}
    with pytest.raises(ConfigError, match="no learned stage comes after it"):
        Pipeline(no_ranker)
