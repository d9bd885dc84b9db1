"""In Chromium: the unit information form keeps every tick and every typed value when a save
is refused and names the field that was wrong; zones are ticked under their exhibition areas
and shown grouped by area once saved. The registration form keeps its choices too."""
from __future__ import annotations

import sqlalchemy as sa

from app import models as m
from app.demo import make_uscc
from app.extensions import db
from tests.conftest import UNIT_E
from tests.test_browser_journeys import log_in, shot


def ticked(page) -> list[str]:
    boxes = page.locator("input[name=zones]:checked")
    return sorted(boxes.nth(i).get_attribute("value") for i in range(boxes.count()))


def test_a_refused_save_keeps_every_tick_and_typed_value(page, world):
    log_in(page, UNIT_E, "Demo@2022")
    page.goto("/unit/info/")
    boxes = page.locator("input[name=zones]")
    for i in range(boxes.count()):
        boxes.nth(i).check()
    every = ticked(page)
    typed = {"#contact_name": "周经理", "#contact_title": "采购总监", "#contact_mobile": "12",
             "#purchase_intentions": "进口机床、工业机器人", "#reason": "寻找新的供应商"}
    for selector, value in typed.items():
        page.fill(selector, value)
    page.click("#save-info")
    page.wait_for_selector(".alert-danger")
    shot(page, "unit-info-refused-save")
    assert "联系人手机" in page.inner_text(".alert-danger")
    assert page.locator(".has-error #contact_mobile").count() == 1
    assert ticked(page) == every and len(every) == 16
    for selector, value in typed.items():
        assert page.input_value(selector) == value, selector
    registration = world.registration("杭州进出口")
    db.session.refresh(registration)
    assert registration.contact_title is None and len(registration.zones) == 3


def test_zones_are_ticked_under_their_areas_and_shown_grouped(page, world):
    log_in(page, UNIT_E, "Demo@2022")
    page.goto("/unit/info/")
    areas = page.locator("#zones-group .ciie-area")
    assert areas.count() == 6
    assert areas.nth(1).locator("h5").inner_text() == "汽车展区"
    assert areas.nth(1).locator("label").all_inner_texts() == ["汽车（综合）", "智慧出行专区"]
    for box in page.locator("input[name=zones]").all():
        box.uncheck()
    page.locator("#zones-group label", has_text="集成电路专区").click()
    page.locator("#zones-group label", has_text="人工智能专区").click()
    page.locator("#zones-group label", has_text="智慧出行专区").click()
    page.fill("#contact_mobile", "13900001111")
    page.click("#save-info")
    page.wait_for_selector(".alert-success")
    page.goto("/unit/preview/")
    lines = page.locator("#preview-zones li").all_inner_texts()
    shot(page, "unit-info-zones-preview")
    assert lines == ["汽车展区：智慧出行专区", "技术装备展区：集成电路专区、人工智能专区"]
    registration = world.registration("杭州进出口")
    db.session.refresh(registration)
    assert sorted(z.name_zh for z in registration.zones) == ["人工智能专区", "智慧出行专区",
                                                              "集成电路专区"]


def test_a_refused_registration_keeps_the_choices_made(page, world):
    page.goto("/register/new")
    page.select_option("#region", "domestic")
    page.select_option("#category", "social_organisation")
    page.wait_for_selector("#delegation option:has-text('上海交易团')", state="attached")
    page.select_option("#delegation", label="上海交易团")
    page.wait_for_selector("#sub_delegation option:has-text('浦东新区交易分团')", state="attached")
    page.select_option("#sub_delegation", label="浦东新区交易分团")
    code = make_uscc("51310115MJ4567890")
    typed = {"#name": "上海浏览器测试协会", "#name_en": "Shanghai Browser Test Association",
             "#uscc": code, "#mobile": "12", "#email": "assoc@example.com",
             "#referral_code": "PARTNER01"}
    for selector, value in typed.items():
        page.fill(selector, value)
    page.fill("#password", "Passw0rd!")
    page.fill("#confirm", "Passw0rd!")
    page.click("#register-submit")
    page.wait_for_selector(".alert-danger")
    shot(page, "register-refused")
    assert "手机号码无效" in page.inner_text(".alert-danger")
    page.wait_for_selector("#sub_delegation option:has-text('浦东新区交易分团')", state="attached")
    assert page.input_value("#region") == "domestic"
    assert page.input_value("#category") == "social_organisation"
    assert page.locator("#delegation option:checked").inner_text() == "上海交易团"
    assert page.locator("#sub_delegation option:checked").inner_text() == "浦东新区交易分团"
    for selector, value in typed.items():
        assert page.input_value(selector) == value, selector
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Unit).where(
        m.Unit.uscc == code)) == 0
