"""Sessions that end for good, security headers on every answer, login throttling per account and
per address behind the reverse proxy, and a REST API that shows only what the web shows."""
from __future__ import annotations

import re

import prison
import pytest
import sqlalchemy as sa

from app import create_app
from app import models as m
from app.demo import DEMO_PASSWORD
from app.extensions import db
from tests.conftest import UNIT_A, UNIT_B, UNIT_F, Client, base_config, text_of

UNIT_G = "91310115MA1H7G8K32"  # 上海进口食品: registered for the 4th edition only
EN = {"Accept-Language": "en-US,en;q=0.9"}
NEW_PASSWORD = "Changed@2022x"


def audit(action: str) -> list[m.AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.AuditEvent).where(m.AuditEvent.action == action)
                                   .order_by(m.AuditEvent.id)))


def signed_in(client: Client) -> bool:
    """Whether the client's session still opens a unit's page (not the login)."""
    response = client.get("/unit/persons/list/")
    return response.status_code == 200 and "/login/" not in response.headers.get("Location", "")


def copy_of(app, client: Client) -> Client:
    """A second client holding a copy of the first one's session cookie (a stolen cookie)."""
    thief = Client(app)
    cookie = client.http.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    thief.http.set_cookie(cookie.key, cookie.value)
    return thief


# ------------------------------------------------------------------------ headers --------

def test_every_answer_carries_the_security_headers(login, world):
    unit = login(UNIT_A)
    answers = {
        "login page": Client(unit.app).get("/login/"),
        "unit page": unit.get("/unit/persons/list/"),
        "not found": unit.get("/unit/persons/show/999999"),
        "api": unit.http.get("/api/v1/persons/", headers=unit.api_login(UNIT_A)),
    }
    for name, response in answers.items():
        headers = response.headers
        assert headers["X-Frame-Options"] == "DENY", name
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin", name
        policy = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy, name
        assert "object-src 'none'" in policy and "base-uri 'self'" in policy, name
        assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0], name
    # Every script of FAB's templates and ours carries the response's nonce.
    page = answers["unit page"]
    nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
    scripts = re.findall(r"<script\b[^>]*>", page.data.decode())
    assert scripts and all(f'nonce="{nonce}"' in tag for tag in scripts), scripts


def test_no_template_has_a_script_the_csp_would_block():
    """Every <script> carries the nonce; no inline event handler or javascript: URL."""
    import os

    from tests.conftest import ROOT

    for folder, _dirs, files in os.walk(os.path.join(ROOT, "app", "templates")):
        for name in files:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                html = fh.read()
            for tag in re.findall(r"<script\b[^>]*>", html):
                assert "nonce=" in tag, (name, tag)
            assert not re.search(r"\son[a-z]+\s*=|javascript:", html), name


def test_hsts_only_in_production_over_https(database_url, smtp_server, world, tmp_path):
    from tests.production_settings import production_settings

    # Production starts only with real providers configured (none is reached here).
    config = {**base_config(database_url, smtp_server.port), **production_settings(tmp_path)}
    production = create_app("production", **config)
    https = production.test_client().get("/login/", base_url="https://ciie.example")
    max_age = re.fullmatch(r"max-age=(\d+)", https.headers["Strict-Transport-Security"])
    assert int(max_age.group(1)) >= 365 * 24 * 3600
    assert "Content-Security-Policy" in https.headers
    development = create_app("test", **base_config(database_url, smtp_server.port))
    assert "Strict-Transport-Security" not in development.test_client().get(
        "/login/", base_url="https://ciie.example").headers


def test_personal_pages_and_api_answers_are_not_stored(login, world):
    unit = login(UNIT_A)
    for response in (unit.get("/unit/persons/list/"), unit.get("/"),
                     unit.http.get("/api/v1/persons/", headers=unit.api_login(UNIT_A)),
                     unit.get("/unit/persons/show/999999")):
        assert "no-store" in response.headers["Cache-Control"], response.request.path
    # Static files may be cached.
    static = unit.get("/static/ciie.js")
    assert "no-store" not in static.headers.get("Cache-Control", "")


# ------------------------------------------------------------------------ logout ---------

def test_logout_is_a_post_with_csrf(login, world):
    unit = login(UNIT_A)
    assert unit.get("/logout/").status_code == 405
    assert signed_in(unit)
    assert unit.post("/logout/", csrf=False).status_code == 400
    assert signed_in(unit)
    assert unit.post("/logout/").status_code == 302
    assert not signed_in(unit)
    [event] = audit("logout")
    assert event.record_id == world.user(UNIT_A).id


def test_a_cookie_copied_before_logout_no_longer_works_after_it(app, login, world):
    unit = login(UNIT_A)
    thief = copy_of(app, unit)
    assert signed_in(thief)
    unit.post("/logout/")
    assert not signed_in(thief)
    # Logging in again does not bring the old cookie back to life.
    again = login(UNIT_A)
    assert signed_in(again) and not signed_in(thief)


