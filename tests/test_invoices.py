"""VAT invoices on real PostgreSQL: e-invoices made as PDFs by a job (read back as text), paper
special invoices issued and mailed by finance, voiding (red-letter reversal for an e-invoice,
confirmed return for paper), one active invoice per order, wrong states, scoping."""
from __future__ import annotations

import io
import os
from datetime import date

import pytest
import sqlalchemy as sa
from flask_babel import force_locale
from pypdf import PdfReader

from app import create_app, storage
from app import models as m
from app.demo import make_uscc
from app.extensions import db
from app.scoping.actor import SYSTEM, actor_for_user
from app.workflow import WorkflowError, invoices, payments
from tests.conftest import UNIT_A, UNIT_B, Client, base_config, run_worker, text_of
from tests.test_scoping import PDF, Upload

IS = m.InvoiceStatus
IK = m.InvoiceKind
OTHER_PAYER = "上海浦东医疗器械集团有限公司"
OTHER_PAYER_CODE = make_uscc("91310115MA1K9XY00")


# ------------------------------------------------------------------------- helpers ---------

def unit_a(world) -> m.Unit:
    return world.unit("上海浦东医疗器械")


def demo_order(world) -> m.Order:
    return db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()


def pay_by_qr(world) -> m.Order:
    """Unit A pays its pending demo order by Alipay; the gateway's notification confirms it."""
    order = demo_order(world)
    actor = actor_for_user(world.user(UNIT_A))
    payment = payments.start_online_payment(actor, order.id, m.PaymentChannel.alipay)
    assert payments.confirm_online_payment(payment.number, "ALI-0001", payment.amount_fen,
                                           SYSTEM)
    return order


def pay_by_transfer(world, payer: str = OTHER_PAYER, tax_id: str | None = OTHER_PAYER_CODE
                    ) -> m.Order:
    """Unit A's demo order paid by a bank transfer from `payer`, confirmed by finance."""
    order = demo_order(world)
    payment = payments.submit_transfer(
        actor_for_user(world.user(UNIT_A)), order.id, payer, "6222 0000 1111 2222",
        "中国银行上海市分行", date(2022, 9, 14), Upload(PDF, "voucher.pdf"), tax_id)
    result = payments.confirm_transfers(actor_for_user(world.user("finance")), [payment.id])
    assert result.done == [payment.id]
    return order


def special_buyer(world, **changes: str) -> dict:
    unit = unit_a(world)
    data = {"kind": "paper_special", "buyer_name": unit.name, "buyer_tax_id": unit.uscc,
            "buyer_address": "上海市浦东新区张江路100号", "buyer_phone": "021-50000000",
            "buyer_bank": "招商银行上海张江支行", "buyer_account": "121900000010001"}
    data.update(changes)
    return data


def ask(client: Client, order: m.Order, **form: str):
    return client.post(f"/unit/invoices/request/{order.id}", data=form)


def all_invoices() -> list[m.Invoice]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Invoice).order_by(m.Invoice.id)))


def pdf_text(key: str) -> str:
    with open(storage.path_of(key), "rb") as fh:
        return "".join(page.extract_text() for page in PdfReader(io.BytesIO(fh.read())).pages)


def audit(invoice_id: int) -> list[tuple[str, str | None, str | None, str]]:
    rows = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "invoice", m.AuditEvent.record_id == invoice_id)
        .order_by(m.AuditEvent.id))
    return [(a.action, a.from_state, a.to_state, a.actor_name) for a in rows]


def english(client: Client) -> Client:
    client.set_language("en")
    return client


def e_invoice(world, login) -> m.Invoice:
    """Unit A's QR-paid demo order with an issued e-invoice."""
    order = pay_by_qr(world)
    response = ask(login(UNIT_A), order, kind="e_normal", buyer_name=unit_a(world).name,
                   buyer_tax_id=UNIT_A)
    assert response.status_code == 302
    [invoice] = all_invoices()
    assert invoice.status is IS.issued
    return invoice


def paper_invoice(world, login, mailed: bool = True) -> m.Invoice:
    """Unit A's QR-paid demo order with a paper special invoice issued (and mailed)."""
    order = pay_by_qr(world)
    assert ask(login(UNIT_A), order, **special_buyer(world)).status_code == 302
    [invoice] = all_invoices()
    finance = actor_for_user(world.user("finance"))
    invoices.issue_paper(finance, invoice.id, "44001234")
    if mailed:
        invoices.mail_paper(finance, invoice.id, "顺丰速运", "SF1234567890")
    db.session.expire_all()
    return invoice


