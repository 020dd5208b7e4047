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


# ---- a non-movie catalogue: constraints come from its own fields ----------------------------
SHOP = [  # (id, title, category, price)
    ("s1", "Pawsome Chicken Cat Food", "Cat Food", 12.5),
    ("s2", "Whisker Salmon Cat Food", "Cat Food", 24.0),
    ("s3", "Clumping Cat Litter", "Cat Litter", 9.0),
    ("s4", "Feather Cat Toy", "Cat Toys", 6.0),
    ("s5", "Barkley Beef Dog Food", "Dog Food", 18.0),
    ("s6", "Squeaky Dog Toy", "Dog Toys", 4.5),
    ("s7", "Odour-Control Cat Litter", "Cat Litter", 15.0),
    ("s8", "Kitten Starter Cat Food", "Cat Food", None),
]


@pytest.fixture
def shop():
    import pandas as pd

    from recsage.llm.conversation.catalogue import Catalogue, KeywordEncoder

    table = pd.DataFrame(
        {
            "item_id": [r[0] for r in SHOP],
            "title": [r[1] for r in SHOP],
            "categories": [[r[2]] for r in SHOP],
            "price": [r[3] for r in SHOP],
        }
    )
    enc = KeywordEncoder()
    vectors = enc.encode_items([f"{r[1]}. {r[2]}" for r in SHOP])
    return Catalogue.from_table(table["item_id"].tolist(), table, vectors, enc)


def test_shop_words_come_from_the_catalogue(shop) -> None:
    assert shop.category_terms()["litter"] == {"cat litter"}
    assert shop.category_terms()["toy"] == {"cat toys", "dog toys"}
    assert shop.prices is not None and np.isnan(shop.prices[7])
    p = parse_rules("cat food but not litter, under 20", shop)
    assert p.include == {"cat food"} and p.exclude == {"cat litter"}
    assert p.price_max == 20.0 and p.price_min is None
    assert p.year_max is None and p.mood is None  # no years or moods in a shop
    # words of one clause narrow each other; negation reaches each word's categories
    assert parse_rules("a toy for my cat", shop).include == {"cat toys"}
    assert parse_rules("nothing for dogs", shop).exclude == {"dog food", "dog toys"}
    # "less than 20" is a price, not a negation of what follows it
    p = parse_rules("less than 20 dollars, cat toys", shop)
    assert p.price_max == 20.0 and p.include == {"cat toys"} and not p.exclude
    p = parse_rules("between $10 and $16", shop)
    assert (p.price_min, p.price_max) == (10.0, 16.0)
    assert parse_rules("$15 or more", shop).price_min == 15.0


def test_shop_session_applies_categories_negation_and_price(shop) -> None:
    s = ConversationSession(shop, n=3)
    t = s.turn("cat food but not litter, under 20")
    # the only cat food at <= 20 with a known price is s1 (s2 costs 24, s8 has no price);
    # the list is then filled by other items that pass the price and the litter exclusion
    ids = [r.item for r in t.recommendations]
    assert ids[0] == "s1"
    assert not {"s2", "s3", "s7", "s8"} & set(ids)
    assert t.understood == "+Cat Food, -Cat Litter, price –20"
    t2 = s.turn("cheaper, over 5")
    assert s.constraints.price_min == 5.0 and s.constraints.price_max is None
    assert "s6" not in [r.item for r in t2.recommendations]  # 4.50 < 5
