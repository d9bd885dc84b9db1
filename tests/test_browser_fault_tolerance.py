"""In Chromium: finance sends a failed notice again from its list, and the owner of a task whose
worker died reads what happened on the task page and runs it again."""
from __future__ import annotations

from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow.units import approve_units
from tests.test_browser_delegation import run_action, shot
from tests.test_browser_smoke import log_in
from tests.test_fault_tolerance import add_notice


def test_finance_sends_a_failed_notice_again(page, world, smtp_server):
    failed = add_notice(world.unit("徐汇贸易"), "lock:9:1:email", m.NotificationStatus.failed,
                        "failed@xuhui.example", 5)
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, "finance")
    page.goto("/finance/notifications/list/")
    assert "failed@xuhui.example" in page.content()
    page.check(f"input.action_check[value='{failed}']")
    run_action(page, "重新发送")
    page.wait_for_selector(".alert-success")
    shot(page, "finance-notice-sent-again")
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "failed@xuhui.example"
    db.session.expire_all()
    assert db.session.get(m.Notification, failed).status is m.NotificationStatus.sent


def test_the_owner_runs_a_task_whose_worker_died_again(page, world):
    owner = world.user("sh-delegation")
    approve_units(actor_for_user(owner), [world.registration("徐汇贸易").id])
    ids = [world.person(name).id for name in ("赵敏", "孙磊")]
    task = m.BackgroundTask(operation="tag_visitor", user_id=owner.id, params={"ids": ids},
                            total=len(ids), processed=0, status=m.TaskStatus.failed,
                            result={"stalled": True})
    db.session.add(task)
    db.session.commit()
    log_in(page, "sh-delegation")
    page.goto(f"/tasks/{task.id}")
    page.wait_for_selector("#task-failed")
    assert "后台进程中断" in page.inner_text("#task-failed")
    shot(page, "task-stalled")
    page.click("#task-run-again button")
    # Without Redis the task runs in the request; the page then shows its report.
    page.wait_for_selector("#task-done, .alert-success")
    db.session.expire_all()
    assert db.session.get(m.BackgroundTask, task.id).status is m.TaskStatus.done
    assert {db.session.get(m.PersonRegistration, i).tag for i in ids} == {m.Tag.visitor}
