"""Bank statements as the banks export them (tests/data/statements_*, their shapes named in
tests/data/statements-SOURCES.md): finance uploads the file through the form, reads the
report, finds the lines listed; overlapping files add only new lines; lines are matched by the
order number in the memo, by payer and amount, or by hand; money for a paid order is an
overpayment; bad files are refused with a 4xx naming the file field; nobody but finance sees
a statement."""
from __future__ import annotations

import html
import io
import os

import pytest
import sqlalchemy as sa

from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.scoping.rules import condition
from tests.conftest import ROOT, UNIT_A, Client, text_of
from tests.test_money import declare_transfer, order_persons

DATA = os.path.join(ROOT, "tests", "data")
LS = m.StatementLineStatus


def fixture(name: str) -> bytes:
    with open(os.path.join(DATA, name), "rb") as fh:
        return fh.read()


def upload(client: Client, name: str, data: bytes, profile: int | None = None):
    form = {"statement": (io.BytesIO(data), name)}
    if profile is not None:
        form["profile"] = str(profile)
    return client.post("/finance/statements/import", data=form,
                       content_type="multipart/form-data")


def imported(client: Client, name: str, data: bytes | None = None, **kwargs):
    """Upload and follow to the report; (report page text, import record)."""
    response = upload(client, name, fixture(name) if data is None else data, **kwargs)
    assert response.status_code == 302, text_of(response)
    assert "/finance/statements/report/" in response.headers["Location"]
    page = text_of(client.get(response.headers["Location"]))
    db.session.expire_all()
    batch = db.session.scalars(sa.select(m.BankStatementImport)
                               .order_by(m.BankStatementImport.id.desc()).limit(1)).one()
    return page, batch


def counts(batch: m.BankStatementImport) -> tuple[int, ...]:
    return (batch.rows_read, batch.imported, batch.matched, batch.unmatched, batch.skipped,
            batch.duplicates)


def order(number: str) -> m.Order:
    db.session.expire_all()
    return db.session.scalars(sa.select(m.Order).where(m.Order.number == number)).one()


def lines() -> list[m.BankStatementLine]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.BankStatementLine)
                                   .order_by(m.BankStatementLine.id)))


def line_of_serial(serial: str) -> m.BankStatementLine:
    db.session.expire_all()
    return db.session.scalars(sa.select(m.BankStatementLine).where(
        m.BankStatementLine.serial == serial)).one()


@pytest.fixture
def orders(login, world):
    """O2022000002 for 王伟 with a declared transfer of unit A; O2022000003 for 李娜,
    undeclared (paid by a transfer whose memo names it). O2022000001 is the demo's."""
    client = login(UNIT_A)
    declared = order_persons(client, world, "王伟")
    declare_transfer(client, declared)
    silent = order_persons(client, world, "李娜")
    assert (declared.number, silent.number) == ("O2022000002", "O2022000003")
    return declared, silent


# ------------------------------------------------------------------- real-shaped files -------

def test_icbc_gbk_csv_with_summary_rows_is_imported_matched_and_reported(login, orders):
    finance = login("finance")
    page, batch = imported(finance, "statements_icbc_gbk.csv")
    assert batch.profile.code == "ICBC"
    # 9 rows under the header: 4 credits, a debit, a fee, a zero line, 合计 and 笔数.
    assert counts(batch) == (9, 4, 3, 1, 5, 0)
    assert batch.report["skipped"] == [[9, "debit", "¥1,500.00"], [10, "fee", "¥15.00"],
                                       [14, "zero", ""],
                                       [15, "summary", "合计 1,515.00 688.00"],
                                       [16, "summary", "笔数 7"]]
    for text in ("借方（支出），不是收款", "银行手续费", "贷方金额为零",
                 "汇总行（合计、笔数或余额），不是交易", "附言中的订单号",
                 "已申报转账的付款人和金额", "待人工匹配", "人工匹配第"):
        assert text in page, text
    assert all(order(n).status is m.OrderStatus.paid
               for n in ("O2022000001", "O2022000002", "O2022000003"))
    declared = db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == orders[0].id)).one()
    assert declared.status is m.PaymentStatus.confirmed          # the unit's declaration
    assert line_of_serial("ICBC2022091400104").payment_id == declared.id
    # The full-width, spaced, lower-case number in the memo found its order.
    full_width = line_of_serial("ICBC2022091400105")
    assert (full_width.status, full_width.match_method, full_width.order.number) == (
        LS.matched, m.StatementMatchMethod.order_number, "O2022000003")
    assert line_of_serial("ICBC2022091300101").payer_account == "6222021001012345678"
    assert line_of_serial("ICBC2022091400106").status is LS.unmatched
    listed = text_of(finance.get("/finance/statements/list/"))
    assert "某某咨询有限公司" in listed and "ICBC2022091400104" in listed
    # The report stays retrievable from the statements menu.
    imports = text_of(finance.get("/finance/statement-imports/list/"))
    assert "statements_icbc_gbk.csv" in imports
    assert finance.get(f"/finance/statements/report/{batch.id}").status_code == 200


