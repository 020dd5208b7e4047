"""`StageTests`: the contract every ranking stage keeps.

Subclass it as ``Test…`` and implement `make_stage(data)` returning a stage ready to
apply (trained if it learns; see `train_stage`). The suite feeds it real merged
candidates (co-occurrence and text channels over `tiny_dataset`, with the features,
item vectors, categories and histories a pipeline gives stages) and checks: it never
invents items (output ⊆ input per row) nor repeats one; it keeps at most `keep` (all
valid inputs up to `keep` unless the stage filters); it writes its score column, finite
and non-increasing on filled slots; every other score column and the provenance bits
move with their items; empty rows stay empty; it is deterministic.
"""

from __future__ import annotations

import copy
import functools
from typing import ClassVar

import numpy as np
import pytest

from recsage.data.schema import Dataset
from recsage.ranking.stages.base import Stage, StageContext
from recsage.ranking.stages.learned import LearnedStage
from recsage.testing.data import query_batch, text_resources, tiny_dataset
from recsage.types import CandidateBatch, QueryBatch

#: channels whose merged lists the suite ranks (cheap, history-driven: an empty history
#: gives an empty candidate row); EASE adds no candidates (quota 0) but, as in a pipeline,
#: its full score of every candidate as the column `ease_full`
INPUT_CHANNELS = (
    {"name": "cooc", "kind": "cooccurrence", "n": 15, "window": 2},
    {"name": "text", "kind": "text", "n": 15},
    {"name": "ease", "kind": "model", "model": "ease", "n": 15, "params": {"l2": 10.0}},
)
QUOTAS = {"ease": 0}
FULL_SCORES = ("ease_full",)


def merged_candidates(fit_data: Dataset, batch: QueryBatch) -> tuple[CandidateBatch, StageContext]:
    """The suite's input channels fitted on `fit_data`, run on `batch` and merged, plus
    the stage context a pipeline would build (features, item vectors, categories,
    recent histories)."""
    from recsage.ranking.features import ItemStats, candidate_features
    from recsage.ranking.training import last_items
    from recsage.retrieval.channels.model import ModelChannel
    from recsage.retrieval.channels.registry import create_channel
    from recsage.retrieval.merge import merge_channels

    resources = text_resources(fit_data)
    outputs = []
    full: dict[str, np.ndarray] = {}
    for spec in INPUT_CHANNELS:
        ch = create_channel(dict(spec))
        ch.fit(fit_data, resources)
        outputs.append((ch.name, *ch.retrieve(batch, ch.n)))
        if isinstance(ch, ModelChannel):
            full[f"{ch.name}_full"] = ch.scores(batch)
    cands = merge_channels(outputs, max_candidates=24, quotas=QUOTAS)
    rows = np.arange(cands.shape[0])[:, None]
    for col, s in full.items():
        got = s[rows, np.maximum(cands.items, 0)]
        cands.scores[col] = np.where(cands.valid, got, np.nan).astype(np.float32)
    stats = ItemStats.from_dataset(fit_data)
    features, names = candidate_features(
        cands,
        batch,
        stats,
        channel_names=cands.channel_names,
        text_vectors=resources.item_text_vectors,
        extra_scores=FULL_SCORES,
    )
    ctx = StageContext(
        features=features,
        feature_names=names,
        item_vectors=resources.item_text_vectors,
        item_category=stats.first_category,
        histories=last_items(batch.sequences, 20),
    )
    return cands, ctx


@functools.lru_cache(maxsize=4)
def _inputs(seed: int) -> tuple[Dataset, QueryBatch, CandidateBatch, StageContext]:
    data = tiny_dataset(seed)
    seqs = data.sequences()
    batch = query_batch(data, range(10), unknown=[seqs[11][:2], []])
    cands, ctx = merged_candidates(data, batch)
    return data, batch, cands, ctx


def stage_inputs(seed: int = 0) -> tuple[Dataset, QueryBatch, CandidateBatch, StageContext]:
    """(data, batch, merged candidates, stage context) for the suite; fresh copies each
    call (stages write into the candidates' score dict)."""
    return copy.deepcopy(_inputs(seed))


