"""Stage kinds by name."""

from __future__ import annotations

from typing import Any

from recsage.errors import ConfigError
from recsage.ranking.stages.base import Stage
from recsage.ranking.stages.column import ColumnStage
from recsage.ranking.stages.diversity import MMRStage
from recsage.ranking.stages.learned import LearnedStage
from recsage.ranking.stages.rrf import RRFStage

STAGES: dict[str, type[Stage]] = {
    s.kind: s for s in (RRFStage, ColumnStage, LearnedStage, MMRStage)
}


#: stages in modules that import heavier libraries (loaded on first use)
LAZY_STAGES: dict[str, tuple[str, str]] = {
    "llm": ("recsage.llm.rerank", "LLMRerankStage"),
    "cross_encoder": ("recsage.llm.cross_encoder", "CrossEncoderStage"),
}


def create_stage(spec: dict[str, Any]) -> Stage:
    spec = dict(spec)
    kind = spec.pop("kind", None)
    name = spec.pop("name", kind)
    if kind in LAZY_STAGES and kind not in STAGES:
        import importlib

        module, cls = LAZY_STAGES[kind]
        STAGES[kind] = getattr(importlib.import_module(module), cls)
    if kind not in STAGES:
        known = sorted(set(STAGES) | set(LAZY_STAGES))
        raise ConfigError(f"stage '{name}': unknown kind {kind!r}; known: {known}")
    if "lambda" in spec:
        spec["lambda_"] = spec.pop("lambda")
    return STAGES[kind](str(name), **spec)