def test_the_next_days_xls_adds_only_new_lines_and_books_an_overpayment(login, orders):
    finance = login("finance")
    imported(finance, "statements_icbc_gbk.csv")
    page, batch = imported(finance, "statements_icbc_next_day.xls")
    # Rows 8-10 are the previous day's lines again (same 流水号): not doubled.
    assert counts(batch) == (7, 1, 1, 0, 3, 3)
    assert [row for row, _line in batch.report["duplicates"]] == [8, 9, 10]
    assert len(lines()) == 5
    assert "此前已导入" in page and "多付款，待退款" in page
    again = line_of_serial("ICBC2022091500108")       # O2022000001 补缴: already paid
    assert again.status is LS.overpaid and again.order.number == "O2022000001"
    overpayment = db.session.scalars(sa.select(m.Overpayment)).one()
    assert (overpayment.order_id, overpayment.amount_fen, overpayment.reference) == (
        again.order_id, 20000, "ICBC2022091500108")
    assert overpayment.status is m.OverpaymentStatus.received
    # The same file once more: nothing new, no second overpayment.
    _page, third = imported(finance, "statements_icbc_next_day.xls")
    assert (third.imported, third.duplicates) == (0, 4)
    assert len(lines()) == 5
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Overpayment)) == 1


def test_ccb_utf8_bom_csv(login, world):
    finance = login("finance")
    page, batch = imported(finance, "statements_ccb_utf8bom.csv")
    assert batch.profile.code == "CCB"
    assert counts(batch) == (5, 2, 1, 1, 3, 0)
    assert [code for _row, code, _text in batch.report["skipped"]] == ["debit", "fee",
                                                                         "summary"]
    assert order("O2022000001").status is m.OrderStatus.paid     # "o2022000001" in 备注
    assert "杭州某贸易有限公司" in text_of(finance.get("/finance/statements/list/"))


def test_cmb_xlsx_with_full_width_order_number(login, world):
    finance = login("finance")
    page, batch = imported(finance, "statements_cmb.xlsx")
    assert batch.profile.code == "CMB"
    assert counts(batch) == (6, 2, 1, 1, 4, 0)
    assert order("O2022000001").status is m.OrderStatus.paid     # Ｏ２０２２０００００１
    donation = line_of_serial("K1234500004")
    assert donation.amount_fen == 100000 and donation.status is LS.unmatched   # "1,000.00"


def _abc_csv(rows: list[str]) -> bytes:
    """An ABC-shaped export without a serial number column, in GBK."""
    head = ["账号：1001 2890 0920 0012 345", "户名：中国国际进口博览局", "",
            "交易日期,交易时间,收入金额,支出金额,本次余额,对方户名,对方账号,交易用途"]
    return "\r\n".join(head + rows + ["合计,,888.00,0.00"]).encode("gbk")


def test_without_serial_numbers_lines_are_keyed_by_content_across_files(login, world):
    finance = login("finance")
    day1 = ["20220914,101010,88.00,,1000.00,某某咨询有限公司,6230580000012345678,会务费",
            "20220914,101011,88.00,,1088.00,某某咨询有限公司,6230580000012345678,会务费",
            "20220914,120000,150.00,,1238.00,另一公司,6230580000099999999,订金"]
    _page, first = imported(finance, "abc-0914.csv", _abc_csv(day1))
    assert first.profile.code == "ABC"
    # Two identical payments in one statement are two lines.
    assert (first.imported, first.duplicates) == (3, 0)
    day2 = day1[1:] + ["20220915,090000,300.00,,1538.00,另一公司,6230580000099999999,尾款"]
    _page, second = imported(finance, "abc-0914-0915.csv", _abc_csv(day2))
    # The overlapping day: its two lines are the first and second "会务费" and "订金" again.
    assert (second.imported, second.duplicates) == (1, 2)
    assert len(lines()) == 4


