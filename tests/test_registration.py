"""New units, returning units (password, SMS code, e-mail code) and the fresh start."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from app import create_app
from app import models as m
from app.demo import make_uscc
from app.extensions import db
from tests.conftest import Client, base_config, run_worker, sms_messages, text_of

RETURNING = "91310115MA1H7G8K32"   # 上海进口食品: 4th edition only
NEW_CODE = make_uscc("91310101MA1N2P3Q4")


def delegation(code: str) -> m.Delegation:
    return db.session.scalars(sa.select(m.Delegation).where(m.Delegation.code == code)).one()


def new_unit_form(**changes) -> dict:
    form = {"region": "domestic", "category": "enterprise", "name": "上海新单位有限公司",
            "uscc": " " + NEW_CODE.lower()[:9] + " " + NEW_CODE.lower()[9:],
            "delegation": str(delegation("SH").id), "sub_delegation": str(delegation("SH-XH").id),
            "mobile": "13912345678", "email": "new@example.com", "password": "Passw0rd!",
            "confirm": "Passw0rd!", "referral_code": ""}
    form.update(changes)
    return form


def units_named(name: str) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(m.Unit)
                             .where(m.Unit.name == name))


# ---------------------------------------------------------------------- new units --------

def test_new_domestic_unit_registers_with_its_credit_code(app, world):
    client = Client(app)
    response = client.post("/register/new", data=new_unit_form(referral_code="partner01"))
    assert response.status_code == 302 and response.headers["Location"].endswith("/register/done")
    done = text_of(client.get("/register/done"))
    assert NEW_CODE in done
    unit = db.session.scalars(sa.select(m.Unit).where(m.Unit.uscc == NEW_CODE)).one()
    registration = db.session.scalars(sa.select(m.UnitRegistration)
                                      .where(m.UnitRegistration.unit_id == unit.id)).one()
    assert registration.status is m.UnitStatus.draft
    assert registration.delegation.code == "SH" and registration.sub_delegation.code == "SH-XH"
    assert registration.referral_code.code == "PARTNER01"
    user = world.user(NEW_CODE)
    assert user.unit_id == unit.id and user.password.startswith("pbkdf2:")
    assert unit.mobile == "+8613912345678"
    # The credit code logs in, in any case and with spaces.
    other = Client(app)
    response = other.post("/login/", data={"username": NEW_CODE.lower()[:6] + " " +
                                           NEW_CODE.lower()[6:], "password": "Passw0rd!"})
    assert response.status_code == 302


@pytest.mark.parametrize("changes, message", [
    ({"uscc": NEW_CODE[:-1] + ("0" if NEW_CODE[-1] != "0" else "1")}, "校验位错误"),
    ({"uscc": "12345"}, "统一社会信用代码为 18 位"),
    ({"delegation": ""}, "境内单位须加入交易团"),
    ({"sub_delegation": "999999"}, "交易分团不属于该交易团"),
    ({"referral_code": "NOSUCH"}, "推荐码不存在"),
    ({"password": "short", "confirm": "short"}, "至少 8 位"),
    ({"category": "government_department"}, "该地区没有此单位类别"),
])
def test_bad_registration_input_is_refused_and_changes_nothing(app, world, changes, message):
    response = Client(app).post("/register/new", data=new_unit_form(**changes))
    assert response.status_code == 200
    assert message in text_of(response)
    assert units_named("上海新单位有限公司") == 0


def test_codes_of_letter_authorities_are_accepted(app, world):
    code = make_uscc("Y1310000MA1ABCDE0")
    response = Client(app).post("/register/new", data=new_unit_form(uscc=code))
    assert response.status_code == 302
    assert db.session.scalars(sa.select(m.Unit).where(m.Unit.uscc == code)).one()


def test_overseas_unit_gets_a_generated_login(app, world):
    client = Client(app)
    response = client.post("/register/new", data=new_unit_form(
        region="overseas", category="government_department", uscc="", delegation="",
        sub_delegation="", mobile="+44 20 7946 0958", name="London Trade Office"))
    assert response.status_code == 302
    page = text_of(client.get("/register/done"))
    assert "OS2022000002" in page and "请记下" in page
    unit = db.session.scalars(sa.select(m.Unit).where(m.Unit.login == "OS2022000002")).one()
    assert unit.uscc is None and unit.language == "en"


def test_a_code_already_registered_this_edition_is_refused(app, world):
    response = Client(app).post("/register/new", data=new_unit_form(
        uscc="91310115MA1K4AB30U"))
    assert "已报名本届" in text_of(response)


def test_a_returning_code_is_sent_to_the_returning_path(app, world):
    response = Client(app).post("/register/new", data=new_unit_form(uscc=RETURNING))
    assert "我是往届进博会观众" in text_of(response)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.UnitRegistration)
                             .join(m.Unit).where(m.Unit.uscc == RETURNING)) == 1


def test_public_pages_list_delegations_by_region(app, world):
    client = Client(app)
    domestic = client.get("/register/delegations?region=domestic").json
    assert "上海交易团" in [name for _id, name in domestic]
    assert all(name != "浦东新区交易分团" for _id, name in domestic)
    subs = client.get(f"/register/delegations?parent={delegation('SH').id}").json
    assert sorted(name for _id, name in subs) == ["徐汇区交易分团", "浦东新区交易分团"]


# ----------------------------------------------------------------- returning units --------

def returning(client: Client, step: str, **fields):
    return client.post("/register/returning", data={"login": RETURNING, "step": step,
                                                     **fields})


def assert_carried_forward() -> m.UnitRegistration:
    registration = db.session.scalars(
        sa.select(m.UnitRegistration).join(m.Unit).join(m.Edition)
        .where(m.Unit.uscc == RETURNING, m.Edition.is_current)).one()
    assert registration.is_returning and not registration.history_hidden
    assert registration.contact_name == "钱经理"
    assert registration.purchase_intentions == "进口食品、葡萄酒"
    assert registration.delegation.code == "SH" and registration.zones
    return registration


def test_returning_unit_proves_it_with_its_password(app, world):
    client = Client(app)
    response = returning(client, "password", password="Demo@2022")
    assert response.status_code == 302 and "/unit/info" in response.headers["Location"]
    registration = assert_carried_forward()
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.action == "carry_forward", m.AuditEvent.record_id == registration.id)).one()
    assert audit.detail["verified_by"] == "password"
    # Logged in as the unit, its earlier persons are offered.
    page = text_of(client.get("/unit/previous-persons/"))
    assert "钱峰" in page and "孙丽" in page


def test_returning_unit_proves_it_with_an_e_mail_code(app, world, smtp_server):
    client = Client(app)
    page = text_of(returning(client, "send_email", follow_redirects=False))
    assert "f****@demo.ciie.local" in page
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "foods@demo.ciie.local"
    code = re.search(r"\d{6}", message.get_content()).group()
    # The log keeps the redacted text only.
    notification = db.session.scalars(sa.select(m.Notification)).one()
    assert code not in notification.body and "******" in notification.body
    response = returning(client, "check_email", code_email=code)
    assert response.status_code == 302
    assert_carried_forward()


def test_returning_unit_proves_it_with_an_sms_code(app, world):
    client = Client(app)
    page = text_of(returning(client, "send_sms"))
    assert "139****9000" in page
    [sms] = sms_messages()
    assert sms["to"] == "+8613900139000"
    code = re.search(r"\d{6}", sms["text"]).group()
    assert returning(client, "check_sms", code_sms=code).status_code == 302
    assert_carried_forward()


def test_codes_allow_five_tries_and_one_resend_a_minute(app, world):
    client = Client(app)
    returning(client, "send_sms")
    assert "不到一分钟" in text_of(returning(client, "send_sms"))
    assert len(sms_messages()) == 1
    for left in (4, 3, 2, 1):
        assert f"还可尝试 {left} 次" in text_of(returning(client, "check_sms", code_sms="000000"))
    assert "错误次数过多" in text_of(returning(client, "check_sms", code_sms="000000"))
    code = re.search(r"\d{6}", sms_messages()[0]["text"]).group()
    assert "错误次数过多" in text_of(returning(client, "check_sms", code_sms=code))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.UnitRegistration)
                             .join(m.Unit).where(m.Unit.uscc == RETURNING)) == 1


def test_after_three_failed_ways_only_a_fresh_start_remains(app, world, smtp_server, login):
    client = Client(app)
    for _ in range(5):
        returning(client, "password", password="wrong-password")
    for method in ("sms", "email"):
        returning(client, f"send_{method}")
        for _ in range(5):
            page = text_of(returning(client, f"check_{method}", **{f"code_{method}": "000000"}))
    assert "三种验证方式都未通过" in page
    response = client.post("/register/new?afresh=1", data=new_unit_form(
        uscc=RETURNING, name="上海进口食品有限公司", password="NewPassw0rd",
        confirm="NewPassw0rd"))
    # A claim for the delegation to decide (tests/test_account_claims.py), not an account.
    assert response.headers["Location"].endswith("/register/claimed")
    claim = db.session.scalars(sa.select(m.AccountClaim)).one()
    assert claim.status is m.ClaimStatus.pending
    # The contacts on file are told someone asked to register the unit afresh.
    assert any("重新注册" in msg["Subject"] and msg["To"] == "foods@demo.ciie.local"
               for msg in smtp_server.wait_for(3))
    login("sh-delegation").action("/delegation/claims", "approve_claims", [claim.id])
    client = Client(app, RETURNING, "NewPassw0rd")
    registration = db.session.scalars(
        sa.select(m.UnitRegistration).join(m.Unit).join(m.Edition)
        .where(m.Unit.uscc == RETURNING, m.Edition.is_current)).one()
    assert registration.history_hidden and not registration.is_returning
    assert "以往届次" in text_of(client.get("/unit/previous-persons/"))


def test_fresh_start_is_refused_while_a_check_can_still_succeed(app, world):
    response = Client(app).post("/register/new?afresh=1", data=new_unit_form(uscc=RETURNING))
    assert "我是往届进博会观众" in text_of(response)


def test_codes_live_hashed_in_redis_and_are_sent_by_a_worker(database_url, smtp_server,
                                                             redis_url, world, worker_env):
    import redis

    redis_app = create_app("test", **{**base_config(database_url, smtp_server.port),
                                      "REDIS_URL": redis_url})
    client = Client(redis_app)
    returning(client, "send_email")
    assert smtp_server.messages == []          # queued for the worker, not sent inline
    assert run_worker(worker_env).returncode == 0
    [message] = smtp_server.wait_for(1)
    code = re.search(r"\d{6}", message.get_content()).group()
    conn = redis.Redis.from_url(redis_url)
    unit = db.session.scalars(sa.select(m.Unit).where(m.Unit.uscc == RETURNING)).one()
    stored = conn.get(f"ciie:verify:code:email:{unit.id}").decode()
    assert re.fullmatch(r"[0-9a-f]{64}", stored) and code not in stored
    assert 0 < conn.ttl(f"ciie:verify:code:email:{unit.id}") <= 300
    assert returning(client, "check_email", code_email=code).status_code == 302
    assert conn.get(f"ciie:verify:code:email:{unit.id}") is None