# ------------------------------------------------------------------------- e-invoice -------

def test_e_invoice_is_made_as_a_pdf_and_downloaded_in_scope(login, world, smtp_server):
    order = pay_by_qr(world)
    unit = unit_a(world)
    client = login(UNIT_A)
    # The paid order links to the request form, pre-filled with the unit (QR payment).
    assert f"/unit/invoices/request/{order.id}" in client.get("/unit/orders/list/").text
    form = client.get(f"/unit/invoices/request/{order.id}").text
    assert unit.name in form and UNIT_A in form and "readonly" not in form

    assert ask(client, order, kind="e_normal", buyer_name=unit.name,
               buyer_tax_id=UNIT_A.lower()).status_code == 302
    [invoice] = all_invoices()
    assert (invoice.status, invoice.kind, invoice.amount_fen) == (IS.issued, IK.e_normal, 20000)
    assert invoice.buyer_tax_id == UNIT_A and not invoice.buyer_locked
    assert invoice.number and invoice.issued_at and invoice.pdf_key
    assert os.path.exists(storage.path_of(invoice.pdf_key))
    assert not invoice.pdf_key.startswith("static")
    assert [a[:3] for a in audit(invoice.id)] == [("request", None, "requested"),
                                                   ("issue", "requested", "issued")]
    assert [a[3] for a in audit(invoice.id)] == [UNIT_A, "system"]

    text = pdf_text(invoice.pdf_key)
    assert unit.name in text and invoice.number in text and UNIT_A in text
    assert "¥200.00" in text and "O2022000001" in text

    listing = client.get("/unit/invoices/list/").text
    link = f"/unit/invoices/download/{invoice.pdf_key}"
    assert link in listing
    own = client.get(link)
    assert own.status_code == 200 and own.data.startswith(b"%PDF")
    assert own.mimetype == "application/pdf"
    assert f"invoice-{invoice.number}.pdf" in own.headers["Content-Disposition"]
    finance = login("finance").get(f"/finance/invoices/download/{invoice.pdf_key}")
    assert finance.status_code == 200 and finance.data == own.data
    other = login(UNIT_B)
    assert other.get(link).status_code == 404
    assert other.get(f"/unit/invoices/show/{invoice.id}").status_code == 404
    assert invoice.number not in other.get("/unit/invoices/list/").text
    # The order no longer offers a request while its invoice is active.
    assert f"/unit/invoices/request/{order.id}" not in client.get("/unit/orders/list/").text

    ready = [msg for msg in smtp_server.wait_for(2)
             if invoice.number in msg.get_content()]
    assert len(ready) == 1 and ready[0]["To"] == unit.email


def test_e_invoice_pdf_is_made_by_a_real_worker(database_url, smtp_server, redis_url, world,
                                                 worker_env):
    redis_app = create_app("test", **{**base_config(database_url, smtp_server.port),
                                      "REDIS_URL": redis_url})
    order = pay_by_qr(world)
    response = ask(Client(redis_app, UNIT_A), order, kind="e_normal",
                   buyer_name=unit_a(world).name, buyer_tax_id=UNIT_A)
    assert response.status_code == 302
    [invoice] = all_invoices()
    assert invoice.status is IS.requested and invoice.pdf_key is None  # queued, not run

    env = dict(worker_env, UPLOAD_FOLDER=redis_app.config["UPLOAD_FOLDER"])
    result = run_worker(env)
    assert result.returncode == 0, result.stderr
    [invoice] = all_invoices()
    assert invoice.status is IS.issued and invoice.number in pdf_text(invoice.pdf_key)
    # A redelivered job changes nothing.
    assert invoices.make_pdf(invoice.id) == "skipped"
    assert all_invoices()[0].pdf_key == invoice.pdf_key


