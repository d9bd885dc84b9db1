"""CSRF, login rate limits, password hashing, cookie flags, uploads outside static/, and clear
refusals in the user's language that change nothing."""
from __future__ import annotations

import os

import sqlalchemy as sa

from app import create_app
from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A, Client, base_config, text_of


def test_missing_csrf_token_is_refused_and_changes_nothing(login, world):
    draft = world.person("刘洋")
    client = login(UNIT_A)
    response = client.post("/unit/persons/action_post", csrf=False,
                           data={"action": "submit_persons", "rowid": [str(draft.id)]})
    assert response.status_code == 400
    assert "安全令牌" in text_of(response)
    db.session.expire_all()
    assert db.session.get(m.PersonRegistration, draft.id).status is m.PersonStatus.draft


def test_forged_csrf_token_is_refused(login, world):
    draft = world.person("刘洋")
    response = login(UNIT_A).post("/unit/persons/action_post", data={
        "csrf_token": "forged", "action": "submit_persons", "rowid": [str(draft.id)]})
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(m.PersonRegistration, draft.id).status is m.PersonStatus.draft


def test_get_cannot_run_an_action(login, world):
    draft = world.person("刘洋")
    response = login(UNIT_A).get(f"/unit/persons/action/submit_persons/{draft.id}")
    assert response.status_code == 405
    db.session.expire_all()
    assert db.session.get(m.PersonRegistration, draft.id).status is m.PersonStatus.draft


def test_wrong_password_is_refused_in_chinese_and_counted(app, world):
    client = Client(app)
    response = client.post("/login/", data={"username": UNIT_A, "password": "wrong"})
    assert response.status_code == 401
    assert "无效的用户名或密码" in text_of(response)
    assert world.user(UNIT_A).fail_login_count == 1
    failed = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.action == "login_failed")).one()
    assert failed.record_id == world.user(UNIT_A).id


def test_login_is_rate_limited(database_url, smtp_server, world):
    limited = create_app("test", **base_config(database_url, smtp_server.port),
                         AUTH_RATE_LIMIT="3 per 1 minute", API_LOGIN_RATE_LIMIT="2 per 1 minute")
    client = Client(limited)
    codes = [client.post("/login/", data={"username": UNIT_A, "password": "wrong"}).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    api = [client.http.post("/api/v1/security/login", json={
        "username": UNIT_A, "password": "wrong", "provider": "db"}).status_code
        for _ in range(3)]
    assert api == [401, 401, 429]


def test_passwords_are_stored_hashed(world):
    user = world.user(UNIT_A)
    assert user.password != "Demo@2022" and user.password.startswith(("pbkdf2:", "scrypt:"))


def test_production_cookies_are_secure():
    from config import ProductionConfig

    assert ProductionConfig.SESSION_COOKIE_SECURE and ProductionConfig.SESSION_COOKIE_HTTPONLY
    assert ProductionConfig.REMEMBER_COOKIE_SECURE


def test_production_refuses_the_development_secret():
    import pytest

    with pytest.raises(RuntimeError):
        create_app("production", SQLALCHEMY_DATABASE_URI="sqlite://")


def test_uploads_live_outside_static(app):
    static = os.path.realpath(app.static_folder)
    assert not os.path.realpath(app.config["UPLOAD_FOLDER"]).startswith(static)


def test_tampered_id_in_url_is_a_clear_404(login, world):
    response = login(UNIT_A).get("/unit/persons/show/not-a-number")
    assert response.status_code == 404
    assert "记录不存在，或您无权查看" in text_of(response)
    response = login(UNIT_A).get("/unit/persons/show/999999")
    assert response.status_code == 404


def test_every_list_sorts_only_by_columns_the_database_can_order(app):
    """Python properties (photo thumbnails, waiting time) are shown, never offered for sorting."""
    from app.views.base import ScopedModelView

    views = [v for v in app.appbuilder.baseviews if isinstance(v, ScopedModelView)]
    assert views
    for view in views:
        for column in view.order_columns:
            model = view.datamodel.obj
            *path, last = column.split(".")
            for name in path:
                model = sa.inspect(model).relationships[name].mapper.class_
            assert last in sa.inspect(model).column_attrs, (view.endpoint, column)
    unit_persons = next(v for v in views if v.endpoint == "UnitPersonView")
    assert "photo" not in unit_persons.order_columns
    assert "person.name" in unit_persons.order_columns


def test_sorting_a_list_by_a_column_works_and_an_unsortable_one_is_ignored(login, world):
    client = login(UNIT_A)
    ascending = text_of(client.get("/unit/persons/list/?_oc_UnitPersonView=person.name"
                                   "&_od_UnitPersonView=asc"))
    descending = text_of(client.get("/unit/persons/list/?_oc_UnitPersonView=person.name"
                                    "&_od_UnitPersonView=desc"))
    assert ascending.index("刘洋") < ascending.index("王伟")
    assert descending.index("王伟") < descending.index("刘洋")
    response = client.get("/unit/persons/list/?_oc_UnitPersonView=photo&_od_UnitPersonView=asc")
    assert response.status_code == 200
    assert "王伟" in text_of(response)