def train_learned_stage(stage: LearnedStage, data: Dataset) -> LearnedStage:
    """Train a learned stage as a pipeline does: candidates from channels fitted on all but
    each user's last two interactions, labelled by the second-last one; every positive
    plus sampled negatives; 15% of the lists held out for the ranker's validation."""
    from recsage.data.splits import leave_one_out
    from recsage.ranking.training import label_matrix, ranking_data, sample_training_slots

    valid = leave_one_out(data).valid
    seqs = valid.train.sequences()
    batch = QueryBatch(valid.users, [seqs[u] for u in valid.users], data.n_items)
    cands, ctx = merged_candidates(valid.train, batch)
    labels = label_matrix(cands, valid.targets[valid.users])
    slots = sample_training_slots(
        labels, cands.valid, negatives=stage.config.negatives, seed=stage.config.seed
    )
    rd, _ = ranking_data(cands, ctx, labels=labels, rows_mask=slots, n_items=data.n_items)
    n_groups = int(rd.group.max()) + 1
    held = np.random.default_rng(stage.config.seed).random(n_groups) < 0.15
    stage.ranker = stage.make_ranker()
    stage.ranker.fit(rd.subset(~held), rd.subset(held))
    return stage


class StageTests:
    """Conformance suite for `Stage` implementations (pytest collects subclasses)."""

    seed: ClassVar[int] = 0
    #: True for stages that may drop candidates (e.g. per-category caps)
    filters: ClassVar[bool] = False

    def make_stage(self, data: Dataset) -> Stage:
        """A stage ready to apply (trained when it learns)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define make_stage() (conformance suite hook)"
        )

    @pytest.fixture(scope="class")
    @classmethod
    def stage(cls) -> Stage:
        data, _, _, _ = _inputs(cls.seed)
        return cls().make_stage(data)

    def run(self, stage: Stage) -> tuple[CandidateBatch, CandidateBatch]:
        """(input copy, output) of one application on fresh inputs."""
        _, _, cands, ctx = stage_inputs(self.seed)
        before = copy.deepcopy(cands)
        return before, stage.apply(cands, ctx)

    # ---- the contract ---------------------------------------------------------------
    def test_inputs_are_real_candidates(self) -> None:
        _, _, cands, _ = stage_inputs(self.seed)
        valid = cands.valid.sum(axis=1)
        assert valid[:-1].min() >= 5 and valid[-1] == 0, "the suite's own inputs are broken"

    def test_never_invents_or_repeats_items(self, stage: Stage) -> None:
        before, out = self.run(stage)
        assert out.items.dtype == np.int64 and out.items.shape[0] == before.items.shape[0]
        for r in range(out.shape[0]):
            got = out.items[r][out.items[r] >= 0]
            assert set(got.tolist()) <= set(before.items[r][before.items[r] >= 0].tolist()), (
                f"row {r}: stage {stage.name} returned items it was not given"
            )
            assert len(np.unique(got)) == len(got), f"row {r} repeats an item"

    def test_keeps_at_most_keep(self, stage: Stage) -> None:
        before, out = self.run(stage)
        assert out.shape[1] <= stage.keep
        n_in, n_out = before.valid.sum(axis=1), out.valid.sum(axis=1)
        if self.filters:
            assert (n_out <= np.minimum(n_in, stage.keep)).all()
        else:
            np.testing.assert_array_equal(n_out, np.minimum(n_in, stage.keep))
        # filled slots first, padding after
        assert not (out.valid[:, 1:] & ~out.valid[:, :-1]).any()

    def test_writes_its_score_column_in_order(self, stage: Stage) -> None:
        _, out = self.run(stage)
        assert stage.name in out.scores, f"stage {stage.name} wrote no score column"
        s = out.scores[stage.name]
        assert s.shape == out.items.shape and s.dtype == np.float32
        assert np.isfinite(s[out.valid]).all(), "filled slots need a finite stage score"
        for r in range(out.shape[0]):
            row = s[r][out.valid[r]]
            assert (np.diff(row) <= 1e-6).all(), f"row {r}: the list is not in score order"

    def test_columns_and_sources_move_with_their_items(self, stage: Stage) -> None:
        before, out = self.run(stage)
        assert out.channel_names == before.channel_names
        for r in range(out.shape[0]):
            where = {int(i): j for j, i in enumerate(before.items[r]) if i >= 0}
            for j, item in enumerate(out.items[r]):
                if item < 0:
                    continue
                k = where[int(item)]
                for col, values in before.scores.items():
                    np.testing.assert_equal(out.scores[col][r, j], values[r, k], err_msg=col)
                if before.sources is not None:
                    assert out.sources is not None
                    assert out.sources[r, j] == before.sources[r, k]

    def test_empty_rows_stay_empty(self, stage: Stage) -> None:
        before, out = self.run(stage)
        assert not before.valid[-1].any()
        assert not out.valid[-1].any()

    def test_is_deterministic(self, stage: Stage) -> None:
        _, a = self.run(stage)
        _, b = self.run(stage)
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.scores[stage.name], b.scores[stage.name])

    def test_spec_recreates_the_stage(self, stage: Stage) -> None:
        from recsage.ranking.stages.registry import create_stage

        again = create_stage(stage.spec())
        assert type(again) is type(stage) and again.spec() == stage.spec()