def test_an_e_invoice_whose_pdf_failed_stays_requested_and_finance_makes_it_again(
        login, world, monkeypatch):
    from app.documents import invoices as invoice_pdf

    order = pay_by_qr(world)

    def no_font(_document):
        raise RuntimeError("no CJK TrueType font for invoice PDFs")

    with monkeypatch.context() as patched:
        patched.setattr(invoice_pdf, "render", no_font)
        assert ask(login(UNIT_A), order, kind="e_normal",
                   buyer_name=unit_a(world).name).status_code == 302
    [invoice] = all_invoices()
    assert invoice.status is IS.requested and invoice.number is None
    assert invoices.active_invoice_exists(order.id)

    assert login(UNIT_A).action("/finance/invoices", "regenerate_e_invoices",
                                [invoice.id]).status_code == 403
    assert login("finance").action("/finance/invoices", "regenerate_e_invoices",
                                   [invoice.id]).status_code == 302
    [invoice] = all_invoices()
    assert invoice.status is IS.issued and invoice.pdf_key


# ---------------------------------------------------------------- special (paper) ----------

def test_special_invoice_needs_a_complete_valid_buyer(login, world):
    order = pay_by_qr(world)
    client = english(login(UNIT_A))
    missing = ask(client, order, **special_buyer(world, buyer_tax_id="", buyer_bank=""))
    assert missing.status_code == 200
    assert "missing: taxpayer ID, bank" in text_of(missing)
    wrong = ask(client, order, **special_buyer(world, buyer_tax_id="91310115MA1K4AB30X"))
    assert "check digit" in text_of(wrong)
    short = ask(client, order, **special_buyer(world, buyer_tax_id="9131011"))
    assert "18 characters" in text_of(short)
    assert all_invoices() == []
    assert not invoices.active_invoice_exists(order.id)

    assert ask(client, order, **special_buyer(world)).status_code == 302
    [invoice] = all_invoices()
    assert (invoice.kind, invoice.status, invoice.buyer_bank) == (
        IK.paper_special, IS.requested, "招商银行上海张江支行")
    assert invoice.pdf_key is None and invoice.number is None  # finance issues paper ones


def test_transfer_buyer_is_the_payer_and_cannot_be_changed(login, world):
    order = pay_by_transfer(world)
    client = english(login(UNIT_A))
    form = client.get(f"/unit/invoices/request/{order.id}").text
    assert OTHER_PAYER in form and OTHER_PAYER_CODE in form and "readonly" in form

    # Another buyer (the unit itself) is refused, not silently replaced: nothing is created.
    refused = ask(client, order, **special_buyer(world))
    assert refused.status_code == 200
    assert "cannot be changed" in text_of(refused)
    assert all_invoices() == []
    changed_bank = ask(client, order, **special_buyer(
        world, buyer_name=OTHER_PAYER, buyer_tax_id=OTHER_PAYER_CODE, buyer_bank="别的银行",
        buyer_account="6222000011112222"))
    assert "cannot be changed" in text_of(changed_bank) and all_invoices() == []

    # Sending only what the payment does not hold (as the read-only form does, or leaving the
    # locked fields empty) takes the payer's data.
    assert ask(client, order, kind="paper_special", buyer_address="上海市黄浦区中山东一路1号",
               buyer_phone="021-63210000").status_code == 302
    [invoice] = all_invoices()
    assert invoice.buyer_locked
    assert (invoice.buyer_name, invoice.buyer_tax_id, invoice.buyer_bank,
            invoice.buyer_account) == (OTHER_PAYER, OTHER_PAYER_CODE, "中国银行上海市分行",
                                       "6222 0000 1111 2222")
    assert invoice.buyer_address == "上海市黄浦区中山东一路1号"


def test_b2b_buyer_is_the_paying_unit(login, world):
    order = demo_order(world)
    actor = actor_for_user(world.user(UNIT_A))
    payment = payments.start_online_payment(actor, order.id, m.PaymentChannel.b2b)
    assert payments.confirm_online_payment(payment.number, "B2B-0001", payment.amount_fen,
                                           SYSTEM)
    client = english(login(UNIT_A))
    refused = ask(client, order, kind="e_normal", buyer_name=OTHER_PAYER,
                  buyer_tax_id=OTHER_PAYER_CODE)
    assert "cannot be changed" in text_of(refused) and all_invoices() == []
    # The gateway reported no payer: the B2B account is the unit's own.
    assert ask(client, order, kind="e_normal").status_code == 302
    [invoice] = all_invoices()
    assert (invoice.buyer_name, invoice.buyer_tax_id, invoice.buyer_locked) == (
        unit_a(world).name, UNIT_A, True)
    assert invoice.status is IS.issued


