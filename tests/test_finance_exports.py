"""Finance's Excel exports (issue 13): payments, the bank-transfer queue, refunds and bank
statement lines, each from its list with the list's filters, as a background task run as the
user. Headers and labels in the user's language, money as numbers in yuan, Beijing times, a
formula typed by a payer kept as text; no one but finance starts one, and the rows are always
those of the actor's scope."""
from __future__ import annotations

import io
import re
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from app import exports
from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from tests.conftest import UNIT_A, UNIT_B
from tests.test_exports import download, start_export

PS = m.PaymentStatus
Ch = m.PaymentChannel
FORMULA = '=HYPERLINK("http://example.com","x")'
CONFIRMED_AT = datetime.fromisoformat("2022-09-14T02:30:00+00:00")


def order(world, number: str, unit: str, status=m.OrderStatus.pending,
          amount: int = 20000) -> m.Order:
    edition = db.session.scalars(sa.select(m.Edition).where(m.Edition.is_current)).one()
    made = m.Order(number=number, edition=edition, unit=world.unit(unit), status=status,
                   fee_fen=20000, amount_fen=amount)
    db.session.add(made)
    db.session.flush()
    return made


@pytest.fixture
def money(world) -> dict:
    """Two units' payments (a transfer whose payer typed a formula, an Alipay payment partly
    refunded, a confirmed transfer), a refund, and two statement lines."""
    a = order(world, "O2022000201", "上海浦东医疗器械")
    b = order(world, "O2022000202", "上海徐汇贸易", m.OrderStatus.paid, 40000)
    c = order(world, "O2022000203", "上海徐汇贸易", m.OrderStatus.paid)
    transfer = m.Payment(number="P2022000201", order_id=a.id, channel=Ch.transfer,
                         status=PS.pending, amount_fen=20000, payer_name=FORMULA,
                         payer_bank="中国银行上海市分行", payer_account="6222000011112222",
                         remitted_on=date(2022, 9, 13))
    alipay = m.Payment(number="P2022000202", order_id=b.id, channel=Ch.alipay,
                       status=PS.confirmed, amount_fen=40000, refunded_fen=20000,
                       provider_trade_no="2022091422001400001234567890",
                       confirmed_at=CONFIRMED_AT)
    confirmed = m.Payment(number="P2022000203", order_id=c.id, channel=Ch.transfer,
                          status=PS.confirmed, amount_fen=20000, payer_name="上海徐汇贸易有限公司",
                          confirmed_at=CONFIRMED_AT)
    db.session.add_all([transfer, alipay, confirmed])
    db.session.flush()
    db.session.add(m.Refund(number="R2022000201", payment_id=alipay.id, unit_id=b.unit_id,
                            status=m.RefundStatus.requested, amount_fen=20000,
                            route=m.RefundRoute.original))
    for n, (amount, memo, status, method, paid) in enumerate([
            (20000, "O2022000203 证件费", m.StatementLineStatus.matched,
             m.StatementMatchMethod.order_number, confirmed),
            (12345, FORMULA, m.StatementLineStatus.unmatched, None, None)], start=1):
        db.session.add(m.BankStatementLine(
            file_hash="f" * 64, line_no=n + 1, booked_on=date(2022, 9, 14), amount_fen=amount,
            reference=memo, payer_name="上海徐汇贸易有限公司", payer_account="3100000000",
            status=status, match_method=method, payment_id=paid and paid.id,
            order_id=paid and paid.order_id, dedupe_key=f"{n}" * 64, serial=f"SER{n}"))
    db.session.commit()
    return {"transfer": transfer.id, "alipay": alipay.id, "confirmed": confirmed.id}


def export(client, view: str, query: str = "") -> tuple[list, list[dict]]:
    """The header and each row as {header: cell}; cells kept to read their type."""
    data = download(client, start_export(client, view, query))
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    header, *rows = list(sheet.iter_rows())
    names = [c.value for c in header]
    return names, [dict(zip(names, row, strict=True)) for row in rows]


