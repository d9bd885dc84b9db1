"""The base of every model view: FAB's ModelView on the scoped data interface
(app/scoping/interface.py), with Beijing-time forms, translated enum choices, audited saves and
deletes, and actions on ticked rows or on all rows matching the list's filters, all checked
against the actor's write scope.
"""
from __future__ import annotations

import json
import logging
import re
import unicodedata
from datetime import date, datetime
from typing import Any, Callable
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    g,
    jsonify,
    make_response,
    redirect,
    request,
    send_from_directory,
    url_for,
)
from flask_appbuilder import ModelView
from flask_appbuilder import forms as fab_forms
from flask_appbuilder.actions import action as fab_action
from flask_appbuilder.baseviews import expose
from flask_appbuilder.fields import EnumField
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.urltools import get_filter_args
from flask_appbuilder.widgets import ListWidget
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from sqlalchemy.exc import IntegrityError
from wtforms import BooleanField, DateTimeField
from wtforms.fields.core import UnboundField
from wtforms.validators import DataRequired, InputRequired
from wtforms.widgets import html_params

from app import models as m
from app.clock import SHANGHAI
from app.extensions import db, queue
from app.formatting import fmt_money, fmt_value
from app.labels import COLUMN_LABELS
from app.pii import Sealed
from app.scoping.actor import WRITE, current_actor, write_scope
from app.scoping.interface import ScopedInterface, Selection, filtered_ids
from app.scoping.rules import condition, get_scoped, row_id, scoped
from app.templating import picker_locale
from app.views.filter_choices import choices_page, load_choices_lazily
from app.workflow import BatchResult, WorkflowError
from app.workflow.audit import record
from app.workflow.errors import InputRefused
from app.workflow.transitions import Move

log = logging.getLogger(__name__)


class LabelledEnumField(EnumField):
    """FAB labels enum choices with their raw values; ours show the translated label."""

    def __init__(self, enum_class, enums, **kwargs):
        super().__init__(enum_class, enums, **kwargs)
        if enum_class is not None and issubclass(enum_class, m.LabelledEnum):
            self.choices = [(name, enum_class[name].label) for name in enums]


# FAB's form converter looks the field class up in its module at form-build time.
fab_forms.EnumField = LabelledEnumField


# What a person may type in a date-time box; the first is how the box shows a time (with
# its seconds: a deadline of 23:59:59 must survive an edit).
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S",
                    "%Y/%m/%d %H:%M")


