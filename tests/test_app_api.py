"""The mobile app API: sign up, token, join a unit with its number, own record, the unit's
acceptance; refusals say why in the request's language and change nothing; a person's token
never reaches another person."""
from __future__ import annotations

import io
from datetime import datetime

import sqlalchemy as sa

from app import clock, create_app
from app import models as m
from app.demo import make_ric
from app.extensions import db
from tests.conftest import UNIT_A, Client, base_config
from tests.photos import face_photo

PS = m.PersonStatus
PASSWORD = "Visit2022ok"
EN = {"Accept-Language": "en-US,en;q=0.9"}
ID_LI = make_ric("31011519950101123")
ID_HAN = make_ric("31011519960202234")


def portrait() -> bytes:
    """A badge photo the upload check passes (tests/photos.py), as a JPEG."""
    return face_photo("JPEG")


def join_body(**changes) -> dict:
    body = {"unit_number": "T05000001", "name": "李明", "gender": "male",
            "id_type": "mainland_id", "id_number": ID_LI, "nationality": "CN",
            "mobile": "13900001111", "email": "li.ming@example.com", "job_title": "采购经理",
            "entry_dates": ["2022-11-05", "2022-11-06"]}
    body.update(changes)
    return body


def sign_up(client: Client, username: str = "13812345678", password: str = PASSWORD,
            headers: dict | None = None, **changes):
    body = {"username": username, "password": password, "first_name": "明", "last_name": "李"}
    body.update(changes)
    return client.http.post("/api/v1/app/signup", json=body, headers=headers or {})


def app_user(client: Client, username: str = "13812345678") -> dict:
    """Sign up and log in: the token header of a new app account."""
    response = sign_up(client, username)
    assert response.status_code == 201, response.json
    return client.api_login(response.json["username"], PASSWORD)


def counts() -> tuple[int, int, int]:
    db.session.expire_all()
    return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                 for model in (m.User, m.Person, m.PersonRegistration))


def audit(action: str) -> list[m.AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.AuditEvent).where(m.AuditEvent.action == action)))


# ------------------------------------------------------------------------ the flow --------

def test_sign_up_join_accept_flow(login, world):
    client = login(None)
    response = sign_up(client, "138 1234 5678")
    assert response.status_code == 201
    assert response.json["username"] == "+8613812345678"
    user = world.user("+8613812345678")
    assert [r.name for r in user.roles] == ["person"]
    assert [e.record_id for e in audit("signup")] == [user.id]

    headers = client.api_login("+8613812345678", PASSWORD)
    me = client.get("/api/v1/app/me", headers=headers)
    assert me.status_code == 404 and me.json["message"]

    joined = client.http.post("/api/v1/app/join", json=join_body(), headers=headers)
    assert joined.status_code == 201, joined.json
    record = joined.json
    assert record["status"] == "awaiting_unit" and record["status_label"] == "待单位审核加入"
    assert record["unit_name"] == "上海浦东医疗器械有限公司"
    assert record["unit_number"] == "T05000001"
    assert record["entry_dates"] == ["2022-11-05", "2022-11-06"]
    assert record["id_number"] == ID_LI and record["mobile"] == "+8613900001111"
    registration = db.session.get(m.PersonRegistration, record["id"])
    assert registration.person.user_id == user.id
    assert registration.person.unit_id == world.unit("上海浦东医疗器械").id
    assert registration.unit_registration_id == world.registration("上海浦东医疗器械").id
    assert [e.record_id for e in audit("join")] == [record["id"]]

    english = client.get("/api/v1/app/me", headers={**headers, **EN}).json
    assert english["status_label"] == "Awaiting unit approval"
    assert english["unit_name"] == "Shanghai Pudong Medical Devices Co."

    changed = client.http.put("/api/v1/app/me", headers=headers,
                              json=join_body(job_title="总经理", entry_dates=["2022-11-07"]))
    assert changed.status_code == 200, changed.json
    assert changed.json["job_title"] == "总经理"
    assert changed.json["entry_dates"] == ["2022-11-07"]
    assert len(audit("update")) == 1
    # The unit accepts only a person with a photo, which the app sends.
    photo = client.http.put("/api/v1/app/me/photo", headers=headers,
                            data={"photo": (io.BytesIO(portrait()), "me.jpg")},
                            content_type="multipart/form-data")
    assert photo.status_code == 200, photo.json

    accepted = login(UNIT_A).action("/unit/persons", "accept_joins", [record["id"]])
    assert accepted.status_code == 302
    me = client.get("/api/v1/app/me", headers=headers).json
    assert me["status"] == "submitted" and me["status_label"] == "已提交"

    refused = client.http.put("/api/v1/app/me", headers={**headers, **EN},
                              json=join_body(job_title="Hacker"))
    assert refused.status_code == 409
    assert "can no longer be changed" in refused.json["message"]
    assert "Submitted" in refused.json["message"]
    db.session.expire_all()
    assert db.session.get(m.PersonRegistration, record["id"]).person.job_title == "总经理"


