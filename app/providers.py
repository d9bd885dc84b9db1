"""The outside services the app calls, as the operator sees them: each provider, sandbox or
production, its last success and last failure, the failed calls waiting for a retry (the admin's
page and `flask ciie providers check`), and the settings a production start needs.

A service contributes two functions to the registry (`register`): its report, a few indexed
queries for all its providers at once, and its production check, which reads settings only.
create_app refuses a production start while any check names a setting (`production_refusals`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import lazy_gettext as _l

from app import models as m
from app.extensions import db
from app.gateways.einvoice import missing_settings as missing_einvoice_settings
from app.gateways.payments import FACTORY_EXTENSION
from app.gateways.sms import missing_settings as missing_sms_settings
from app.workflow.sms import sms_provider_report
from config import BASE_DIR

SANDBOX, PRODUCTION = "sandbox", "production"
MODE_LABELS = {SANDBOX: _l("Sandbox"), PRODUCTION: _l("Production")}
# What waits for a retry, by kind (the page and the command name each kind).
WAITING_LABELS = {
    "notices": _l("failed notices not sent since"),
    "payments": _l("payments pending with the provider"),
    "refunds_sent": _l("refunds sent and not settled"),
    "refunds_failed": _l("refunds failed"),
    "invoices": _l("e-invoices waiting for the invoicing platform"),
}


@dataclass(frozen=True)
class ProviderState:
    """One provider of one service, as the operator's page shows it."""

    key: str
    service: Any
    provider: Any
    mode: str
    # What names the provider's place (a mail server's host), shown as it is.
    detail: str = ""
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_failure: str | None = None
    waiting: dict[str, int] = field(default_factory=dict)
    # Settings a production start needs and lacks (filled in by provider_reports).
    missing: tuple[str, ...] = ()

    @property
    def waiting_total(self) -> int:
        return sum(self.waiting.values())

    @property
    def failing(self) -> bool:
        """Its last call failed: no success since its last failure."""
        return self.last_failure_at is not None and (
            self.last_success_at is None or self.last_failure_at > self.last_success_at)


Report = Callable[[Mapping[str, Any]], list[ProviderState]]
# {provider key: the settings a production start lacks, each named}
Check = Callable[[Mapping[str, Any]], dict[str, list[str]]]


@dataclass(frozen=True)
class Service:
    key: str
    report: Report
    check: Check


SERVICES: dict[str, Service] = {}


def register(key: str, report: Report, check: Check) -> None:
    """Add (or replace) a service of the operator's page and of the production check."""
    SERVICES[key] = Service(key, report, check)


def provider_reports() -> list[ProviderState]:
    """Every provider of every service, in the registry's order (needs an app context)."""
    config = current_app.config
    required = bool(config.get("PROVIDERS_REQUIRED"))
    rows = []
    for service in SERVICES.values():
        missing = service.check(config)
        for row in service.report(config):
            if row.mode == PRODUCTION or required:
                row = replace(row, missing=tuple(missing.get(row.key, ())))
            rows.append(row)
    return rows


def production_refusals(config: Mapping[str, Any]) -> list[str]:
    """What keeps a production start from starting: "<provider>: <setting>, …" each."""
    return [f"{key}: {', '.join(names)}"
            for service in SERVICES.values()
            for key, names in service.check(config).items() if names]


def problems(row: ProviderState, config: Mapping[str, Any]) -> list[str]:
    """Why the operator should look at `row` (empty: nothing to do)."""
    found = list(row.missing)
    if row.mode == SANDBOX and config.get("PROVIDERS_REQUIRED"):
        found.append("sandbox in production")
    if row.mode == PRODUCTION and row.failing:
        found.append("last call failed")
    return found


def secret_file_problem(config: Mapping[str, Any], name: str) -> str | None:
    """What is wrong with the secret file a `*_FILE` setting names (None: it is readable and
    outside the repository)."""
    path = config.get(name)
    if not path:
        return name
    real, repository = os.path.realpath(path), os.path.realpath(BASE_DIR)
    if real == repository or real.startswith(repository + os.sep):
        return f"{name} ({path} is inside the repository: keep secrets outside it)"
    if not (os.path.isfile(real) and os.access(real, os.R_OK)):
        return f"{name} (no readable file {path})"
    return None


# ------------------------------------------------------------------ SMS and e-mail ---------

N, NS, NC = m.Notification, m.NotificationStatus, m.NotificationChannel
SMS_PROVIDERS = {"log": _l("Log file (sandbox)"), "aliyun": _l("Alibaba Cloud SMS"),
                 "tencent": _l("Tencent Cloud SMS")}
MAIL_BACKENDS = ("log", "smtp")


