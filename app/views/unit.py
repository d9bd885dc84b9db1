"""The unit's dashboard: its persons, documents, addresses, orders and event applications."""
from __future__ import annotations

from datetime import date
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.forms import DynamicForm
from flask_appbuilder.models.sqla.filters import FilterEqual, FilterEqualFunction
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy.orm import undefer
from wtforms import BooleanField, FileField, SelectField, SelectMultipleField, StringField, widgets
from wtforms.validators import DataRequired, Email, Length, Optional

from app import models as m
from app.documents import photo_check
from app.extensions import db
from app.labels import fmt_entry_days
from app.scoping.actor import current_actor, write_scope
from app.scoping.interface import ScopedInterface, Selection
from app.scoping.rules import get_scoped
from app.views.base import ScopedModelView, attempt, batch_action, download_link, flash_batch_result
from app.views.invoices import request_link as invoice_request_link
from app.workflow import addresses, documents, events, payments, persons
from app.workflow.editions import current_edition
from app.workflow.errors import WorkflowError


def current_edition_id() -> int:
    return current_edition().id


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


def _choices(enum_cls: type) -> list[tuple[str, Any]]:
    return [(e.value, e.label) for e in enum_cls]


class PersonForm(DynamicForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=100)])
    # Left empty, the gender is read from the ID number (those that carry it).
    gender = SelectField(_l("Gender"),
                         choices=[("", _l("As in the ID number"))] + _choices(m.Gender),
                         validators=[Optional()])
    id_type = SelectField(_l("ID document"), choices=_choices(m.IdType),
                          validators=[DataRequired()])
    id_number = StringField(_l("ID number"), validators=[DataRequired(), Length(max=32)])
    nationality = StringField(_l("Nationality (2-letter country code)"), default="CN",
                              validators=[DataRequired(), Length(min=2, max=2)])
    mobile = StringField(_l("Mobile"), validators=[Optional(), Length(max=32)])
    email = StringField(_l("E-mail"), validators=[Optional(), Email(), Length(max=254)])
    job_title = StringField(_l("Job title"), validators=[Optional(), Length(max=100)])
    entry_dates = MultiCheckboxField(_l("Entry dates"), choices=[])
    photo = FileField(_l("Photo (JPEG or PNG, at most 2 MB, at least 100 × 120 pixels)"),
                      description=_l("The person alone, face from the front, head and "
                                     "shoulders filling the photo, in good light, on a plain "
                                     "light background. It is checked when you save."))


class EntryDatesForm(DynamicForm):
    """After submission only the entry dates change, until the person is in an order."""

    entry_dates = MultiCheckboxField(_l("Entry dates"), choices=[])


def uploaded_photo():
    photo = request.files.get("photo")
    return photo if photo is not None and photo.filename else None


VERDICT_CSS = {m.PhotoVerdict.passed: "label-success", m.PhotoVerdict.warning: "label-warning",
               m.PhotoVerdict.refused: "label-danger"}


def photo_result(result: tuple[m.PhotoVerdict | None, dict] | None) -> Markup:
    """The photo's upload check as stored (PersonRegistration.photo_result): the verdict, the
    problems found and the figures measured; nothing without a photo."""
    if result is None:
        return Markup("")
    verdict, figures = result
    if verdict is None:
        return Markup('<span class="label label-default ciie-photo-check">{}</span>').format(
            _("Not checked"))
    problems = [m.PhotoProblem(p).label for p in figures.get("problems", [])]
    html = Markup('<span class="label {} ciie-photo-check" data-verdict="{}">{}</span>').format(
        VERDICT_CSS[verdict], verdict.value, verdict.label)
    if problems:
        html += Markup(' <span class="ciie-photo-problems">{}</span>').format(
            _("; ").join(str(p) for p in problems))
    if figures.get("faces") is not None:
        html += Markup('<br><small class="text-muted ciie-photo-figures">{}</small>').format(
            _("faces: %(faces)d · face height %(ratio)d%% · brightness %(luminance)d/255 · "
              "background %(background)d ± %(spread)d", faces=figures["faces"],
              ratio=round(100 * (figures.get("face_ratio") or 0)),
              luminance=round(figures["luminance"]),
              background=round(figures["background_luminance"]),
              spread=round(figures["background_spread"])))
    return html