def values(rows: list[dict]) -> list[dict]:
    return [{k: c.value for k, c in row.items()} for row in rows]


def test_payments_in_chinese_with_money_as_numbers_and_beijing_times(login, world, money):
    names, rows = export(login("finance"), "/finance/payments")
    assert names == ["编号", "订单", "支付方式", "状态", "金额", "已退款", "付款单位",
                     "支付渠道交易号", "确认时间"]
    by_number = {r["编号"].value: r for r in rows}
    assert set(by_number) == {"P2022000201", "P2022000202", "P2022000203"}
    alipay = by_number["P2022000202"]
    assert {k: c.value for k, c in alipay.items()} == {
        "编号": "P2022000202", "订单": "O2022000202", "支付方式": "支付宝", "状态": "已确认",
        "金额": 400, "已退款": 200, "付款单位": None,
        "支付渠道交易号": "2022091422001400001234567890",
        # 02:30 UTC is 10:30 in Beijing.
        "确认时间": "2022-09-14 10:30"}
    assert alipay["金额"].data_type == "n" and alipay["金额"].number_format == "#,##0.00"
    # A formula typed as the payer's name is text, never a formula.
    cell = by_number["P2022000201"]["付款单位"]
    assert cell.data_type == "s" and cell.value == FORMULA


def test_payments_in_english(login, world, money):
    client = login("finance")
    client.set_language("en")
    names, rows = export(client, "/finance/payments", "?_flt_0_channel=alipay")
    assert names == ["Number", "Order", "Payment method", "Status", "Amount", "Refunded",
                     "Payer", "Provider's trade number", "Confirmed at"]
    assert values(rows) == [{
        "Number": "P2022000202", "Order": "O2022000202", "Payment method": "Alipay",
        "Status": "Confirmed", "Amount": 400, "Refunded": 200, "Payer": None,
        "Provider's trade number": "2022091422001400001234567890",
        "Confirmed at": "2022-09-14 10:30"}]


def listed_numbers(client, path: str, name: str, query: str = "") -> list[str]:
    joiner = "&" if query else "?"
    page = client.get(f"{path}/list/{query}{joiner}psize_{name}=100").data.decode()
    return re.findall(r"<td>\s*(P\d{10}|R\d{10})\s*</td>", page)


@pytest.mark.parametrize("query", ["", "?_flt_0_status=pending", "?_flt_0_status=confirmed"])
def test_transfers_are_the_rows_of_the_queue_in_its_order(login, world, money, query):
    client = login("finance")
    names, rows = export(client, "/finance/transfers", query)
    numbers = [r["编号"].value for r in rows]
    assert numbers == listed_numbers(client, "/finance/transfers", "FinanceTransferView", query)
    # Only transfers, never the Alipay payment, oldest first as the queue lists them.
    assert "P2022000202" not in numbers and numbers == sorted(numbers)
    assert names == ["编号", "订单", "单位", "状态", "金额", "付款单位", "付款银行", "付款账号",
                     "汇款日期", "驳回原因"]


def test_a_pending_transfer_reads_as_the_queue_shows_it(login, world, money):
    names, rows = export(login("finance"), "/finance/transfers", "?_flt_0_status=pending")
    [row] = values(rows)
    assert row == {"编号": "P2022000201", "订单": "O2022000201",
                   "单位": "上海浦东医疗器械有限公司", "状态": "处理中", "金额": 200,
                   "付款单位": FORMULA, "付款银行": "中国银行上海市分行",
                   "付款账号": "6222000011112222", "汇款日期": "2022-09-13", "驳回原因": None}


