"""Paper invoices in batches (issue 13): finance uploads a list (an openpyxl workbook, a
hand-written GBK CSV) of order numbers with the printed invoice numbers, or with tracking
numbers; the preview says which rows apply and why the others are refused (unknown order,
wrong state, duplicate number, bad format) and changes nothing; the confirmation applies them in
one transaction through the invoice's moves (audited, each row checked again). Bad files are a
400 naming the field; no one but finance reaches the page."""
from __future__ import annotations

import io
import re

import pytest
import sqlalchemy as sa
from openpyxl import Workbook

from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import invoices
from tests.conftest import UNIT_A, text_of

IS = m.InvoiceStatus
IK = m.InvoiceKind
BATCH = "/finance/invoices/batch"


def make_invoice(world, number: str, unit: str = "上海浦东医疗器械", kind: IK = IK.paper_special,
                 status: IS = IS.requested, invoice_number: str | None = None) -> m.Invoice:
    """A paid order of the unit with its invoice request (what the unit's request leaves)."""
    edition = db.session.scalars(sa.select(m.Edition).where(m.Edition.is_current)).one()
    owner = world.unit(unit)
    order = m.Order(number=number, edition=edition, unit=owner, status=m.OrderStatus.paid,
                    fee_fen=20000, amount_fen=20000)
    db.session.add(order)
    db.session.flush()
    invoice = m.Invoice(order_id=order.id, unit_id=owner.id, kind=kind, status=status,
                        amount_fen=20000, buyer_name=owner.name, number=invoice_number)
    db.session.add(invoice)
    db.session.commit()
    return invoice


@pytest.fixture
def requests(world) -> dict[str, m.Invoice]:
    """Paper invoice requests of two units, an e-invoice request, one already issued."""
    made = {
        "a1": make_invoice(world, "O2022000101"),
        "a2": make_invoice(world, "O2022000102"),
        "b1": make_invoice(world, "O2022000103", unit="上海徐汇贸易"),
        "e": make_invoice(world, "O2022000104", kind=IK.e_normal),
        "issued": make_invoice(world, "O2022000105", status=IS.issued,
                               invoice_number="44009999"),
        "twice": make_invoice(world, "O2022000106"),
    }
    return {k: v.id for k, v in made.items()}


