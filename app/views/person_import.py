"""The unit's persons from a spreadsheet: the template, the upload, the preview, the
confirmation (whose report is the task page: progress above the inline limit, then the counts,
the refused rows by reason and their workbook)."""
from __future__ import annotations

import io

from flask import current_app, flash, redirect, request, send_file, session, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import force_locale
from flask_babel import gettext as _

from app import storage
from app.extensions import db
from app.i18n import current_language
from app.scoping.actor import current_actor
from app.workflow import person_import
from app.workflow.editions import current_edition
from app.workflow.errors import WorkflowError

# The file waiting for the unit's confirmation: {key, file, hash, rows}.
PENDING = "person_import"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class PersonImportView(BaseView):
    """Upload → preview → confirm; only a unit account reaches it (its own registration)."""

    route_base = "/unit/persons/import"
    class_permission_name = "UnitPersonImport"
    default_view = "upload"

    def _page(self, status: int = 200, error: str | None = None):
        actor = current_actor()
        limits = {"mb": person_import._mb(current_app.config["PERSON_IMPORT_MAX_BYTES"]),
                  "rows": current_app.config["PERSON_IMPORT_MAX_ROWS"]}
        return self.render_template(
            "ciie/unit/import_upload.html", title=_("Import persons from a spreadsheet"),
            columns=person_import.COLUMNS, limits=limits, error=error,
            refusal=person_import.import_refusal(actor),
            imports=person_import.recent_imports(actor)), status

    @expose("/", methods=["GET"])
    @has_access
    @permission_name("import")
    def upload(self):
        return self._page()

    @expose("/template.xlsx")
    @has_access
    @permission_name("template")
    def template(self):
        """The template in the language asked for (zh or en), else the page's."""
        language = request.args.get("lang")
        if language not in ("zh", "en"):
            language = current_language()
        with force_locale(language):
            data = person_import.template_workbook(current_edition())
            name = _("persons-template") + ".xlsx"
        return send_file(io.BytesIO(data), as_attachment=True, download_name=name,
                         mimetype=XLSX)

    @expose("/preview", methods=["POST"])
    @has_access
    @permission_name("import")
    def preview(self):
        """Read and check the file; nothing changes until the unit confirms."""
        upload = request.files.get("person_sheet")
        if upload is None or not upload.filename:
            return self._page(400, _("Check “%(field)s”: choose the file to upload. Nothing "
                                     "was imported.", field=person_import.FILE_FIELD))
        most = current_app.config["PERSON_IMPORT_MAX_BYTES"]
        data = upload.read(most + 1)
        zipped = request.files.get("person_photos")
        photos = zipped.read() if zipped is not None and zipped.filename else None
        try:
            plan = person_import.plan_import(current_actor(), data, upload.filename,
                                             photos=photos)
        except WorkflowError as exc:
            db.session.rollback()
            return self._page(exc.status_code, str(exc.message))
        previous = session.pop(PENDING, None)
        if previous:
            storage.remove(previous["key"])
            storage.remove(previous.get("photos"))
        key = storage.store(data, upload.filename.rsplit(".", 1)[-1].lower()[:5])
        session[PENDING] = {"key": key, "file": plan.file_name, "hash": plan.file_hash,
                            "rows": len(plan.rows),
                            "photos": storage.store(photos, "zip") if photos else None}
        labels = {c.key: c.label for c in (*person_import.COLUMNS, person_import.PHOTO)}
        return self.render_template(
            "ciie/unit/import_preview.html", title=_("Check the file"), plan=plan,
            pending=key, labels=labels, photos=bool(photos),
            earlier=person_import.describe_earlier(plan.earlier) if plan.earlier else None,
            row_label=person_import.row_label)

    @expose("/confirm", methods=["POST"])
    @has_access
    @permission_name("import")
    def confirm(self):
        pending = session.get(PENDING)
        if not pending or request.form.get("pending") != pending["key"]:
            flash(_("This file was already imported or is no longer waiting; upload it "
                    "again."), "warning")
            return redirect(url_for("PersonImportView.upload"))
        session.pop(PENDING, None)
        try:
            task = person_import.start_import(
                current_actor(), pending["key"], pending["file"],
                request.form.get("submit") == "y", pending["rows"], current_language(),
                url_for("UnitPersonView.list"), pending.get("photos"))
        except WorkflowError as exc:
            db.session.rollback()
            return self._page(exc.status_code, str(exc.message))
        return redirect(url_for("TaskView.show", task_id=task.id))
