"""In Chromium, a Shanghai delegation clerk whose list holds an industry delegation's unit
rolled up into Shanghai (read-only): the filtered list shows its filters with the search panel
open, the read-only row has nothing to tick, "all matching" confirms only the rows the action
can change and says what it skips, and a batch's refusals lead to the report, its Excel file
and back to the same filtered list."""
from __future__ import annotations

from openpyxl import load_workbook

from app import models as m
from app.extensions import db
from tests.test_browser_delegation import run_action, shot
from tests.test_browser_smoke import log_in


def test_a_delegation_acts_only_on_rows_it_may_change_and_reads_the_report(page, world):
    dialogs = []

    def answer(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    rollup, xuhui = world.registration("生物制药"), world.registration("徐汇贸易")
    log_in(page, "sh-delegation")

    # One row a page, so that "all matching" is offered; the filter is shown and open.
    units = "/delegation/units/list/?_flt_0_status=submitted&psize_DelegationUnitView=1"
    page.goto(units + "&_oc_DelegationUnitView=id&_od_DelegationUnitView=desc")
    assert "状态 等于 “已提交”" in page.inner_text("#active-filters")
    assert page.is_visible("#filter_form")
    assert page.locator(f"tr[data-pk='{rollup.id}']").count() == 1
    assert page.locator(f"tr[data-pk='{rollup.id}'] input.action_check").count() == 0
    page.check("#all-matching")
    run_action(page, "审核通过")
    page.wait_for_selector(".alert-success")
    assert "2 条记录中的 1 条" in dialogs[-1] and "1 条只读" in dialogs[-1]
    db.session.expire_all()
    assert db.session.get(m.UnitRegistration, xuhui.id).status is m.UnitStatus.approved
    assert db.session.get(m.UnitRegistration, rollup.id).status is m.UnitStatus.submitted

    # Of all its units none is left to approve (two approved, the roll-up read-only): nothing
    # is sent, and the clerk is told why instead of being asked to confirm.
    page.goto("/delegation/units/list/?psize_DelegationUnitView=1")
    assert page.locator("#active-filters").count() == 0
    assert not page.is_visible("#filter_form")
    asked = len(dialogs)
    page.check("#all-matching")
    run_action(page, "审核通过")
    page.wait_for_selector("#modal-alert .modal-text:has-text('无需处理')")
    alert = page.inner_text("#modal-alert .modal-text")
    assert "3 条" in alert and "1 条只读" in alert and "2 条状态为" in alert
    shot(page, "batches-01-nothing-to-do")
    assert len(dialogs) == asked
    db.session.expire_all()
    assert db.session.get(m.UnitRegistration, rollup.id).status is m.UnitStatus.submitted

    # Lock every submitted person: the roll-up's is skipped, the two untagged ones refused.
    persons = "/delegation/persons/list/?_flt_0_status=submitted&psize_DelegationPersonView=1"
    page.goto(persons)
    page.check("#all-matching")
    run_action(page, "锁定提交")
    page.wait_for_selector(".alert-warning #batch-report-link")
    assert "3 条记录中的 2 条" in dialogs[-1] and "1 条只读" in dialogs[-1]
    page.click("#batch-report-link")
    page.wait_for_selector("#task-reasons")
    shot(page, "batches-02-report")
    assert "请先标注人员标签" in page.inner_text("#task-reasons")
    assert page.locator(".refused-row").count() == 2
    assert sorted(page.locator(".refused-row td:nth-child(2)").all_inner_texts()) == \
        sorted(["赵敏", "孙磊"])
    with page.expect_download() as download:
        page.click("#task-report-xlsx")
    assert download.value.suggested_filename.endswith(".xlsx")
    with open(download.value.path(), "rb") as workbook:
        sheet = load_workbook(workbook).active
    assert sorted(row[1] for row in sheet.iter_rows(min_row=2, values_only=True)) == \
        sorted(["赵敏", "孙磊"])
    page.click("#task-back")
    page.wait_for_selector("#active-filters")
    assert "_flt_0_status=submitted" in page.url and "/delegation/persons/list/" in page.url
