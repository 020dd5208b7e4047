"""Explanation phrasing: only the given facts may be said; anything else falls back."""

from __future__ import annotations

from recsage.llm.backends.base import LLMTimeout
from recsage.llm.explain import Facts, named_titles, phrase, template_sentence, validate

CATALOGUE = [
    "Toy Story", "Toy Story 2", "Alien", "Aliens", "Heat", "Matrix, The", "Babe",
    "Star Wars", "Up", "It",
]  # fmt: skip
FACTS = Facts(
    item_title="Toy Story 2",
    reasons=["it is the sequel of a film you rated highly", "it shares the genre Animation"],
    cited_titles=["Toy Story"],
)


def test_named_titles() -> None:
    text = "Like The Matrix and Toy Story 2, not Aliens; the heat was up."
    assert named_titles(text, CATALOGUE) == {"Matrix, The", "Toy Story 2", "Aliens"}
    assert named_titles("You will love Heat.", CATALOGUE) == {"Heat"}


def test_validate_accepts_faithful_phrasing() -> None:
    ok = "Since you loved Toy Story, its sequel Toy Story 2 shares the genre Animation."
    assert validate(ok, FACTS, CATALOGUE) is None
    assert validate(template_sentence(FACTS), FACTS, CATALOGUE) is None


def test_validate_rejects_unfaithful_phrasing() -> None:
    assert "Alien" in str(validate("Fans of Alien will love Toy Story 2.", FACTS, CATALOGUE))
    assert "number" in str(validate("Toy Story 2 won 3 Oscars.", FACTS, CATALOGUE))
    assert "quotes" in str(validate('Critics called Toy Story 2 "a triumph".', FACTS, CATALOGUE))
    assert "sentences" in str(validate("Toy Story 2. B. C.", FACTS, CATALOGUE))
    assert validate("", FACTS, CATALOGUE) == "empty"


def test_phrase_uses_the_llm_only_when_valid(fake) -> None:
    good = fake("You liked Toy Story, and Toy Story 2 is its sequel.")
    e = phrase(FACTS, good, catalogue_titles=CATALOGUE)
    assert e.source == "llm" and e.rejected is None
    bad = fake("If you liked Star Wars, Toy Story 2 is for you.")
    e = phrase(FACTS, bad, catalogue_titles=CATALOGUE)
    assert e.source == "template" and "Star Wars" in str(e.rejected)
    assert e.text == template_sentence(FACTS)
    e = phrase(FACTS, fake(LLMTimeout("slow")), catalogue_titles=CATALOGUE)
    assert e.source == "template" and "LLM failed" in str(e.rejected)
    assert phrase(FACTS, None, catalogue_titles=CATALOGUE).source == "template"


def test_template_sentence() -> None:
    assert template_sentence(FACTS) == (
        "Toy Story 2 is recommended because you liked Toy Story: it is the sequel of a film "
        "you rated highly; it shares the genre Animation."
    )
    assert template_sentence(Facts("Babe")) == "Babe is recommended."


def test_real_model_output_is_always_faithful(smollm2) -> None:
    e = phrase(FACTS, smollm2, catalogue_titles=CATALOGUE, max_tokens=48, timeout=120)
    assert e.source in ("llm", "template")
    assert validate(e.text, FACTS, CATALOGUE) is None


def test_facts_from_a_knowledge_explanation() -> None:
    from recsage.knowledge.explain import Explanation, HistoryReason, SharedAttribute
    from recsage.llm.explain import facts_from_explanation

    expl = Explanation(
        item=1, title="Toy Story 2", scorer="ease",
        because=[HistoryReason(item=0, title="Toy Story", weight=0.4, steps_back=0)],
        attributes=[SharedAttribute("genre", "Animation", (0, 6), ("Toy Story", "Babe"), 2)],
    )  # fmt: skip
    f = facts_from_explanation(expl)
    assert f.item_title == "Toy Story 2" and f.cited_titles == ["Toy Story", "Babe"]
    assert f.reasons == ["genre Animation, shared with 2 of your items"]
    assert validate(template_sentence(f), f, CATALOGUE) is None


def test_sentence_must_name_the_item() -> None:
    assert validate("You liked Toy Story.", FACTS, CATALOGUE) == (
        "does not name the recommended item"
    )
