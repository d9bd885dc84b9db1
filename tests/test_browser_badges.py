"""In Chromium: the badge office produces a batch of badges and downloads the sheet from the
task page; gate staff scan a valid and a forged code."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from pypdf import PdfReader

from app import clock
from app import models as m
from app.documents.badges import cards
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import badges
from tests.test_badges import approved_persons
from tests.test_browser_delegation import shot
from tests.test_browser_smoke import log_in


def test_badge_office_produces_a_batch_and_downloads_the_sheet(page, world):
    ids = approved_persons(world, "浦东医疗", 3, "W")
    first = db.session.get(m.PersonRegistration, ids[0])
    first.person.name = "周晓梅"
    db.session.commit()
    dialogs = []

    def answer(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    log_in(page, "admin")
    page.goto("/badges/production/list/?_flt_0_status=approved")
    for pk in ids:
        page.check(f"input.action_check[value='{pk}']")
    page.click("button.dropdown-toggle:has-text('操作')")
    page.click("a.produce_badges_menu_item")
    page.wait_for_selector("#task-file")
    assert "3" in dialogs[-1]
    assert "3" in page.inner_text("#task-done")
    shot(page, "badges-01-task")
    with page.expect_download() as download:
        page.click("#task-file")
    path = Path(download.value.path())
    text = PdfReader(path).pages[0].extract_text()
    assert "周晓梅" in text and "B05000001" in text and "B05000003" in text
    db.session.expire_all()
    assert {world.person(n).status for n in ("周晓梅", "W001", "W002")} == {
        m.PersonStatus.badge_issued}


def test_gate_scan_page_shows_valid_and_refused(page, world):
    [pr_id] = approved_persons(world, "浦东医疗", 1, "Q")
    made = badges.produce_badges(actor_for_user(world.user("admin")), [pr_id])
    badge = db.session.scalars(sa.select(m.Badge)
                               .where(m.Badge.id == made.new_badge_ids[0])).one()
    token = cards([badge.id])[0].token
    clock.set_now(datetime.fromisoformat("2022-11-06T08:30:00+08:00"))
    log_in(page, "gate")
    menus = " ".join(page.locator(".navbar-nav > li > a.dropdown-toggle").all_inner_texts())
    assert "系统管理" not in menus and "报名" not in menus and "财务" not in menus
    page.goto("/gate/")
    page.fill("#token", token)
    page.fill("#gate", "南1")
    page.click("#gate-check")
    page.wait_for_selector("#gate-result[data-result='valid']")
    assert "Q000" in page.inner_text("#gate-name")
    assert page.locator("#gate-result.alert-success").count() == 1
    shot(page, "gate-01-valid")
    page.fill("#token", token[:-2] + ("xy" if not token.endswith("xy") else "zz"))
    page.click("#gate-check")
    page.wait_for_selector("#gate-result[data-result='forged']")
    assert page.locator("#gate-result.alert-danger").count() == 1
    assert page.locator("#gate-name").count() == 0
    assert page.input_value("#gate") == "南1"
    shot(page, "gate-02-forged")
    db.session.expire_all()
    results = db.session.scalars(sa.select(m.GateScan.result).order_by(m.GateScan.id)).all()
    assert results == [m.ScanResult.valid, m.ScanResult.forged]
