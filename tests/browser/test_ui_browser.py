"""The web page in a real browser (Debian's chromium through Playwright) against the real app
under uvicorn: sign in → recommendations → like → the list changes; a new visitor's
labelled fallback; search; two chat turns with removable chips; an admin rollback; and
hostile item text that must stay text."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from harness import Site, pick_user, sign_in
from movies import MOVIES

pytestmark = pytest.mark.browser

COMEDIES = {title for title, cats, _ in MOVIES if "Comedy" in cats}
HORROR = {title for title, cats, _ in MOVIES if "Horror" in cats}


def rec_ids(page: Any) -> list[str]:
    return page.locator("#recs > li").evaluate_all("els => els.map(e => e.dataset.item)")


def test_sign_in_recommend_and_like_changes_the_list(page: Any, site: Site) -> None:
    sign_in(page, site.url, site.visitor_key)
    pick_user(page, "7")
    page.locator("#recs > li").first.wait_for()
    assert page.locator("#recs-label").text_content().startswith("Picked for you")
    before = rec_ids(page)
    assert len(before) == 10
    first = page.locator("#recs > li").first
    assert first.locator(".badge").count() >= 1  # the channels that found it
    assert first.locator(".reasons li").count() == first.locator(".badge").count()
    assert first.locator("ul.cats li").count() >= 1
    title = first.locator("a.title").text_content()
    page.get_by_role("button", name=f"Like {title}", exact=True).click()
    page.wait_for_function(
        "() => document.getElementById('recs-status').textContent.includes('The list changed')"
    )
    after = rec_ids(page)
    assert before[0] not in after and after != before
    assert page.locator("#recs > li.new").count() >= 1  # new entries are marked
    # the key never reaches the page, its URL, or its cookies' values
    html = page.content()
    assert site.visitor_key not in html and site.visitor_key not in page.url
    cookies = page.context.cookies()
    assert all(site.visitor_key not in c["value"] for c in cookies)
    session = next(c for c in cookies if c["name"] == "recsage_ui")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # nothing readable by scripts


def test_a_new_visitor_sees_a_truthfully_labelled_fallback(page: Any, site: Site) -> None:
    sign_in(page, site.url, site.visitor_key)
    page.get_by_role("button", name="I'm a new visitor").click()
    page.locator("#recs > li").first.wait_for()
    label = page.locator("#recs-label")
    assert label.get_attribute("data-cold") == "yes"
    text = label.text_content()
    assert text.startswith("New visitor, no history yet")
    # the pipeline serves a new visitor its model-free popularity fallback, labelled so
    assert set(page.locator("#recs .badge").all_text_contents()) == {"fallback:popular"}
    assert "popular with everyone (cold-start fallback)" in text


def test_search_box(page: Any, site: Site) -> None:
    sign_in(page, site.url, site.visitor_key)
    page.get_by_label("Describe what you want").fill("hilarious comedy with jokes")
    page.get_by_label("Describe what you want").press("Enter")  # the keyboard submits
    page.locator("#search-results > li").first.wait_for()
    titles = page.locator("#search-results a").all_text_contents()
    # titles are shown with their year, e.g. "Office Pranksters (1997)"
    assert len(titles) == 10 and re.sub(r" \(\d{4}\)$", "", titles[0]) in COMEDIES
    assert "result" in page.locator("#search-status").text_content()


def test_two_chat_turns_with_removable_chips(page: Any, site: Site) -> None:
    sign_in(page, site.url, site.visitor_key)
    pick_user(page, "3")
    msg = page.get_by_label("Message")
    msg.fill("a funny movie from the 90s")
    msg.press("Enter")
    chips = page.locator("#chat-chips .chip")
    chips.first.wait_for()
    assert chips.all_text_contents() == ["+Comedy×", "1990–1999×"]
    first = page.locator("#chat-results > li").first
    year = int(re.findall(r"\((\d{4})\)", first.text_content())[0])
    assert 1990 <= year <= 1999 and "Comedy" in first.locator("ul.cats").text_content()
    msg.fill("nothing scary please")
    msg.press("Enter")
    page.locator("#chat-chips .chip", has_text="not Horror").wait_for()
    cats = page.locator("#chat-results ul.cats").all_text_contents()
    assert cats and not any("Horror" in c for c in cats)
    assert page.locator("#chat-log .msg").count() == 4  # two turns, two answers
    # remove the years chip with the keyboard
    page.get_by_role("button", name="Remove constraint 1990–1999").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.querySelector('#chat-chips [data-chip=\"years\"]')")
    assert page.locator("#chat-chips .chip").all_text_contents() == ["+Comedy×", "not Horror×"]


def test_admin_rolls_back(page: Any, site: Site) -> None:
    sign_in(page, site.url, site.admin_key)
    page.get_by_role("link", name="Operator").click()
    page.wait_for_url(f"{site.url}/ui/admin")
    serving = page.locator("#serving").text_content()
    assert serving == "v2"
    page.get_by_role("button", name="Roll back to v1").click()
    page.locator("#flash").wait_for()
    assert page.locator("#flash").text_content() == "Rolled back from v2 to v1; serving v1."
    assert page.locator("#serving").text_content() == "v1"
    assert httpx.get(f"{site.url}/version").json()["model_version"] == "v1"
    # the live panel reads the /metrics counters
    page.wait_for_function(
        "() => document.getElementById('live-summary').textContent.includes('API requests')"
    )
    # and promoting v2 again works from the versions table
    page.get_by_role("button", name="Promote v2").click()
    page.locator("#flash").wait_for()
    assert page.locator("#serving").text_content() == "v2"


def test_hostile_item_text_stays_text(page: Any, site: Site) -> None:
    title = 'Evil Comedy Night <script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
    r = httpx.post(
        f"{site.url}/v1/items",
        json={
            "items": [
                {
                    "item_id": "evil",
                    "title": title,
                    "categories": ["<img src=y onerror=window.__xss=3>"],
                    "year": 1996,
                    "text": "a hilarious comedy night <svg onload=window.__xss=4>",
                }
            ]
        },
        headers={"Authorization": f"Bearer {site.admin_key}"},
    )
    assert r.status_code == 200, r.text
    sign_in(page, site.url, site.visitor_key)
    pick_user(page, "7")
    page.get_by_label("Describe what you want").fill("Evil Comedy Night")
    page.get_by_role("button", name="Search").click()
    link = page.locator("#search-results a", has_text="Evil Comedy Night")
    link.wait_for()
    assert link.text_content() == f"{title} (1996)"  # shown literally, with its year
    link.click()
    page.wait_for_url(re.compile(r".*/ui/items/evil$"))
    assert page.locator("#item-title").text_content().startswith(title)
    assert "<svg onload" in page.locator(".text").text_content()
    for p in ("/ui", "/ui/items/evil"):
        page.goto(site.url + p)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__xss") is None
        assert page.locator("img[src=x], img[src=y], svg").count() == 0
        assert page.locator("script:not([src])").count() == 0
