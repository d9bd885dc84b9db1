"""The page of a background task: a progress bar while it runs, then its report or file."""
from __future__ import annotations

from flask import abort, current_app, jsonify, redirect, send_from_directory, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _

from app import models as m
from app.extensions import db
from app.formatting import fmt_datetime
from app.scoping.actor import current_actor
from app.scoping.rules import get_scoped
from app.tasks import fail_stalled_tasks, run_again
from app.views.base import attempt


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


class TaskView(BaseView):
    """Every signed-in role may follow its own tasks (scoped to the user who started them)."""

    route_base = "/tasks"
    class_permission_name = "Tasks"

    @expose("/<int:task_id>")
    @has_access
    @permission_name("show")
    def show(self, task_id: int):
        task = _task(task_id)
        return self.render_template("ciie/task.html", task=task, state=task_state(task))

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
