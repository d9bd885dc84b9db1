"""In Chromium: a unit asks for an e-invoice from its paid order, the download link appears on
its invoice list and serves the PDF."""
from __future__ import annotations

import sqlalchemy as sa

from app import models as m
from app.demo import DEMO_PASSWORD
from app.extensions import db
from tests.conftest import UNIT_A
from tests.test_browser_journeys import log_in, shot
from tests.test_invoices import pay_by_qr, unit_a


def test_unit_requests_an_e_invoice_and_downloads_it(page, world):
    order = pay_by_qr(world)
    log_in(page, UNIT_A, DEMO_PASSWORD)
    page.goto("/unit/invoices/list/")
    page.click("#request-invoice")
    page.click(f"a.ciie-request-invoice[href$='/request/{order.id}']")
    page.wait_for_selector("#invoice-form")
    assert page.input_value("#buyer_name") == unit_a(world).name
    assert page.input_value("#buyer_tax_id") == UNIT_A
    page.select_option("#kind", "e_normal")
    shot(page, "invoice-01-request")
    page.click("#invoice-form button[type=submit]")

    link = page.wait_for_selector("a.ciie-invoice-pdf")
    shot(page, "invoice-02-list")
    invoice = db.session.scalars(sa.select(m.Invoice)).one()
    assert invoice.number in page.inner_text("#list-UnitInvoiceView")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"invoice-{invoice.number}.pdf"
    with open(download.value.path(), "rb") as fh:
        assert fh.read(5) == b"%PDF-"