class ShanghaiDateTimeField(DateTimeField):
    """A moment typed and shown as Beijing wall-clock time, held as an aware datetime.

    FAB's DateTimeField yields naive datetimes, which `AwareDateTime` columns refuse, and
    insists on seconds; a person types `2022-10-08 23:59`, often with a Chinese input method's
    full-width digits and spaces."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["format"] = list(DATETIME_FORMATS)
        kwargs.setdefault("invalid_value_message", _l(
            "Enter a date and time as YYYY-MM-DD HH:MM (Beijing time)."))
        super().__init__(*args, **kwargs)

    def process_formdata(self, valuelist: list[str]) -> None:
        if valuelist:
            valuelist = [" ".join(unicodedata.normalize("NFKC", " ".join(valuelist)).split())]
        super().process_formdata(valuelist)
        if self.data is not None:
            self.data = self.data.replace(tzinfo=SHANGHAI)

    def _value(self) -> str:
        if self.raw_data:
            return " ".join(self.raw_data)
        if self.data is None:
            return ""
        return self.data.astimezone(SHANGHAI).strftime(self.format[0])


class ShanghaiDateTimePickerWidget:
    """A text box for a Beijing time, typed or picked from the calendar beside it
    (app/static/datetime.js). FAB's widget binds its date-only picker to the box itself, which
    replaces whatever is typed with a bare date (today's, if it cannot read it), and renders
    `field.data` in UTC."""

    def __call__(self, field: ShanghaiDateTimeField, **kwargs: Any) -> Markup:
        kwargs.setdefault("id", field.id)
        kwargs.setdefault("name", field.name)
        kwargs.setdefault("placeholder", _("YYYY-MM-DD HH:MM"))
        return Markup(
            '<div class="input-group ciie-datetime" %s>'
            '<span class="input-group-addon ciie-datetime-open" role="button" %s>'
            '<i class="fa fa-calendar cursor-hand"></i></span><input %s /></div>'
        ) % (Markup(html_params(data_ciie_datetime=json.dumps(picker_locale()))),
             Markup(html_params(title=_("Choose from the calendar"))),
             Markup(html_params(type="text", class_="form-control", autocomplete="off",
                                value=field._value(), **kwargs)))


def localise_datetime_fields(form: type | None, model: type) -> None:
    """Swap the DateTimeFields FAB generated for `AwareDateTime` columns of `model` for
    ShanghaiDateTimeFields, keeping their label, validators, description and position."""
    if form is None:
        return
    columns = sa.inspect(model).columns
    for name in list(vars(form)):
        unbound = vars(form)[name]
        if (not isinstance(unbound, UnboundField) or name not in columns
                or not isinstance(columns[name].type, m.AwareDateTime)
                or issubclass(unbound.field_class, ShanghaiDateTimeField)
                or not issubclass(unbound.field_class, DateTimeField)):
            continue
        local = UnboundField(ShanghaiDateTimeField, *unbound.args,
                             **{**unbound.kwargs, "widget": ShanghaiDateTimePickerWidget()})
        local.creation_counter = unbound.creation_counter
        setattr(form, name, local)


def untick_yes_no_fields(form: type | None) -> None:
    """A yes/no field may be unticked: an unticked checkbox sends nothing, and FAB makes the
    field of a NOT NULL boolean column required (so "active" could never be switched off).
    Unticked means no; the column stays NOT NULL."""
    for name, unbound in list(vars(form).items()) if form is not None else ():
        if not isinstance(unbound, UnboundField) or not issubclass(unbound.field_class,
                                                                    BooleanField):
            continue
        checks = [v for v in unbound.kwargs.get("validators") or []
                  if not isinstance(v, (DataRequired, InputRequired))]
        plain = UnboundField(unbound.field_class, *unbound.args,
                             **{**unbound.kwargs, "validators": checks})
        plain.creation_counter = unbound.creation_counter
        setattr(form, name, plain)


def batch_action(name: str, text: Any, confirmation: Any = None, icon: str | None = None,
                 multiple: bool = True, single: bool = True) -> Callable:
    """Declare an action that receives a Selection and returns a BatchResult."""
    return fab_action(name, text, confirmation, icon, multiple, single)


def attempt(call: Callable[[], Any], success: str | None = None) -> bool:
    """Run one workflow call for a form or button: on refusal roll back and flash the reason
    (a 404 refusal aborts with 404); on success flash `success`."""
    try:
        call()
    except InputRefused:
        raise   # the whole request is refused with its 400 (app.errors), not just flashed
    except WorkflowError as exc:
        db.session.rollback()
        if exc.status_code == 404:
            abort(404)
        flash(str(exc.message), "danger")
        return False
    if success:
        flash(success, "success")
    return True


def flash_batch_result(result: BatchResult, report_url: str | None = None,
                       reasons: int = 10, names: int = 3) -> None:
    """What a batch did, in a few lines: its count, and its refusals, each with its reason
    while they are few (up to `names`), else grouped by reason with their counts (the first
    `reasons` reasons, naming a few rows of each). Every refused row is on the batch report
    at `report_url`."""
    if result.done_count:
        flash(_("Done for %(count)d record(s).", count=result.done_count), "success")
    if result.refused:
        groups: dict[str, list[str]] = {}
        for refusal in result.refused:
            groups.setdefault(str(refusal.reason), []).append(str(refusal.label))
        ordered = sorted(groups.items(), key=lambda group: -len(group[1]))
        if len(result.refused) <= names:
            lines = [Markup("{}: {}").format(r.label, str(r.reason)) for r in result.refused]
        else:
            lines = [escape(_("%(reason)s (%(count)d): %(names)s", reason=reason,
                              count=len(rows), names=", ".join(rows[:names])
                              + ("…" if len(rows) > names else "")))
                     for reason, rows in ordered[:reasons]]
        more = sum(len(rows) for _reason, rows in ordered[reasons:])
        if more:
            lines.append(escape(_("and %(count)d more", count=more)))
        if report_url:
            lines.append(Markup('<a href="{}" id="batch-report-link">{}</a>').format(
                report_url, _("See the report: every row by reason, as Excel too")))
        flash(Markup(escape(_("Not done for %(count)d record(s):", count=len(result.refused)))
                     + Markup("<br>") + Markup("<br>").join(lines)), "warning")
    if not result.done_count and not result.refused:
        flash(_("Nothing to do."), "info")


class CiieListWidget(ListWidget):
    template = "ciie/widgets/list.html"


# FAB's hooks around a record's add, edit and delete, and the methods that run them.
_HOOKS = {("pre_add", "post_add"): ("add", "_add"),
          ("pre_update", "post_update"): ("edit", "_edit"),
          ("pre_delete", "post_delete"): ("delete", "_delete")}


class ScopedModelView(ModelView):
    """A ModelView whose list, show, edit, delete, actions, drop-downs and downloads are scoped.

    FAB's `pre_add`, `pre_update` and `pre_delete` hold a view's domain checks (raise
    WorkflowError to refuse: the reason is flashed, nothing is saved); `post_*` run after the
    commit. A view that writes through a workflow function instead (its own `add`/`_add`, …)
    may not define those hooks, which would never run: declaring one is a TypeError."""

    list_template = "ciie/list.html"
    list_widget = CiieListWidget
    show_template = "ciie/show.html"
    # Columns holding storage keys of uploaded files this view may serve through /download/.
    file_columns: tuple[str, ...] = ()
    # The record type written to the audit trail (default: the table name).
    audit_name: str | None = None

    # One translated title for the view; add, edit and show titles derive from it.
    title: Any = None
    # Actions that ask for a reason before they run: names (the dialog says the unit will see
    # the reason), or {name: (question, refusal of an empty reason)} worded for the reader.
    reason_actions: tuple[str, ...] | dict[str, tuple[Any, Any]] = ()
    # The background operation (app.tasks) that writes the listed rows to a file: "Export".
    export_operation: str | None = None
    # For an action that is no registered operation: the transition-table entries it moves
    # rows along (app.workflow.operations.OPERATION_MOVES holds the operations' own).
    actions_moves: dict[str, tuple[Move, ...]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for hooks, paths in _HOOKS.items():
            own_path = [p for p in paths if getattr(cls, p) is not getattr(ScopedModelView, p)]
            defined = [h for h in hooks if getattr(cls, h) is not getattr(ModelView, h)]
            if own_path and defined:
                raise TypeError(f"{cls.__name__} defines {', '.join(defined)}, which its own "
                                f"{own_path[0]}() never runs: check in the workflow instead")

    def __init__(self, **kwargs: Any) -> None:
        self.label_columns = {**COLUMN_LABELS, **(type(self).label_columns or {})}
        self.formatters_columns = dict(type(self).formatters_columns or {})
        super().__init__(**kwargs)
        if not self.file_columns and "can_download" in self.base_permissions:
            self.base_permissions.remove("can_download")
        if not self.export_operation and "can_export" in self.base_permissions:
            self.base_permissions.remove("can_export")
        if isinstance(self.datamodel, ScopedInterface):
            self.datamodel.eager_load_dotted(list(self.list_columns) + list(self.show_columns))
            self.datamodel.count_limited = True
        self.order_columns = [c for c in self.order_columns if self._sortable(c)]
        self._add_default_formatters()

    def _sortable(self, column: str) -> bool:
        """Only mapped SQL attributes sort; a Python property ("photo", "waiting") cannot, nor
        a sealed number (app.pii: its ciphertexts' order means nothing)."""
        model = self.datamodel.obj
        *path, last = column.split(".")
        for name in path:
            relation = sa.inspect(model).relationships.get(name)
            if relation is None:
                return False
            model = relation.mapper.class_
        attribute = sa.inspect(model).column_attrs.get(last)
        return attribute is not None and not any(isinstance(c.type, Sealed)
                                                 for c in attribute.columns)

    def post_add_redirect(self):
        """After adding, show the list the record joined (FAB goes back, which may be home)."""
        return redirect(url_for(f"{self.endpoint}.list"))

    def _init_forms(self) -> None:
        super()._init_forms()
        # Every view that edits timestamps takes and shows them in Beijing time.
        localise_datetime_fields(self.add_form, self.datamodel.obj)
        localise_datetime_fields(self.edit_form, self.datamodel.obj)
        untick_yes_no_fields(self.add_form)
        untick_yes_no_fields(self.edit_form)
        load_choices_lazily(self)

    def _init_titles(self) -> None:
        if self.title is not None:
            self.list_title = self.list_title or self.title
            self.show_title = self.show_title or _l("Details")
            self.add_title = self.add_title or _l("Add")
            self.edit_title = self.edit_title or _l("Edit")
        super()._init_titles()

    def reason_dialogs(self) -> dict[str, dict[str, str]]:
        """Each reason action's dialog: its question and the message an empty reason gets."""
        actions = self.reason_actions
        if not isinstance(actions, dict):
            actions = {name: (_l("Reason (the unit will see it):"), _l("Enter the reason."))
                       for name in actions}
        return {name: {"prompt": str(prompt), "required": str(required)}
                for name, (prompt, required) in actions.items()}

    def _get_list_widget(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("reason_actions", self.reason_dialogs())
        if kwargs.get("order_column") and kwargs["order_column"] not in self.order_columns:
            # A hand-written ?_oc_ for a column that cannot sort: the list keeps its own order.
            kwargs["order_column"] = kwargs["order_direction"] = ""
        widgets = super()._get_list_widget(*args, **kwargs)
        listing = widgets["list"].template_args
        listing["writable"] = self._writable(listing["pks"])
        listing["active_filters"] = self.active_filters(listing["filters"])
        listing["rows"] = list(zip(listing["pks"], self.list_cells(listing), strict=True))
        return widgets

    @staticmethod
    def list_cells(listing: dict[str, Any]) -> list[list[Markup]]:
        """Each row's cells formatted and escaped as the list template would (a Jinja call
        per cell was a third of the list's rendering)."""
        columns = listing["include_columns"]
        formatters = [listing["formatters_columns"].get(column) for column in columns]
        return [[escape(fmt(item[column]) if fmt else
                        ("" if item[column] is None else item[column]))
                 for column, fmt in zip(columns, formatters, strict=True)]
                for item in listing["value_columns"]]

    def _get_show_widget(self, pk: Any, item: Any, *args: Any, **kwargs: Any):
        widgets = super()._get_show_widget(pk, item, *args, **kwargs)
        if not self._writable([self.datamodel.get_pk_value(item)]):
            # A record the actor may only read offers no action buttons (each would be a 404).
            widgets["show"].template_args["actions"] = {}
        return widgets

    def _writable(self, pks: list[Any]) -> set[Any]:
        """The rows of the page the actor may change (one query): only they get a tick box
        and edit or delete buttons; a rolled-up unit its delegation may only read gets none."""
        model = self.datamodel.obj
        if not pks:
            return set()
        stmt = scoped(sa.select(model.id).where(model.id.in_(pks)), model, current_actor(),
                      WRITE)
        return set(db.session.scalars(stmt))

    def active_filters(self, filters: Any) -> list[dict[str, str]]:
        """The list's search filters as the user reads them: the column's label, the
        operation and the value (an enum's label, a related row's name), so that "all
        matching" says what it matches."""
        shown = []
        for flt, value in filters.get_filters_values():
            column = flt.column_name
            values = value if isinstance(value, list) else [value]
            shown.append({"column": str(self.label_columns.get(column, column)),
                          "operation": str(flt.name),
                          "value": ", ".join(self._filter_value_label(column, v)
                                             for v in values)})
        return shown

    def _filter_value_label(self, column: str, value: Any) -> str:
        datamodel = self.datamodel
        if datamodel.is_enum(column) and not datamodel._is_expression(column):
            enum_class = datamodel.list_columns[column].type.enum_class
            if enum_class is not None and str(value) in enum_class.__members__:
                member = enum_class[str(value)]
                return str(getattr(member, "label", member.value))
        related = None
        if datamodel.is_relation(column):
            related = get_scoped(datamodel.get_related_model(column), value)
        else:
            prop = sa.inspect(datamodel.obj).attrs.get(column)
            table = prop.info.get("references") if prop is not None else None
            target = next((mp.class_ for mp in m.Model.registry.mappers
                           if getattr(mp.class_, "__tablename__", None) == table), None)
            if table and target is not None:
                related = get_scoped(target, value)
        return str(related) if related is not None else str(value)

    @property
    def record_type(self) -> str:
        return self.audit_name or self.datamodel.obj.__tablename__

    def _add_default_formatters(self) -> None:
        """Every shown column gets a formatter: money in yuan, labels for enums, Beijing time."""
        for column in set(self.list_columns) | set(self.show_columns):
            if column not in self.formatters_columns:
                self.formatters_columns[column] = (
                    fmt_money if column.endswith("_fen") else fmt_value)

    # ---- reads and writes of one record -------------------------------------------------

    @staticmethod
    def _with_refusal_status(response: Any) -> Any:
        """A refused add or edit shows the form again with the reason, answered with the
        refusal's 4xx (an invalid field 400, a workflow refusal its own, a conflict 409)."""
        status = g.pop("ciie_form_refused", None)
        if status is None or not isinstance(response, str):
            return response
        return make_response(response, status)

    @expose("/add", methods=["GET", "POST"])
    @has_access
    def add(self):
        return self._with_refusal_status(super().add())

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    def edit(self, pk):
        with write_scope():
            return self._with_refusal_status(super().edit(pk))

    @expose("/delete/<pk>", methods=["GET", "POST"])
    @has_access
    def delete(self, pk):
        with write_scope():
            return super().delete(pk)

    def _changes(self, item: Any) -> dict[str, list[Any]]:
        state = sa.inspect(item)
        changes = {}
        for attr in state.mapper.column_attrs:
            hist = state.attrs[attr.key].history
            if hist.has_changes():
                old = hist.deleted[0] if hist.deleted else None
                new = hist.added[0] if hist.added else None
                changes[attr.key] = [_jsonable(old), _jsonable(new)]
        return changes

    def _save(self, item: Any, created: bool) -> bool:
        try:
            if created:
                self.pre_add(item)
            else:
                self.pre_update(item)
            changes = self._changes(item)
            db.session.add(item)
            db.session.flush()
            record(current_actor(), self.record_type, item.id, "create" if created else "update",
                   detail={"changes": changes})
            db.session.commit()
        except InputRefused:
            raise
        except WorkflowError as exc:
            db.session.rollback()
            flash(str(exc.message), "danger")
            g.ciie_form_refused = exc.status_code if 400 <= exc.status_code < 500 else 409
            return False
        except IntegrityError:
            db.session.rollback()
            log.info("integrity error saving %s", self.record_type, exc_info=True)
            flash(_("This conflicts with an existing record; nothing was saved."), "danger")
            g.ciie_form_refused = 409
            return False
        flash(_("Saved."), "success")
        return True

    # FAB's _add, _edit and _delete, writing through _save (or the audited delete): FAB's
    # catch-all `except Exception` would flash a database error as text and commit no audit row.
    def _add(self):
        is_valid_form = True
        get_filter_args(self._filters, disallow_if_not_in_search=False)
        exclude_cols = self._filters.get_relation_cols()
        form = self.add_form.refresh()
        if request.method == "POST":
            self._fill_form_exclude_cols(exclude_cols, form)
            if form.validate():
                self.process_form(form, True)
                item = self.datamodel.obj()
                form.populate_obj(item)
                if self._save(item, created=True):
                    self.post_add(item)
                    return None
                is_valid_form = False
            else:
                is_valid_form = False
                g.ciie_form_refused = 400
        if is_valid_form:
            self.update_redirect()
        return self._get_add_widget(form=form, exclude_cols=exclude_cols)

    def _edit(self, pk):
        item = self.datamodel.get(pk, self._base_filters)
        if not item:
            abort(404)
        if request.method == "POST":
            get_filter_args(self._filters, disallow_if_not_in_search=False)
            exclude_cols = self._filters.get_relation_cols()
            form = self.edit_form.refresh(request.form)
            self._fill_form_exclude_cols(exclude_cols, form)
            # The record's own key, typed as the column (the URL's is a string): FAB's Unique
            # validator compares it, and with "7" != 7 every edit of a record with a unique
            # column (a delegation's or referral code's code) was refused as "already exists".
            form._id = self.datamodel.get_pk_value(item)
            if form.validate():
                self.process_form(form, False)
                form.populate_obj(item)
                if self._save(item, created=False):
                    self.post_update(item)
                    return None
            else:
                g.ciie_form_refused = 400
            return self._get_edit_widget(form=form, exclude_cols=exclude_cols)
        return super()._edit(pk)

    def _delete(self, pk):
        item = self.datamodel.get(pk, self._base_filters)
        if not item:
            abort(404)
        try:
            self.pre_delete(item)
            item_id = item.id
            db.session.delete(item)
            db.session.flush()
            record(current_actor(), self.record_type, item_id, "delete")
            db.session.commit()
        except WorkflowError as exc:
            db.session.rollback()
            flash(str(exc.message), "danger")
            return
        except IntegrityError:
            db.session.rollback()
            flash(_("Other records depend on this one; it was not deleted."), "danger")
            return
        self.post_delete(item)
        flash(_("Deleted."), "success")
        self.update_redirect()

    # ---- actions ------------------------------------------------------------------------

    def _selection_from_pks(self, pks: list[str]) -> Selection:
        model = self.datamodel.obj
        parsed = {row_id(model, pk) for pk in pks}
        if not parsed or None in parsed:
            abort(400)
        ids = sorted(parsed)
        stmt = scoped(sa.select(model.id).where(model.id.in_(ids)), model)
        found = set(db.session.scalars(stmt))
        if found != set(ids):
            # A tampered or out-of-scope id: refuse the whole request, change nothing.
            abort(404)
        return Selection(model, sa.select(model.id).where(model.id.in_(ids)))

    def filter_params(self) -> list[list[Any]]:
        """This request's search filters (`_flt_<index>_<column>=value`) as plain data, which
        a background task keeps and applies later: [[column, index, [values]], …]."""
        params = []
        for arg in sorted(request.args):
            match = re.fullmatch(r"_flt_(\d)_(.+)", arg)
            if match:
                params.append([match[2], int(match[1]), request.args.getlist(arg)])
        return params

    def filtered_ids(self, params: list[list[Any]]) -> sa.Select:
        """The ids of the rows this view lists for `filter_params()`, in the actor's scope."""
        return filtered_ids(self.datamodel, self.search_columns, self.base_filters, params)

    def _selection_from_filters(self) -> Selection:
        return Selection(self.datamodel.obj, self.filtered_ids(self.filter_params()))

    def run_operation(self, name: str, selection: Selection):
        """Run a registered batch operation on the selection: inline when small (or without
        Redis), else as a background task whose page shows progress and then the report."""
        from app.tasks import OPERATIONS, start_task

        actor = current_actor()
        ids = selection.id_list()
        params = {"ids": ids, "reason": request.form.get("reason"), "back": self.list_url()}
        if len(ids) > current_app.config["BATCH_INLINE_MAX"] and not queue.inline:
            task = start_task(actor, name, params, len(ids))
            return redirect(url_for("TaskView.show", task_id=task.id))
        return OPERATIONS[name](actor, params, lambda *_args: None)

    def list_url(self) -> str:
        """The list an action was started from, with its filters (a path on this site): the
        batch form posts to action_post with the list's query string; a row's own button
        comes from a page of the list."""
        listing = url_for(f"{self.endpoint}.list")
        if request.query_string:
            return f"{listing}?{request.query_string.decode()}"
        referrer = urlsplit(request.referrer or "")
        if referrer.netloc == request.host and referrer.path == listing and referrer.query:
            return f"{listing}?{referrer.query}"
        return listing

    def _back_to_list(self):
        """Back to the page the action was started from (with its filters), else the list."""
        referrer = request.referrer or ""
        if referrer.startswith(request.host_url):
            return redirect(referrer)
        return redirect(url_for(f"{self.endpoint}.list"))

    def _run_action(self, name: str, build: Callable[[], Selection]):
        action = self.actions.get(name)
        if action is None:
            abort(404)
        permission = self.get_action_permission_name(name)
        if not self.appbuilder.sm.has_access(permission, self.class_permission_name):
            abort(403)
        with write_scope():
            selection = build()
            try:
                result = action.func(selection)
            except InputRefused:
                raise
            except WorkflowError as exc:
                db.session.rollback()
                flash(str(exc.message), "danger")
                return self._back_to_list()
        if isinstance(result, BatchResult):
            report_url = None
            if result.refused:
                # Kept as a finished task: the same report page as a background batch's.
                from app.tasks import store_report

                task = store_report(current_actor(), name, result, {"back": self.list_url()})
                report_url = url_for("TaskView.show", task_id=task.id)
            flash_batch_result(result, report_url)
            return self._back_to_list()
        return result

    @expose("/action/<string:name>/<pk>", methods=["POST"])
    def action(self, name, pk):
        return self._run_action(name, lambda: self._selection_from_pks([pk]))

    @expose("/action_post", methods=["POST"])
    def action_post(self):
        name = request.form.get("action", "")
        if request.form.get("all_matching") == "1":
            return self._run_action(name, self._selection_from_filters)
        return self._run_action(name, lambda: self._selection_from_pks(
            request.form.getlist("rowid")))

    @expose("/filter_choices/<column>")
    @has_access
    @permission_name("list")
    def filter_choices(self, column):
        """The choices of a search filter's drop-down, fetched when the user opens it."""
        page = choices_page(self, column)
        if page is None:
            abort(404)
        return jsonify(page)

    @expose("/count")
    @has_access
    @permission_name("list")
    def count(self):
        """The exact number of rows the list shows for this request's filters (a large list
        only counts up to LIST_COUNT_LIMIT). With `?action=`, the "all matching"
        confirmation's numbers: how many of them that action can change, how many it will
        skip and why."""
        ids = self.filtered_ids(self.filter_params())
        name = request.args.get("action")
        if name is None:
            return jsonify(count=Selection(self.datamodel.obj, ids).count())
        if name not in self.actions:
            abort(404)
        return jsonify(self.action_counts(name, ids))

    def action_moves(self, name: str) -> tuple[Move, ...]:
        """The transition-table entries the action moves rows along (none known: every row in
        the write scope counts as one it can change)."""
        from app.workflow.operations import OPERATION_MOVES

        moves = self.actions_moves.get(name) or OPERATION_MOVES.get(name, ())
        status = getattr(self.datamodel.obj, "status", None)
        enum_class = getattr(getattr(status, "type", None), "enum_class", None)
        return moves if moves and enum_class is type(moves[0].to) else ()

    def action_counts(self, name: str, ids: sa.Select) -> dict[str, Any]:
        """Of the rows `ids`, how many the action can change (in the actor's write scope and in
        one of its from-states) and how many it skips, by reason: one GROUP BY."""
        model = self.datamodel.obj
        moves = self.action_moves(name)
        from_states = {state for step in moves for state in step.from_}
        writable = sa.case((condition(model, current_actor(), WRITE), 1), else_=0)
        groups = [writable.label("writable")] + ([model.status] if moves else [])
        rows = db.session.execute(sa.select(*groups, sa.func.count().label("rows"))
                                  .where(model.id.in_(ids)).group_by(*groups)).all()
        read_only = sum(row.rows for row in rows if not row.writable)
        wrong: dict[Any, int] = {}
        for row in rows:
            if row.writable and moves and row.status not in from_states:
                wrong[row.status] = wrong.get(row.status, 0) + row.rows
        skipped = ([{"why": "read_only", "count": read_only,
                     "text": _("%(count)d read-only", count=read_only)}] if read_only else [])
        skipped += [{"why": status.value, "count": count,
                     "text": _("%(count)d with the status \"%(status)s\"", count=count,
                               status=status.label)}
                    for status, count in sorted(wrong.items(), key=lambda item: -item[1])]
        total = sum(row.rows for row in rows)
        actionable = total - sum(item["count"] for item in skipped)
        reasons = ", ".join(item["text"] for item in skipped)
        return {"count": total, "actionable": actionable, "skipped": skipped,
                "confirm_text": _("Apply this action to %(count)d of the %(total)d records "
                                  "matching the current filter? It will skip %(reasons)s.",
                                  count=actionable, total=total, reasons=reasons)
                if skipped and actionable else "",
                "nothing_text": _("Nothing to do: none of the %(count)d matching records can "
                                  "be changed by this action (%(reasons)s).", count=total,
                                  reasons=reasons) if not actionable else ""}

    @expose("/export", methods=["POST"])
    @has_access
    def export(self):
        """Export the rows of the current filter: a background task (inline without Redis)
        that runs as this user; its page shows the progress, then the file."""
        from app.i18n import current_language
        from app.tasks import start_task

        if not self.export_operation:
            abort(404)
        actor = current_actor()
        params = {"filters": self.filter_params(), "language": current_language()}
        total = Selection(self.datamodel.obj, self.filtered_ids(params["filters"])).count()
        task = start_task(actor, self.export_operation, params, total)
        record(actor, m.BackgroundTask.__tablename__, task.id, "export",
               detail={"operation": self.export_operation, "filters": params["filters"]})
        db.session.commit()
        return redirect(url_for("TaskView.show", task_id=task.id))

    # ---- files --------------------------------------------------------------------------

    @expose("/download/<string:filename>")
    @has_access
    def download(self, filename):
        if not self.file_columns:
            abort(404)
        model = self.datamodel.obj
        match = sa.or_(*(getattr(model, c) == filename for c in self.file_columns))
        found = db.session.scalar(scoped(sa.select(model.id).where(match), model).limit(1))
        if found is None:
            abort(404)
        return send_from_directory(current_app.config["UPLOAD_FOLDER"], filename,
                                   as_attachment=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, m.LabelledEnum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def download_link(endpoint: str) -> Callable[[str | None], Markup]:
    """A formatter turning a storage key into a link to the view's scoped download."""
    def fmt(key: str | None) -> Markup:
        if not key:
            return Markup("")
        href = url_for(f"{endpoint}.download", filename=key)
        return Markup('<a href="{}"><i class="fa fa-download"></i> {}</a>').format(
            href, _("Download"))

    return fmt