def xlsx(rows: list[list]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def upload(client, data: bytes, name: str, mode: str = "issue", carrier: str = ""):
    return client.post(BATCH, data={"mode": mode, "carrier": carrier,
                                    "invoice_list": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def preview_rows(response) -> dict[int, str]:
    """{row number in the file: the preview's text of that row}."""
    html = response.data.decode()
    return {int(n): re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()
            for n, body in re.findall(r'<tr class="[^"]*" data-row="(\d+)">(.*?)</tr>', html,
                                      flags=re.S)}


def batch_key(response) -> str:
    return re.search(r'name="batch" value="([^"]+)"', response.data.decode())[1]


def invoice(invoice_id: int) -> m.Invoice:
    db.session.expire_all()
    return db.session.get(m.Invoice, invoice_id)


def states(ids: dict[str, int]) -> dict[str, tuple]:
    db.session.expire_all()
    return {k: (invoice(i).status, invoice(i).number, invoice(i).tracking_no)
            for k, i in ids.items()}


ISSUE_LIST = [
    ["订单", "发票号码"],                     # the headers of finance's own invoice export
    ["O2022000101", 44001001],                # a number typed as a number in Excel
    ["O2022 000102", "4400 1002"],            # spaces as typed
    ["O2022000103", "44001003"],
    ["O2099000001", "44001004"],              # unknown order
    ["O2022000104", "44001005"],              # an e-invoice request
    ["O2022000105", "44001006"],              # already issued
    ["O2022000106", "44001007"],              # the same order twice
    ["O2022000106", "44001008"],
    [None, None],                             # a blank row is no row
    ["O2022000101", "12AB"],                  # bad format (and the order is listed twice)
]


def test_issue_from_an_xlsx_list_previews_then_applies_in_one_go(login, world, requests):
    finance = login("finance")
    before = states(requests)
    response = upload(finance, xlsx(ISSUE_LIST), "纸质发票.xlsx")
    assert response.status_code == 200
    rows = preview_rows(response)
    assert sorted(rows) == [2, 3, 4, 5, 6, 7, 8, 9, 11]
    assert "上海徐汇贸易" in rows[4] and "44001003" in rows[4] and "可执行" in rows[4]
    assert "没有该订单的开票申请" in rows[5]
    assert "电子发票由系统开具" in rows[6]
    assert "已开具" in rows[7] and "拒绝" in rows[7]
    assert "多次" in rows[8] and "多次" in rows[9]
    # Order O2022000101 is listed twice (rows 2 and 11): neither applies; row 11 is malformed.
    assert "多次" in rows[2] and "8 至 20 位数字" in rows[11]
    assert "44001002" in rows[3] and "可执行" in rows[3]
    assert "2 / 9" in text_of(response) or "9 行中 2 行" in text_of(response)
    # The preview changes nothing.
    assert states(requests) == before

    result = finance.post(f"{BATCH}/confirm", data={"batch": batch_key(response)})
    assert result.status_code == 200
    assert "已完成 2 条" in text_of(result)
    after = states(requests)
    assert after["a2"] == (IS.issued, "44001002", None)
    assert after["b1"] == (IS.issued, "44001003", None)
    for untouched in ("a1", "e", "issued", "twice"):
        assert after[untouched] == before[untouched]
    issued = invoice(requests["b1"])
    assert issued.issued_at is not None
    [audit] = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "invoice", m.AuditEvent.record_id == issued.id)).all()
    assert (audit.action, audit.from_state, audit.to_state, audit.actor_name) == (
        "issue", "requested", "issued", "finance")
    assert "纸质发票.xlsx" in audit.reason
    # The list applied once: confirming again changes nothing and says so.
    again = finance.post(f"{BATCH}/confirm", data={"batch": batch_key(response)})
    assert again.status_code == 302
    assert "已经执行" in text_of(finance.get(again.headers["Location"]))
    assert states(requests) == after


# Written by hand as finance's spreadsheet saves it on a Chinese Windows: GBK, CRLF.
MAIL_CSV = ("订单号,快递公司,快递单号\r\n"
            "O2022000105,顺丰速运,SF1234567890\r\n"
            "O2022000107,,YT 9876 5432 10\r\n"
            "O2022000101,顺丰速运,SF1234567891\r\n"
            "O2022000108,中国邮政,\r\n").encode("gbk")


def test_mark_mailed_from_a_gbk_csv_with_a_carrier_for_the_whole_list(
        login, world, requests, smtp_server):
    second = make_invoice(world, "O2022000107", status=IS.issued, invoice_number="44009998")
    make_invoice(world, "O2022000108", status=IS.issued, invoice_number="44009997")
    finance = login("finance")
    response = upload(finance, MAIL_CSV, "mailed.csv", mode="mail", carrier="圆通速递")
    assert response.status_code == 200
    rows = preview_rows(response)
    assert "顺丰速运" in rows[2] and "SF1234567890" in rows[2] and "可执行" in rows[2]
    assert "圆通速递" in rows[3] and "YT9876543210" in rows[3] and "可执行" in rows[3]
    # Requested, not issued yet: it cannot be mailed.
    assert "已申请" in rows[4] and "拒绝" in rows[4]
    assert "没有快递单号" in rows[5]

    result = finance.post(f"{BATCH}/confirm", data={"batch": batch_key(response)})
    assert "已完成 2 条" in text_of(result)
    mailed = invoice(requests["issued"])
    assert (mailed.status, mailed.carrier, mailed.tracking_no) == (
        IS.mailed, "顺丰速运", "SF1234567890")
    assert (invoice(second.id).carrier, invoice(second.id).tracking_no) == (
        "圆通速递", "YT9876543210")
    assert invoice(requests["a1"]).status is IS.requested
    # Each unit is told, as for one invoice mailed by hand.
    bodies = [msg.get_content() for msg in smtp_server.wait_for(2)]
    assert sum("SF1234567890" in b for b in bodies) == 1
    assert sum("YT9876543210" in b for b in bodies) == 1


def test_an_invoice_moved_after_the_preview_is_refused_at_confirmation(login, world, requests):
    finance = login("finance")
    response = upload(finance, xlsx([["Order", "Invoice number"], ["O2022000101", "44002001"],
                                     ["O2022000102", "44002002"]]), "list.xlsx")
    assert sum("可执行" in r for r in preview_rows(response).values()) == 2
    # Meanwhile the unit withdraws one request.
    invoices.withdraw_requests(actor_for_user(world.user(UNIT_A)), [requests["a1"]])
    result = finance.post(f"{BATCH}/confirm", data={"batch": batch_key(response)})
    assert "已完成 1 条" in text_of(result)
    assert "已撤回" in text_of(result)
    assert invoice(requests["a1"]).status is IS.withdrawn
    assert (invoice(requests["a2"]).status, invoice(requests["a2"]).number) == (
        IS.issued, "44002002")


def test_a_number_taken_since_the_preview_is_refused_with_the_list(login, world, requests):
    finance = login("finance")
    response = upload(finance, xlsx([["订单号", "发票号码"], ["O2022000101", "44003001"],
                                     ["O2022000102", "44003002"]]), "list.xlsx")
    invoices.issue_paper(actor_for_user(world.user("finance")), requests["b1"], "44003002")
    result = finance.post(f"{BATCH}/confirm", data={"batch": batch_key(response)})
    assert "已完成 1 条" in text_of(result) and "该发票号码已被其他发票使用" in text_of(result)
    assert invoice(requests["a1"]).number == "44003001"
    assert invoice(requests["a2"]).status is IS.requested


@pytest.mark.parametrize("data, name, message", [
    (b"%PDF-1.4 not a list", "list.pdf", "请选择 Excel（.xlsx）或 CSV 文件"),
    (b"", "list.csv", "文件为空"),
    (b"PK\x03\x04broken", "list.xlsx", "文件无法读取"),
    ("发票,金额\r\n44001001,200\r\n".encode("gbk"), "list.csv", "未找到"),
])
def test_a_file_that_cannot_be_read_is_a_400_naming_the_field(login, world, requests, data,
                                                                name, message):
    finance = login("finance")
    before = states(requests)
    response = upload(finance, data, name)
    assert response.status_code == 400
    assert "纸质发票清单" in text_of(response) and message in text_of(response)
    assert states(requests) == before
    assert finance.post(f"{BATCH}/confirm", data={"batch": "x"}).status_code == 302


def test_no_file_or_a_wrong_choice_is_a_400(login, world, requests):
    finance = login("finance")
    response = finance.post(BATCH, data={"mode": "issue"}, content_type="multipart/form-data")
    assert response.status_code == 400 and "纸质发票清单" in text_of(response)
    response = upload(finance, xlsx([["订单", "发票号码"]]), "list.xlsx", mode="void")
    assert response.status_code == 400 and "清单用途" in text_of(response)


def test_english_preview(login, world, requests):
    finance = login("finance")
    finance.set_language("en")
    response = upload(finance, xlsx([["Order number", "Invoice number"],
                                     ["O2099000001", "44004001"], ["O2022000101", "4400"]]),
                      "list.xlsx")
    rows = preview_rows(response)
    assert "no invoice request of this order" in rows[2]
    assert "not an invoice number (8 to 20 digits)" in rows[3]
    assert "Apply the 0 rows that apply" in text_of(response)


@pytest.mark.parametrize("username", [UNIT_A, "sh-delegation", "reviewer"])
def test_only_finance_uploads_a_list(login, world, requests, username):
    client = login(username)
    before = states(requests)
    assert client.get(BATCH).status_code in (302, 403)
    response = upload(client, xlsx([["订单", "发票号码"], ["O2022000101", "44005001"]]),
                      "list.xlsx")
    assert response.status_code in (302, 403)
    assert client.post(f"{BATCH}/confirm", data={"batch": "x"}).status_code in (302, 403)
    assert states(requests) == before
    assert 'id="open-paper-invoice-batch"' not in client.get(
        "/finance/invoices/list/").data.decode()
    finance = login("finance")
    assert 'id="open-paper-invoice-batch"' in finance.get("/finance/invoices/list/").data.decode()


def test_the_exported_queue_filled_in_comes_back_as_the_list(login, world, requests):
    """The page's promise: export the paper requests, type the numbers, upload the file."""
    from openpyxl import load_workbook

    from tests.test_exports import download, start_export

    finance = login("finance")
    data = download(finance, start_export(
        finance, "/finance/invoices", "?_flt_0_status=requested&_flt_0_kind=paper_special"))
    workbook = load_workbook(io.BytesIO(data))
    sheet = workbook.worksheets[0]
    header = [c.value for c in sheet[1]]
    number_column, order_column = header.index("发票号码") + 1, header.index("订单") + 1
    orders = []
    for n, row in enumerate(range(2, sheet.max_row + 1), start=1):
        orders.append(sheet.cell(row, order_column).value)
        sheet.cell(row, number_column, f"4400700{n}")
    assert sorted(orders) == ["O2022000101", "O2022000102", "O2022000103", "O2022000106"]
    out = io.BytesIO()
    workbook.save(out)
    response = upload(finance, out.getvalue(), "queue.xlsx")
    assert sum("可执行" in r for r in preview_rows(response).values()) == 4
    finance.post(f"{BATCH}/confirm", data={"batch": batch_key(response)})
    assert {k: v[0] for k, v in states(requests).items() if k in ("a1", "a2", "b1", "twice")} \
        == dict.fromkeys(("a1", "a2", "b1", "twice"), IS.issued)