def notices_report(config: Mapping[str, Any]) -> list[ProviderState]:
    """The SMS provider and the mail server: app/workflow/sms.py's facts of the SMS provider,
    two lookups for the mail server, one count of the waiting notices of both (the failed
    ones and those queued again after a failure: partial indexes on each status)."""
    waiting = dict(db.session.execute(
        sa.select(N.channel, sa.func.count()).where(sa.or_(
            N.status == NS.failed, sa.and_(N.status == NS.queued, N.attempts > 0)))
        .group_by(N.channel)).tuples().all())
    sms = sms_provider_report()
    last_sent = db.session.scalar(sa.select(sa.func.max(N.sent_at)).where(
        N.channel == NC.email))
    last_failed = db.session.execute(
        sa.select(N.attempted_at, N.last_error)
        .where(N.channel == NC.email, N.status == NS.failed, N.attempted_at.is_not(None))
        .order_by(N.attempted_at.desc()).limit(1)).first()
    mail_log = config.get("MAIL_BACKEND", "log") == "log"
    return [
        ProviderState("sms", _l("SMS"), SMS_PROVIDERS.get(sms["provider"], sms["provider"]),
                      sms["mode"], last_success_at=sms["last_success_at"],
                      last_failure_at=sms["last_failure_at"], last_failure=sms["last_failure"],
                      waiting={"notices": waiting.get(NC.sms, 0)}),
        ProviderState("mail", _l("E-mail"),
                      _l("Log file (sandbox)") if mail_log else _l("Mail server"),
                      SANDBOX if mail_log else PRODUCTION,
                      detail="" if mail_log else f"{config.get('MAIL_SERVER')}:"
                                                 f"{config.get('MAIL_PORT')}",
                      last_success_at=last_sent,
                      last_failure_at=last_failed.attempted_at if last_failed else None,
                      last_failure=last_failed.last_error if last_failed else None,
                      waiting={"notices": waiting.get(NC.email, 0)}),
    ]


def notices_check(config: Mapping[str, Any]) -> dict[str, list[str]]:
    sms = missing_sms_settings(config)
    backend = config.get("SMS_BACKEND")
    if backend in ("aliyun", "tencent"):
        secret = "ACCESS_KEY_SECRET" if backend == "aliyun" else "SECRET_KEY"
        name = f"{backend.upper()}_SMS_{secret}_FILE"
        if config.get(name) and (problem := secret_file_problem(config, name)):
            sms.append(problem)
    mail_backend = config.get("MAIL_BACKEND")
    if mail_backend not in MAIL_BACKENDS:
        mail = [f"MAIL_BACKEND (one of {', '.join(MAIL_BACKENDS)}, not {mail_backend!r})"]
    elif mail_backend == "log":
        mail = ["MAIL_BACKEND (the log sandbox sends nothing: smtp)"]
    else:
        mail = [name for name in ("MAIL_SERVER", "MAIL_PORT", "MAIL_DEFAULT_SENDER")
                if not config.get(name)]
        if config.get("MAIL_USERNAME") and not config.get("MAIL_PASSWORD"):
            mail.append("MAIL_PASSWORD (MAIL_USERNAME is set)")
    return {"sms": sms, "mail": mail}


# ------------------------------------------------------------------ online payments --------

P, PayS, Ch, R, RS = m.Payment, m.PaymentStatus, m.PaymentChannel, m.Refund, m.RefundStatus
PAYMENT_PROVIDERS = {Ch.alipay: _l("Alipay"), Ch.wechat: _l("WeChat Pay"),
                     Ch.unionpay: _l("UnionPay"), Ch.b2b: _l("B2B gateway")}
# What each adapter's `configured()` reads (app/gateways/payments/; tests/test_providers_page.py
# holds the two together): *_FILE settings name key files, *_URL settings the provider's API.
PAYMENT_SETTINGS: dict[m.PaymentChannel, tuple[str, ...]] = {
    Ch.alipay: ("ALIPAY_APP_ID", "ALIPAY_APP_PRIVATE_KEY_FILE", "ALIPAY_PUBLIC_KEY_FILE"),
    Ch.wechat: ("WECHATPAY_MCHID", "WECHATPAY_APPID", "WECHATPAY_CERT_SERIAL_NO",
                "WECHATPAY_PRIVATE_KEY_FILE", "WECHATPAY_APIV3_KEY", "WECHATPAY_PUBLIC_KEY_FILE",
                "WECHATPAY_PUBLIC_KEY_ID"),
    # UnionPay's refunds (sent by rq jobs, outside a request) name the notify URL: the base.
    Ch.unionpay: ("UNIONPAY_MER_ID", "UNIONPAY_SIGN_CERT_FILE", "UNIONPAY_MIDDLE_CERT_FILE",
                  "UNIONPAY_ROOT_CERT_FILE", "UNIONPAY_API_URL", "PAYMENT_NOTIFY_BASE_URL"),
    Ch.b2b: ("B2B_MER_ID", "B2B_SIGN_CERT_FILE", "B2B_MIDDLE_CERT_FILE", "B2B_ROOT_CERT_FILE",
             "B2B_API_URL", "PAYMENT_NOTIFY_BASE_URL"),
}