def flash_photo_warnings(registration: m.PersonRegistration) -> None:
    """A photo let through with a warning: the unit reads why at once."""
    result = registration.photo_result
    if result is None or result[0] is not m.PhotoVerdict.warning:
        return
    flash(_("Photo: %(problems)s", problems=" ".join(
        str(w) for w in photo_check.stored_warnings(result[1]))), "warning")


def thumbnail(person_id: int | None) -> Markup:
    """The person's thumbnail (served by the scoped file view), or nothing."""
    if not person_id:
        return Markup("")
    return Markup('<img class="ciie-thumb" src="{}" alt="" loading="lazy">').format(
        url_for("PersonFileView.thumb", person_id=person_id))


def person_form_with_days(form: PersonForm | EntryDatesForm) -> PersonForm | EntryDatesForm:
    edition = current_edition()
    form.entry_dates.choices = [(d.isoformat(), d.strftime("%Y-%m-%d")) for d in edition.days]
    return form


def person_data(form: PersonForm) -> persons.PersonData:
    return persons.PersonData(
        name=form.name.data, gender=m.Gender(form.gender.data) if form.gender.data else None,
        id_type=m.IdType(form.id_type.data), id_number=form.id_number.data,
        nationality=form.nationality.data, mobile=form.mobile.data, email=form.email.data,
        job_title=form.job_title.data,
        entry_dates=[date.fromisoformat(d) for d in form.entry_dates.data or []],
    )