def test_changing_ones_password_ends_the_other_sessions_only(app, login, world):
    here, elsewhere = login(UNIT_A), login(UNIT_A)
    response = here.post("/resetmypassword/form", data={
        "password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})
    assert response.status_code == 302
    assert signed_in(here)
    assert not signed_in(elsewhere)
    assert Client(app, UNIT_A, NEW_PASSWORD).username == UNIT_A


def test_an_admins_password_reset_ends_the_users_sessions(login, world):
    unit = login(UNIT_A)
    admin = login("admin")
    response = admin.post(f"/resetpassword/form?pk={world.user(UNIT_A).id}", data={
        "password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})
    assert response.status_code == 302
    assert not signed_in(unit)
    assert admin.get("/users/list/").status_code == 200
    assert admin.post("/resetpassword/form?pk=abc", data={
        "password": NEW_PASSWORD, "conf_password": NEW_PASSWORD}).status_code == 404


def test_any_password_change_ends_the_sessions(login, world):
    """A password set anywhere (a workflow, the CLI) ends the sessions: the model holds it."""
    unit = login(UNIT_A)
    user = world.user(UNIT_A)
    user.password = "pbkdf2:sha256:1000$x$y"
    db.session.commit()
    assert not signed_in(unit)


def test_api_tokens_end_with_logout_and_password_change(app, login, world):
    web = login(UNIT_A)
    api = Client(app)
    token = api.api_login(UNIT_A)
    assert api.get("/api/v1/persons/", headers=token).status_code == 200
    web.post("/logout/")
    refused = api.get("/api/v1/persons/", headers={**token, **EN})
    assert refused.status_code == 401 and refused.json["message"] == "Please log in."

    token = api.api_login(UNIT_A)
    assert api.get("/api/v1/persons/", headers=token).status_code == 200
    login("admin").post(f"/resetpassword/form?pk={world.user(UNIT_A).id}", data={
        "password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})
    assert api.get("/api/v1/persons/", headers=token).status_code == 401
    assert api.get("/api/v1/persons/", headers=api.api_login(UNIT_A, NEW_PASSWORD)
                   ).status_code == 200


# --------------------------------------------------------------------- throttling --------

def throttled_app(database_url, smtp_server, **limits):
    settings = {"AUTH_RATE_LIMIT": "1000 per 1 minute", "API_LOGIN_RATE_LIMIT": "1000 per 1 minute",
                "LOGIN_ACCOUNT_ADDRESS_RATE_LIMIT": "3 per 15 minutes",
                "LOGIN_ACCOUNT_RATE_LIMIT": "5 per 1 hour", "PROXY_COUNT": 1, **limits}
    return create_app("test", **base_config(database_url, smtp_server.port), **settings)


def attempt(client: Client, username: str, password: str, address: str, api: bool = False,
            headers: dict | None = None):
    headers = {"X-Forwarded-For": address, **(headers or {})}
    if api:
        return client.http.post("/api/v1/security/login", headers=headers, json={
            "username": username, "password": password, "provider": "db"})
    return client.post("/login/", data={"username": username, "password": password},
                       headers=headers)


def test_many_addresses_cannot_brute_force_one_account(database_url, smtp_server, world):
    limited = throttled_app(database_url, smtp_server)
    client = Client(limited)
    codes = [attempt(client, UNIT_A, "wrong", f"198.51.100.{i}").status_code for i in range(5)]
    assert codes == [401] * 5
    # The account is held, whatever the address, the way in (web or API) or the password.
    refused = attempt(client, UNIT_A, DEMO_PASSWORD, "203.0.113.7")
    assert refused.status_code == 429
    assert "该账号登录失败次数过多" in text_of(refused)
    api = attempt(client, UNIT_A.lower(), DEMO_PASSWORD, "203.0.113.8", api=True, headers=EN)
    assert api.status_code == 429
    assert api.json["message"].startswith("Too many failed sign-ins for this account")
    # Other accounts are not touched.
    assert attempt(client, UNIT_B, DEMO_PASSWORD, "203.0.113.7").status_code == 302
    events = audit("login_throttled")
    assert len(events) == 2 and events[0].record_id == world.user(UNIT_A).id
    assert events[0].detail["address"] == "203.0.113.7"
    assert events[0].detail["username"] == UNIT_A


def test_one_address_cannot_lock_an_account_out_for_everyone(database_url, smtp_server, world):
    limited = throttled_app(database_url, smtp_server)
    attacker = Client(limited)
    codes = [attempt(attacker, UNIT_A, "wrong", "198.51.100.9").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    # Nor every account: the same address still logs into another one.
    assert attempt(attacker, UNIT_B, DEMO_PASSWORD, "198.51.100.9").status_code == 302
    # The owner, elsewhere, still gets in.
    owner = Client(limited)
    assert attempt(owner, UNIT_A, DEMO_PASSWORD, "203.0.113.20").status_code == 302
    assert [e.detail["address"] for e in audit("login_throttled")] == ["198.51.100.9"]


def test_the_client_address_is_read_behind_the_configured_proxies(database_url, smtp_server,
                                                                  world):
    behind_proxy = throttled_app(database_url, smtp_server, AUTH_RATE_LIMIT="2 per 1 minute")
    client = Client(behind_proxy)
    codes = [attempt(client, UNIT_F, "wrong", "198.51.100.30").status_code for _ in range(3)]
    assert codes == [401, 401, 429]
    assert attempt(client, UNIT_F, "wrong", "198.51.100.31").status_code == 401
    # Without a proxy (PROXY_COUNT=0, the development default) the header is a client's lie.
    direct = throttled_app(database_url, smtp_server, AUTH_RATE_LIMIT="2 per 1 minute",
                           PROXY_COUNT=0)
    client = Client(direct)
    codes = [attempt(client, UNIT_F, "wrong", f"198.51.100.{40 + i}").status_code
             for i in range(3)]
    assert codes == [401, 401, 429]


# ---------------------------------------------------------------------- REST API ---------

def names(response) -> set[str]:
    assert response.status_code == 200, response.json
    return {row["person"]["name"] for row in response.json["result"]}


def edition_filter(edition_id: int) -> str:
    return prison.dumps({"filters": [{"col": "edition", "opr": "rel_o_m",
                                      "value": edition_id}]})


def fourth_edition() -> m.Edition:
    return db.session.scalars(sa.select(m.Edition).where(m.Edition.number == 4)).one()


def test_api_lists_the_current_edition_unless_another_is_asked_for(login, world):
    client = login(None)
    token = client.api_login(UNIT_A)
    current = names(client.get("/api/v1/persons/", headers=token))
    assert "王伟" in current and not {"黄磊", "何静"} & current
    earlier = names(client.get("/api/v1/persons/?q=" + edition_filter(fourth_edition().id),
                               headers=token))
    assert earlier == {"黄磊", "何静"}
    units = client.get("/api/v1/units/", headers=token).json["result"]
    assert [u["edition"]["number"] for u in units] == [5]
    # The delegation's lists too.
    delegation = client.api_login("sh-delegation")
    assert not {"黄磊", "钱峰"} & names(client.get("/api/v1/persons/", headers=delegation))


def test_api_hides_the_history_of_a_unit_registered_afresh(login, world):
    """Like its web pages (persons from earlier editions are not offered): neither a list
    of an earlier edition nor a record of it by id."""
    unit_g = world.unit("上海进口食品")
    fifth = db.session.scalars(sa.select(m.Edition).where(m.Edition.is_current)).one()
    db.session.add(m.UnitRegistration(edition=fifth, unit=unit_g, history_hidden=True,
                                      delegation=world.registration("上海浦东医疗器械").delegation))
    db.session.commit()
    earlier_id = world.person("钱峰").id
    unit_registration_4 = db.session.scalars(sa.select(m.UnitRegistration.id).where(
        m.UnitRegistration.unit_id == unit_g.id,
        m.UnitRegistration.edition_id == fourth_edition().id)).one()

    client = login(None)
    token = client.api_login(UNIT_G)
    query = "?q=" + edition_filter(fourth_edition().id)
    assert names(client.get("/api/v1/persons/" + query, headers=token)) == set()
    assert client.get(f"/api/v1/persons/{earlier_id}", headers=token).status_code == 404
    assert client.get("/api/v1/units/" + query, headers=token).json["count"] == 0
    assert client.get(f"/api/v1/units/{unit_registration_4}",
                      headers=token).status_code == 404
    # The web shows nothing of it either.
    assert "钱峰" not in text_of(login(UNIT_G).get("/unit/previous-persons/"))


# ------------------------------------------------------------------------ browser --------

@pytest.fixture
def csp_violations(page):
    """CSP violations the page reports (console messages and securitypolicyviolation events)."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                         "console.error('Content Security Policy: ' + e.violatedDirective "
                         "+ ' ' + e.blockedURI))")
    return seen


def test_in_the_browser_logout_ends_the_copied_session(browser, live_server, page):
    from tests.test_browser_smoke import log_in, log_out

    log_in(page, UNIT_A)
    cookies = page.context.cookies()
    log_out(page)
    assert page.locator("a[href='/login/']").count() >= 1
    other = browser.new_context(base_url=live_server, locale="zh-CN")
    other.add_cookies(cookies)
    stolen = other.new_page()
    stolen.goto("/unit/persons/list/")
    assert "/login/" in stolen.url
    other.close()


def test_in_the_browser_the_csp_lets_the_pages_scripts_run(page, csp_violations):
    from tests.test_browser_smoke import log_in

    # The register page: the category list follows the region (register.js).
    page.goto("/register/new")
    page.select_option("#region", "overseas")
    page.wait_for_selector("#category option[value='other']", state="attached")
    # The unit information of a draft unit saves itself (autosave.js).
    log_in(page, UNIT_F)
    page.goto("/unit/info/")
    page.fill("#contact_name", "内容安全策略")
    # A selector, not wait_for_function: the CSP refuses the eval that one would need.
    page.wait_for_selector("#autosave-status:has-text('保存')", timeout=12000)
    # A list with FAB's widgets and our batch actions (ciie.js): the actions menu opens.
    page.goto("/unit/persons/list/")
    page.click(".well button.dropdown-toggle")
    page.wait_for_selector("a.submit_persons_menu_item", state="visible")
    assert csp_violations == []
