"""The LoRA-tuned LLM ranker: label tokens, prompts, training, persistence, and that a
training prompt never carries its target except as one of the candidates."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recsage.data.splits import leave_one_out
from recsage.errors import ArtifactError, RecsageError
from recsage.llm.cross_encoder import TextCatalogue
from recsage.llm.finetune import (
    LABELS,
    YES_NO,
    LMRanker,
    list_labels,
    list_prompt,
    yes_no_prompt,
)
from recsage.llm.llm_ranker import LLMRankerStage, ranker_examples
from recsage.pipeline.pipeline import Pipeline
from recsage.testing import tiny_dataset


@pytest.fixture(scope="module")
def tiny() -> LMRanker:
    return LMRanker(model="tiny", max_tokens=4096).ready()


def test_label_tokens_are_the_first_differing_token(tiny: LMRanker) -> None:
    # byte tokenizer: id = byte + 3; " A" = [35, 68], " B" = [35, 69]
    assert tiny.label_ids([" A", " B"]) == ([35], [68, 69])
    # " Yes" / " No": shared space, then "Y" (89 + 3) and "N" (78 + 3)
    assert tiny.label_ids(YES_NO) == ([35], [92, 81])
    with pytest.raises(RecsageError, match="distinct"):
        tiny.label_ids([" A", " AB"])
    ex = tiny.example("Q?", list_labels(3), answer=2)
    assert ex.ids == [ord("Q") + 3, ord("?") + 3, 35] and ex.labels == [68, 69, 70]


def test_scores_are_log_probabilities_over_the_labels(tiny: LMRanker) -> None:
    exs = [tiny.example(list_prompt(["a"], ["x", "y", "z"]), list_labels(3)) for _ in range(2)]
    exs.append(tiny.example(yes_no_prompt(["a"], [], "b"), YES_NO))
    scores = tiny.score(exs, batch_size=2)
    for s, n in zip(scores, (3, 3, 2), strict=True):
        assert s.shape == (n,) and np.exp(s).sum() == pytest.approx(1.0, abs=1e-5)
    # left padding + position ids: a prompt scores the same alone and in a padded batch
    short = tiny.example("hi", YES_NO)
    alone = tiny.score([short])[0]
    padded = tiny.score([tiny.example("a much longer prompt than hi", YES_NO), short])[1]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_prompts_list_history_then_labelled_candidates() -> None:
    p = list_prompt(["New (2000)", "Old (1990)"], ["X", "Y"])
    assert p.splitlines() == [
        "The user recently chose (newest first):", "- New (2000)", "- Old (1990)",
        "Candidates:", "A. X", "B. Y", "Which candidate will the user choose next? Answer:",
    ]  # fmt: skip
    assert yes_no_prompt(["A"], [], "T").endswith("Will the user like T? Answer:")


def test_lora_training_learns_a_rule_and_survives_save_load(tmp_path: Path) -> None:
    """Answer "Yes" when the target word is 'good', "No" for 'bad': 8 examples; after
    training every example ranks its answer first (untrained: the LoRA is an identity)."""
    lm = LMRanker(model="tiny", lora_layers=0, lr=3e-2, epochs=40, batch_size=8, seed=1)
    words = ["good", "bad"] * 4
    exs = [lm.example(yes_no_prompt([f"m{i}"], [], w), YES_NO, int(w == "bad"))
           for i, w in enumerate(words)]  # fmt: skip
    before = np.array([s[0] for s in lm.score(exs)])
    res = lm.fit(exs)
    after = np.array([s[0] for s in lm.score(exs)])
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    yes = np.array([w == "good" for w in words])
    assert after[yes].min() > after[~yes].max()
    assert not (before[yes].min() > before[~yes].max())
    lm.save(tmp_path / "ad")
    again = LMRanker.load(tmp_path / "ad")
    np.testing.assert_allclose([s[0] for s in again.score(exs)], after, atol=1e-5)
    assert again.history == res.history
    with pytest.raises(ArtifactError, match="not LoRA adapters"):
        LMRanker.load(tmp_path)


def test_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A run that crashes during epoch 2 and is resumed ends where an uninterrupted one does."""

    def exs(lm: LMRanker) -> list:
        return [lm.example(yes_no_prompt([], [], w), YES_NO, k) for k, w in enumerate(["up", "dn"])]

    def score_epoch(lm: LMRanker, crash_at: int = 0) -> Callable[[], float]:
        seen = []

        def validate() -> float:
            seen.append(1)
            if len(seen) == crash_at:
                raise KeyboardInterrupt
            return float(len(seen))  # every epoch is the best so far

        return validate

    cfg = {"model": "tiny", "lora_layers": 0, "lr": 1e-2, "epochs": 3, "seed": 2}
    full = LMRanker(**cfg)
    full.fit(exs(full), validate=score_epoch(full))
    part = LMRanker(**cfg)
    with pytest.raises(KeyboardInterrupt):
        part.fit(exs(part), checkpoint_dir=tmp_path / "ck", validate=score_epoch(part, 2))
    rest = LMRanker(**cfg)
    res = rest.fit(exs(rest), checkpoint_dir=tmp_path / "ck", validate=score_epoch(rest))
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    np.testing.assert_allclose(
        [s[0] for s in rest.score(exs(rest))], [s[0] for s in full.score(exs(full))], atol=1e-5
    )