class UnitPersonView(ScopedModelView):
    """The unit's persons in the current edition; drafts can be changed and submitted."""

    route_base = "/unit/persons"
    class_permission_name = "UnitPersons"
    datamodel = ScopedInterface(m.PersonRegistration)
    title = _l("Persons")
    base_filters = [["edition_id", FilterEqualFunction, current_edition_id]]
    base_order = ("id", "desc")
    list_columns = ["photo", "person.name", "person.gender", "person.id_type",
                    "person.id_number", "person.mobile", "tag", "entry_days", "status",
                    "is_reuse"]
    show_columns = ["photo", "photo_result", "person.name", "person.gender", "person.id_type",
                    "person.id_number", "person.nationality", "person.mobile", "person.email",
                    "person.job_title", "tag", "entry_days", "status", "is_reuse",
                    "submitted_at"]
    search_columns = ["status", "tag", "is_reuse", "person_name", "person_id_search",
                      "person_mobile_search"]
    add_form = PersonForm
    edit_form = PersonForm
    add_columns = edit_columns = ["name", "gender", "id_type", "id_number", "nationality",
                                  "mobile", "email", "job_title", "entry_dates", "photo"]
    formatters_columns = {"entry_days": fmt_entry_days, "photo": thumbnail,
                          "photo_result": photo_result}

    @staticmethod
    def _refused(form, call) -> int | None:
        """Run the save; on a refusal roll back, show the reason (at its field when it names
        one) and answer the form again with the refusal's status, the typed values kept."""
        try:
            saved = call()
        except WorkflowError as exc:
            db.session.rollback()
            if exc.status_code == 404:
                abort(404)
            field = getattr(form, getattr(exc, "field", ""), None)
            if field is not None:
                # FAB's form template passes each field error through Jinja's gettext, which
                # %-formats it: a literal "%" (a share, a typed "50%") is doubled to survive.
                field.errors = [*field.errors, str(exc.message).replace("%", "%%")]
            flash(str(exc.message), "danger")
            return exc.status_code
        flash(_("Saved."), "success")
        if isinstance(saved, m.PersonRegistration) and uploaded_photo() is not None:
            flash_photo_warnings(saved)
        return None

    @expose("/add", methods=["GET", "POST"])
    @has_access
    def add(self):
        form = person_form_with_days(self.add_form.refresh())
        status = 200
        if request.method == "POST" and form.validate():
            status = self._refused(form, lambda: persons.save_person(
                current_actor(), person_data(form), photo=uploaded_photo()))
            if status is None:
                return self.post_add_redirect()
        return self.render_template(self.add_template, title=self.add_title,
                                    widgets=self._get_add_widget(form=form)), status

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    def edit(self, pk):
        actor = current_actor()
        with write_scope():
            registration = get_scoped(m.PersonRegistration, pk, actor)
        if registration is None:
            abort(404)
        if registration.status not in persons.EDITABLE:
            return self._edit_entry_dates(actor, registration)
        status = 200
        if request.method == "POST":
            form = person_form_with_days(self.edit_form.refresh(request.form))
            if form.validate():
                status = self._refused(form, lambda: persons.save_person(
                    actor, person_data(form), registration.id, photo=uploaded_photo()))
                if status is None:
                    return redirect(self.get_redirect())
        else:
            person = registration.person
            form = person_form_with_days(self.edit_form.refresh(obj=person))
            form.gender.data = person.gender.value
            form.id_type.data = person.id_type.value
            form.entry_dates.data = [d.isoformat() for d in registration.entry_dates]
        return self.render_template(self.edit_template, title=self.edit_title,
                                    widgets=self._get_edit_widget(form=form)), status

    def _edit_entry_dates(self, actor, registration: m.PersonRegistration):
        """A submitted person: only its entry dates, and only until it is in an order; when
        they cannot change, the reason instead of a form."""
        refusal = persons.entry_dates_refusal(registration)
        if refusal is not None:
            flash(str(refusal), "warning")
            return redirect(url_for(f"{self.endpoint}.show", pk=registration.id))
        status = 200
        if request.method == "POST":
            form = person_form_with_days(EntryDatesForm())
            if form.validate():
                status = self._refused(form, lambda: persons.change_entry_dates(
                    actor, registration.id,
                    [date.fromisoformat(d) for d in form.entry_dates.data or []]))
                if status is None:
                    return redirect(self.get_redirect())
        else:
            form = person_form_with_days(EntryDatesForm())
            form.entry_dates.data = [d.isoformat() for d in registration.entry_dates]
            flash(_("%(name)s is submitted: only the entry dates can be changed, until the "
                    "person is in an order.", name=registration.person.name), "info")
        widget = self.edit_widget(form=form, include_cols=["entry_dates"], exclude_cols=[],
                                  fieldsets=None)
        return self.render_template(self.edit_template, title=self.edit_title,
                                    widgets={"edit": widget}), status

    def _delete(self, pk):
        attempt(lambda: persons.delete_draft(current_actor(), pk), _("Deleted."))

    @batch_action("submit_persons", _l("Submit"),
                  _l("Submitted persons go to the delegation and can no longer be changed."),
                  "fa-paper-plane")
    def submit_persons(self, selection: Selection):
        return persons.submit_persons(current_actor(), selection.ids)

    @batch_action("order_badges", _l("Submit badge order (pay)"),
                  _l("The ticked persons awaiting payment go into one order."), "fa-credit-card")
    def order_badges(self, selection: Selection):
        order = payments.create_order(current_actor(), selection.id_list())
        return redirect(url_for("UnitOrderPageView.show", order_id=order.id))

    @batch_action("cancel_persons", _l("Cancel (withdraw)"),
                  _l("Cancelled persons get no badge; if they were paid for, they can be "
                     "refunded."), "fa-ban")
    def cancel_persons(self, selection: Selection):
        return self.run_operation("cancel_persons", selection)

    @batch_action("accept_joins", _l("Accept into the unit"), None, "fa-user-plus")
    def accept_joins(self, selection: Selection):
        return persons.decide_joins(current_actor(), selection.ids, accept=True)

    @batch_action("refuse_joins", _l("Refuse to join"), None, "fa-user-times")
    def refuse_joins(self, selection: Selection):
        return persons.decide_joins(current_actor(), selection.ids, accept=False,
                                    reason=request.form.get("reason"))


class AddressForm(DynamicForm):
    recipient = StringField(_l("Recipient"), validators=[DataRequired(), Length(max=100)])
    phone = StringField(_l("Phone"), validators=[DataRequired(), Length(max=32)])
    province = StringField(_l("Province"), validators=[DataRequired(), Length(max=50)])
    city = StringField(_l("City"), validators=[DataRequired(), Length(max=50)])
    detail = StringField(_l("Street address"), validators=[DataRequired(), Length(max=300)])
    postcode = StringField(_l("Postcode"), validators=[Optional(), Length(max=10)])
    is_default = BooleanField(_l("Use as the default address"))


