"""The page of a background task: a progress bar while it runs, then its report or file.
A batch's report (inline or in the background) groups its refused rows by reason, pages the
rows of each, downloads as Excel and leads back to the list it was started from."""
from __future__ import annotations

import io

import rvgsrust_xlsxwriter as xlsx
from flask import (
    abort,
    current_app,
    jsonify,
    redirect,
    request,
    send_file,
    send_from_directory,
    url_for,
)
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _

from app import models as m
from app.clock import SHANGHAI
from app.exports import _cell_text, open_sheet
from app.extensions import db
from app.formatting import fmt_datetime
from app.i18n import current_language
from app.scoping.actor import current_actor
from app.scoping.rules import get_scoped
from app.tasks import fail_stalled_tasks, group_refusals, run_again
from app.views.base import attempt

# Refused rows shown per page under one reason.
ROWS_PER_PAGE = 50


def _task(task_id: int) -> m.BackgroundTask:
    task = get_scoped(m.BackgroundTask, task_id)
    if task is None:
        abort(404)
    # A task whose worker died says so as soon as its heartbeat is overdue (the sweeper
    # would mark it too, within a minute).
    if task.status is m.TaskStatus.running and fail_stalled_tasks(task.id):
        db.session.refresh(task)
    return task


def task_state(task: m.BackgroundTask) -> dict:
    percent = 100 if task.status is m.TaskStatus.done else (
        int(task.processed * 100 / task.total) if task.total else 0)
    return {"status": task.status.value, "label": str(task.status.label),
            "processed": task.processed, "total": task.total, "percent": percent,
            "result": task.result, "has_file": bool(task.file_key),
            "finished_at": fmt_datetime(task.finished_at)}


def _back_url(task: m.BackgroundTask) -> str | None:
    """The list the batch was started from, with its filters; only a path on this site."""
    back = (task.params or {}).get("back")
    return back if isinstance(back, str) and back.startswith("/") \
        and not back.startswith("//") else None


def _arg(name: str) -> int:
    value = request.args.get(name, type=int)
    return value if value is not None and value >= 0 else 0


class TaskView(BaseView):
    """Every signed-in role may follow its own tasks (scoped to the user who started them)."""

    route_base = "/tasks"
    class_permission_name = "Tasks"

    @expose("/<int:task_id>")
    @has_access
    @permission_name("show")
    def show(self, task_id: int):
        task = _task(task_id)
        groups = group_refusals(task.result, current_language())
        # One reason's rows are paged (?reason=&page=); every other reason shows its first page.
        chosen, page = _arg("reason"), _arg("page")
        for index, group in enumerate(groups):
            pages = max(1, -(-group["count"] // ROWS_PER_PAGE))
            group["page"] = min(page, pages - 1) if index == chosen else 0
            group["pages"] = pages
            start = group["page"] * ROWS_PER_PAGE
            group["shown"] = group["rows"][start:start + ROWS_PER_PAGE]
            group["first"] = start + 1
        return self.render_template("ciie/task.html", task=task, state=task_state(task),
                                    groups=groups, back_url=_back_url(task))

    @expose("/<int:task_id>/status")
    @has_access
    @permission_name("show")
    def status(self, task_id: int):
        return jsonify(task_state(_task(task_id)))

    @expose("/<int:task_id>/file")
    @has_access
    @permission_name("show")
    def file(self, task_id: int):
        task = _task(task_id)
        if not task.file_key:
            abort(404)
        download = (task.result or {}).get("filename") or task.file_key
        return send_from_directory(current_app.config["UPLOAD_FOLDER"], task.file_key,
                                   as_attachment=True, download_name=download)

    @expose("/<int:task_id>/report.xlsx")
    @has_access
    @permission_name("show")
    def report_xlsx(self, task_id: int):
        """The batch's refused rows as a workbook: one row each, with its reason."""
        task = _task(task_id)
        if task.status is not m.TaskStatus.done or not (task.result or {}).get("refused"):
            abort(404)
        # A constant-memory sheet keeps no rows: only the finished file is held, to be sent.
        workbook = xlsx.Workbook()
        sheet = open_sheet(workbook, _("Not done"),
                           [_("Record ID"), _("Record name"), _("Reason")], [12, 40, 70])
        number = 1
        for group in group_refusals(task.result, current_language()):
            reason = _cell_text(group["reason"])
            sheet.write_rows(number, 0, [[row["id"], _cell_text(str(row["label"])), reason]
                                         for row in group["rows"]])
            number += len(group["rows"])
        out = io.BytesIO(workbook.save_to_buffer())
        stamp = (task.finished_at or task.created_at).astimezone(SHANGHAI)
        return send_file(out, as_attachment=True,
                         download_name=f"ciie-report-{task.id}-{stamp:%Y%m%d-%H%M}.xlsx",
                         mimetype="application/vnd.openxmlformats-officedocument"
                                  ".spreadsheetml.sheet")

    @expose("/<int:task_id>/run-again", methods=["POST"])
    @has_access
    @permission_name("show")
    def run_again(self, task_id: int):
        """Its owner runs a failed task again (the scope makes it the owner's alone)."""
        task = _task(task_id)
        if task.status is not m.TaskStatus.failed:
            abort(409)
        attempt(lambda: run_again(current_actor(), task.id), _("The task runs again."))
        return redirect(url_for("TaskView.show", task_id=task.id))