def test_bocom_single_amount_with_a_debit_credit_column(login, world):
    finance = login("finance")
    text = ("交通银行 账户交易明细\r\n账号,310066726018010012345\r\n"
            "交易日期,交易时间,借贷标志,发生额,余额,对方账号,对方户名,摘要,附言,流水号\r\n"
            "2022-09-14,10:00:00,贷,\"1,200.00\",5000.00,1001 2345 6789,上海浦东医疗器械有限公司,"
            "汇入,O2022 000001 证件费,BC0001\r\n"
            "2022-09-14,10:05:00,借,35.00,4965.00,,,手续费,,BC0002\r\n"
            "2022-09-14,10:06:00,?,35.00,4965.00,,,,,BC0003\r\n")
    _page, batch = imported(finance, "bocom.csv", text.encode("gbk"))
    assert batch.profile.code == "BOCOM"
    assert [code for _row, code, _text in batch.report["skipped"]] == ["fee", "bad_direction"]
    # O2022000001 costs 200.00: 1,200.00 is no exact payment, finance matches it by hand.
    assert (batch.imported, batch.unmatched) == (1, 1)
    assert lines()[0].amount_fen == 120000


def test_boc_web_page_saved_as_xls_with_signed_amounts(login, world):
    """Some internet banks save their "Excel" export as an HTML table (here in GBK)."""
    finance = login("finance")
    cells = [["交易类型", "付款人账号", "付款人名称", "交易日期", "交易金额", "交易后余额",
              "交易流水号", "摘要", "交易附言"],
             ["来账", "1001 2345 6789", "上海浦东医疗器械有限公司", "20220914", "200.00",
              "9,200.00", "BOC778001", "汇入", "订单O2022000001"],
             ["往账", "", "", "20220914", "-1,000.00", "8,200.00", "BOC778002", "转账", "房租"],
             ["合计", "", "", "", "-800.00", "", "", "", ""]]
    table = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells)
    data = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312">'
            f"</head><body><p>中国银行 交易明细</p><table>{table}</table></body></html>"
            ).encode("gbk")
    _page, batch = imported(finance, "boc-export.xls", data)
    assert batch.profile.code == "BOC"
    assert [code for _row, code, _text in batch.report["skipped"]] == ["debit", "summary"]
    assert batch.matched == 1 and order("O2022000001").status is m.OrderStatus.paid


def test_admin_configures_a_bank_and_finance_picks_it(login, world):
    admin = login("admin")
    response = admin.post("/admin/bank-profiles/add", data={
        "code": "spdb", "name_zh": "上海浦东发展银行", "name_en": "SPD Bank",
        "date_headers": "记账日", "credit_headers": "收款金额", "debit_headers": "付款金额",
        "payer_name_headers": "对手户名", "memo_headers": "备注", "date_formats": "%Y.%m.%d",
        "active": "y"})
    assert response.status_code == 302, text_of(response)
    profile = db.session.scalars(sa.select(m.BankStatementProfile).where(
        m.BankStatementProfile.code == "SPDB")).one()
    assert login("finance").get("/admin/bank-profiles/list/").status_code in (302, 403)
    data = "记账日,收款金额,付款金额,对手户名,备注\n2022.09.14,200.00,,浦东医疗,O2022000001\n"
    _page, batch = imported(login("finance"), "spdb.csv", data.encode(), profile=profile.id)
    assert batch.profile_id == profile.id and batch.matched == 1


# ------------------------------------------------------------------------ matching -----------