class AddressView(ScopedModelView):
    """Up to five badge delivery addresses; exactly one is the default."""

    route_base = "/unit/addresses"
    class_permission_name = "UnitAddresses"
    datamodel = ScopedInterface(m.Address)
    title = _l("Delivery addresses")
    base_order = ("slot", "asc")
    list_columns = ["slot", "recipient", "phone", "province", "city", "detail", "postcode",
                    "is_default"]
    show_columns = list_columns
    search_columns = ["city"]
    add_form = AddressForm
    edit_form = AddressForm
    add_columns = edit_columns = ["recipient", "phone", "province", "city", "detail",
                                  "postcode", "is_default"]

    def _form_data(self, form: AddressForm) -> dict[str, Any]:
        return {k: getattr(form, k).data for k in addresses.FIELDS}

    def _add(self):
        form = self.add_form.refresh()
        if request.method == "POST" and form.validate() and attempt(
                lambda: addresses.add_address(current_actor(), self._form_data(form),
                                              make_default=form.is_default.data), _("Saved.")):
            return None
        return self._get_add_widget(form=form)

    def _edit(self, pk):
        actor = current_actor()
        address = get_scoped(m.Address, pk, actor)
        if address is None:
            abort(404)
        if request.method == "POST":
            form = self.edit_form.refresh(request.form)
            if form.validate() and attempt(lambda: addresses.update_address(
                    actor, address.id, self._form_data(form),
                    make_default=form.is_default.data), _("Saved.")):
                return None
        else:
            form = self.edit_form.refresh(obj=address)
        return self._get_edit_widget(form=form)

    def _delete(self, pk):
        attempt(lambda: addresses.delete_address(current_actor(), pk), _("Deleted."))

    @batch_action("set_default", _l("Make default"), None, "fa-star", multiple=False)
    def set_default(self, selection: Selection):
        ids = selection.id_list()
        addresses.set_default_address(current_actor(), ids[0])
        flash(_("Saved."), "success")
        return redirect(self.get_redirect())


class DocumentForm(DynamicForm):
    file = FileField(_l("Qualification document (PDF, JPEG or PNG)"))


class UnitDocumentView(ScopedModelView):
    """Qualification documents; files are served only through the scoped download."""

    route_base = "/unit/documents"
    class_permission_name = "UnitDocuments"
    datamodel = ScopedInterface(m.UnitDocument)
    title = _l("Qualification documents")
    base_order = ("uploaded_at", "desc")
    list_columns = ["original_name", "content_type", "size_bytes", "uploaded_at", "storage_key"]
    show_columns = list_columns
    search_columns = ["original_name"]
    add_form = DocumentForm
    add_columns = ["file"]
    file_columns = ("storage_key",)
    base_permissions = ["can_list", "can_show", "can_add", "can_delete", "can_download"]
    formatters_columns = {"storage_key": download_link("UnitDocumentView")}

    def _add(self):
        form = self.add_form.refresh()
        if request.method == "POST" and form.validate() and attempt(
                lambda: documents.add_document(current_actor(), request.files.get("file")),
                _("Uploaded.")):
            return None
        return self._get_add_widget(form=form)

    def _edit(self, pk):
        abort(404)

    def _delete(self, pk):
        attempt(lambda: documents.delete_document(current_actor(), pk), _("Deleted."))


def pay_link(pk: int) -> Markup:
    """The list's link to the order's payment page (which says why when it cannot be paid)."""
    return Markup('<a class="btn btn-sm btn-primary ciie-pay" href="{}">'
                  '<i class="fa fa-credit-card"></i> {}</a>').format(
        url_for("UnitPaymentView.order", order_id=pk), _("Pay"))


class UnitOrderView(ScopedModelView):
    """The unit's badge-fee orders (read here; paying is on the order page); a paid order
    without an active invoice links to the invoice request."""

    route_base = "/unit/orders"
    class_permission_name = "UnitOrders"
    # The request link is computed in the list's own SELECT (no query per row).
    datamodel = ScopedInterface(m.Order, options=[undefer(m.Order.invoice_request_id)])
    title = _l("Badge-fee orders")
    base_filters = [["edition_id", FilterEqualFunction, current_edition_id]]
    base_order = ("id", "desc")
    list_columns = ["number", "status", "fee_fen", "amount_fen", "created_at", "paid_at", "id",
                    "invoice_request_id"]
    show_columns = list_columns
    formatters_columns = {
        "number": lambda number: Markup('<a href="{}">{}</a>').format(
            url_for("UnitOrderPageView.by_number", number=number), number),
        "id": pay_link, "invoice_request_id": invoice_request_link}
    search_columns = ["number", "status"]
    order_columns = ["number", "status", "fee_fen", "amount_fen", "created_at", "paid_at"]
    base_permissions = ["can_list", "can_show"]
    label_columns = {"id": _l("Payment record"), "invoice_request_id": _l("Invoice")}


