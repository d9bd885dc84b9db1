"""Ordinary VAT e-invoices (数电发票) are issued by the tax platform through a licensed invoicing
service provider, not by us: this package is the adapter between the invoice workflow and that
provider's open platform.

`EInvoicePlatform` is what the workflow calls: submit an invoice (or a red-letter reversal, which
the platform issues after its red-letter confirmation form, 红字确认单), then ask for the result
until the platform has issued it; an issued result carries the platform's number and the files
it issued (PDF, OFD, XML), downloaded. `einvoice_platform()` builds the configured adapter:
`nuonuo` (Nuonuo's open platform, through its SDK) or `sandbox` (development only: draws our
own PDF marked 样票 / SPECIMEN on every page). A production start refuses the sandbox and a
missing setting (`missing_settings`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from flask import current_app

from app.gateways import missing_secret

# Adapters by the name EINVOICE_PLATFORM gives.
PLATFORMS = ("nuonuo", "sandbox")
# The files a platform issues, by kind, and what each is served as.
FILE_TYPES = {"pdf": "application/pdf", "ofd": "application/ofd", "xml": "application/xml"}


class PlatformError(Exception):
    """The platform could not be reached or answered what we cannot read: the outcome is not
    known, so the job asks again later (never submits a new order)."""


@dataclass(frozen=True)
class InvoiceRequest:
    """What we ask the platform to issue: an ordinary e-invoice, or (with `reverses`) the full
    red-letter reversal of one it issued."""

    order_no: str
    order_number: str
    ordered_at: datetime
    amount_fen: int
    fee_fen: int
    buyer_name: str
    buyer_tax_id: str | None = None
    buyer_address: str | None = None
    buyer_phone: str | None = None
    buyer_bank: str | None = None
    buyer_account: str | None = None
    # The reversed invoice's platform number, for a red-letter reversal.
    reverses: str | None = None


@dataclass(frozen=True)
class Outcome:
    """Where the platform is with a submitted invoice: `pending`, `issued` (number, time, the
    files it issued by kind) or `refused` (its reason, in its words)."""

    state: str
    number: str | None = None
    serial: str | None = None
    issued_at: datetime | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    reason: str | None = None


class EInvoicePlatform(Protocol):
    name: str

    def submit(self, request: InvoiceRequest) -> Outcome: ...

    def result(self, request: InvoiceRequest) -> Outcome: ...


def einvoice_platform() -> EInvoicePlatform:
    name = current_app.config.get("EINVOICE_PLATFORM", "sandbox")
    if name == "nuonuo":
        from app.gateways.einvoice.nuonuo import NuonuoPlatform

        return NuonuoPlatform()
    if name == "sandbox":
        from app.gateways.einvoice.sandbox import SandboxPlatform

        return SandboxPlatform()
    raise RuntimeError(f"unknown EINVOICE_PLATFORM {name!r}")


def missing_settings(config: Any) -> list[str]:
    """The settings a production start needs for e-invoices and lacks (empty when all is set)."""
    name = config.get("EINVOICE_PLATFORM")
    if name not in PLATFORMS:
        return [f"EINVOICE_PLATFORM (one of {', '.join(PLATFORMS)}, not {name!r})"]
    if name == "sandbox":
        return ["EINVOICE_PLATFORM (the sandbox issues specimens, no invoices: nuonuo)"]
    missing = [n for n in ("NUONUO_APP_KEY", "NUONUO_CLERK", "NUONUO_FILE_HOSTS",
                           "INVOICE_SELLER_TAX_ID") if not config.get(n)]
    for secret in ("NUONUO_APP_SECRET", "NUONUO_ACCESS_TOKEN"):
        missing += missing_secret(config, secret)
    if not str(config.get("NUONUO_URL") or "").startswith("https://"):
        missing.append("NUONUO_URL (https only)")
    return missing