def test_a_memo_naming_another_order_is_not_matched_by_payer_and_amount(login, world):
    client = login(UNIT_A)
    declared = order_persons(client, world, "王伟")
    declare_transfer(client, declared)
    data = ("交易日期,贷方金额,借方金额,对方户名,对方账号,摘要,流水号\n"
            "2022-09-14,200.00,,上海浦东医疗器械有限公司,1001,O2022000099,X1\n"
            "2022-09-14,200.00,,上海浦东医疗器械有限公司,1001,证件费,X2\n").encode("gbk")
    _page, batch = imported(login("finance"), "two.csv", data)
    assert batch.report["matched"][0][1:] == [line_of_serial("X2").id, declared.number,
                                              "payer_amount"]
    assert line_of_serial("X1").status is LS.unmatched


def test_hand_matching_picks_a_declared_transfer_and_is_audited(login, world):
    finance = login("finance")
    imported(finance, "statements_icbc_gbk.csv")      # no orders 2 and 3 yet: rows left
    payer_line = line_of_serial("ICBC2022091400104")   # 上海浦东医疗器械, 200.00
    stranger = line_of_serial("ICBC2022091400106")     # 88.00
    assert payer_line.status is LS.unmatched
    client = login(UNIT_A)
    declared = order_persons(client, world, "王伟")
    declare_transfer(client, declared)
    transfer = db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == declared.id)).one()
    # Wrong amount: refused with the reason, nothing changed.
    response = finance.post(f"/finance/statements/match/{stranger.id}",
                            data={"order_number": declared.number})
    assert response.status_code == 409 and "金额不一致" in text_of(response)
    assert line_of_serial("ICBC2022091400106").status is LS.unmatched
    page = text_of(finance.get(f"/finance/statements/match/{payer_line.id}"))
    assert transfer.number in page and declared.number in page
    response = finance.post(f"/finance/statements/match/{payer_line.id}",
                            data={"payment_id": str(transfer.id)})
    assert response.status_code == 302, text_of(response)
    line = line_of_serial("ICBC2022091400104")
    assert (line.status, line.match_method, line.payment_id) == (
        LS.matched, m.StatementMatchMethod.hand, transfer.id)
    assert order(declared.number).status is m.OrderStatus.paid
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "bank_statement_line",
        m.AuditEvent.record_id == line.id)).all()
    assert {"match", "match_by_hand"} <= {a.action for a in audit}
    assert all(a.actor_name for a in audit)
    # From the wrong state: refused.
    response = finance.post(f"/finance/statements/match/{payer_line.id}",
                            data={"order_number": "O2022000001"})
    assert response.status_code == 409 and "已匹配" in text_of(response)


def test_hand_matching_to_a_paid_order_is_an_overpayment(login, world):
    finance = login("finance")
    imported(finance, "statements_icbc_gbk.csv")       # row 8 pays O2022000001
    assert order("O2022000001").status is m.OrderStatus.paid
    line = line_of_serial("ICBC2022091400105")          # 200.00 for the unknown O2022000003
    response = finance.post(f"/finance/statements/match/{line.id}",
                            data={"order_number": "ｏ２０２２０００００１"})
    assert response.status_code == 302, text_of(response)
    line = line_of_serial("ICBC2022091400105")
    assert line.status is LS.overpaid and line.match_method is m.StatementMatchMethod.hand
    overpayment = db.session.scalars(sa.select(m.Overpayment)).one()
    assert (overpayment.amount_fen, overpayment.reference) == (20000, "ICBC2022091400105")


def test_a_line_proving_a_transfer_finance_confirmed_is_that_money(login, orders):
    """Finance confirms a declared transfer from its voucher; the statement then brings the
    same money: the line proves that payment and is no overpayment. A second line of the same
    amount for that order is."""
    finance = login("finance")
    declared = db.session.scalars(sa.select(m.Payment).where(
        m.Payment.order_id == orders[0].id)).one()
    finance.action("/finance/transfers", "confirm_transfers", [declared.id])
    assert order("O2022000002").status is m.OrderStatus.paid
    imported(finance, "statements_icbc_gbk.csv")
    line = line_of_serial("ICBC2022091400104")
    assert (line.status, line.payment_id) == (LS.matched, declared.id)
    assert db.session.scalars(sa.select(m.Overpayment).where(
        m.Overpayment.order_id == orders[0].id)).all() == []
    again = line_of_serial("ICBC2022091400106")       # unmatched 200.00 from an unknown payer
    response = finance.post(f"/finance/statements/match/{again.id}",
                            data={"order_number": "O2022000002"})
    assert response.status_code == 302, text_of(response)
    assert line_of_serial("ICBC2022091400106").status is LS.overpaid
    assert len(db.session.scalars(sa.select(m.Overpayment).where(
        m.Overpayment.order_id == orders[0].id)).all()) == 1


