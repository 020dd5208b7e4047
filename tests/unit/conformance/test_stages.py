"""Every built-in ranking stage kind keeps the `StageTests` contract."""

from __future__ import annotations

from typing import Any, ClassVar

from recsage.data.schema import Dataset
from recsage.ranking.stages.base import Stage
from recsage.ranking.stages.learned import LearnedStage
from recsage.ranking.stages.registry import create_stage
from recsage.testing import StageTests, item_texts
from recsage.testing.llm import ScriptedLLM
from recsage.testing.stages import train_learned_stage


class _Spec(StageTests):
    spec: ClassVar[dict[str, Any]]

    def make_stage(self, data: Dataset) -> Stage:
        return create_stage({"name": "st", **self.spec})


class TestRRF(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "rrf", "keep": 12, "weights": {"text": 2.0}}


class TestColumn(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "column", "keep": 10, "column": "ease_full"}


class TestMMR(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "mmr", "keep": 8, "lambda": 0.6}


class TestMMRCategoryCap(_Spec):
    spec: ClassVar[dict[str, Any]] = {"kind": "mmr", "keep": 8, "lambda": 1.0, "category_cap": 2}
    filters = True


class TestLearnedLGBM(_Spec):
    spec: ClassVar[dict[str, Any]] = {
        "kind": "learned", "learner": "lgbm", "keep": 10, "negatives": 10,
        "params": {"n_estimators": 20, "threads": 1},
    }  # fmt: skip

    def make_stage(self, data: Dataset) -> Stage:
        stage = super().make_stage(data)
        assert isinstance(stage, LearnedStage)
        return train_learned_stage(stage, data)


class TestLearnedFM(TestLearnedLGBM):
    spec: ClassVar[dict[str, Any]] = {
        "kind": "learned", "learner": "fm", "objective": "pairwise", "keep": 10,
        "negatives": 10, "params": {"max_epochs": 2, "threads": 1},
    }  # fmt: skip


class TestLLM(_Spec):
    """The LLM re-rank stage with a scripted backend (reverses the head it is shown)."""

    spec: ClassVar[dict[str, Any]] = {"kind": "llm", "keep": 10, "top_k": 5, "weight": 1.0}

    def make_stage(self, data: Dataset) -> Stage:
        stage: Any = super().make_stage(data)
        stage.set_backend(ScriptedLLM())
        stage.set_catalogue(item_texts(data))
        return stage


class TestCrossEncoder(_Spec):
    """The cross-encoder stage with a tiny randomly initialised BERT (no fine-tuning: the
    contract is about what the stage does with any scores)."""

    spec: ClassVar[dict[str, Any]] = {"kind": "cross_encoder", "keep": 10, "top": 6}

    def make_stage(self, data: Dataset) -> Stage:
        from recsage.llm.cross_encoder import TextCatalogue, tiny_cross_encoder

        stage: Any = super().make_stage(data)
        stage.ranker = tiny_cross_encoder(max_length=32)
        stage.catalogue = TextCatalogue.from_item_table(data.item_table)
        return stage


class TestLLMRanker(_Spec):
    """The fine-tuned LLM ranker stage with a tiny random Llama (byte tokenizer, LoRA added
    but untrained): the contract is about what the stage does with any scores."""

    spec: ClassVar[dict[str, Any]] = {"kind": "llm_ranker", "keep": 10, "top": 6}

    def make_stage(self, data: Dataset) -> Stage:
        from recsage.llm.cross_encoder import TextCatalogue
        from recsage.llm.finetune import LMRanker

        stage: Any = super().make_stage(data)
        stage.lm = LMRanker(model="tiny", max_tokens=2048).ready()
        stage.catalogue = TextCatalogue.from_item_table(data.item_table)
        return stage


def test_every_registered_stage_kind_runs_the_suite() -> None:
    from recsage.ranking.stages.registry import STAGES

    kinds = {c.spec["kind"] for c in _Spec.__subclasses__()}
    assert set(STAGES) <= kinds