def test_finance_issues_and_mails_a_paper_invoice_and_the_unit_sees_the_logistics(
        login, world, smtp_server):
    order = pay_by_transfer(world, payer=unit_a(world).name, tax_id=None)
    unit_client = login(UNIT_A)
    assert ask(unit_client, order, kind="paper_special", buyer_address="上海市浦东新区张江路100号",
               buyer_phone="021-50000000").status_code == 302
    [invoice] = all_invoices()
    # The unit paid itself and recorded no taxpayer ID: its own code is the payer's.
    assert invoice.buyer_tax_id == UNIT_A and invoice.buyer_locked

    finance = login("finance")
    assert invoice.buyer_name in finance.get("/finance/invoices/list/?_flt_0_status="
                                             "requested").text
    page = finance.get(f"/finance/invoices/issue/{invoice.id}")
    assert page.status_code == 200 and "021-50000000" in page.text
    assert finance.post(f"/finance/invoices/issue/{invoice.id}",
                        data={"number": "4400 1234"}).status_code == 302
    db.session.expire_all()
    assert (invoice.status, invoice.number) == (IS.issued, "44001234")
    assert invoice.issued_at is not None and invoice.pdf_key is None
    assert f"/unit/invoices/logistics/{invoice.id}" not in unit_client.get(
        "/unit/invoices/list/").text

    assert finance.post(f"/finance/invoices/mail/{invoice.id}",
                        data={"carrier": "顺丰速运", "tracking_no": "SF1234567890"}
                        ).status_code == 302
    db.session.expire_all()
    assert (invoice.status, invoice.carrier, invoice.tracking_no) == (
        IS.mailed, "顺丰速运", "SF1234567890")
    assert [a[0] for a in audit(invoice.id)] == ["request", "issue", "mail"]
    assert audit(invoice.id)[1][3] == "finance"

    listing = unit_client.get("/unit/invoices/list/").text
    assert f"/unit/invoices/logistics/{invoice.id}" in listing
    logistics = text_of(unit_client.get(f"/unit/invoices/logistics/{invoice.id}"))
    assert "顺丰速运" in logistics and "SF1234567890" in logistics
    assert login(UNIT_B).get(f"/unit/invoices/logistics/{invoice.id}").status_code == 404
    mailed = [msg for msg in smtp_server.wait_for(2) if "SF1234567890" in msg.get_content()]
    assert len(mailed) == 1 and mailed[0]["To"] == unit_a(world).email


def test_finance_rejects_a_request_and_the_unit_asks_again(login, world, smtp_server):
    order = pay_by_qr(world)
    client = login(UNIT_A)
    assert ask(client, order, **special_buyer(world, buyer_name="错误的抬头")).status_code == 302
    [wrong] = all_invoices()
    assert invoices.active_invoice_exists(order.id)
    assert login("finance").action("/finance/invoices", "reject_invoices", [wrong.id],
                                   reason="抬头与税号不符").status_code == 302
    db.session.expire_all()
    assert (wrong.status, wrong.reject_reason) == (IS.rejected, "抬头与税号不符")
    assert not invoices.active_invoice_exists(order.id)
    assert any("抬头与税号不符" in msg.get_content() for msg in smtp_server.wait_for(2))
    assert f"/unit/invoices/request/{order.id}" in client.get("/unit/orders/list/").text
    assert ask(client, order, **special_buyer(world)).status_code == 302
    assert [i.status for i in all_invoices()] == [IS.rejected, IS.requested]


# ------------------------------------------------------------------------- voiding ---------

