"""Development sandbox for the invoicing platform: it issues at once, with a number in the shape
of a fully digitalised e-invoice, and draws our own PDF marked 样票 / SPECIMEN on every page
(app/documents/invoices.py). It issues no OFD or XML. A production start refuses it.
"""
from __future__ import annotations

from app.clock import now
from app.documents import invoices as invoice_pdf
from app.gateways.einvoice import InvoiceRequest, Outcome

# The number's province (the seller's tax bureau: Shanghai) and issuing channel; its sequence
# is the digits of our order number (one per invoice), so specimens never share a number.
PROVINCE = "31"
CHANNEL = "2"


class SandboxPlatform:
    name = "sandbox"

    def submit(self, request: InvoiceRequest) -> Outcome:
        return Outcome("pending", serial=f"SANDBOX{request.order_no}")

    def result(self, request: InvoiceRequest) -> Outcome:
        issued_at = now()
        sequence = int("".join(c for c in request.order_no if c.isdigit()))
        number = f"{issued_at.year % 100:02d}{PROVINCE}{CHANNEL}{sequence:015d}"
        pdf = invoice_pdf.render(invoice_pdf.InvoiceDocument(
            number=number, issued_at=issued_at, order_number=request.order_number,
            amount_fen=request.amount_fen, fee_fen=request.fee_fen,
            buyer_name=request.buyer_name, buyer_tax_id=request.buyer_tax_id,
            buyer_address=request.buyer_address, buyer_phone=request.buyer_phone,
            buyer_bank=request.buyer_bank, buyer_account=request.buyer_account,
            reverses=request.reverses))
        return Outcome("issued", number=number, serial=f"SANDBOX{request.order_no}",
                       issued_at=issued_at, files={"pdf": pdf})