def payments_report(config: Mapping[str, Any]) -> list[ProviderState]:
    """Each online channel: its last confirmed payment (one lookup per channel on
    (channel, confirmed_at), in one statement), its pending payments, its refunds with the
    provider and its latest failed refund (refunds at the provider: a partial index)."""
    channels = tuple(PAYMENT_SETTINGS)
    confirmed = db.session.execute(sa.select(*[
        sa.select(sa.func.max(P.confirmed_at)).where(P.channel == channel).scalar_subquery()
        for channel in channels])).one()
    pending = dict(db.session.execute(
        sa.select(P.channel, sa.func.count()).where(P.channel.in_(channels),
                                                    P.status == PayS.pending)
        .group_by(P.channel)).tuples().all())
    at_provider = R.status.in_((RS.sent, RS.failed))
    refunds = {(r.channel, r.status): r.count for r in db.session.execute(
        sa.select(P.channel, R.status, sa.func.count().label("count"))
        .join(P, P.id == R.payment_id).where(at_provider, P.channel.in_(channels))
        .group_by(P.channel, R.status))}
    ranked = (sa.select(P.channel, R.updated_at, R.reason, sa.func.row_number().over(
        partition_by=P.channel, order_by=R.updated_at.desc()).label("n"))
        .join(P, P.id == R.payment_id).where(at_provider, R.status == RS.failed)
        .subquery())
    failed = {r.channel: r for r in db.session.execute(
        sa.select(ranked.c.channel, ranked.c.updated_at, ranked.c.reason)
        .where(ranked.c.n == 1))}
    sandbox = bool(config.get("PAYMENT_SANDBOX")) and \
        FACTORY_EXTENSION in current_app.extensions
    rows = []
    for channel, last_confirmed in zip(channels, confirmed, strict=True):
        failure = failed.get(channel)
        rows.append(ProviderState(
            channel.value, _l("Online payment"),
            _l("Payment sandbox: %(provider)s", provider=PAYMENT_PROVIDERS[channel])
            if sandbox else PAYMENT_PROVIDERS[channel],
            SANDBOX if sandbox else PRODUCTION, last_success_at=last_confirmed,
            last_failure_at=failure.updated_at if failure else None,
            last_failure=failure.reason if failure else None,
            waiting={"payments": pending.get(channel, 0),
                     "refunds_sent": refunds.get((channel, RS.sent), 0),
                     "refunds_failed": refunds.get((channel, RS.failed), 0)}))
    return rows


def payments_check(config: Mapping[str, Any]) -> dict[str, list[str]]:
    if config.get("PAYMENT_SANDBOX"):
        return {channel.value: ["PAYMENT_SANDBOX (the sandbox plays the provider: switch it off)"]
                for channel in PAYMENT_SETTINGS}
    found = {}
    for channel, names in PAYMENT_SETTINGS.items():
        missing = []
        for name in names:
            if name.endswith("_FILE"):
                problem = secret_file_problem(config, name)
            elif not config.get(name):
                problem = name
            elif name.endswith("_URL") and not str(config[name]).startswith("https://"):
                problem = f"{name} (https only)"
            else:
                problem = None
            if problem:
                missing.append(problem)
        found[channel.value] = missing
    return found


# ------------------------------------------------------------------ invoicing --------------

Inv, IK, IS = m.Invoice, m.InvoiceKind, m.InvoiceStatus


INVOICING_PLATFORMS = {"sandbox": _l("Specimens drawn here (sandbox)"),
                       "nuonuo": _l("Nuonuo open platform")}


def invoicing_report(config: Mapping[str, Any]) -> list[ProviderState]:
    """E-invoices are issued by the invoicing platform (app/gateways/einvoice/): the last one
    it issued, and those (and reversals) waiting for it (the sweeper's outbox)."""
    platform = config.get("EINVOICE_PLATFORM") or "sandbox"
    last_issued = db.session.scalar(sa.select(sa.func.max(Inv.issued_at)).where(
        Inv.kind == IK.e_normal))
    waiting = db.session.scalar(sa.select(sa.func.count()).select_from(Inv).where(
        Inv.kind == IK.e_normal, Inv.status == IS.requested))
    return [ProviderState("invoicing", _l("E-invoices"),
                          INVOICING_PLATFORMS.get(platform, platform),
                          SANDBOX if platform == "sandbox" else PRODUCTION,
                          detail=str(config.get("NUONUO_URL") or "") if platform == "nuonuo"
                          else "", last_success_at=last_issued,
                          waiting={"invoices": waiting or 0})]


def invoicing_check(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """The platform's settings (app/gateways/einvoice/missing_settings); a secret's file must
    be readable and outside the repository."""
    missing = missing_einvoice_settings(config)
    for name in ("NUONUO_APP_SECRET_FILE", "NUONUO_ACCESS_TOKEN_FILE"):
        if config.get(name) and (problem := secret_file_problem(config, name)):
            missing.append(problem)
    return {"invoicing": missing}


register("notices", notices_report, notices_check)
register("payments", payments_report, payments_check)
register("invoicing", invoicing_report, invoicing_check)
