"""The operator's view of the outside services (app/providers.py): the admin's page and
`flask ciie providers check` show each provider with its mode, its last success and failure and
the failed calls waiting for a retry; no other role opens the page; a production start with a
sandbox provider or a setting missing is refused, naming the provider and the setting."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import clock, create_app
from app import models as m
from app.extensions import db
from app.providers import PAYMENT_SETTINGS, provider_reports
from tests.conftest import DEMO_NOW, ROOT, Client, base_config, text_of
from tests.production_settings import payment_settings, production_settings
from tests.sms_stub import make_stub, provider_settings
from tests.test_sms_providers import lock
from tests.test_zh_pages import Visible, data_strings, english_words

# Settings an adapter reads only when it needs them: UnionPay's refunds, sent by a job outside
# any request, name the notify URL from it.
READ_LATER = {"PAYMENT_NOTIFY_BASE_URL"}
KEYS = ("sms", "mail", "alipay", "wechat", "unionpay", "b2b", "invoicing")
PAGE = "/admin/providers/"


@pytest.fixture(scope="module")
def aliyun():
    stub = make_stub("aliyun")
    yield stub
    stub.stop()


@pytest.fixture
def aliyun_app(database_url, smtp_server, aliyun):
    """An app sending SMS through Alibaba's stub (inline, without Redis); `secret` replaces
    the right one."""
    def make(secret: str | None = None):
        aliyun.reset()
        return create_app("test", **base_config(database_url, smtp_server.port),
                          **provider_settings("aliyun", aliyun, secret=secret))
    return make


def rows_of(response) -> dict[str, dict]:
    """Each provider's row of the page: its mode, whether it is marked, its cells' text."""
    html = response.get_data(as_text=True)
    rows = {}
    for chunk in html.split('<tr id="provider-')[1:]:
        chunk = chunk.split("</tr>")[0]
        key = chunk.split('"')[0]
        cells = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip()
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", chunk, flags=re.S)]
        rows[key] = {"mode": re.search(r'data-mode="(\w+)"', chunk)[1],
                     "marked": 'class="danger"' in chunk,
                     "waiting": int(re.search(r'data-total="(\d+)"', chunk)[1]),
                     "provider": cells[1], "success": cells[3], "failure": cells[4],
                     "waiting_text": cells[5].replace(" ", ""), "state": cells[6]}
    return rows


def check(app) -> tuple[int, dict[str, str]]:
    """`flask ciie providers check` on `app`: its exit code and its lines by service and
    provider."""
    # The command runs in the app context it finds: the tests' own is pushed (world).
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["ciie", "providers", "check"])
    lines = result.output.splitlines()
    assert lines[0].split() == ["service", "provider", "mode", "last", "success", "last",
                                "failure", "waiting", "problems"], result.output
    return result.exit_code, lines[1:]


def test_the_admin_sees_each_provider_with_its_mode(app, login, world, smtp_server):
    admin = login("admin")
    response = admin.get(PAGE)
    assert response.status_code == 200
    rows = rows_of(response)
    assert list(rows) == list(KEYS)
    # The tests' app: SMS to the log sandbox, e-mail to a real SMTP server on loopback,
    # payments through the sandbox, e-invoices drawn here.
    assert {key: row["mode"] for key, row in rows.items()} == {
        "sms": "sandbox", "mail": "production", "alipay": "sandbox", "wechat": "sandbox",
        "unionpay": "sandbox", "b2b": "sandbox", "invoicing": "sandbox"}
    assert rows["sms"]["provider"] == "日志文件（沙箱）"
    assert rows["mail"]["provider"] == f"邮件服务器 127.0.0.1:{smtp_server.port}"
    assert rows["alipay"]["provider"] == "支付沙箱：支付宝"
    assert rows["invoicing"]["provider"] == "本系统绘制的样票（沙箱）"
    assert not any(row["marked"] for row in rows.values())
    assert all(row["state"] == "正常" and row["waiting"] == 0 for row in rows.values())
    assert "外部服务" in text_of(admin.get("/"))  # the menu entry under 系统管理
    # No English on the zh page (the mail server's address is shown as it is, untranslated).
    assert english_words(" ".join(Visible(response.get_data(as_text=True)).texts),
                         data_strings()) == set()

    admin.set_language("en")
    english = rows_of(admin.get(PAGE))
    assert english["mail"]["provider"] == f"Mail server 127.0.0.1:{smtp_server.port}"
    assert "Sandbox" in admin.get(PAGE).get_data(as_text=True)


@pytest.mark.parametrize("username", ["finance", "sh-delegation", "sh-pudong", "reviewer",
                                      "organiser", "gate", "91310115MA1K4AB30U"])
def test_no_other_role_opens_the_page(login, world, username):
    client = login(username)
    response = client.get(PAGE)
    assert response.status_code in (302, 403)
    assert 'id="providers-table"' not in response.get_data(as_text=True)
    assert PAGE not in client.get("/").get_data(as_text=True)


def test_a_failed_sms_shows_as_the_last_failure_and_as_waiting(aliyun_app, world, login,
                                                               aliyun):
    wrong = aliyun_app(secret="not-the-secret")
    lock(wrong, world, login, "赵敏")
    [notice] = db.session.scalars(sa.select(m.Notification).where(
        m.Notification.channel == m.NotificationChannel.sms))
    assert notice.status is m.NotificationStatus.failed
    assert notice.provider_code == "SignatureDoesNotMatch"

    rows = rows_of(Client(wrong, "admin").get(PAGE))
    sms = rows["sms"]
    assert sms["mode"] == "production" and sms["provider"] == "阿里云短信"
    assert sms["marked"] and "最近一次调用失败" in sms["state"]
    assert "SignatureDoesNotMatch" in sms["failure"] and sms["success"] == "—"
    assert sms["waiting"] == 1
    # Only the SMS provider is in trouble.
    assert [key for key, row in rows.items() if row["marked"]] == ["sms"]

    code, lines = check(wrong)
    assert code == 1, lines
    [line] = [line for line in lines if line.startswith("SMS ")]
    assert "Alibaba Cloud SMS" in line and "Production" in line
    assert "SignatureDoesNotMatch" in line and "1 failed notices not sent since" in line
    assert line.endswith("last call failed")

    # A minute later, with the right secret, the next notice goes: the provider works again
    # and the failed notice still waits (for finance's "Send again"). The stub's endpoint
    # (http://) stays marked: production speaks HTTPS only.
    clock.set_now(DEMO_NOW + timedelta(minutes=1))
    right = aliyun_app()
    lock(right, world, login, "孙磊")
    sms = rows_of(Client(right, "admin").get(PAGE))["sms"]
    assert sms["success"] == "2022-09-15 10:01" and sms["failure"].startswith("2022-09-15 10:00")
    assert "最近一次调用失败" not in sms["state"] and sms["waiting"] == 1
    assert sms["state"] == "缺少或填错的设置： ALIYUN_SMS_ENDPOINT (https only: http:// is for " \
                          "the tests&#39; stub)"
    code, lines = check(right)
    [line] = [line for line in lines if line.startswith("SMS ")]
    assert code == 1 and line.endswith("ALIYUN_SMS_ENDPOINT (https only: http:// is for the "
                                       "tests' stub)")


def test_a_payment_pending_with_the_provider_waits_until_it_is_confirmed(
        app, data_app, world, login, tmp_path, monkeypatch):
    from app.sandbox.simulator import PaymentSandbox

    # The sandbox's books in a folder of this test's own (both apps read it, as processes do).
    for each in (app, data_app):
        monkeypatch.setitem(each.config, "PAYMENT_SANDBOX_DIR", str(tmp_path))
    order = db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()
    unit = login("91310115MA1K4AB30U")
    started = unit.post(f"/unit/orders/pay/{order.id}/start", data={"channel": "alipay"})
    # The payment's page shows the QR code: Alipay (the sandbox) opened the trade.
    assert started.status_code == 302 and unit.get(started.location).status_code == 200
    admin = login("admin")
    alipay = rows_of(admin.get(PAGE))["alipay"]
    assert alipay["waiting"] == 1 and "在支付机构处待支付的支付:1" in alipay["waiting_text"]
    assert alipay["success"] == "—" and not alipay["marked"]

    payment = db.session.scalars(sa.select(m.Payment)).one()
    with app.test_request_context():
        assert PaymentSandbox(str(tmp_path)).pay(m.PaymentChannel.alipay,
                                                 payment.number).status == 200
    db.session.expire_all()
    assert payment.status is m.PaymentStatus.confirmed
    rows = rows_of(admin.get(PAGE))
    assert rows["alipay"]["waiting"] == 0 and rows["alipay"]["success"] == "2022-09-15 10:00"
    # The other channels saw nothing.
    assert all(rows[key]["success"] == "—" for key in ("wechat", "unionpay", "b2b"))


def test_the_command_prints_every_provider_and_exits_0_when_all_is_well(app, world):
    code, lines = check(app)
    assert code == 0
    assert [line.split("  ")[0] for line in lines] == [
        "SMS", "E-mail", "Online payment", "Online payment", "Online payment",
        "Online payment", "E-invoices"]
    assert "Payment sandbox: WeChat Pay" in lines[3] and "Sandbox" in lines[3]
    assert all(line.endswith("ok") for line in lines)


def test_the_report_uses_indexes_and_a_fixed_number_of_queries(app, data_app, world):
    """Each statement of the report is answered from an index (PostgreSQL, sequential scans
    off), and their number does not grow with the rows."""
    with app.app_context():
        engine = db.engine
    statements: list[tuple[str, object]] = []

    def seen(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    def report() -> int:
        statements.clear()
        sa.event.listen(engine, "before_cursor_execute", seen)
        try:
            with app.app_context():
                provider_reports()
        finally:
            sa.event.remove(engine, "before_cursor_execute", seen)
        return len(statements)

    empty = report()
    assert empty >= len(KEYS)  # a handful of statements, not none: each is checked below
    db.session.add_all([m.Notification(
        dedupe_key=f"provider-test:{i}", channel=channel, recipient="13800138000",
        body="x", status=m.NotificationStatus.failed, attempts=5)
        for i, channel in enumerate([m.NotificationChannel.sms, m.NotificationChannel.email] * 5)])
    db.session.commit()
    assert report() == empty
    with engine.connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            plan = "\n".join(r[0] for r in connection.exec_driver_sql(
                "EXPLAIN " + statement, parameters))
            assert "Seq Scan" not in plan, (statement, plan)


def test_the_payment_settings_are_what_the_adapters_read(tmp_path):
    from app.gateways.payments import GatewayError, HttpLink, production_gateway

    settings = payment_settings(tmp_path)
    link = HttpLink(timeout=1)
    for channel, names in PAYMENT_SETTINGS.items():
        config = {name: settings[name] for name in names}
        assert production_gateway(channel, config, link).channel is channel
        for name in names:
            rest = {k: v for k, v in config.items() if k != name}
            if name in READ_LATER:
                assert production_gateway(channel, rest, link).channel is channel
                continue
            with pytest.raises(GatewayError, match=name):
                production_gateway(channel, rest, link)


def test_production_refuses_a_sandbox_or_a_missing_setting_and_names_it(
        database_url, smtp_server, tmp_path):
    start = {**base_config(database_url, smtp_server.port), **production_settings(tmp_path)}
    assert create_app("production", **start)

    inside = f"{ROOT}/instance/alipay-private.pem"
    for change, named in (
            ({"SMS_BACKEND": "log"}, "sms: SMS_BACKEND (the log sandbox"),
            ({"MAIL_BACKEND": "log"}, "mail: MAIL_BACKEND (the log sandbox"),
            ({"PAYMENT_SANDBOX": True}, "alipay: PAYMENT_SANDBOX"),
            ({"ALIPAY_APP_ID": None}, "alipay: ALIPAY_APP_ID"),
            ({"WECHATPAY_PRIVATE_KEY_FILE": str(tmp_path / "gone.pem")},
             f"wechat: WECHATPAY_PRIVATE_KEY_FILE (no readable file {tmp_path}/gone.pem)"),
            ({"ALIPAY_APP_PRIVATE_KEY_FILE": inside},
             "alipay: ALIPAY_APP_PRIVATE_KEY_FILE (" + inside + " is inside the repository"),
            ({"B2B_API_URL": "http://gateway.95516.com"}, "b2b: B2B_API_URL (https only)"),
            ({"ALIYUN_SMS_ACCESS_KEY_SECRET": None,
              "ALIYUN_SMS_ACCESS_KEY_SECRET_FILE": str(tmp_path / "none")},
             "ALIYUN_SMS_ACCESS_KEY_SECRET_FILE (no readable file")):
        with pytest.raises(RuntimeError, match=re.escape(named)):
            create_app("production", **{**start, **change})

    # Everything missing at once is named at once, provider by provider.
    with pytest.raises(RuntimeError) as refused:
        create_app("production", **{**start, "UNIONPAY_MER_ID": None, "B2B_ROOT_CERT_FILE": None,
                                    "TENCENT_SMS_SDK_APP_ID": None, "SMS_BACKEND": "tencent"})
    message = str(refused.value)
    for named in ("unionpay: UNIONPAY_MER_ID", "b2b: B2B_ROOT_CERT_FILE", "TENCENT_SMS_SDK_APP_ID",
                  "TENCENT_SMS_SECRET_ID"):
        assert named in message
