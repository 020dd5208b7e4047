"""Kind "llm_ranker": re-rank the pipeline's top candidates with a LoRA-tuned small LLM.

One prompt per user lists the recent history titles and the top `top` candidates under
labels A, B, C… in a shuffled order (so a position prior cannot stand in for the incoming
ranking); one forward pass; the next-token logits of the labels (log-softmax over them)
are the candidates' scores, blended with the incoming score by `weight`. Candidates past
`top` keep their order below.

Training (`train_llm_ranker`) uses each training user's *validation* item: the history is
the user's training sequence (the target is not in it), the candidates are the pipeline's
top `top` for that history, and the answer is the target's label. Users whose target the
pipeline does not put in its top are skipped (counted). Test targets are never used.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsage.artifacts import LLM_RANKER_STAGE, read_artifact, write_artifact
from recsage.errors import ConfigError, RecsageError
from recsage.llm.cross_encoder import (
    CATALOGUE_FILE,
    CrossEncoderStage,
    TextCatalogue,
    stage_to_train,
)
from recsage.llm.finetune import Example, LMRanker, list_labels, list_prompt
from recsage.ranking.stages.base import StageContext
from recsage.types import CandidateBatch

ADAPTER_DIR = "adapter"


class LLMRankerStage(CrossEncoderStage):
    """Listwise verbalizer re-ranking of the top candidates (see the module docstring)."""

    kind = "llm_ranker"
    needs_features = True  # the context then carries the users' recent histories

    @dataclass
    class Config:
        model_dir: str = ""
        top: int = 20
        weight: float = 1.0
        column: str = ""
        history: int = 10
        seed: int = 0
        mode: str = "rerank"  # "feature": the label log-probs as a later learned stage's feature

        def __post_init__(self) -> None:
            if self.mode not in ("rerank", "feature"):
                raise ConfigError(f"mode must be 'rerank' or 'feature', not {self.mode!r}")

    lm: LMRanker | None = None

    def train(self, pipe: Any, valid: Any, *, exclude: np.ndarray, say: Any) -> np.ndarray:
        """Nothing at fit time: the LLM is fine-tuned by `train_llm_ranker` (`recsage llm
        finetune`, minutes to hours on CPU) or loaded from `model_dir`."""
        return np.zeros(0, np.int64)

    def _ready_lm(self) -> tuple[LMRanker, TextCatalogue]:
        if self.lm is None and self.config.model_dir:
            self.load(Path(self.config.model_dir))
        if self.lm is None or self.catalogue is None:
            raise ConfigError(
                f"stage '{self.name}' has no fine-tuned LLM: run train_llm_ranker() "
                "(`recsage llm finetune`) or set model_dir"
            )
        return self.lm, self.catalogue

    def prompts(
        self, histories: Sequence[np.ndarray], items: Sequence[Sequence[int]], seeds: Sequence[int]
    ) -> list[tuple[str, list[int]]]:
        """Per user: the prompt and the shuffled candidate order it shows (item ids)."""
        cat = self.catalogue
        assert cat is not None
        out = []
        for hist, cands, s in zip(histories, items, seeds, strict=True):
            seq = [int(i) for i in np.asarray(hist).tolist() if 0 <= int(i) < len(cat.names)]
            recent = seq[-self.config.history :][::-1] if self.config.history > 0 else []
            order = [int(c) for c in cands]
            np.random.default_rng([self.config.seed, int(s)]).shuffle(order)
            names = [cat.names[i] if 0 <= i < len(cat.names) else str(i) for i in order]
            out.append((list_prompt([cat.names[i] for i in recent], names), order))
        return out

    def cross_scores(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray:
        """(B, N) label log-probabilities for the top slots, NaN elsewhere."""
        lm, _ = self._ready_lm()
        slots = self.top_slots(cands)
        b = cands.shape[0]
        hist = ctx.histories if ctx.histories is not None else np.full((b, 0), -1)
        rows = [r for r in range(b) if (slots[r] >= 0).any()]
        items = [cands.items[r, slots[r][slots[r] >= 0]] for r in rows]
        # the shuffle seed depends on what the user sees only, so a re-run is identical
        seeds = [zlib.crc32(np.asarray(hist[r], np.int64).tobytes() + i.astype(np.int64).tobytes())
                 for r, i in zip(rows, items, strict=True)]  # fmt: skip
        built = self.prompts([hist[r] for r in rows], items, seeds)
        examples = [lm.example(p, list_labels(len(order))) for p, order in built]
        out = np.full(cands.shape, np.nan, np.float32)
        t0 = time.perf_counter()
        scores = lm.score(examples, batch_size=1)
        self.seconds += time.perf_counter() - t0
        self.pairs += sum(len(o) for _, o in built)
        for r, (_, order), s in zip(rows, built, scores, strict=True):
            col = {int(cands.items[r, j]): j for j in slots[r][slots[r] >= 0].tolist()}
            for item, v in zip(order, s.tolist(), strict=True):
                out[r, col[item]] = v
        return out

    def save(self, path: Path) -> None:
        """An artifact folder: the LoRA adapter in `adapter/`, item texts in `catalogue.json`."""
        lm, catalogue = self.lm, self.catalogue
        if lm is None or catalogue is None:
            return

        def write(folder: Path) -> None:
            lm.save(folder / ADAPTER_DIR)
            (folder / CATALOGUE_FILE).write_text(json.dumps(catalogue.to_json()))

        write_artifact(
            path, LLM_RANKER_STAGE, name=self.name, config=dataclasses.asdict(self.config),
            write=write,
        )  # fmt: skip

    def load(self, path: Path) -> None:
        art = read_artifact(path, LLM_RANKER_STAGE)
        self.lm = LMRanker.load(art.file(ADAPTER_DIR))
        self.catalogue = TextCatalogue.from_json(json.loads(art.file(CATALOGUE_FILE).read_text()))


@dataclass
class RankerExamples:
    """Training prompts built from pipeline candidates, with the users they came from."""

    examples: list[Example] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # target's position in the shown order
    skipped: int = 0  # users whose target was not among the top candidates


def ranker_examples(
    pipe: Any,
    split: Any,
    stage: LLMRankerStage,
    *,
    users: np.ndarray | None = None,
    batch_size: int = 256,
) -> RankerExamples:
    """For each user of `split` (or `users`): the prompt over its history (the split's
    training sequence) and the pipeline's top candidates, answer = the target's label."""
    from recsage.types import QueryBatch

    lm, cat = stage.lm, stage.catalogue
    if lm is None or cat is None:
        raise RecsageError(f"stage '{stage.name}' needs its LLM and catalogue first")
    idx = next((k for k, s in enumerate(pipe.stages) if s is stage), None)
    if idx is None:
        raise ConfigError(f"stage '{stage.name}' is not part of this pipeline")
    seqs = split.train.sequences()
    us = split.users if users is None else np.asarray(users, np.int64)
    targets = split.targets.tocsr()
    out = RankerExamples()
    for lo in range(0, len(us), batch_size):
        u = us[lo : lo + batch_size]
        batch = QueryBatch(u, [seqs[i] for i in u], pipe.n_items)
        cands, _, _ = pipe._run_until(batch, idx)
        slots = stage.top_slots(cands)
        for r, user in enumerate(u.tolist()):
            tgt = set(targets.indices[targets.indptr[user] : targets.indptr[user + 1]].tolist())
            top = cands.items[r, slots[r][slots[r] >= 0]]
            hits = [int(i) for i in top if int(i) in tgt]
            if not hits or len(top) < 2:
                out.skipped += 1
                continue
            ((prompt, order),) = stage.prompts([np.asarray(seqs[user])], [top], [int(user)])
            answer = order.index(hits[0])
            out.examples.append(lm.example(prompt, list_labels(len(order)), answer))
            out.users.append(int(user))
            out.prompts.append(prompt)
            out.answers.append(answer)
    return out


def train_llm_ranker(
    pipe: Any,
    split: Any,
    *,
    stage_name: str | None = None,
    lm: LMRanker | None = None,
    users: np.ndarray | None = None,
    progress: bool = False,
    max_minutes: float = 0.0,
    checkpoint_dir: Path | None = None,
) -> RankerExamples:
    """LoRA-tune the pipeline's llm_ranker stage on `split`'s targets (the leave-one-out
    validation split: histories exclude the targets, and test items are never seen)."""
    stage = stage_to_train(pipe, LLMRankerStage, stage_name)
    stage.lm = (lm or LMRanker()).ready()
    data = ranker_examples(pipe, split, stage, users=users)
    fingerprint = f"{len(data.examples)}:{sum(data.users)}:{sum(data.answers)}"
    stage.lm.fit(data.examples, progress=progress, max_minutes=max_minutes,
                 checkpoint_dir=checkpoint_dir, fingerprint=fingerprint)  # fmt: skip
    return data


__all__ = ["LLMRankerStage", "RankerExamples", "ranker_examples", "train_llm_ranker"]
