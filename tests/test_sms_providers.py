"""SMS through Alibaba Cloud and Tencent Cloud: the providers' real SDKs talk to loopback stubs
(tests/sms_stub.py) that verify each request's signature with their own copy of the secret and
answer in the providers' shapes. A notice goes as its approved template with its parameters in
the unit's language; throttling is retried, a refusal fails the notice with the provider's
code for finance to see; delivery reports move it on; production never runs the sandbox."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from app import models as m
from app.extensions import db
from app.gateways.sms import SMS_TEMPLATES
from tests.conftest import ROOT, Client, base_config, run_worker, sms_messages, text_of
from tests.sms_stub import (
    KEYS,
    SIGN_NAME,
    TENCENT_APP_ID,
    make_stub,
    provider_settings,
    template_codes,
)

NS = m.NotificationStatus
PROVIDERS = ("aliyun", "tencent")
XUHUI_MOBILE = "+8613800138000"
# The providers' own codes for the cases below (from their error-code references).
THROTTLED = {"aliyun": "isv.BUSINESS_LIMIT_CONTROL",
             "tencent": "LimitExceeded.PhoneNumberThirtySecondLimit"}
BAD_NUMBER = {"aliyun": "isv.MOBILE_NUMBER_ILLEGAL",
              "tencent": "InvalidParameterValue.IncorrectPhoneNumber"}
BAD_SIGNATURE = {"aliyun": "SignatureDoesNotMatch", "tencent": "AuthFailure.SignatureFailure"}


@pytest.fixture(scope="module")
def stubs():
    running = {provider: make_stub(provider) for provider in PROVIDERS}
    yield running
    for stub in running.values():
        stub.stop()


@pytest.fixture(params=PROVIDERS)
def provider(request, stubs):
    stubs[request.param].reset()
    return request.param


@pytest.fixture
def make_app(database_url, smtp_server, stubs):
    """An app sending SMS through `provider`'s stub (with Redis: through a worker)."""
    def make(provider: str, redis_url: str | None = None, **overrides):
        return create_app("test", **{
            **base_config(database_url, smtp_server.port),
            **provider_settings(provider, stubs[provider]),
            "REDIS_URL": redis_url, "NOTIFY_RETRY_INTERVALS": "0", **overrides})
    return make


def worker_settings(worker_env: dict, provider: str, stub) -> dict:
    """A worker sending through the stub, on the real clock as in production: the provider
    dates its messages by it, and the receipt query asks by that date."""
    env = {**worker_env, **provider_settings(provider, stub)}
    env.pop("CIIE_NOW", None)
    return env


def lock(app, world, login, name: str) -> None:
    """The Shanghai delegation approves 徐汇贸易 (once) and locks one of its persons as a
    visitor: the unit is told by SMS and e-mail what to pay."""
    registration = world.registration("徐汇贸易")
    if registration.status is not m.UnitStatus.approved:
        login("sh-delegation").action("/delegation/units", "approve_units", [registration.id])
    person = world.person(name)
    client = Client(app, "sh-delegation")
    for action in ("tag_visitor", "lock_persons"):
        assert client.action("/delegation/persons", action, [person.id]).status_code == 302


def sms_rows() -> list[m.Notification]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Notification).where(
        m.Notification.channel == m.NotificationChannel.sms).order_by(m.Notification.id)))


def set_language(world, language: str) -> None:
    world.unit("徐汇贸易").language = language
    db.session.commit()


def sent_template(provider: str, stub) -> tuple[str, str, object]:
    """(number, template, parameters) of the stub's last message, as the SDK sent them."""
    [request] = [r for r in stub.requests if r["action"] == "SendSms"][-1:]
    assert not request["refused"]
    if provider == "aliyun":
        import json

        query = request["query"]
        assert query["SignName"] == SIGN_NAME
        return query["PhoneNumbers"], query["TemplateCode"], json.loads(query["TemplateParam"])
    params = request["params"]
    assert params["SignName"] == SIGN_NAME and params["SmsSdkAppId"] == TENCENT_APP_ID
    [number] = params["PhoneNumberSet"]
    return number, params["TemplateId"], params["TemplateParamSet"]


