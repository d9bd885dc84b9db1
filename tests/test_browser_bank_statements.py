"""In Chromium: finance uploads the bank's export through the statements menu, reads the
import's report, and matches a line left over by hand to a transfer a unit declared."""
from __future__ import annotations

import os

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.conftest import ROOT, UNIT_A, Client
from tests.test_bank_statements import DATA
from tests.test_browser_smoke import log_in
from tests.test_money import declare_transfer, order_persons


def test_finance_imports_a_statement_reads_the_report_and_matches_by_hand(page, world, app):
    log_in(page, "finance")
    page.goto("/finance/statements/list/")
    page.click("#open-statement-import")
    page.wait_for_selector("#statement-import-page")
    page.set_input_files("#statement", os.path.join(DATA, "statements_icbc_gbk.csv"))
    page.click("#import-statement")
    page.wait_for_selector("#statement-report")
    assert page.inner_text("#count-imported") == "4"
    assert page.inner_text("#count-matched") == "1"         # O2022000001 in the memo
    assert page.inner_text("#count-unmatched") == "3"
    assert page.inner_text("#count-skipped") == "5"
    skipped = page.inner_text("#report-skipped")
    assert "银行手续费" in skipped and "借方（支出），不是收款" in skipped and "汇总行" in skipped
    os.makedirs(os.path.join(ROOT, "test-artifacts"), exist_ok=True)
    page.screenshot(path=os.path.join(ROOT, "test-artifacts", "statement-report.png"),
                    full_page=True)

    # Meanwhile unit A declares its transfer for 王伟's badge.
    unit = Client(app, UNIT_A)
    order = order_persons(unit, world, "王伟")
    declare_transfer(unit, order)
    transfer = db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == order.id)).one()
    line = db.session.scalars(sa.select(m.BankStatementLine).where(
        m.BankStatementLine.serial == "ICBC2022091400104")).one()

    page.goto("/finance/statements/list/")
    page.click(f"a.statement-match-link[href$='/match/{line.id}']")
    page.wait_for_selector("#match-candidates")
    page.check(f"#payment-{transfer.id}")
    page.screenshot(path=os.path.join(ROOT, "test-artifacts", "statement-match.png"),
                    full_page=True)
    page.click("#match-submit")
    page.wait_for_selector(".alert-success")
    assert "已匹配" in page.inner_text(".alert-success")
    db.session.expire_all()
    assert db.session.get(m.BankStatementLine, line.id).status is m.StatementLineStatus.matched
    assert db.session.get(m.Order, order.id).status is m.OrderStatus.paid
