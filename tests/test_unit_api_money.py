"""The REST API reads a unit's money as the web shows it: orders with their persons, invoices
with the PDF to download, refunds, amounts in fen; each unit only its own (another unit's row
is a 404), finance all of them, other roles none (403, in the request's language). Persons'
entry dates are ISO dates, not the stored bit mask."""
from __future__ import annotations

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A, UNIT_B, Client
from tests.test_invoices import ask, pay_by_qr, unit_a
from tests.test_money import FEE, paid_and_cancelled  # noqa: F401  (fixture)

EN = {"Accept-Language": "en"}


def tokens(app, *usernames: str) -> list[dict]:
    client = Client(app)
    return [client.api_login(username) for username in usernames]


def demo_order() -> m.Order:
    return db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()


def test_a_unit_reads_its_orders_with_their_persons_in_fen(app, world):
    client = Client(app)
    own, other, finance = tokens(app, UNIT_A, UNIT_B, "finance")
    order = demo_order()
    listing = client.get("/api/v1/orders/", headers=own).json
    assert listing["ids"] == [order.id]
    [row] = listing["result"]
    assert (row["number"], row["status"]) == ("O2022000001", "pending")
    assert (row["amount_fen"], row["fee_fen"]) == (order.amount_fen, order.fee_fen)
    assert sorted((item["person_registration_id"], item["amount_fen"], item["active"])
                  for item in row["items"]) == sorted(
        (item.person_registration_id, item.amount_fen, True) for item in order.items)
    assert sum(item["amount_fen"] for item in row["items"]) == row["amount_fen"]
    assert client.get(f"/api/v1/orders/{order.id}", headers=own).json["result"] == row

    # Another unit neither lists nor reads it; finance reads every unit's.
    assert client.get("/api/v1/orders/", headers=other).json["count"] == 0
    assert client.get(f"/api/v1/orders/{order.id}", headers=other).status_code == 404
    assert client.get(f"/api/v1/orders/{order.id}", headers=finance).status_code == 200
    filtered = client.get("/api/v1/orders/?q=(filters:!((col:status,opr:eq,value:paid)))",
                          headers=own).json
    assert filtered["count"] == 0


def test_roles_without_money_get_403_in_their_language(app, world):
    client = Client(app)
    order = demo_order()
    for username in ("sh-delegation", "reviewer", "gate", "person-demo"):
        [headers] = tokens(app, username)
        for path in ("/api/v1/orders/", f"/api/v1/orders/{order.id}", "/api/v1/invoices/",
                     "/api/v1/refunds/"):
            zh = client.get(path, headers=headers)
            assert zh.status_code == 403, (username, path)
            assert zh.json == {"message": "您无权进行此操作，未做任何修改。"}
        en = client.get("/api/v1/orders/", headers={**headers, **EN})
        assert en.json == {"message": "You are not allowed to do this. Nothing was changed."}


def test_a_unit_reads_its_invoices_and_downloads_the_pdf(app, world, smtp_server):
    order = pay_by_qr(world)
    unit = unit_a(world)
    assert ask(Client(app, UNIT_A), order, kind="e_normal",
               buyer_name=unit.name).status_code == 302
    invoice = db.session.scalars(sa.select(m.Invoice)).one()
    client = Client(app)
    own, other, finance = tokens(app, UNIT_A, UNIT_B, "finance")

    [row] = client.get("/api/v1/invoices/", headers=own).json["result"]
    assert (row["id"], row["number"], row["status"], row["kind"]) == (
        invoice.id, invoice.number, "issued", "e_normal")
    assert (row["amount_fen"], row["order_id"]) == (20000, order.id)
    assert "pdf_key" not in row and invoice.pdf_key not in str(row)
    link = row["download_url"]
    assert link == f"/api/v1/invoices/{invoice.id}/pdf"
    pdf = client.get(link, headers=own)
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert pdf.mimetype == "application/pdf"
    assert f"invoice-{invoice.number}.pdf" in pdf.headers["Content-Disposition"]
    assert client.get(link, headers=finance).data == pdf.data

    assert client.get("/api/v1/invoices/", headers=other).json["count"] == 0
    assert client.get(f"/api/v1/invoices/{invoice.id}", headers=other).status_code == 404
    assert client.get(link, headers=other).status_code == 404
    # The download is the API's own: a browser session alone does not open it.
    assert Client(app, UNIT_A).get(link).status_code == 401


def test_a_unit_reads_its_refunds(app, login, world, paid_and_cancelled):  # noqa: F811
    ids = [str(world.person(name).id) for name in ("王伟", "李娜")]
    login(UNIT_A).post("/unit/refunds/request", data={
        "person": ids, "route": "other_account", "account_name": "浦东医疗",
        "account_bank": "建行", "account_no": "6222"})
    refund = db.session.scalars(sa.select(m.Refund)).one()
    client = Client(app)
    own, other, finance = tokens(app, UNIT_A, UNIT_B, "finance")

    [row] = client.get("/api/v1/refunds/", headers=own).json["result"]
    assert (row["id"], row["number"], row["status"]) == (refund.id, refund.number, "requested")
    assert row["amount_fen"] == 2 * FEE == sum(item["amount_fen"] for item in row["items"])
    assert row["route"] == "other_account"
    assert row["payment"]["order_id"] == paid_and_cancelled.id
    assert client.get(f"/api/v1/refunds/{refund.id}", headers=finance).status_code == 200
    assert client.get("/api/v1/refunds/", headers=other).json["count"] == 0
    assert client.get(f"/api/v1/refunds/{refund.id}", headers=other).status_code == 404


def test_entry_dates_are_iso_dates(app, world):
    client = Client(app)
    [own] = tokens(app, UNIT_A)
    wang = world.person("王伟")
    row = client.get(f"/api/v1/persons/{wang.id}", headers=own).json["result"]
    assert row["entry_dates"] == [day.isoformat() for day in wang.entry_dates]
    assert row["entry_dates"] and "entry_days" not in row
    listing = client.get("/api/v1/persons/", headers=own).json
    by_id = {r["id"]: r for r in listing["result"]}
    assert by_id[wang.id]["entry_dates"] == row["entry_dates"]