def test_a_payment_notice_goes_as_the_providers_template_in_the_units_language(
        provider, stubs, make_app, world, login):
    stub, app = stubs[provider], make_app(provider)
    expected = {"unit": "上海徐汇贸易有限公司", "count": "1", "fee": "¥200.00",
                "transfer": "2022-10-12", "online": "2022-10-15"}
    codes = template_codes(provider)["payment_due"]

    lock(app, world, login, "赵敏")
    number, template, params = sent_template(provider, stub)
    assert template == codes["zh"]
    if provider == "aliyun":
        # Alibaba: the number with its country code and no "+", named parameters.
        assert number == "8613800138000" and params == expected
    else:
        # Tencent: E.164, the parameters in the template's order.
        assert number == XUHUI_MOBILE
        assert params == [expected[name] for name in SMS_TEMPLATES["payment_due"]]
    [row] = sms_rows()
    assert row.status is NS.sent and row.provider == provider and row.attempts == 1
    assert row.provider_message_id == stub.sent[-1].message_id
    assert row.sms_template == "payment_due" and row.sms_params == expected
    # The text is the e-mail's business: the sandbox outbox stays empty.
    assert sms_messages() == []

    set_language(world, "en")
    lock(app, world, login, "孙磊")
    _number, template, params = sent_template(provider, stub)
    assert template == codes["en"]
    assert len(stub.sent) == 2 and all(not r["refused"] for r in stub.requests)


def test_throttling_is_retried_then_sent(provider, stubs, make_app, world, login, redis_url,
                                         worker_env):
    stub = stubs[provider]
    stub.script("SendSms", THROTTLED[provider])
    lock(make_app(provider, redis_url), world, login, "赵敏")
    env = worker_settings(worker_env, provider, stub)
    assert run_worker(env).returncode == 0
    [row] = sms_rows()
    assert (row.status, row.provider_code) == (NS.failed, THROTTLED[provider])
    # The retry waits out its interval (0 here) in rq's schedule: a later worker, once it holds
    # the scheduler's lock, sends it.
    for _run in range(5):
        assert run_worker(env).returncode == 0
        [row] = sms_rows()
        if row.status is NS.sent:
            break
        time.sleep(1)
    assert (row.status, row.attempts) == (NS.sent, 2)
    assert row.provider_code is None and row.last_error is None
    assert [r["action"] for r in stub.requests] == ["SendSms", "SendSms"] and len(stub.sent) == 1


def test_a_bad_number_fails_at_once_with_the_providers_code_shown_to_finance(
        provider, stubs, make_app, world, login, redis_url, worker_env):
    stub = stubs[provider]
    stub.refused_numbers.update({"8613800138000", XUHUI_MOBILE})
    lock(make_app(provider, redis_url), world, login, "赵敏")
    assert run_worker(worker_settings(worker_env, provider, stub)).returncode == 0
    [row] = sms_rows()
    # Refused for good: not tried again.
    assert row.status is NS.failed and row.attempts == 1
    assert row.provider_code == BAD_NUMBER[provider] and BAD_NUMBER[provider] in row.last_error
    assert len([r for r in stub.requests if r["action"] == "SendSms"]) == 1

    page = text_of(login("finance").get("/finance/notifications/list/"))
    assert BAD_NUMBER[provider] in page and "服务商代码" in page
    # Neither the unit nor its delegation reads finance's list.
    for user in ("sh-delegation", world.unit("徐汇贸易").login):
        response = login(user).get("/finance/notifications/list/")
        assert BAD_NUMBER[provider] not in response.get_data(as_text=True)


def test_a_wrong_secret_is_refused_by_the_provider_and_recorded(provider, stubs, make_app,
                                                                world, login):
    stub = stubs[provider]
    wrong = make_app(provider, **{
        ("ALIYUN_SMS_ACCESS_KEY_SECRET" if provider == "aliyun" else "TENCENT_SMS_SECRET_KEY"):
            "not-the-secret"})
    lock(wrong, world, login, "赵敏")
    [row] = sms_rows()
    assert row.status is NS.failed and row.provider_code == BAD_SIGNATURE[provider]
    assert stub.sent == [] and [r["refused"] for r in stub.requests] == [True]


