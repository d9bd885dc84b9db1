"""In Chromium: the whole journey of a new unit (with the 5-second autosave surviving a closed
tab) and of a returning unit proving itself by an e-mail code."""
from __future__ import annotations

import os
import re

import sqlalchemy as sa

from app import models as m
from app.demo import make_ric, make_uscc
from app.extensions import db
from tests.conftest import ROOT
from tests.test_scoping import PDF
from tests.test_unit_journey import png

CODE = make_uscc("91310104MA1W2X3Y4")


def shot(page, name: str) -> None:
    os.makedirs(os.path.join(ROOT, "test-artifacts"), exist_ok=True)
    page.screenshot(path=os.path.join(ROOT, "test-artifacts", f"{name}.png"), full_page=True)


def log_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in")
    page.wait_for_selector("#home")


def test_new_unit_journey(browser, live_server, world, tmp_path):
    context = browser.new_context(base_url=live_server, locale="zh-CN")
    page = context.new_page()
    page.goto("/login/")
    page.click("#register-new")
    page.click("#start-new")
    page.select_option("#region", "domestic")
    page.select_option("#category", "enterprise")
    page.wait_for_selector("#delegation option:has-text('上海交易团')", state="attached")
    page.select_option("#delegation", label="上海交易团")
    page.wait_for_selector("#sub_delegation option:has-text('徐汇区交易分团')", state="attached")
    page.select_option("#sub_delegation", label="徐汇区交易分团")
    page.fill("#name", "上海浏览器测试有限公司")
    page.fill("#uscc", CODE.lower())
    page.fill("#mobile", "13912340000")
    page.fill("#email", "browser@example.com")
    page.fill("#password", "Passw0rd!")
    page.fill("#confirm", "Passw0rd!")
    shot(page, "journey-new-01-form")
    page.click("#register-submit")
    page.wait_for_selector("#register-done")
    assert page.inner_text("#new-login") == CODE
    page.click("#continue")

    # Type, let the autosave run, close the tab without saving.
    page.wait_for_selector("#unit-info-form")
    page.fill("#contact_name", "浏览器联系人")
    page.fill("#purchase_intentions", "自动保存的采购意向")
    # A selector, not wait_for_function: the CSP refuses the eval that one would need.
    page.wait_for_selector("#autosave-status:has-text('保存')", timeout=12000)
    assert re.search(r"\d\d:\d\d:\d\d", page.inner_text("#autosave-status"))
    shot(page, "journey-new-02-autosaved")
    context.close()

    # Log in again in a new browser: the text is there.
    context = browser.new_context(base_url=live_server, locale="zh-CN")
    page = context.new_page()
    log_in(page, CODE, "Passw0rd!")
    page.goto("/unit/info/")
    assert page.input_value("#contact_name") == "浏览器联系人"
    assert page.input_value("#purchase_intentions") == "自动保存的采购意向"
    page.fill("#contact_mobile", "13912340001")
    page.fill("#contact_email", "contact@example.com")
    page.fill("#reason", "寻找进口医疗设备")
    page.check("input[name=zones] >> nth=0")
    page.click("#save-info")
    page.wait_for_selector(".alert-success")

    pdf = tmp_path / "licence.pdf"
    pdf.write_bytes(PDF)
    page.goto("/unit/documents/add")
    page.set_input_files("#file", str(pdf))
    page.click("button[type=submit]")
    page.wait_for_selector("text=licence.pdf")

    photo = tmp_path / "photo.png"
    photo.write_bytes(png())
    page.goto("/unit/persons/add")
    page.fill("#name", "浏览器人员")
    page.select_option("#gender", "female")
    page.select_option("#id_type", "mainland_id")
    page.fill("#id_number", make_ric("31010419920202002"))
    page.fill("#mobile", "13600001111")
    page.check("input[name=entry_dates][value='2022-11-05']")
    page.set_input_files("#photo", str(photo))
    page.click("button[type=submit]")
    page.wait_for_selector("img.ciie-thumb")
    shot(page, "journey-new-03-persons")

    page.goto("/unit/preview/")
    assert "待提交人数：1" in page.inner_text("#unsubmitted-count")
    page.click("#confirm-submit")
    page.wait_for_selector(".alert-success")
    page.goto("/")
    assert page.get_attribute("#step-review", "data-state") == "current"
    assert page.get_attribute("#step-persons", "data-state") == "done"
    shot(page, "journey-new-04-progress")
    context.close()

    registration = db.session.scalars(sa.select(m.UnitRegistration).join(m.Unit)
                                      .where(m.Unit.uscc == CODE)).one()
    assert registration.status is m.UnitStatus.submitted
    assert registration.sub_delegation.code == "SH-XH"


def test_returning_unit_journey(browser, live_server, world, smtp_server):
    context = browser.new_context(base_url=live_server, locale="zh-CN")
    page = context.new_page()
    page.goto("/register/")
    page.click("#start-returning")
    page.fill("#login", "91310115MA1H7G8K32")
    page.click("#send-email")
    page.wait_for_selector("#sent-email")
    [message] = smtp_server.wait_for(1)
    code = re.search(r"\d{6}", message.get_content()).group()
    page.fill("#code-email", code)
    page.click("#check-email")
    page.wait_for_selector("#unit-info-form")
    assert page.input_value("#contact_name") == "钱经理"
    assert "进口食品" in page.input_value("#purchase_intentions")
    shot(page, "journey-returning-01-carried-forward")

    page.goto("/unit/previous-persons/")
    qian = db.session.scalars(sa.select(m.Person).where(m.Person.name == "钱峰")).one()
    page.check(f"#carry-{qian.id}")
    page.check(f"#reuse-{qian.id}")
    shot(page, "journey-returning-02-previous-persons")
    page.click("#carry-forward")
    page.wait_for_selector("text=钱峰")
    row = page.locator("tr", has_text="钱峰")
    assert "专业观众" in row.inner_text() and "是" in row.inner_text()
    context.close()
