"""Users, roles and their permissions are audited however an admin changes them in FAB's
security pages (who, when, from, to; never a password or its hash), and the role pages show
what each permission allows in the reader's language (issue 13)."""
from __future__ import annotations

import json

import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import PermissionView, Role

from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A, text_of

NEW_PASSWORD = "Another@2022x"


def audit(record_type: str, record_id: int) -> list[m.AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == record_type, m.AuditEvent.record_id == record_id)
        .order_by(m.AuditEvent.id)))


def role(name: str) -> Role:
    return db.session.scalars(sa.select(Role).where(Role.name == name)).one()


def user_form(**changes) -> dict:
    form = {"first_name": "晓明", "last_name": "王", "username": "wang.xm",
            "email": "wang.xm@demo.ciie.local", "active": "y",
            "roles": [str(role("finance").id)]}
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def test_a_user_made_changed_reset_and_deleted_by_the_admin_is_audited(login, world):
    admin = login("admin")
    added = admin.post("/users/add", data=user_form(password=NEW_PASSWORD,
                                                    conf_password=NEW_PASSWORD))
    assert added.status_code == 302, text_of(added)[:2000]
    user = world.user("wang.xm")
    (created,) = audit("user", user.id)
    assert (created.action, created.actor_name) == ("create", "admin")
    assert created.detail["to"]["roles"] == ["finance"] and created.detail["to"]["active"]

    # Roles changed and the account switched off, in one save.
    edited = admin.post(f"/users/edit/{user.id}", data=user_form(
        active=None, roles=[str(role("reviewer").id)]))
    assert edited.status_code == 302, text_of(edited)[:2000]
    by_action = {e.action: e for e in audit("user", user.id)}
    assert by_action["update"].detail == {"changes": {"active": [True, False]}}
    assert by_action["roles_change"].detail == {"added": ["reviewer"], "removed": ["finance"]}
    assert by_action["roles_change"].actor_name == "admin"
    # The audit log says it in words, with the user's name linking to the user's page.
    log = admin.get("/admin/audit/list/", query_string={"type": "user", "rid": user.id})
    rows = text_of(log)
    # Roles by their names, not their codes.
    assert "角色已修改" in rows and "+ 背景审核员; − 财务" in rows and "已修改" in rows
    assert f'href="/users/show/{user.id}">wang.xm</a>' in log.data.decode()

    reset = admin.post(f"/resetpassword/form?pk={user.id}", data={
        "password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})
    assert reset.status_code == 302
    assert [e.action for e in audit("user", user.id)][-1] == "password_change"

    assert admin.post(f"/users/delete/{user.id}").status_code == 302
    events = audit("user", user.id)
    assert events[-1].action == "delete" and events[-1].detail["from"]["username"] == "wang.xm"
    # No password nor its hash, anywhere in the trail.
    trail = json.dumps([e.detail for e in events], ensure_ascii=False)
    assert "password" not in trail and "pbkdf2" not in trail and NEW_PASSWORD not in trail


def test_a_role_and_its_permissions_changed_by_the_admin_are_audited(login, world):
    admin = login("admin")
    listing = db.session.scalars(sa.select(PermissionView).join(PermissionView.permission)
                                 .join(PermissionView.view_menu)).all()
    by_name = {f"{p.permission.name} · {p.view_menu.name}": p for p in listing}
    first = by_name["can_list · AuditLog"]
    second = by_name["can_show · AuditLog"]
    assert admin.post("/roles/add", data={"name": "auditor", "permissions": [
        str(first.id)]}).status_code == 302
    auditor = role("auditor")
    (created,) = audit("role", auditor.id)
    assert created.action == "create" and created.actor_name == "admin"
    assert created.detail["to"] == {"name": "auditor", "permissions": ["can_list · AuditLog"]}

    assert admin.post(f"/roles/edit/{auditor.id}", data={"name": "auditor", "permissions": [
        str(second.id)]}).status_code == 302
    change = audit("role", auditor.id)[-1]
    assert change.action == "permissions_change"
    assert change.detail == {"added": ["can_show · AuditLog"],
                             "removed": ["can_list · AuditLog"]}
    # The log says what the permissions allow, in the reader's language; the entry's page
    # keeps the stored codes, marked as such.
    rows = text_of(admin.get("/admin/audit/list/", query_string={"type": "role",
                                                                 "rid": auditor.id}))
    assert "+ 查看 · 系统管理 › 操作日志; − 列表 · 系统管理 › 操作日志" in rows, rows[-600:]
    page = admin.get(f"/admin/audit/show/{change.id}").data.decode()
    assert '<pre class="ciie-raw" translate="no">' in page and "can_show · AuditLog" in page

    assert admin.post(f"/roles/delete/{auditor.id}").status_code == 302
    assert audit("role", auditor.id)[-1].action == "delete"


def test_no_one_but_the_admin_changes_users_or_roles_and_nothing_is_audited(login, world):
    unit_role = role("unit")
    before = sorted(p.id for p in unit_role.permissions)
    target = world.user(UNIT_A)
    last = db.session.scalar(sa.select(sa.func.max(m.AuditEvent.id)))
    for username in ("finance", "sh-delegation", UNIT_A):
        client = login(username)
        for url, data in ((f"/roles/edit/{unit_role.id}", {"name": "unit", "permissions": []}),
                          (f"/users/edit/{target.id}", user_form(username=UNIT_A)),
                          (f"/resetpassword/form?pk={target.id}",
                           {"password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})):
            response = client.post(url, data=data)
            assert response.status_code in (302, 403), (username, url)
            assert "/login/" in response.headers.get("Location", "/login/"), (username, url)
    db.session.expire_all()
    assert sorted(p.id for p in role("unit").permissions) == before
    assert audit("role", unit_role.id) == []
    assert [e.action for e in audit("user", target.id)
            if e.id > last and e.action not in ("login", "logout")] == []


def test_the_role_pages_show_what_each_permission_allows(login, world):
    admin = login("admin")
    unit_role = role("unit")
    page = text_of(admin.get(f"/roles/show/{unit_role.id}"))
    assert "can_list · UnitPersons" in page
    assert "列表 · 报名 › 人员" in page
    listing = text_of(admin.get("/roles/list/"))
    assert "can_list · UnitPersons 列表 · 报名 › 人员" in listing
    form = admin.get(f"/roles/edit/{unit_role.id}").data.decode()
    assert "can_list · UnitPersons — 列表 · 报名 › 人员" in form
    admin.set_language("en")
    page = text_of(admin.get(f"/roles/show/{unit_role.id}"))
    assert "can_list · UnitPersons List · Registration › Persons" in page


def test_every_permission_has_a_label(app, world):
    """Labels come from the registered views: a new view or action without a label fails
    here, not on an admin's screen."""
    from app.security_manager import permission_label

    with app.test_request_context("/"):
        missing = [f"{p.permission.name} · {p.view_menu.name}"
                   for p in db.session.scalars(sa.select(PermissionView)).all()
                   if permission_label(p) is None]
    assert not missing, missing