def test_refunds(login, world, money):
    names, rows = export(login("finance"), "/finance/refunds")
    assert names == ["编号", "单位", "支付记录", "支付方式", "退款方式", "金额", "状态",
                     "尝试次数", "创建时间", "退款时间"]
    [row] = values(rows)
    assert row["编号"] == "R2022000201" and row["单位"] == "上海徐汇贸易有限公司"
    assert (row["支付记录"], row["支付方式"], row["退款方式"]) == (
        "P2022000202", "支付宝", "原路退回")
    assert (row["金额"], row["状态"], row["尝试次数"], row["退款时间"]) == (
        200, "已申请", "0", None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row["创建时间"])


def test_statement_lines(login, world, money):
    client = login("finance")
    names, rows = export(client, "/finance/statements")
    assert names == ["流水行", "入账日期", "金额", "摘要/附言", "付款单位", "付款账号",
                     "银行流水号", "状态", "匹配方式", "订单", "支付记录"]
    matched, unmatched = sorted(values(rows), key=lambda r: r["银行流水号"])
    assert (matched["入账日期"], matched["金额"], matched["订单"], matched["支付记录"]) == (
        "2022-09-14", 200, "O2022000203", "P2022000203")
    assert matched["状态"] == "已匹配" and matched["匹配方式"] == "附言中的订单号"
    assert unmatched["金额"] == 123.45 and unmatched["订单"] is None
    formula = [r for r in rows if r["银行流水号"].value == "SER2"][0]["摘要/附言"]
    assert formula.data_type == "s" and formula.value == FORMULA
    # The list's filter applies.
    _names, rows = export(client, "/finance/statements", "?_flt_0_status=unmatched")
    assert [r["银行流水号"].value for r in rows] == ["SER2"]


# Each list with a filter of its own.
FINANCE_LISTS = {"/finance/payments": "_flt_0_status=pending",
                 "/finance/transfers": "_flt_0_status=pending",
                 "/finance/refunds": "_flt_0_status=requested",
                 "/finance/statements": "_flt_0_status=unmatched"}


@pytest.mark.parametrize("username", ["sh-delegation", "sh-pudong", UNIT_A, UNIT_B, "reviewer"])
def test_no_one_but_finance_exports_finance_rows(login, world, money, username):
    client = login(username)
    for path in FINANCE_LISTS:
        assert client.post(f"{path}/export").status_code == 403, path
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.BackgroundTask)) == 0


def test_finance_lists_offer_the_export(login, world, money):
    finance = login("finance")
    for path, query in FINANCE_LISTS.items():
        page = finance.get(f"{path}/list/?{query}").data.decode()
        assert 'id="export-xlsx"' in page, path
        assert f'action="{path}/export?{query}"' in page, path


def run_as(world, username: str, operation, filters=None) -> list[list]:
    """Run the export's operation as `username` (as a forged task would) and read its rows."""
    from app import storage

    result = operation(actor_for_user(world.user(username)),
                       {"filters": filters or [], "language": "zh"}, lambda *_: None)
    with open(storage.path_of(result["file_key"]), "rb") as fh:
        sheet = load_workbook(io.BytesIO(fh.read())).worksheets[0]
    return [list(r) for r in sheet.iter_rows(min_row=2, values_only=True)]


def test_an_export_holds_only_the_rows_of_its_actors_scope(world, money):
    """The permission keeps others out of the page; the scope holds even if a task ran."""
    assert [r[0] for r in run_as(world, UNIT_B, exports.export_payments)] == [
        "P2022000203", "P2022000202"]
    assert [r[0] for r in run_as(world, UNIT_A, exports.export_transfers)] == ["P2022000201"]
    assert [r[0] for r in run_as(world, UNIT_A, exports.export_refunds)] == []
    for operation in (exports.export_payments, exports.export_transfers,
                      exports.export_refunds, exports.export_statements):
        assert run_as(world, "sh-delegation", operation) == []
    assert run_as(world, UNIT_B, exports.export_statements) == []
    assert len(run_as(world, "finance", exports.export_statements)) == 2