def test_unit_can_refuse_a_join(login, world):
    client = login(None)
    headers = app_user(client)
    record = client.http.post("/api/v1/app/join", json=join_body(), headers=headers).json
    login(UNIT_A).action("/unit/persons", "refuse_joins", [record["id"]])
    assert client.get("/api/v1/app/me", headers=headers).json["status"] == "cancelled"
    assert client.http.put("/api/v1/app/me", json=join_body(),
                           headers=headers).status_code == 409


# ---------------------------------------------------------------------- refusals ---------

def test_unknown_unit_number_is_404_and_changes_nothing(login, world):
    client = login(None)
    headers = app_user(client)
    before = counts()
    response = client.http.post("/api/v1/app/join", json=join_body(unit_number="t05999999"),
                                headers={**headers, **EN})
    assert response.status_code == 404
    assert response.json["message"].startswith("No unit has the number T05999999.")
    assert counts() == before and audit("join") == []


def test_unit_not_approved_is_409(login, world):
    xuhui = world.registration("上海徐汇贸易")
    assert xuhui.status is m.UnitStatus.submitted
    xuhui.unit_number = "T05000002"
    db.session.commit()
    client = login(None)
    headers = app_user(client)
    before = counts()
    response = client.http.post("/api/v1/app/join", json=join_body(unit_number="T05000002"),
                                headers={**headers, **EN})
    assert response.status_code == 409
    assert "T05000002 is not approved" in response.json["message"]
    assert counts() == before


def test_joining_twice_is_409(login, world):
    client = login(None)
    headers = app_user(client)
    assert client.http.post("/api/v1/app/join", json=join_body(),
                            headers=headers).status_code == 201
    before = counts()
    again = client.http.post("/api/v1/app/join", headers={**headers, **EN},
                             json=join_body(id_type="passport", id_number="E87654321"))
    assert again.status_code == 409
    assert again.json["message"] == "You have already joined a unit."
    # The demo app account is linked to a person its unit entered.
    demo = client.api_login("person-demo")
    assert client.http.post("/api/v1/app/join", json=join_body(id_number=ID_HAN),
                            headers=demo).status_code == 409
    assert counts() == before


def test_same_id_document_twice_in_an_edition_is_409(login, world):
    client = login(None)
    first = app_user(client, "13812345678")
    second = app_user(client, "li.ming@example.com")
    assert client.http.post("/api/v1/app/join", json=join_body(),
                            headers=first).status_code == 201
    before = counts()
    response = client.http.post("/api/v1/app/join", json=join_body(name="李明明"),
                                headers={**second, **EN})
    assert response.status_code == 409
    assert "ID document is already registered" in response.json["message"]
    # An ID document a unit entered itself (王伟, unit A) is refused the same way.
    wang = world.person("王伟").person
    response = client.http.post("/api/v1/app/join", headers=second,
                                json=join_body(id_number=wang.id_number))
    assert response.status_code == 409
    assert counts() == before and len(audit("join")) == 1


def test_joining_closes_at_the_delegation_deadline(login, world):
    client = login(None)
    headers = {**app_user(client), **EN}
    clock.set_now(datetime.fromisoformat("2022-10-01T09:00:00+08:00"))
    before = counts()
    response = client.http.post("/api/v1/app/join", json=join_body(), headers=headers)
    assert response.status_code == 409
    assert "deadline" in response.json["message"]
    assert counts() == before


