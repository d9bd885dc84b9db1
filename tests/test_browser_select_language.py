"""In Chromium: the searching select boxes of every form speak the page's language — the
clear button's tooltip said "Remove all items" on 46 zh pages, and a search with no match
"No results found" (issue 13, the last English on Chinese pages)."""
from __future__ import annotations

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.test_browser_smoke import log_in


def test_select_boxes_speak_chinese_and_english(page, world):
    delegation = db.session.scalars(sa.select(m.Delegation).where(
        m.Delegation.parent_id.isnot(None)).order_by(m.Delegation.id)).first()
    log_in(page, "admin")
    for language, clear, nothing in (("zh", "删除所有项目", "未找到结果"),
                                     ("en", "Remove all items", "No results found")):
        page.goto("/")
        page.click(f"#lang-{language}")
        page.wait_for_selector("#home")
        page.goto(f"/admin/delegations/edit/{delegation.id}")
        button = page.locator("#s2id_parent .select2-selection__clear, "
                              ".select2-selection__clear").first
        button.wait_for()
        assert button.get_attribute("title") == clear
        page.locator(".select2-selection").first.click()
        page.locator(".select2-container--open .select2-search__field").fill(
            "zzzz-no-such-delegation")
        assert page.locator(".select2-results__message").inner_text() == nothing
        page.keyboard.press("Escape")


def test_calendars_speak_the_page_language_on_every_page(page, world):
    """FAB's date-only calendars took the page's language only on forms that also had a
    date-time box: every page now carries the calendar's names (window.CIIE_CALENDAR)."""
    log_in(page, "finance")
    for language, january in (("zh", "一月"), ("en", "January")):
        page.goto("/")
        page.click(f"#lang-{language}")
        page.wait_for_selector("#home")
        page.goto("/finance/statements/list/")
        assert page.locator(".ciie-datetime").count() == 0
        assert page.evaluate("jQuery.fn.datepicker.dates["
                             "jQuery.fn.datepicker.defaults.language].months[0]") == january