def test_voiding_an_e_invoice_adds_a_linked_red_letter_reversal(login, world):
    original = e_invoice(world, login)
    before = (original.number, original.buyer_name, original.buyer_tax_id, original.amount_fen,
              original.pdf_key, original.issued_at, original.order_id)
    client = login(UNIT_A)
    assert client.action("/unit/invoices", "request_void", [original.id],
                         reason="抬头需要更换").status_code == 302

    first, reversal = all_invoices()
    assert first.id == original.id and first.status is IS.voided
    assert (first.number, first.buyer_name, first.buyer_tax_id, first.amount_fen, first.pdf_key,
            first.issued_at, first.order_id) == before
    assert reversal.reversal_of_id == original.id and reversal.status is IS.issued
    assert reversal.kind is IK.e_normal and reversal.number not in (None, original.number)
    assert (reversal.buyer_name, reversal.buyer_tax_id, reversal.amount_fen,
            reversal.order_id) == (first.buyer_name, first.buyer_tax_id, 20000, first.order_id)
    assert reversal.pdf_key and reversal.pdf_key != original.pdf_key
    text = pdf_text(reversal.pdf_key)
    assert reversal.number in text and original.number in text and "-¥200.00" in text
    # The original PDF is kept as it was.
    assert "-¥200.00" not in pdf_text(original.pdf_key)
    assert [a[:3] for a in audit(original.id)] == [
        ("request", None, "requested"), ("issue", "requested", "issued"),
        ("request_void", "issued", "void_requested"), ("reverse", "void_requested", "voided")]
    assert audit(original.id)[2][3] == UNIT_A and audit(original.id)[3][3] == "system"
    # Requested from the invoicing platform, then issued by it (the sandbox here).
    assert [a[0] for a in audit(reversal.id)] == ["reversal", "issue"]

    listing = client.get("/unit/invoices/list/").text
    assert f"/unit/invoices/download/{reversal.pdf_key}" in listing
    assert not invoices.active_invoice_exists(original.order_id)
    # A reversal is never voided itself; the order can be invoiced again.
    assert client.action("/unit/invoices", "request_void", [reversal.id],
                         reason="再次作废").status_code == 302
    assert all_invoices()[1].status is IS.issued and len(all_invoices()) == 2
    assert ask(client, demo_order(world), kind="e_normal",
               buyer_name=unit_a(world).name).status_code == 302
    assert [i.status for i in all_invoices()] == [IS.voided, IS.issued, IS.issued]
    assert invoices.active_invoice_exists(original.order_id)


def test_voiding_a_paper_invoice_waits_for_it_to_come_back(login, world):
    invoice = paper_invoice(world, login)
    client = login(UNIT_A)
    assert client.action("/unit/invoices", "request_void", [invoice.id],
                         reason="税号有误").status_code == 302
    [invoice] = all_invoices()
    assert invoice.status is IS.void_requested
    assert invoices.active_invoice_exists(invoice.order_id)
    refused = english(client)
    page = ask(refused, demo_order(world), **special_buyer(world))
    assert "already requested or issued" in text_of(page) and len(all_invoices()) == 1

    assert client.action("/finance/invoices", "confirm_returned", [invoice.id]
                         ).status_code == 403
    assert login("finance").action("/finance/invoices", "confirm_returned", [invoice.id]
                                   ).status_code == 302
    [invoice] = all_invoices()
    assert (invoice.status, invoice.number, invoice.tracking_no) == (
        IS.voided, "44001234", "SF1234567890")
    assert [a[0] for a in audit(invoice.id)][-2:] == ["request_void", "void"]
    assert not invoices.active_invoice_exists(invoice.order_id)
    assert ask(client, demo_order(world), **special_buyer(world)).status_code == 302
    assert [i.status for i in all_invoices()] == [IS.voided, IS.requested]


def test_an_issued_paper_invoice_not_yet_mailed_can_be_voided(login, world):
    invoice = paper_invoice(world, login, mailed=False)
    result = invoices.request_void(actor_for_user(world.user(UNIT_A)), [invoice.id], "税号有误")
    assert result.done == [invoice.id] and all_invoices()[0].status is IS.void_requested


# ----------------------------------------------------------- one active invoice, states ----

