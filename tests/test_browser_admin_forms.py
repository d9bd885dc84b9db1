"""In Chromium, as an admin would: add an exhibition area, a zone under it (chosen in the
searching select), switch the zone off again by unticking "active", and change a bank's
statement layout. Forms added or changed by issue 12."""
from __future__ import annotations

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from app.workflow.statements import ensure_profiles
from tests.test_browser_smoke import log_in


def saved(page) -> None:
    page.click("form#model_form button[type=submit], form#model_form input[type=submit]")
    page.wait_for_selector(".alert-success")


def test_admin_adds_an_area_and_a_zone_then_switches_the_zone_off(page, world):
    log_in(page, "admin")
    page.goto("/admin/exhibition-areas/add")
    page.fill("#name_zh", "测试展区")
    page.fill("#name_en", "Test area")
    page.fill("#sort", "99")
    saved(page)
    page.goto("/admin/zones/add")
    page.locator(".select2-selection").first.click()
    page.locator(".select2-container--open .select2-search__field").fill("测试展区")
    page.locator(".select2-results__option", has_text="测试展区").first.click()
    page.fill("#name_zh", "测试专区")
    page.fill("#name_en", "Test zone")
    page.fill("#sort", "1")
    saved(page)
    db.session.expire_all()
    zone = db.session.scalars(sa.select(m.Zone).where(m.Zone.name_zh == "测试专区")).one()
    assert zone.parent.name_zh == "测试展区" and zone.active is True
    page.goto(f"/admin/zones/edit/{zone.id}")
    page.uncheck("#active")
    saved(page)
    db.session.expire_all()
    assert db.session.get(m.Zone, zone.id).active is False


def test_admin_changes_a_banks_statement_layout(page, world):
    ensure_profiles()
    db.session.commit()
    profile = db.session.scalars(sa.select(m.BankStatementProfile).where(
        m.BankStatementProfile.code == "ICBC")).one()
    log_in(page, "admin")
    page.goto(f"/admin/bank-profiles/edit/{profile.id}")
    page.fill("#memo_headers", "摘要|用途|附言|交易附言")
    saved(page)
    db.session.expire_all()
    assert db.session.get(m.BankStatementProfile, profile.id).memo_headers == \
        "摘要|用途|附言|交易附言"
