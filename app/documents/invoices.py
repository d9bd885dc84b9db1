"""The PDF of a VAT e-invoice and of its red-letter reversal, as the e-invoice sandbox draws it
(app/gateways/einvoice/sandbox.py): a specimen, marked 样票 / SPECIMEN across every page. A real
e-invoice is the file the invoicing platform issued, never this drawing.

reportlab lays the invoice out and embeds a CJK TrueType font (subset), so Chinese names render
and can be read back as text. Amounts are integer fen turned into yuan with Decimal; dates are
Beijing dates. The caller chooses the language (`flask_babel.force_locale`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from xml.sax.saxutils import escape

from flask import current_app
from flask_babel import gettext as _
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from app.clock import SHANGHAI
from app.documents.fonts import cjk_font
from app.formatting import fmt_money

RED = colors.HexColor("#b0141c")


@dataclass(frozen=True)
class InvoiceDocument:
    """What an invoice PDF prints: the invoice as issued, never edited afterwards."""

    number: str
    issued_at: datetime
    order_number: str
    amount_fen: int
    fee_fen: int
    buyer_name: str
    buyer_tax_id: str | None
    buyer_address: str | None
    buyer_phone: str | None
    buyer_bank: str | None
    buyer_account: str | None
    # The number of the invoice a red-letter reversal cancels; None for an ordinary invoice.
    reverses: str | None = None


def lines(amount_fen: int, fee_fen: int) -> list[tuple[int, int]]:
    """(unit price, quantity) rows: the badge fee × persons; an amount the fee does not divide
    (a fee changed after ordering) is one row, so the lines always add up to the amount."""
    if fee_fen > 0 and amount_fen % fee_fen == 0:
        return [(fee_fen, amount_fen // fee_fen)]
    return [(amount_fen, 1)]


def split_tax(total_fen: int, rate: Decimal) -> tuple[int, int]:
    """A tax-included total split into (amount excluding tax, VAT), in fen, rounding the net
    half up so that the two always add up to the total."""
    net = (Decimal(total_fen) / (1 + rate)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(net), total_fen - int(net)


def _money(fen: int, negative: bool) -> str:
    return ("-" if negative and fen else "") + fmt_money(fen)


# The specimen mark, in both languages whatever the page's: it is the same on every specimen.
SPECIMEN_MARK = "样票 / SPECIMEN"


def _mark_specimen(canvas, document) -> None:
    """Across the page, behind nothing: a specimen cannot be mistaken for an invoice."""
    canvas.saveState()
    canvas.setFont(cjk_font(), 64)
    canvas.setFillColor(RED, alpha=0.25)
    width, height = document.pagesize
    canvas.translate(width / 2, height / 2)
    canvas.rotate(20)
    canvas.drawCentredString(0, 0, SPECIMEN_MARK)
    canvas.restoreState()
    canvas.saveState()
    canvas.setFont(cjk_font(), 10)
    canvas.setFillColor(RED)
    canvas.drawString(20 * mm, 8 * mm, SPECIMEN_MARK)
    canvas.restoreState()


def render(doc: InvoiceDocument) -> bytes:
    """The invoice as PDF bytes (one landscape A4 page), marked a specimen on every page."""
    font = cjk_font()
    config = current_app.config
    negative = doc.reverses is not None
    rate = Decimal(config["INVOICE_TAX_RATE"])
    net_fen, tax_fen = split_tax(doc.amount_fen, rate)
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=12, wordWrap="CJK")
    head = ParagraphStyle("head", parent=body, fontSize=18, leading=24, alignment=TA_CENTER,
                          textColor=RED if negative else colors.black)

    def p(text: object) -> Paragraph:
        return Paragraph(escape(str(text or "")), body)

    title = (_("Red-letter electronic invoice (credit note)") if negative
             else _("Electronic invoice (ordinary VAT invoice)"))
    header = Table([
        [p(_("Invoice number")), p(doc.number)],
        [p(_("Date of issue")), p(doc.issued_at.astimezone(SHANGHAI).strftime("%Y-%m-%d"))],
    ], colWidths=[35 * mm, 60 * mm], hAlign="RIGHT")

    def party(label: str, name: str, tax_id: str | None, address_phone: str,
              bank_account: str) -> list[list[Paragraph]]:
        # Buyer and seller are organisations: 名称, not a person's 姓名.
        return [[p(label), p(_("Organisation name")), p(name)],
                ["", p(_("Taxpayer ID")), p(tax_id)],
                ["", p(_("Address and phone")), p(address_phone)],
                ["", p(_("Bank and account")), p(bank_account)]]

    def joined(*parts: str | None) -> str:
        return " ".join(part for part in parts if part)

    parties = Table(
        party(_("Buyer"), doc.buyer_name, doc.buyer_tax_id,
              joined(doc.buyer_address, doc.buyer_phone),
              joined(doc.buyer_bank, doc.buyer_account))
        + party(_("Seller"), config["INVOICE_SELLER_NAME"], config["INVOICE_SELLER_TAX_ID"],
                config["INVOICE_SELLER_ADDRESS_PHONE"], config["INVOICE_SELLER_BANK_ACCOUNT"]),
        colWidths=[20 * mm, 40 * mm, 197 * mm])
    parties.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
        ("SPAN", (0, 0), (0, 3)), ("SPAN", (0, 4), (0, 7)),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]))

    rows = [[p(_("Item")), p(_("Quantity")), p(_("Unit price (tax included)")),
             p(_("Amount (tax included)"))]]
    for price_fen, quantity in lines(doc.amount_fen, doc.fee_fen):
        rows.append([p(_("Badge fee for professional visitors")),
                     p(f"-{quantity}" if negative else quantity), p(fmt_money(price_fen)),
                     p(_money(price_fen * quantity, negative))])
    percent = (rate * 100).normalize()
    rows += [["", "", p(_("Amount excluding tax")), p(_money(net_fen, negative))],
             ["", "", p(_("VAT (%(rate)s%%)", rate=percent)), p(_money(tax_fen, negative))],
             ["", "", p(_("Total (tax included)")), p(_money(doc.amount_fen, negative))]]
    items = Table(rows, colWidths=[107 * mm, 30 * mm, 60 * mm, 60 * mm])
    items.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke)]))

    remarks = [_("Order %(number)s", number=doc.order_number)]
    if negative:
        remarks.append(_("Reverses invoice %(number)s", number=doc.reverses))
    notes = Table([[p(_("Remarks")), p("; ".join(str(r) for r in remarks))]],
                  colWidths=[20 * mm, 237 * mm])
    notes.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey)]))

    buffer = io.BytesIO()
    pdf = SimpleDocTemplate(buffer, pagesize=landscape(A4), leftMargin=20 * mm,
                            rightMargin=20 * mm, topMargin=15 * mm, bottomMargin=15 * mm,
                            title=f"{title} {doc.number}", author=config["INVOICE_SELLER_NAME"])
    pdf.build([Paragraph(escape(str(title)), head), header, Spacer(1, 4 * mm), parties,
               Spacer(1, 4 * mm), items, Spacer(1, 4 * mm), notes, Spacer(1, 6 * mm),
               p(_("Specimen drawn by the development sandbox: not an invoice."))],
              onFirstPage=_mark_specimen, onLaterPages=_mark_specimen)
    return buffer.getvalue()