def test_active_invoice_exists_follows_the_states(login, world):
    order = pay_by_qr(world)
    unit = actor_for_user(world.user(UNIT_A))
    finance = actor_for_user(world.user("finance"))
    assert not invoices.active_invoice_exists(order.id)
    invoice = invoices.request_invoice(unit, order.id, IK.paper_special, invoices.BuyerData(
        name="上海浦东医疗器械有限公司", tax_id=UNIT_A, address="张江路100号", phone="021-1",
        bank="招商银行", account="1219"))
    seen = [invoices.active_invoice_exists(order.id)]                # requested
    invoices.issue_paper(finance, invoice.id, "44000001")
    seen.append(invoices.active_invoice_exists(order.id))            # issued
    invoices.mail_paper(finance, invoice.id, "EMS", "EMS0001")
    seen.append(invoices.active_invoice_exists(order.id))            # mailed
    invoices.request_void(unit, [invoice.id], "税号有误")
    seen.append(invoices.active_invoice_exists(order.id))            # void_requested
    invoices.confirm_returned(finance, [invoice.id])
    seen.append(invoices.active_invoice_exists(order.id))            # voided
    again = invoices.request_invoice(unit, order.id, IK.e_normal,
                                     invoices.BuyerData(name="上海浦东医疗器械有限公司"))
    seen.append(invoices.active_invoice_exists(order.id))            # issued (e-invoice)
    assert seen == [True, True, True, True, False, True]
    invoices.request_void(unit, [again.id], "抬头有误")
    assert not invoices.active_invoice_exists(order.id)              # voided by its reversal
    third = invoices.request_invoice(unit, order.id, IK.paper_special, invoices.BuyerData(
        name="x", tax_id=UNIT_A, address="a", phone="p", bank="b", account="c"))
    invoices.reject_requests(finance, [third.id], "错误")
    assert not invoices.active_invoice_exists(order.id)              # rejected


