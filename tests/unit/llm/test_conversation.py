"""Conversation: rule parsing, state across turns, grounded LLM parsing, the chat command."""

from __future__ import annotations

import numpy as np
import pytest

from recsage.llm.conversation.parse import parse_llm, parse_rules
from recsage.llm.conversation.session import ConversationSession, SessionWeights


def titles(turn) -> list[str]:
    return [r.title.rsplit(" (", 1)[0] for r in turn.recommendations]


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("I want a comedy older than 2000", {"include": {"comedy"}, "year_max": 1999}),
        ("something lighter, not horror", {"exclude": {"horror"}, "mood": "light"}),
        ("recent sci-fi but no romance", {"include": {"sci-fi"}, "exclude": {"romance"}}),
        ("anything from the 80s", {"year_min": 1980, "year_max": 1989}),
        ("between 1990 and 1995 please", {"year_min": 1990, "year_max": 1995}),
        ("made after 1995", {"year_min": 1996}),
        ("I don't want anything scary", {"exclude": {"horror"}}),
        ("more like the second one", {"like_positions": [2]}),
        ("not the third one", {"reject_positions": [3]}),
        ("not that", {"reject_positions": [1]}),
        ("none of these", {"reject_shown": True}),
        ("I loved The Matrix", {"like_items": [5]}),
        ("I hated Scream", {"reject_items": [3]}),
        ("start over", {"reset": True}),
    ],
)
def test_rules(catalogue, text: str, expect: dict) -> None:
    p = parse_rules(text, catalogue, shown=5)
    for key, value in expect.items():
        assert getattr(p, key) == value, (key, vars(p))


def test_first_time_is_not_a_reference(catalogue) -> None:
    p = parse_rules("my first time watching a comedy", catalogue, shown=5)
    assert not p.like_positions and p.include == {"comedy"}


def test_state_carries_across_turns(catalogue) -> None:
    s = ConversationSession(catalogue, n=3)
    t1 = s.turn("a funny movie")
    assert all("comedy" in catalogue.genres[catalogue.titles.index(t)] for t in titles(t1))
    t2 = s.turn("not horror, older than 1990")
    assert s.constraints.include_genres == {"comedy"}  # kept from turn 1
    got = titles(t2)
    assert got[0] == "Airplane!"  # the only comedy before 1990 that is not horror ...
    for t in got:  # ... then non-comedies fill the list (the genre filter relaxes)
        i = catalogue.titles.index(t)
        assert "horror" not in catalogue.genres[i] and catalogue.years[i] < 1990
    s.turn("start over")
    assert s.constraints.include_genres == set() and s.constraints.year_max is None


def test_references_to_the_last_list(catalogue) -> None:
    s = ConversationSession(catalogue, n=4)
    shown = [r.item for r in s.turn("action").recommendations]
    second = shown[1]
    t = s.turn("more like the second one")
    assert s.constraints.anchors == [catalogue.ids.tolist().index(second)]
    assert second not in [r.item for r in t.recommendations]
    first_now = t.recommendations[0].item
    t2 = s.turn("not that")
    assert first_now not in [r.item for r in t2.recommendations]
    t3 = s.turn("something else")
    assert not set(r.item for r in t3.recommendations) & set(r.item for r in t2.recommendations)


def test_profile_and_history(catalogue) -> None:
    sci = [catalogue.titles.index(t) for t in ("Alien", "Star Wars")]
    s = ConversationSession(catalogue, history=np.array(sci), n=3,
                            weights=SessionWeights(profile=1.0))  # fmt: skip
    t = s.turn("a movie")
    got = titles(t)
    assert "Alien" not in got and "Star Wars" not in got  # seen items are excluded
    assert got[0] == "The Matrix"  # closest to the sci-fi history


def test_pipeline_scores_blend(catalogue) -> None:
    scores = np.full(len(catalogue), -np.inf)
    scores[catalogue.titles.index("Babe")] = 1.0
    s = ConversationSession(catalogue, pipeline_scores=scores, n=2,
                            weights=SessionWeights(pipeline=5.0))  # fmt: skip
    assert titles(s.turn("a comedy"))[0] == "Babe"


def test_llm_answers_are_kept_only_where_grounded(catalogue) -> None:
    value = {
        "include_genres": ["western", "horror"], "exclude_genres": [], "year_min": 1970,
        "year_max": 1985, "mood": "dark", "like_positions": [9], "reject_positions": [],
        "query": "spooky",
    }  # fmt: skip
    p = parse_llm(value, "something spooky from before 1985", catalogue, shown=3)
    assert p.include == {"horror"}  # no westerns in this catalogue
    assert (p.year_min, p.year_max) == (None, 1985)  # 1970 is not in the text
    assert p.mood == "dark" and p.like_positions == [] and p.query == "spooky"


def test_llm_failure_falls_back_to_rules(catalogue, fake) -> None:
    from recsage.llm.backends.base import LLMTimeout

    s = ConversationSession(catalogue, backend=fake(LLMTimeout("slow")), n=2)
    t = s.turn("a comedy")
    assert t.source == "rules (LLM failed)" and t.llm_error and t.recommendations


def test_llm_parse_merges_with_rules(catalogue, fake) -> None:
    answer = (
        '{"include_genres": ["horror"], "exclude_genres": ["comedy"], "year_min": null, '
        '"year_max": null, "mood": "none", "like_positions": [], "reject_positions": [], '
        '"query": "scary"}'
    )
    s = ConversationSession(catalogue, backend=fake(answer), n=2)
    t = s.turn("a comedy that is scary")
    assert t.source == "llm+rules"
    assert s.constraints.include_genres == {"comedy", "horror"}  # rules win the conflict
    assert s.constraints.exclude_genres == set()


def test_real_model_turn(catalogue, smollm2) -> None:
    s = ConversationSession(catalogue, backend=smollm2, n=3, llm_timeout=120)
    t = s.turn("a funny movie, nothing scary")
    assert t.source == "llm+rules" and len(t.recommendations) == 3
    assert "horror" in s.constraints.exclude_genres


def test_chat_command_reads_turns_from_stdin() -> None:
    from typer.testing import CliRunner

    from recsage.cli.common import app

    script = "a funny movie from the 90s\nnot horror\nmore like the second one\nquit\n"
    res = CliRunner().invoke(
        app, ["chat", "--user", "1", "--encoder", "keywords", "-n", "3"], input=script
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("understood (rules)") == 3
    assert "years 1990–1999" in res.output and "-Horror" in res.output and "like " in res.output
