"""In Chromium: a delegation approves a unit, tags its persons and locks a whole filtered batch
after a confirmation that shows how many rows it touches."""
from __future__ import annotations

import os

from app import models as m
from app.extensions import db
from tests.conftest import ROOT
from tests.test_browser_smoke import log_in


def shot(page, name: str) -> None:
    os.makedirs(os.path.join(ROOT, "test-artifacts"), exist_ok=True)
    page.screenshot(path=os.path.join(ROOT, "test-artifacts", f"{name}.png"), full_page=True)


def run_action(page, label: str) -> None:
    page.click("button.dropdown-toggle:has-text('操作')")
    page.click(f"a:has-text('{label}')")


def test_delegation_reviews_tags_and_locks_a_batch(page, world):
    dialogs = []

    def answer(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    log_in(page, "sh-delegation")
    xuhui = world.registration("徐汇贸易")
    page.goto("/delegation/units/list/?_flt_0_status=submitted")
    page.check(f"input.action_check[value='{xuhui.id}']")
    run_action(page, "审核通过")
    page.wait_for_selector(".alert-success")
    assert "1 条" in dialogs[-1]
    db.session.expire_all()
    assert world.registration("徐汇贸易").status is m.UnitStatus.approved

    zhao, sun = world.person("赵敏"), world.person("孙磊")
    listing = "/delegation/persons/list/?_flt_2_unit_name=徐汇&_flt_0_status=submitted"
    page.goto(listing)
    page.check(f"input.action_check[value='{zhao.id}']")
    run_action(page, "标注为专业观众")
    page.wait_for_selector(".alert-success")
    page.goto(listing)
    page.check(f"input.action_check[value='{sun.id}']")
    run_action(page, "标注为工作人员")
    page.wait_for_selector(".alert-success")
    shot(page, "delegation-01-tagged")

    # Lock every row matching the filter (not only the ticked ones), after a confirmation.
    page.goto(listing + "&psize_DelegationPersonView=1")
    page.check("#all-matching")
    run_action(page, "锁定提交")
    page.wait_for_selector(".alert-success")
    assert "全部 2 条" in dialogs[-1]
    shot(page, "delegation-02-locked")
    db.session.expire_all()
    assert world.person("赵敏").status is m.PersonStatus.awaiting_payment
    assert world.person("孙磊").status is m.PersonStatus.awaiting_review


def test_a_large_list_confirms_all_matching_rows_with_their_exact_number(page, world, app):
    """Past LIST_COUNT_LIMIT a list says "more than N"; the confirmation asks for the exact
    number before acting on every matching row."""
    dialogs = []

    def answer(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    from app.scoping.actor import actor_for_user
    from app.workflow.units import approve_units

    approve_units(actor_for_user(world.user("sh-delegation")),
                  [world.registration("徐汇贸易").id])
    default, app.config["LIST_COUNT_LIMIT"] = app.config["LIST_COUNT_LIMIT"], 1
    try:
        log_in(page, "sh-delegation")
        page.goto("/delegation/persons/list/?_flt_0_status=submitted&_flt_2_unit_name=徐汇")
        assert "超过 1 条" in page.inner_text(".well")
        page.check("#all-matching")
        run_action(page, "标注为专业观众")
        page.wait_for_selector(".alert-success")
    finally:
        app.config["LIST_COUNT_LIMIT"] = default
    assert "全部 2 条" in dialogs[-1]
    db.session.expire_all()
    assert {world.person(n).tag for n in ("赵敏", "孙磊")} == {m.Tag.visitor}