def test_one_active_invoice_per_order(login, world):
    invoice = e_invoice(world, login)
    client = english(login(UNIT_A))
    page = ask(client, demo_order(world), kind="e_normal", buyer_name="另一个抬头")
    assert "already requested or issued" in text_of(page)
    assert client.get(f"/unit/invoices/request/{invoice.order_id}").status_code == 302
    with pytest.raises(WorkflowError):
        invoices.request_invoice(actor_for_user(world.user(UNIT_A)), invoice.order_id,
                                 IK.paper_special, invoices.BuyerData(name="x"))
    assert len(all_invoices()) == 1
    # The database holds it too, whatever the code does.
    db.session.add(m.Invoice(order_id=invoice.order_id, unit_id=invoice.unit_id,
                             kind=IK.e_normal, status=IS.requested, amount_fen=1,
                             buyer_name="x"))
    with pytest.raises(sa.exc.IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_unpaid_orders_are_not_invoiced(login, world):
    order = demo_order(world)  # pending
    client = english(login(UNIT_A))
    assert f"/unit/invoices/request/{order.id}" not in client.get("/unit/orders/list/").text
    page = client.get(f"/unit/invoices/request/{order.id}")
    assert page.status_code == 409 and "Only a paid order" in text_of(page)
    assert ask(client, order, kind="e_normal", buyer_name="x").status_code == 409
    assert all_invoices() == []


def test_wrong_states_are_refused_with_a_reason(login, world):
    with force_locale("en"):
        wrong_states(world)


def wrong_states(world) -> None:
    order = pay_by_qr(world)
    unit = actor_for_user(world.user(UNIT_A))
    finance = actor_for_user(world.user("finance"))
    paper = invoices.request_invoice(unit, order.id, IK.paper_special, invoices.BuyerData(
        name="上海浦东医疗器械有限公司", tax_id=UNIT_A, address="张江路100号", phone="021-1",
        bank="招商银行", account="1219"))
    # Voiding a requested invoice, mailing before issue.
    result = invoices.request_void(unit, [paper.id], "wrong buyer")
    assert result.done == [] and "Requested" in str(result.refused[0].reason)
    with pytest.raises(WorkflowError, match="Requested"):
        invoices.mail_paper(finance, paper.id, "EMS", "E1")
    invoices.issue_paper(finance, paper.id, "44000001")
    with pytest.raises(WorkflowError, match="Issued"):             # issuing twice
        invoices.issue_paper(finance, paper.id, "44000002")
    assert invoices.confirm_returned(finance, [paper.id]).done == []  # not asked to void
    with pytest.raises(WorkflowError):
        invoices.issue_paper(finance, paper.id, "12ab")               # not a printed number
    result = invoices.reject_requests(finance, [paper.id], "no")
    assert result.done == [] and result.refused
    invoices.request_void(unit, [paper.id], "wrong buyer")
    invoices.confirm_returned(finance, [paper.id])

    electronic = invoices.request_invoice(unit, order.id, IK.e_normal,
                                          invoices.BuyerData(name="上海浦东医疗器械有限公司"))
    db.session.expire_all()
    assert electronic.status is IS.issued
    with pytest.raises(WorkflowError, match="only a paper invoice"):  # mailing an e-invoice
        invoices.mail_paper(finance, electronic.id, "EMS", "E2")
    with pytest.raises(WorkflowError):
        invoices.issue_paper(finance, electronic.id, "44000003")       # issued already
    # A duplicate printed number is refused.
    invoices.request_void(unit, [electronic.id], "wrong buyer")
    third = invoices.request_invoice(unit, order.id, IK.paper_special, invoices.BuyerData(
        name="上海浦东医疗器械有限公司", tax_id=UNIT_A, address="张江路100号", phone="021-1",
        bank="招商银行", account="1219"))
    with pytest.raises(WorkflowError, match="already used"):
        invoices.issue_paper(finance, third.id, "44000001")
    statuses = {i.id: i.status for i in all_invoices()}
    assert statuses[paper.id] is IS.voided and statuses[third.id] is IS.requested
    assert statuses[electronic.id] is IS.voided


# ------------------------------------------------------------------------- scoping ---------

def test_another_unit_cannot_see_void_or_download(login, world):
    invoice = e_invoice(world, login)
    other = login(UNIT_B)
    assert other.get(f"/unit/invoices/show/{invoice.id}").status_code == 404
    assert other.action("/unit/invoices", "request_void", [invoice.id]).status_code == 404
    assert other.get(f"/unit/invoices/download/{invoice.pdf_key}").status_code == 404
    assert other.get(f"/unit/invoices/logistics/{invoice.id}").status_code == 404
    assert other.get(f"/unit/invoices/request/{invoice.order_id}").status_code == 404
    assert other.post(f"/unit/invoices/request/{invoice.order_id}",
                      data={"kind": "e_normal", "buyer_name": "x"}).status_code == 404
    # The workflow refuses too, whatever the view.
    result = invoices.request_void(actor_for_user(world.user(UNIT_B)), [invoice.id], "不是我的")
    assert result.done == [] and result.refused == []
    [invoice] = all_invoices()
    assert invoice.status is IS.issued


def test_finance_actions_are_forbidden_to_units(login, world):
    invoice = paper_invoice(world, login, mailed=False)
    client = login(UNIT_A)
    for url in ("/finance/invoices/list/", f"/finance/invoices/show/{invoice.id}",
                f"/finance/invoices/issue/{invoice.id}", f"/finance/invoices/mail/{invoice.id}",
                f"/finance/invoices/download/{invoice.pdf_key}"):
        assert client.get(url).status_code == 403, url
    assert client.post(f"/finance/invoices/mail/{invoice.id}",
                       data={"carrier": "x", "tracking_no": "y"}).status_code == 403
    for action in ("reject_invoices", "confirm_returned", "issue_paper", "mail_paper"):
        assert client.action("/finance/invoices", action, [invoice.id],
                             reason="x").status_code == 403, action
    with pytest.raises(WorkflowError) as refused:
        invoices.mail_paper(actor_for_user(world.user(UNIT_A)), invoice.id, "x", "y")
    assert refused.value.status_code == 403
    [invoice] = all_invoices()
    assert invoice.status is IS.issued and invoice.carrier is None
    # Units cannot edit or delete invoices either (no such permission).
    assert client.post(f"/unit/invoices/delete/{invoice.id}").status_code == 403
    assert client.get(f"/unit/invoices/edit/{invoice.id}").status_code == 403
    assert len(all_invoices()) == 1


def test_finance_sees_every_invoice_and_filters_the_queue(login, world):
    invoice = paper_invoice(world, login, mailed=False)
    finance = login("finance")
    assert invoice.buyer_name in finance.get("/finance/invoices/list/").text
    issued = finance.get("/finance/invoices/list/?_flt_0_status=issued").text
    assert "44001234" in issued
    assert "44001234" not in finance.get("/finance/invoices/list/?_flt_0_status=voided").text
    show = finance.get(f"/finance/invoices/show/{invoice.id}")
    assert show.status_code == 200 and "mail_paper" in show.text
    # The show page's button leads to the form that asks for carrier and tracking number.
    button = finance.post(f"/finance/invoices/action/mail_paper/{invoice.id}")
    assert button.status_code == 302
    assert button.headers["Location"].endswith(f"/finance/invoices/mail/{invoice.id}")
