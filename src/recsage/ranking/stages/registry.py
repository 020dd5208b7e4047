"""Stage kinds by name: one lazy ``"module:attr"`` line per stage.

Adding a stage is one new module plus one line here (or an entry point in the
``recsage.stages`` group). The LLM re-rank and cross-encoder stages import heavier
libraries and load on first use.
"""

from __future__ import annotations

from typing import Any

from recsage.component import Registry
from recsage.ranking.stages.base import Stage

STAGES: Registry[Stage] = Registry("stage", base=Stage, noun="kind")
STAGES.register("rrf", "recsage.ranking.stages.rrf:RRFStage")
STAGES.register("column", "recsage.ranking.stages.column:ColumnStage")
STAGES.register("learned", "recsage.ranking.stages.learned:LearnedStage")
STAGES.register("mmr", "recsage.ranking.stages.diversity:MMRStage")
STAGES.register("llm", "recsage.llm.rerank:LLMRerankStage")
STAGES.register("cross_encoder", "recsage.llm.cross_encoder:CrossEncoderStage")
STAGES.register("llm_ranker", "recsage.llm.llm_ranker:LLMRankerStage")


def create_stage(spec: dict[str, Any]) -> Stage:
    """Stage from a spec dict {name, kind, keep, ...params} ("lambda" may stand for
    "lambda_")."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    name = spec.pop("name", kind)
    cls = STAGES.get(kind, where=f"stage '{name}'")
    if "lambda" in spec:
        spec["lambda_"] = spec.pop("lambda")
    return cls(str(name), **spec)