def test_no_one_but_finance_matches_or_imports(login, world):
    imported(login("finance"), "statements_icbc_gbk.csv")
    line = line_of_serial("ICBC2022091400106")
    for username in (UNIT_A, "sh-delegation", "reviewer"):
        client = login(username)
        assert client.post(f"/finance/statements/match/{line.id}",
                           data={"order_number": "O2022000001"}).status_code in (302, 403)
        assert upload(client, "statements_cmb.xlsx",
                      fixture("statements_cmb.xlsx")).status_code in (302, 403)
    assert line_of_serial("ICBC2022091400106").status is LS.unmatched
    assert db.session.scalar(sa.select(sa.func.count()).select_from(
        m.BankStatementImport)) == 1


# ------------------------------------------------------------------------ bad files ----------

def _nothing_imported() -> None:
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.BankStatementLine)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(
        m.BankStatementImport)) == 0


@pytest.mark.parametrize("name,data,words", [
    ("statement.pdf", b"%PDF-1.4 not a statement", "不接受此类文件"),
    ("statement.csv", b"\x89PNG\r\n\x1a\n" + bytes(64), "不是 CSV 或 Excel"),
    ("statement.csv", b"", "文件为空"),
    ("statement.csv", "名称,数量\n苹果,3\n".encode("gbk"), "没有找到含日期列和贷方"),
    ("statement.xlsx", b"PK\x03\x04 damaged", "已损坏"),
])
def test_bad_files_are_refused_naming_the_field(login, world, name, data, words):
    response = upload(login("finance"), name, data)
    page = text_of(response)
    assert response.status_code == 400
    assert "银行流水文件" in page and words in page
    _nothing_imported()


def test_bad_files_are_refused_in_the_users_language(login, world):
    finance = login("finance")
    finance.set_language("en")
    response = upload(finance, "statement.txt", b"")
    assert response.status_code == 400
    assert 'Check "Bank statement file": the file is empty.' in html.unescape(text_of(response))
    _nothing_imported()


def test_too_large_uploads_are_refused(login, world):
    finance = login("finance")
    big = fixture("statements_icbc_gbk.csv") + b"," * (6 * 1024 * 1024)
    response = upload(finance, "big.csv", big)
    assert response.status_code == 400 and "银行流水文件" in text_of(response)
    assert "超过 5 MB" in text_of(response)
    response = upload(finance, "huge.csv", b"0" * (20 * 1024 * 1024))
    assert response.status_code == 413 and "上传" in text_of(response)
    _nothing_imported()


# --------------------------------------------------------------------------- scope -----------

def test_finance_sees_statement_lines_others_see_none(login, world):
    finance = login("finance")
    _page, batch = imported(finance, "statements_icbc_gbk.csv")
    line = lines()[0]
    listed = text_of(finance.get("/finance/statements/list/"))
    assert "ICBC2022091300101" in listed and "某某咨询有限公司" in listed
    assert finance.get(f"/finance/statements/show/{line.id}").status_code == 200
    assert finance.get(f"/finance/statements/match/{line.id}").status_code == 200
    for username in (UNIT_A, "sh-delegation", "reviewer"):
        client = login(username)
        for url in ("/finance/statements/list/", f"/finance/statements/show/{line.id}",
                    f"/finance/statements/match/{line.id}",
                    f"/finance/statements/report/{batch.id}", "/finance/statements/import",
                    "/finance/statement-imports/list/", "/finance/statements/download/x.csv",
                    "/admin/bank-profiles/list/"):
            response = client.get(url)
            assert response.status_code in (302, 403, 404), (username, url)
            assert "ICBC2022091300101" not in text_of(response)
        actor = actor_for_user(world.user(username))
        assert str(condition(m.BankStatementLine, actor)) == "false"
        assert str(condition(m.BankStatementImport, actor)) == "false"
    actor = actor_for_user(world.user("finance"))
    assert str(condition(m.BankStatementLine, actor)) == "true"
