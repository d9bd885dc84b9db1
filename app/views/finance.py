"""Finance's dashboard: orders, payments, the bank-transfer queue with its vouchers, bank
statements, refunds and the daily reconciliation."""
from __future__ import annotations

import io
from datetime import date, timedelta

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    redirect,
    request,
    send_file,
    send_from_directory,
    url_for,
)
from flask_appbuilder import BaseView, expose
from flask_appbuilder.models.sqla.filters import FilterEqual
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from app import models as m
from app.clock import today_shanghai
from app.exports import PAYMENTS, REFUNDS, STATEMENT_LINES, TRANSFERS
from app.extensions import db
from app.scoping.actor import current_actor
from app.scoping.interface import ScopedInterface, Selection
from app.scoping.rules import get_scoped, row_id
from app.views.base import ScopedModelView, attempt, batch_action
from app.workflow import reconciliation, statements
from app.workflow.errors import InputRefused


def voucher_link(payment_id: int | None) -> Markup:
    if not payment_id:
        return Markup("")
    return Markup('<a href="{}" target="_blank"><i class="fa fa-file"></i> {}</a>').format(
        url_for("FinanceTransferView.voucher", payment_id=payment_id), _("Voucher"))


class FinanceOrderView(ScopedModelView):
    route_base = "/finance/orders"
    class_permission_name = "FinanceOrders"
    datamodel = ScopedInterface(m.Order)
    title = _l("Orders")
    base_order = ("id", "desc")
    list_columns = ["number", "unit.name", "status", "fee_fen", "amount_fen", "created_at",
                    "paid_at"]
    show_columns = list_columns
    search_columns = ["number", "status", "created_at"]
    base_permissions = ["can_list", "can_show"]


class FinancePaymentView(ScopedModelView):
    route_base = "/finance/payments"
    class_permission_name = "FinancePayments"
    datamodel = ScopedInterface(m.Payment)
    title = _l("Payments")
    base_order = ("id", "desc")
    list_columns = ["number", "order.number", "channel", "status", "amount_fen", "refunded_fen",
                    "payer_name", "provider_trade_no", "confirmed_at"]
    show_columns = list_columns + ["payer_bank", "payer_account", "remitted_on",
                                   "reject_reason", "created_at"]
    # The export writes the rows of the same filters (app.exports.PAYMENTS), and so on below.
    search_columns = PAYMENTS.search_columns
    base_permissions = ["can_list", "can_show", "can_export"]
    label_columns = PAYMENTS.label_columns
    export_operation = "export_payments"


class FinanceTransferView(ScopedModelView):
    """Bank transfers declared by units: open the voucher, confirm or reject, many at once."""

    route_base = "/finance/transfers"
    class_permission_name = "FinanceTransfers"
    datamodel = ScopedInterface(m.Payment)
    title = _l("Bank transfers")
    base_filters = TRANSFERS.base_filters
    base_order = ("id", "asc")
    list_columns = ["number", "order.number", "order.unit.name", "status", "amount_fen",
                    "payer_name", "payer_bank", "payer_account", "remitted_on", "voucher",
                    "reject_reason"]
    show_columns = list_columns + ["payer_tax_id", "created_at", "confirmed_at"]
    search_columns = TRANSFERS.search_columns
    base_permissions = ["can_list", "can_show", "can_voucher", "can_export"]
    formatters_columns = {"voucher": voucher_link}
    label_columns = {"voucher": _l("Voucher")}
    export_operation = "export_transfers"
    reason_actions = ("reject_transfers",)

    @batch_action("confirm_transfers", _l("Confirm received"),
                  _l("The orders become paid and their persons go to security review."),
                  "fa-check")
    def confirm_transfers(self, selection: Selection):
        return self.run_operation("confirm_transfers", selection)

    @batch_action("reject_transfers", _l("Reject the voucher"), None, "fa-times")
    def reject_transfers(self, selection: Selection):
        return self.run_operation("reject_transfers", selection)

    @expose("/voucher/<int:payment_id>")
    @has_access
    @permission_name("voucher")
    def voucher(self, payment_id: int):
        payment = get_scoped(m.Payment, payment_id)
        if payment is None or not payment.voucher_key:
            abort(404)
        return send_from_directory(current_app.config["UPLOAD_FOLDER"], payment.voucher_key)


def statement_match_link(line_id: int | None) -> Markup:
    if not line_id:
        return Markup("")
    return Markup('<a href="{}" class="statement-match-link">{} <i class="fa fa-link"></i></a>'
                  ).format(url_for("BankStatementView.match", line_id=line_id), line_id)


def statement_report_link(import_id: int | None) -> Markup:
    if not import_id:
        return Markup("")
    return Markup('<a href="{}"><i class="fa fa-list-alt"></i> {}</a>').format(
        url_for("BankStatementView.report", import_id=import_id), _("Report"))


