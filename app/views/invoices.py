"""Invoices, both sides of one record: the unit asks for an invoice from a paid order, downloads
and prints its e-invoices, views the logistics of its paper invoice and asks to void; finance
works the queue (issues and mails paper invoices, confirms returned ones, rejects requests,
makes a failed e-invoice again). Every read and change is scoped (units: their own invoices)."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    redirect,
    request,
    send_from_directory,
    session,
    url_for,
)
from flask_appbuilder.baseviews import expose
from flask_appbuilder.forms import DynamicForm
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.widgets import FormWidget
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from app import models as m
from app import storage
from app.exports import INVOICES
from app.extensions import db
from app.formatting import fmt_datetime, fmt_money
from app.gateways.einvoice import FILE_TYPES
from app.input_checks import too_long
from app.scoping.actor import current_actor
from app.scoping.interface import ScopedInterface, Selection
from app.scoping.rules import get_scoped, scoped
from app.views.base import ScopedModelView, attempt, batch_action
from app.workflow import invoices
from app.workflow.errors import InputRefused

INVOICE_LABELS = {
    "number": _l("Invoice number"),
    "kind": _l("Invoice type"),
    "buyer_address": _l("Buyer's address"),
    "buyer_phone": _l("Buyer's phone"),
    "buyer_bank": _l("Buyer's bank"),
    "buyer_account": _l("Buyer's account"),
    "buyer_locked": _l("Buyer is the payer"),
    "files": _l("E-invoice"),
    "logistics": _l("Logistics"),
}
DETAIL_COLUMNS = ["number", "order.number", "invoice_type", "status", "signed_amount_fen",
                  "buyer_name",
                  "buyer_tax_id", "buyer_address", "buyer_phone", "buyer_bank",
                  "buyer_account", "buyer_locked", "issued_at", "files", "carrier",
                  "tracking_no", "reject_reason", "reversal_of.number", "created_at"]


def signed_money(fen: int | None) -> Markup:
    """An invoice's amount: a red-letter reversal's is negative, printed in red like the
    invoice itself ("-¥200.00")."""
    if fen is None:
        return Markup("")
    if fen < 0:
        return Markup('<span class="ciie-red-letter text-danger text-nowrap">-{}</span>').format(
            fmt_money(-fen))
    return Markup("{}").format(fmt_money(fen))


def invoice_type(label: Any) -> Markup:
    """The invoice's type; a red-letter reversal's in red (the title its PDF prints in red)."""
    if str(label) == str(m.RED_LETTER_LABEL):
        return Markup('<span class="ciie-red-letter label label-danger">{}</span>').format(label)
    return Markup("{}").format(label)


FILE_LINK_LABELS = {"pdf": _l("Download PDF"), "ofd": _l("Download OFD"),
                    "xml": _l("Download XML")}


def pdf_link(endpoint: str) -> Any:
    """A formatter turning the invoice's files into their scoped download links: the PDF, and
    the OFD and XML the invoicing platform issued beside it (in production only the
    platform's files: `invoices.invoice_file`)."""
    def fmt(invoice: m.Invoice | None) -> Markup:
        links = [Markup('<a class="ciie-invoice-{}" href="{}"><i class="fa fa-download"></i> '
                        '{}</a>').format(kind, url_for(f"{endpoint}.download", filename=key),
                                         label)
                 for kind, label in FILE_LINK_LABELS.items()
                 if invoice is not None and (key := invoices.invoice_file(invoice, kind))]
        return Markup(" ").join(links)

    return fmt


def logistics_link(invoice_id: int | None) -> Markup:
    if not invoice_id:
        return Markup("")
    return Markup('<a class="ciie-logistics" href="{}"><i class="fa fa-truck"></i> {}</a>').format(
        url_for("UnitInvoiceView.logistics", pk=invoice_id), _("View logistics"))


def request_link(order_id: int | None) -> Markup:
    """The order list's link to ask for an invoice (only for paid orders without one)."""
    if not order_id:
        return Markup("")
    return Markup('<a class="btn btn-sm btn-primary ciie-request-invoice" href="{}">'
                  '<i class="fa fa-file-text"></i> {}</a>').format(
        url_for("UnitInvoiceView.request_invoice", order_id=order_id), _("Request an invoice"))


def form_page(view: ScopedModelView, form: DynamicForm, title: Any,
              summary: list[tuple[Any, Any]], note: Any = None):
    """A form under a summary of the record it acts on (unit request, finance issue/mail)."""
    widget = FormWidget(form=form, include_cols=[f.name for f in form if f.name != "csrf_token"],
                        exclude_cols=[], fieldsets=[])
    return view.render_template("ciie/invoice_form.html", title=title, summary=summary,
                                note=note, widgets={"add": widget})


class InvoiceFiles:
    """The downloads of an invoice's PDF, OFD and XML, scoped like every file: only a row in
    the actor's scope holding that key is served (in production only a file the invoicing
    platform issued), named after the invoice number."""

    file_columns = ("pdf_key", "ofd_key", "xml_key")

    @expose("/download/<string:filename>")
    @has_access
    def download(self, filename: str):
        Inv = m.Invoice
        invoice = db.session.scalars(scoped(sa.select(Inv).where(sa.or_(
            Inv.pdf_key == filename, Inv.ofd_key == filename, Inv.xml_key == filename)),
            Inv)).first()
        kind = next((k for k in FILE_TYPES
                     if invoice is not None and getattr(invoice, f"{k}_key") == filename), None)
        if kind is None or invoices.invoice_file(invoice, kind) is None:
            abort(404)
        return send_from_directory(current_app.config["UPLOAD_FOLDER"], filename,
                                   as_attachment=True, mimetype=FILE_TYPES[kind],
                                   download_name=f"invoice-{invoice.number}.{kind}")


# --------------------------------------------------------------------------------------------
# Unit
# --------------------------------------------------------------------------------------------

class InvoiceRequestForm(DynamicForm):
    kind = SelectField(_l("Invoice type"), validators=[DataRequired()],
                       choices=[(k.value, k.label) for k in m.InvoiceKind])
    buyer_name = StringField(_l("Buyer's name"), validators=[Optional(), Length(max=200)])
    buyer_tax_id = StringField(_l("Buyer's taxpayer ID (unified social credit code)"),
                               validators=[Optional(), Length(max=30)])
    buyer_address = StringField(_l("Buyer's address"), validators=[Optional(), Length(max=300)])
    buyer_phone = StringField(_l("Buyer's phone"), validators=[Optional(), Length(max=32)])
    buyer_bank = StringField(_l("Buyer's bank"), validators=[Optional(), Length(max=200)])
    buyer_account = StringField(_l("Buyer's account number"),
                                validators=[Optional(), Length(max=64)])


BUYER_FORM_FIELDS = {"name": "buyer_name", "tax_id": "buyer_tax_id",
                     "address": "buyer_address", "phone": "buyer_phone", "bank": "buyer_bank",
                     "account": "buyer_account"}


class UnitInvoiceView(InvoiceFiles, ScopedModelView):
    """The unit's invoices (and red-letter reversals): download, logistics, voiding."""

    route_base = "/unit/invoices"
    class_permission_name = "UnitInvoices"
    datamodel = ScopedInterface(m.Invoice)
    title = _l("Invoices")
    base_order = ("id", "desc")
    list_columns = ["number", "order.number", "invoice_type", "status", "signed_amount_fen",
                    "buyer_name", "issued_at", "files", "logistics", "reversal_of.number"]
    show_columns = DETAIL_COLUMNS
    search_columns = ["status", "kind", "number", "issued_at"]
    order_columns = ["number", "status", "issued_at"]
    base_permissions = ["can_list", "can_show", "can_download", "can_request", "can_logistics"]
    label_columns = INVOICE_LABELS
    formatters_columns = {"files": pdf_link("UnitInvoiceView"), "logistics": logistics_link,
                          "signed_amount_fen": signed_money, "invoice_type": invoice_type}
    list_template = "ciie/invoice_list.html"
    # The unit reads this dialog: it is asked why, in its own terms.
    reason_actions = {"request_void": (_l("Reason for voiding: why should this invoice be "
                                          "voided?"),
                                       _l("Enter the reason for voiding the invoice."))}

    # The reason is asked in the list's dialog; the show page has no dialog for it.
    @batch_action("request_void", _l("Void the invoice"),
                  _l("An e-invoice is reversed by a red-letter invoice the invoicing platform "
                     "issues. A paper invoice must be mailed back; finance voids it when it "
                     "arrives."), "fa-undo",
                  single=False)
    def request_void(self, selection: Selection):
        return invoices.request_void(current_actor(), selection.ids, request.form.get("reason"))

    @batch_action("withdraw_requests", _l("Withdraw the request"),
                  _l("Take back an invoice request finance has not issued yet; you may then "
                     "ask again."), "fa-reply")
    def withdraw_requests(self, selection: Selection):
        return invoices.withdraw_requests(current_actor(), selection.ids)

    @expose("/request/<int:order_id>", methods=["GET", "POST"])
    @has_access
    @permission_name("request")
    def request_invoice(self, order_id: int):
        """Ask for an invoice for one paid order; the buyer is locked to the payer for B2B and
        transfer payments (shown read-only), pre-filled with the unit for QR payments."""
        actor = current_actor()
        order, defaults, locked = invoices.buyer_defaults(actor, order_id)
        if invoices.active_invoice_exists(order.id) and request.method == "GET":
            flash(_("An invoice for this order is already requested or issued; void it first "
                    "to ask for another one."), "warning")
            return redirect(url_for("UnitInvoiceView.list"))
        # On a POST the submitted values win; the defaults fill only what was not sent.
        form = InvoiceRequestForm(data={f: getattr(defaults, k)
                                        for k, f in BUYER_FORM_FIELDS.items()})
        if locked:
            for name in invoices.LOCKED_FIELDS:
                if getattr(defaults, name):
                    getattr(form, BUYER_FORM_FIELDS[name]).render_kw = {"readonly": True}
        if request.method == "POST" and form.validate() and attempt(
                lambda: invoices.request_invoice(actor, order.id, form.kind.data,
                                                 invoices.BuyerData(**{
                                                     k: getattr(form, f).data or ""
                                                     for k, f in BUYER_FORM_FIELDS.items()})),
                _("Your invoice request was sent.")):
            return redirect(url_for("UnitInvoiceView.list"))
        payment = invoices.confirmed_payment(order.id)
        note = _("The buyer is the paying unit named by the payment: its name, taxpayer ID, "
                 "bank and account cannot be changed.") if locked else \
            _("Check the buyer: it is printed on the invoice as entered.")
        return form_page(self, form, _("Request an invoice"), [
            (_("Order"), order.number), (_("Amount"), fmt_money(order.amount_fen)),
            (_("Payment method"), payment.channel.label if payment else ""),
            (_("Special VAT paper invoice"),
             _("needs the buyer's taxpayer ID, address, phone, bank and account")),
        ], note)

    @expose("/logistics/<int:pk>")
    @has_access
    @permission_name("logistics")
    def logistics(self, pk: int):
        """Where the paper invoice is: carrier, tracking number and when it was mailed."""
        invoice = get_scoped(m.Invoice, pk, current_actor())
        if invoice is None:
            abort(404)
        mailed_at = db.session.scalar(sa.select(sa.func.max(m.AuditEvent.at)).where(
            m.AuditEvent.record_type == invoices.RECORD, m.AuditEvent.record_id == invoice.id,
            m.AuditEvent.action == "mail"))
        return self.render_template("ciie/invoice_logistics.html", title=_("Logistics"),
                                    invoice=invoice, mailed_at=fmt_datetime(mailed_at))


# --------------------------------------------------------------------------------------------
# Finance
# --------------------------------------------------------------------------------------------

class IssueForm(DynamicForm):
    number = StringField(_l("Invoice number printed on the paper invoice"),
                         validators=[DataRequired(), Length(max=32)])


class MailForm(DynamicForm):
    carrier = StringField(_l("Carrier"), validators=[DataRequired(), Length(max=50)])
    tracking_no = StringField(_l("Tracking number"), validators=[DataRequired(), Length(max=64)])


# The uploaded list waiting for finance's confirmation: {key, mode, file, carrier}.
BATCH_SESSION = "paper_invoice_batch"
BATCH_MODE_FIELD = _l("What the list does")
BATCH_MODE_LABELS = {"issue": _l("Issue: the paper invoices were printed"),
                     "mail": _l("Mark as mailed: the paper invoices were sent")}


class FinanceInvoiceView(InvoiceFiles, ScopedModelView):
    """Finance's invoice queue: every invoice, filters, paper issue and mailing, returns,
    rejections."""

    route_base = "/finance/invoices"
    class_permission_name = "FinanceInvoices"
    datamodel = ScopedInterface(m.Invoice)
    title = _l("Invoices")
    base_order = ("id", "desc")
    list_columns = ["number", "order.number", "unit.name", "invoice_type", "status",
                    "signed_amount_fen", "buyer_name", "buyer_tax_id", "created_at",
                    "issued_at", "files", "carrier", "tracking_no", "reversal_of.number"]
    show_columns = ["unit.name"] + DETAIL_COLUMNS
    # The export writes the rows of the same filters (app.exports.INVOICES).
    search_columns = INVOICES.search_columns
    order_columns = ["number", "status", "buyer_name", "created_at", "issued_at"]
    base_permissions = ["can_list", "can_show", "can_download", "can_issue", "can_mail",
                        "can_export", "can_batch"]
    label_columns = INVOICE_LABELS
    list_template = "ciie/finance/invoices.html"
    formatters_columns = {"files": pdf_link("FinanceInvoiceView"),
                          "signed_amount_fen": signed_money, "invoice_type": invoice_type}
    export_operation = "export_invoices"
    # Finance reads this dialog; the unit reads the reason.
    reason_actions = {"reject_invoices": (
        _l("Reason for rejecting the request (the unit will see it):"),
        _l("Enter the reason for rejecting the invoice request; the unit will see it."))}

    def _summary(self, invoice: m.Invoice) -> list[tuple[Any, Any]]:
        return [(self.label_columns[c], getattr(invoice, c) or "") for c in (
            "buyer_name", "buyer_tax_id", "buyer_address", "buyer_phone", "buyer_bank",
            "buyer_account")] + [(_("Order"), invoice.order.number),
                                 (_("Amount"), fmt_money(invoice.amount_fen)),
                                 (_("Invoice type"), invoice.kind.label),
                                 (_("Status"), invoice.status.label)]

    def _invoice(self, pk: int) -> m.Invoice:
        invoice = get_scoped(m.Invoice, pk, current_actor())
        if invoice is None:
            abort(404)
        return invoice

    @batch_action("issue_paper", _l("Issue the paper invoice"), None, "fa-pencil",
                  multiple=False)
    def issue_paper(self, selection: Selection):
        return redirect(url_for("FinanceInvoiceView.issue", pk=selection.id_list()[0]))

    @batch_action("mail_paper", _l("Mark as mailed"), None, "fa-truck", multiple=False)
    def mail_paper(self, selection: Selection):
        return redirect(url_for("FinanceInvoiceView.mail", pk=selection.id_list()[0]))

    @batch_action("reject_invoices", _l("Reject the request"), None, "fa-times")
    def reject_invoices(self, selection: Selection):
        return invoices.reject_requests(current_actor(), selection.ids,
                                        request.form.get("reason"))

    @batch_action("confirm_returned", _l("Paper invoice returned: void it"),
                  _l("Confirm that the paper invoices came back; they are voided."), "fa-undo")
    def confirm_returned(self, selection: Selection):
        return invoices.confirm_returned(current_actor(), selection.ids)

    @batch_action("regenerate_e_invoices", _l("Make the e-invoice again"), None, "fa-refresh")
    def regenerate_e_invoices(self, selection: Selection):
        return invoices.regenerate(current_actor(), selection.ids)

    @expose("/issue/<int:pk>", methods=["GET", "POST"])
    @has_access
    @permission_name("issue")
    def issue(self, pk: int):
        """Finance enters the number of the paper special invoice it issued."""
        invoice = self._invoice(pk)
        form = IssueForm()
        if request.method == "POST" and form.validate() and attempt(
                lambda: invoices.issue_paper(current_actor(), invoice.id, form.number.data),
                _("Issued.")):
            return redirect(url_for("FinanceInvoiceView.show", pk=invoice.id))
        return form_page(self, form, _("Issue the paper invoice"), self._summary(invoice))

    @expose("/mail/<int:pk>", methods=["GET", "POST"])
    @has_access
    @permission_name("mail")
    def mail(self, pk: int):
        """Finance records how the issued paper invoice was sent."""
        invoice = self._invoice(pk)
        form = MailForm()
        if request.method == "POST" and form.validate() and attempt(
                lambda: invoices.mail_paper(current_actor(), invoice.id, form.carrier.data,
                                            form.tracking_no.data), _("Saved.")):
            return redirect(url_for("FinanceInvoiceView.show", pk=invoice.id))
        return form_page(self, form, _("Paper invoice mailed"), self._summary(invoice))

    # ---- paper invoices in batches: upload → preview → confirm ------------------------------

    @expose("/batch", methods=["GET", "POST"])
    @has_access
    @permission_name("batch")
    def batch(self):
        """Finance uploads the list of paper invoices it printed (order number, invoice
        number) or mailed (order number, tracking number, carrier): a preview says which rows
        apply and why the others do not; nothing changes until finance confirms."""
        if request.method == "GET":
            return self.render_template(
                "ciie/finance/invoice_batch.html", title=_("Paper invoices from a list"),
                columns=invoices.batch_labels(), modes=BATCH_MODE_LABELS)
        mode = request.form.get("mode", "")
        if mode not in BATCH_MODE_LABELS:
            raise InputRefused(_l("Check \"%(field)s\": choose one of the options offered. "
                                  "Nothing was changed.", field=BATCH_MODE_FIELD))
        carrier = (request.form.get("carrier") or "").strip()
        if len(carrier) > invoices.CARRIER_MAX:
            raise too_long("carrier", invoices.CARRIER_MAX, len(carrier))
        upload = request.files.get("invoice_list")
        if upload is None or not upload.filename:
            raise InputRefused(_l("Check \"%(field)s\": choose the file to upload. Nothing "
                                  "was changed.", field=invoices.BATCH_FILE_FIELD))
        most = current_app.config["MAX_DOCUMENT_BYTES"]
        data = upload.read(most + 1)
        if len(data) > most:
            raise InputRefused(_l("Check \"%(field)s\": the file is larger than %(mb)d MB. "
                                  "Nothing was changed.", field=invoices.BATCH_FILE_FIELD,
                                  mb=most // 1024 // 1024))
        rows = invoices.plan_paper_batch(current_actor(), mode, data, upload.filename, carrier)
        # The confirmation applies this very file, read again then: the invoices may have
        # moved since the preview, and each row is checked again as it is applied.
        previous = session.pop(BATCH_SESSION, None)
        if previous:
            storage.remove(previous["key"])
        key = storage.store(data, upload.filename.rsplit(".", 1)[-1].lower())
        session[BATCH_SESSION] = {"key": key, "mode": mode, "file": upload.filename[:200],
                                  "carrier": carrier}
        return self.render_template(
            "ciie/finance/invoice_batch_preview.html", title=_("Check the list"), rows=rows,
            mode=mode, mode_label=BATCH_MODE_LABELS[mode], file_name=upload.filename,
            batch_key=key, applying=sum(1 for r in rows if r.applies))

    @expose("/batch/confirm", methods=["POST"])
    @has_access
    @permission_name("batch")
    def batch_confirm(self):
        pending = session.get(BATCH_SESSION)
        data = None
        if pending and request.form.get("batch") == pending["key"]:
            try:
                with open(storage.path_of(pending["key"]), "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                session.pop(BATCH_SESSION, None)
        if data is None:
            flash(_("This list was already applied or is no longer waiting; upload it again."),
                  "warning")
            return redirect(url_for("FinanceInvoiceView.batch"))
        actor = current_actor()
        rows = invoices.plan_paper_batch(actor, pending["mode"], data, pending["file"],
                                         pending["carrier"])
        outcome = {}
        if not attempt(lambda: outcome.update(result=invoices.apply_paper_batch(
                actor, pending["mode"], rows, pending["file"]))):
            return redirect(url_for("FinanceInvoiceView.batch"))
        session.pop(BATCH_SESSION, None)
        storage.remove(pending["key"])
        return self.render_template(
            "ciie/finance/invoice_batch_result.html", title=_("Paper invoices from a list"),
            result=outcome["result"], mode_label=BATCH_MODE_LABELS[pending["mode"]],
            file_name=pending["file"])