def test_delivery_reports_move_sent_notices_to_delivered_or_failed(
        provider, stubs, make_app, world, login, redis_url, worker_env):
    from app.sweeper import sweep

    stub = stubs[provider]
    app = make_app(provider, redis_url)
    env = worker_settings(worker_env, provider, stub)
    lock(app, world, login, "赵敏")
    lock(app, world, login, "孙磊")
    assert run_worker(env).returncode == 0
    delivered, undelivered = sms_rows()
    assert delivered.status is undelivered.status is NS.sent
    stub.report(delivered.provider_message_id, True, "DELIVERED")
    stub.report(undelivered.provider_message_id, False, "MK:0001")

    with app.app_context():
        assert sweep()["sms receipt polls"] == 1
    assert run_worker(env).returncode == 0
    delivered, undelivered = sms_rows()
    assert (delivered.status, delivered.provider_code) == (NS.delivered, "DELIVERED")
    assert (undelivered.status, undelivered.provider_code) == (NS.failed, "MK:0001")
    assert delivered.receipt_at and undelivered.receipt_at
    # Each report is an audited move of the system's, the provider's code as its reason.
    with app.app_context():
        trail = {(a.record_id, a.from_state, a.to_state, a.actor_name, a.reason)
                 for a in db.session.scalars(sa.select(m.AuditEvent).where(
                     m.AuditEvent.record_type == "notification",
                     m.AuditEvent.action.in_(("delivered", "undelivered"))))}
    assert trail == {(delivered.id, "sent", "delivered", "system", "DELIVERED"),
                     (undelivered.id, "sent", "failed", "system", "MK:0001")}
    asked = {"aliyun": "QuerySendDetails", "tencent": "PullSmsSendStatus"}[provider]
    assert {r["action"] for r in stub.requests} == {"SendSms", asked}
    assert all(not r["refused"] for r in stub.requests)

    # Finance sees the undelivered one with the carrier's code; the log names the status.
    assert "MK:0001" in text_of(login("finance").get("/finance/notifications/list/"))
    log = text_of(login("admin").get("/admin/notifications/list/"))
    assert "已送达" in log
    # A worker that runs the send job again sends neither.
    from app.extensions import queue

    with app.app_context():
        for row in (delivered, undelivered):
            queue.enqueue("app.jobs.send_notification", row.id)
    assert run_worker(env).returncode == 0
    assert len(stub.sent) == 2


def test_the_verification_code_goes_as_its_template_and_stays_out_of_the_row(
        stubs, make_app, world):
    stub = stubs["tencent"]
    stub.reset()
    client = Client(make_app("tencent"))
    page = text_of(client.post("/register/returning", data={
        "login": "91310115MA1H7G8K32", "step": "send_sms"}))
    assert "139****9000" in page
    number, template, [code] = sent_template("tencent", stub)
    assert number == "+8613900139000" and re.fullmatch(r"\d{6}", code)
    assert template == template_codes("tencent")["verification_code"]["zh"]
    [row] = sms_rows()
    assert row.sms_params == {"code": "******"} and code not in row.body
    response = client.post("/register/returning", data={
        "login": "91310115MA1H7G8K32", "step": "check_sms", "code_sms": code})
    assert response.status_code == 302


def test_every_sms_kind_is_sent_by_some_notice():
    """Each template kind the deployment must configure is one the workflow sends."""
    source = "\n".join(p.read_text(encoding="utf-8")
                       for p in Path(ROOT, "app", "workflow").glob("*.py"))
    assert [kind for kind in SMS_TEMPLATES if f'"{kind}"' not in source] == []


def test_the_log_sandbox_is_the_default_and_production_refuses_it(database_url, tmp_path):
    from config import Config
    from tests.production_settings import production_settings

    assert Config.SMS_BACKEND == "log"
    production = {"SECRET_KEY": "a-production-secret-of-32-bytes!!",
                  "SQLALCHEMY_DATABASE_URI": database_url}
    with pytest.raises(RuntimeError, match="SMS_BACKEND"):
        create_app("production", **production)

    settings = provider_settings("aliyun")
    for missing, named in (
            ({"ALIYUN_SMS_ACCESS_KEY_SECRET": None}, "ALIYUN_SMS_ACCESS_KEY_SECRET"),
            ({"ALIYUN_SMS_TEMPLATES": '{"payment_due": {"zh": "SMS_1"}}'},
             "payment_due/en"),
            ({"ALIYUN_SMS_ENDPOINT": "http://127.0.0.1:9"}, "ALIYUN_SMS_ENDPOINT")):
        with pytest.raises(RuntimeError, match=re.escape(named)):
            create_app("production", **{**production, **settings, **missing})
    tencent = provider_settings("tencent")
    with pytest.raises(RuntimeError, match="TENCENT_SMS_SDK_APP_ID"):
        create_app("production", **{**production, **tencent,
                                          "TENCENT_SMS_SDK_APP_ID": None})
    # Fully configured (the other providers too), it starts.
    others = production_settings(tmp_path)
    assert create_app("production", **{**others, **production, **settings})
    assert create_app("production", **{**others, **production, **tencent})


def test_a_secret_may_come_from_a_file(tmp_path, stubs, make_app, world, login):
    stub = stubs["aliyun"]
    stub.reset()
    secret = tmp_path / "aliyun-secret"
    secret.write_text(KEYS["aliyun"][1] + "\n")
    lock(make_app("aliyun", ALIYUN_SMS_ACCESS_KEY_SECRET=None,
                  ALIYUN_SMS_ACCESS_KEY_SECRET_FILE=str(secret)), world, login, "赵敏")
    [row] = sms_rows()
    assert row.status is NS.sent and [r["refused"] for r in stub.requests] == [False]