def apply_link(pk: int) -> Markup:
    """The list's link to the page where the unit picks persons for an event."""
    return Markup('<a class="btn btn-sm btn-primary ciie-apply" href="{}">'
                  '<i class="fa fa-user-plus"></i> {}</a>').format(
        url_for("UnitEventView.apply", pk=pk), _("Apply"))


class UnitEventView(ScopedModelView):
    """Published supporting events of the current edition open to professional visitors; the
    unit applies for its persons from here."""

    route_base = "/unit/events"
    class_permission_name = "UnitEvents"
    datamodel = ScopedInterface(m.Event)
    title = _l("Supporting events")
    # The scope already limits a unit to published events open to visitors; the filters say
    # so for any other reader of this page (admins) too.
    base_filters = [["edition_id", FilterEqualFunction, current_edition_id],
                    ["status", FilterEqual, m.EventStatus.published],
                    ["open_to_visitors", FilterEqual, True]]
    base_order = ("starts_at", "asc")
    list_columns = ["title", "starts_at", "ends_at", "place", "seats_left", "id"]
    show_columns = ["title", "description", "organiser", "starts_at", "ends_at", "place",
                    "capacity", "seats_left"]
    search_columns = ["title_zh", "title_en", "starts_at"]
    order_columns = ["starts_at", "ends_at", "place"]
    base_permissions = ["can_list", "can_show", "can_apply"]
    label_columns = {"id": _l("Apply")}
    formatters_columns = {"id": apply_link}
    show_template = "ciie/event_show.html"

    @expose("/apply/<int:pk>", methods=["GET", "POST"])
    @has_access
    def apply(self, pk: int):
        """Pick persons of the unit and apply for them; refusals re-show the page."""
        actor = current_actor()
        ids: list[int] = []
        if request.method == "POST":
            try:
                ids = [int(i) for i in request.form.getlist("persons")]
            except ValueError:
                abort(400)
            results = []
            if attempt(lambda: results.append(events.apply_to_event(actor, pk, ids))):
                flash_batch_result(results[0])
                return redirect(url_for("UnitApplicationView.list"))
        event = get_scoped(m.Event, pk, actor)
        if event is None:
            if request.method == "POST":
                # The event left the unit's sight meanwhile (closed): the reason is flashed.
                return redirect(url_for("UnitEventView.list"))
            abort(404)
        return self.render_template("ciie/event_apply.html", title=_("Apply for persons"),
                                    event=event,
                                    candidates=events.applicable_persons(actor, event),
                                    refusal=events.event_refusal(event),
                                    # A refused application re-shows the persons ticked.
                                    chosen=set(ids))


class UnitApplicationView(ScopedModelView):
    """The unit's applications to supporting events; applied or accepted ones can be
    withdrawn, many at once."""

    route_base = "/unit/applications"
    class_permission_name = "UnitApplications"
    datamodel = ScopedInterface(m.EventApplication)
    title = _l("Event applications")
    base_filters = [["event.edition_id", FilterEqualFunction, current_edition_id]]
    base_order = ("id", "desc")
    list_columns = ["event.title", "event.starts_at", "event.place",
                    "person_registration.person.name", "status", "decision_reason",
                    "created_at"]
    show_columns = ["event.title", "event.starts_at", "event.ends_at", "event.place",
                    "person_registration.person.name", "status", "decision_reason",
                    "created_at", "updated_at"]
    search_columns = ["status", "event"]
    base_permissions = ["can_list", "can_show"]

    @batch_action("withdraw_applications", _l("Withdraw"),
                  _l("Withdrawn applications free their seats."), "fa-undo")
    def withdraw_applications(self, selection: Selection):
        return events.withdraw_applications(current_actor(), selection.ids)