class BankStatementView(ScopedModelView):
    """Imported bank statement lines (credits); finance imports the bank's file as it comes,
    reads the import's report, and matches the lines left over by hand."""

    route_base = "/finance/statements"
    class_permission_name = "BankStatements"
    datamodel = ScopedInterface(m.BankStatementLine)
    title = _l("Bank statements")
    list_template = "ciie/finance/statements.html"
    base_order = ("id", "desc")
    list_columns = ["id", "booked_on", "amount_fen", "reference", "payer_name",
                    "payer_account", "serial", "status", "match_method", "order.number",
                    "payment.number"]
    show_columns = list_columns + ["line_no", "statement_import", "imported_at"]
    search_columns = STATEMENT_LINES.search_columns
    base_permissions = ["can_list", "can_show", "can_import", "can_match", "can_report",
                        "can_export"]
    formatters_columns = {"id": statement_match_link}
    label_columns = {**STATEMENT_LINES.label_columns, "id": _l("Line (match by hand)"),
                     "statement_import": _l("Imported file"),
                     "line_no": _l("Row in the file")}
    export_operation = "export_statements"

    @expose("/import", methods=["GET", "POST"])
    @has_access
    @permission_name("import")
    def import_file(self):
        profiles = list(db.session.scalars(sa.select(m.BankStatementProfile).where(
            m.BankStatementProfile.active.is_(True)).order_by(m.BankStatementProfile.id)))
        if request.method == "GET":
            return self.render_template("ciie/finance/statement_import.html",
                                        title=_("Import a bank statement"), profiles=profiles)
        upload = request.files.get("statement")
        if upload is None or not upload.filename:
            raise InputRefused(_l("Check \"%(field)s\": choose the file to upload. Nothing "
                                  "was imported.", field=statements.FILE_FIELD))
        data = upload.read(current_app.config["MAX_DOCUMENT_BYTES"] + 1)
        if len(data) > current_app.config["MAX_DOCUMENT_BYTES"]:
            raise InputRefused(_l("Check \"%(field)s\": the file is larger than %(mb)d MB. "
                                  "Nothing was imported.", field=statements.FILE_FIELD,
                                  mb=current_app.config["MAX_DOCUMENT_BYTES"] // 1024 // 1024))
        profile_id = request.form.get("profile") or None
        if profile_id is not None and row_id(m.BankStatementProfile, profile_id) is None:
            raise InputRefused(_l("Check \"%(field)s\": choose one of the banks offered.",
                                  field=_l("Bank of the statement")))
        outcome = {}
        if attempt(lambda: outcome.update(batch=statements.import_statement(
                current_actor(), data, upload.filename, profile_id and int(profile_id)))):
            return redirect(url_for("BankStatementView.report",
                                    import_id=outcome["batch"].id))
        return redirect(url_for("BankStatementView.import_file"))

    @expose("/report/<int:import_id>")
    @has_access
    @permission_name("report")
    def report(self, import_id: int):
        batch = get_scoped(m.BankStatementImport, import_id)
        if batch is None:
            abort(404)
        report = batch.report or {}
        return self.render_template(
            "ciie/finance/statement_report.html", title=_("Statement import report"),
            batch=batch, report=report, skip_reason=statements.skip_reason,
            method_label=statements.method_label)

    @expose("/match/<int:line_id>", methods=["GET", "POST"])
    @has_access
    @permission_name("match")
    def match(self, line_id: int):
        actor = current_actor()
        refused = False
        if request.method == "POST":
            if attempt(lambda: statements.match_line(
                    actor, line_id, request.form.get("order_number", ""),
                    request.form.get("payment_id") or None),
                    _("Matched: the line is booked to its order.")):
                return redirect(url_for("BankStatementView.show", pk=line_id))
            refused = True
        line = get_scoped(m.BankStatementLine, line_id, actor)
        if line is None:
            abort(404)
        page = self.render_template(
            "ciie/finance/statement_match.html", title=_("Match a statement line by hand"),
            line=line, candidates=statements.candidate_payments(line, actor)
            if line.status is m.StatementLineStatus.unmatched else [])
        # A refused match shows the page again with the reason, as the conflict it is.
        return (page, 409) if refused else page


class BankStatementImportView(ScopedModelView):
    """Every imported statement file with its report."""

    route_base = "/finance/statement-imports"
    class_permission_name = "BankStatementImports"
    datamodel = ScopedInterface(m.BankStatementImport)
    title = _l("Statement imports")
    base_order = ("id", "desc")
    list_columns = ["imported_at", "file_name", "profile", "imported_by", "rows_read",
                    "imported", "matched", "unmatched", "skipped", "duplicates", "id"]
    search_columns = ["file_name", "imported_at"]
    base_permissions = ["can_list"]
    formatters_columns = {"id": statement_report_link}
    label_columns = {"id": _l("Report"), "file_name": _l("File"),
                     "profile": _l("Bank of the statement"),
                     "imported_by": _l("Imported by"), "rows_read": _l("Rows read"),
                     "imported": _l("Lines imported"), "matched": _l("Matched automatically"),
                     "unmatched": _l("Left to match by hand"), "skipped": _l("Rows skipped"),
                     "duplicates": _l("Already imported")}


class FinanceRefundView(ScopedModelView):
    """Refunds asked by units: approve, execute (back through the provider, or paid out by
    the bank for transfers), confirm the bank's payment, or reject."""

    route_base = "/finance/refunds"
    class_permission_name = "FinanceRefunds"
    datamodel = ScopedInterface(m.Refund)
    title = _l("Refunds")
    base_order = ("id", "desc")
    list_columns = ["number", "unit.name", "payment.number", "payment.channel", "route",
                    "amount_fen", "status", "attempts", "created_at", "done_at"]
    show_columns = list_columns + ["account_name", "account_bank", "account_no",
                                   "provider_refund_id", "reason"]
    search_columns = REFUNDS.search_columns
    base_permissions = ["can_list", "can_show", "can_export"]
    export_operation = "export_refunds"
    # Finance reads this dialog; the unit reads the reason.
    reason_actions = {"reject_refunds": (
        _l("Reason for rejecting the refund (the unit will see it):"),
        _l("Enter the reason for rejecting the refund; the unit will see it."))}
    label_columns = REFUNDS.label_columns

    @batch_action("approve_refunds", _l("Approve"), None, "fa-check")
    def approve_refunds(self, selection: Selection):
        return self.run_operation("approve_refunds", selection)

    @batch_action("execute_refunds", _l("Execute"),
                  _l("Online payments are refunded through their provider; transfers are to be "
                     "paid out by the bank."), "fa-paper-plane")
    def execute_refunds(self, selection: Selection):
        return self.run_operation("execute_refunds", selection)

    @batch_action("complete_refunds", _l("Paid out by the bank"), None, "fa-university")
    def complete_refunds(self, selection: Selection):
        return self.run_operation("complete_refunds", selection)

    @batch_action("reject_refunds", _l("Reject"), None, "fa-times")
    def reject_refunds(self, selection: Selection):
        return self.run_operation("reject_refunds", selection)


class FinanceNotificationView(ScopedModelView):
    """Notices to units that could not be sent (after all their retries): finance sees why
    and sends them again once the cause is fixed."""

    route_base = "/finance/notifications"
    class_permission_name = "FinanceNotifications"
    datamodel = ScopedInterface(m.Notification)
    title = _l("Failed notifications")
    base_filters = [["status", FilterEqual, m.NotificationStatus.failed]]
    base_order = ("id", "desc")
    # An SMS provider's refusal or failed delivery report shows with the provider's code.
    list_columns = ["created_at", "unit.name", "channel", "recipient", "subject", "attempts",
                    "provider_code", "last_error"]
    show_columns = list_columns + ["provider", "provider_message_id", "attempted_at",
                                   "receipt_at", "body"]
    search_columns = ["channel", "recipient", "created_at"]
    base_permissions = ["can_list", "can_show"]
    label_columns = {"channel": _l("Channel"), "recipient": _l("Recipient"),
                     "last_error": _l("Last error"), "provider": _l("SMS provider"),
                     "provider_code": _l("Provider's code"),
                     "provider_message_id": _l("Provider's message id"),
                     "attempted_at": _l("Last try"), "receipt_at": _l("Delivery report")}

    @batch_action("resend_notifications", _l("Send again"), None, "fa-paper-plane")
    def resend_notifications(self, selection: Selection):
        return self.run_operation("resend_notifications", selection)


def _day(value: str | None, default: date) -> date:
    try:
        return date.fromisoformat(value) if value else default
    except ValueError:
        return default


class ReconciliationView(BaseView):
    """Daily reconciliation: payments by channel, refunds, invoices issued and voided."""

    route_base = "/finance/reconciliation"
    default_view = "show"
    class_permission_name = "Reconciliation"

    def _period(self) -> tuple[date, date]:
        until = _day(request.args.get("until"), today_shanghai())
        since = _day(request.args.get("since"), until - timedelta(days=13))
        return (since, until) if since <= until else (until, since)

    @expose("/")
    @has_access
    @permission_name("show")
    def show(self):
        since, until = self._period()
        table = reconciliation.daily(since, until)
        return self.render_template("ciie/finance/reconciliation.html", table=table,
                                    since=since, until=until)

    @expose("/export")
    @has_access
    @permission_name("show")
    def export(self):
        since, until = self._period()
        data = reconciliation.to_excel(reconciliation.daily(since, until))
        return send_file(io.BytesIO(data), as_attachment=True,
                         download_name=f"reconciliation-{since}-{until}.xlsx",
                         mimetype="application/vnd.openxmlformats-officedocument."
                                  "spreadsheetml.sheet")