SPEC = {
    "text": {"enabled": False},
    "channels": [
        {"name": "ease", "kind": "model", "model": "ease", "n": 30, "params": {"l2": 10.0}},
        {"name": "pop", "kind": "popularity", "n": 10},
    ],
    "stages": [
        {"name": "prerank", "kind": "rrf", "keep": 30},
        {"name": "llm", "kind": "llm_ranker", "keep": 30, "top": 8},
    ],
}  # fmt: skip


def test_the_target_enters_a_prompt_only_as_a_candidate(tiny: LMRanker, tmp_path: Path) -> None:
    data = tiny_dataset(0)
    loo = leave_one_out(data)
    pipe = Pipeline(SPEC)
    pipe.fit(data)
    stage = pipe.stages[-1]
    assert isinstance(stage, LLMRankerStage)
    n = data.n_items
    # unique names, so a name in a prompt identifies exactly one item
    stage.catalogue = TextCatalogue(
        [f"<item {i}>" for i in range(n)], [f"<item {i}>" for i in range(n)], [[] for _ in range(n)]
    )
    stage.lm = tiny
    split = loo.valid
    got = ranker_examples(pipe, split, stage)
    assert got.examples and got.skipped + len(got.examples) == len(split.users)
    valid_t, test_t = split.targets.tocsr(), loo.test.targets.tocsr()
    for user, prompt, answer in zip(got.users, got.prompts, got.answers, strict=True):
        (target,) = valid_t.indices[valid_t.indptr[user] : valid_t.indptr[user + 1]]
        (held_out,) = test_t.indices[test_t.indptr[user] : test_t.indptr[user + 1]]
        history, candidates = prompt.split("Candidates:")
        # the validation target: once, on its own candidate line, under the answer's label
        assert prompt.count(f"<item {target}>") == 1
        assert re.search(rf"^{LABELS[answer]}\. <item {target}>$", candidates, re.M)
        # the test item is never shown as history
        assert f"<item {held_out}>" not in history
        assert len(re.findall(r"^[A-Z]\. ", candidates, re.M)) == 8
    # shuffled: the target's label varies across users
    assert len(set(got.answers)) > 2
    # saved with the pipeline: the adapter is a small artifact beside the catalogue
    pipe.save(tmp_path / "pipe")
    again = Pipeline.load(tmp_path / "pipe")
    assert isinstance(again.stages[-1], LLMRankerStage)
    assert again.stages[-1].catalogue.names == stage.catalogue.names  # type: ignore[union-attr]
    adapter = tmp_path / "pipe"
    sizes = [p.stat().st_size for p in adapter.rglob("*.safetensors") if "adapter" in str(p)]
    assert sizes and max(sizes) < 100_000


def test_training_needs_an_llm_ranker_stage() -> None:
    from recsage.errors import ConfigError
    from recsage.llm.llm_ranker import train_llm_ranker

    pipe = Pipeline({"channels": [{"kind": "popularity"}]})
    with pytest.raises(ConfigError, match="no llm_ranker stage 'x'"):
        train_llm_ranker(pipe, None, stage_name="x")