def test_bad_personal_data_is_refused_with_the_reason(login, world):
    client = login(None)
    headers = {**app_user(client), **EN}
    before = counts()
    # 400: not of the documented form; 422: of that form, but a rule beyond it refuses.
    cases = [
        (join_body(id_number="310115199501011230"), 422,
         "mainland ID card number is not valid"),
        (join_body(entry_dates=["2022-11-20"]), 422, "Entry dates must be exhibition days"),
        (join_body(entry_dates=[]), 400, "\"Entry dates\""),
        (join_body(gender="other"), 400, "\"Gender\""),
        (join_body(name="   "), 400, "\"Name\""),
        (join_body(name="Li\x00Ming"), 400, "\"Name\""),
        (join_body(mobile="12345"), 422, "not a valid mobile number"),
    ]
    for body, code, reason in cases:
        response = client.http.post("/api/v1/app/join", json=body, headers=headers)
        assert response.status_code == code, body
        assert reason in response.json["message"], response.json
    response = client.http.post("/api/v1/app/join", data="not json", headers=headers,
                                content_type="application/json")
    assert response.status_code == 400
    assert response.json["message"] == "The request body must be a JSON object."
    assert counts() == before


def test_sign_up_refusals(app, world):
    client = Client(app)
    assert sign_up(client, "li.ming@example.com").status_code == 201
    before = counts()
    cases = [
        (sign_up(client, "LI.MING@example.com", headers=EN), 409, "already taken"),
        (sign_up(client, "13812345678", password="short1", headers=EN), 422,
         "at least 8 characters"),
        (sign_up(client, "13812345678", password="onlyletters", headers=EN), 422,
         "letters and digits"),
        (sign_up(client, "13812345678", password="13812345678x", headers=EN), 422,
         "must not contain the login"),
        (sign_up(client, "hello", headers=EN), 422, "mobile number or an e-mail address"),
        (sign_up(client, "13812345678", first_name="", headers=EN), 400, "\"First name\""),
        (sign_up(client, "13812345678", password=None, headers=EN), 400, "\"Password\""),
    ]
    for response, status, reason in cases:
        assert response.status_code == status, response.json
        assert reason in response.json["message"], response.json
    # Without Accept-Language the message is Chinese (a catalogued one here).
    limited = client.http.get("/api/v1/app/me")
    assert limited.status_code == 401 and limited.json == {"message": "请先登录。"}
    assert counts() == before


def test_sign_up_is_rate_limited(database_url, smtp_server, world):
    limited = create_app("test", **base_config(database_url, smtp_server.port),
                         API_LOGIN_RATE_LIMIT="2 per 1 minute")
    client = Client(limited)
    before = counts()
    codes = [sign_up(client, "hello").status_code for _ in range(2)]
    assert codes == [422, 422]
    response = sign_up(client, "13812345678", headers=EN)
    assert response.status_code == 429
    assert response.json == {"message": "Too many attempts. Please wait a minute and try again."}
    assert counts() == before


# ----------------------------------------------------------------------- scoping ----------

def test_a_person_token_never_reaches_another_person(login, world):
    client = login(None)
    mine = app_user(client)
    record = client.http.post("/api/v1/app/join", json=join_body(), headers=mine).json
    demo = client.api_login("person-demo")
    liu = world.person("刘洋")

    # Each token reads only its own record, whatever the URL.
    assert client.get("/api/v1/app/me", headers=demo).json["id"] == liu.id
    listing = client.get("/api/v1/persons/", headers=mine).json
    assert [row["id"] for row in listing["result"]] == [record["id"]]
    assert client.get(f"/api/v1/persons/{liu.id}", headers=mine).status_code == 404
    assert client.get(f"/api/v1/persons/{record['id']}", headers=demo).status_code == 404
    units = client.get("/api/v1/units/", headers=mine).json
    assert [row["unit_number"] for row in units["result"]] == ["T05000001"]
    xuhui = world.registration("上海徐汇贸易")
    assert client.get(f"/api/v1/units/{xuhui.id}", headers=mine).status_code == 404

    # The demo person's record is a unit's draft: it cannot change it, nor anyone else's.
    response = client.http.put("/api/v1/app/me", json=join_body(name="Hacked"), headers=demo)
    assert response.status_code == 409
    db.session.expire_all()
    assert db.session.get(m.PersonRegistration, record["id"]).person.name == "李明"
    assert db.session.get(m.PersonRegistration, liu.id).person.name == "刘洋"


def test_other_roles_cannot_use_the_app_endpoints(login, world):
    client = login(None)
    unit = client.api_login(UNIT_A)
    assert client.get("/api/v1/app/me", headers=unit).status_code == 403
    before = counts()
    assert client.http.post("/api/v1/app/join", json=join_body(),
                            headers=unit).status_code == 403
    assert client.http.post("/api/v1/app/join", json=join_body()).status_code == 401
    assert client.http.post("/api/v1/app/join", json=join_body(),
                            headers={"Authorization": "Bearer forged"}).status_code == 401
    assert counts() == before
