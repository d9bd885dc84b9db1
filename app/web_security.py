"""What every HTTP answer and login attempt goes through: the client's real address behind the
reverse proxy, security headers with a nonce-based CSP (Flask-Talisman), no caching of pages
and API answers, and login throttling per account as well as per address."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, g, make_response, request
from flask_appbuilder import AppBuilder
from flask_babel import gettext as _
from flask_limiter import RateLimitExceeded, RequestLimit
from flask_talisman import DENY, Talisman
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from app.extensions import db

# Static files carry no personal data and may be cached; every other answer may.
STATIC_ENDPOINTS = frozenset({"static", "appbuilder.static"})


def init_web_security(app: Flask, appbuilder: AppBuilder) -> None:
    proxies = app.config["PROXY_COUNT"]
    if proxies:
        # Behind N proxies the client is the N-th address from the right of X-Forwarded-For;
        # with none, that header is whatever the client wrote and is not read.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    _security_headers(app)
    app.after_request(_no_store)
    _throttle_logins(app, appbuilder)


def _security_headers(app: Flask) -> None:
    policy = dict(app.config["CONTENT_SECURITY_POLICY"])
    b2b = urlsplit(app.config.get("B2B_API_URL") or "")
    if b2b.scheme and b2b.netloc:
        # Paying by B2B posts the signed order to UnionPay's frontTransReq.do (form-action).
        policy["form-action"] = f"{policy['form-action']} {b2b.scheme}://{b2b.netloc}"
    talisman = Talisman(
        app,
        # TLS ends at the reverse proxy, which redirects plain HTTP itself.
        force_https=False,
        frame_options=DENY,
        strict_transport_security=app.config["HSTS_ENABLED"],
        strict_transport_security_include_subdomains=False,
        content_security_policy=policy,
        content_security_policy_nonce_in=["script-src"],
        # Talisman would rewrite these cookie settings; config.py decides them.
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_samesite=app.config["SESSION_COOKIE_SAMESITE"],
    )

    # FAB's templates ask `csp_nonce()` for every <script>. Talisman makes the nonce in a
    # before_request hook that an earlier hook (a CSRF or rate-limit refusal) may cut short:
    # then the error page makes it, and the header, written afterwards, carries the same.
    def nonce() -> str:
        if not getattr(request, "csp_nonce", None):
            talisman._make_nonce()
        return talisman._get_nonce()

    app.jinja_env.globals["csp_nonce"] = nonce


def _no_store(response: Response) -> Response:
    """Pages and API answers name persons, units and money: no browser or proxy keeps them."""
    if request.endpoint not in STATIC_ENDPOINTS:
        response.headers["Cache-Control"] = "no-store"
    return response


# --------------------------------------------------------------------------------------------
# Login throttling. AUTH_RATE_LIMIT / API_LOGIN_RATE_LIMIT (FAB's, per address) bound what one
# address tries in all; on top, failed logins are counted per account, web and API together:
# from one address (LOGIN_ACCOUNT_ADDRESS_RATE_LIMIT) and from all addresses
# (LOGIN_ACCOUNT_RATE_LIMIT, set above what one address can reach), so one address cannot
# lock an account, let alone every account, and many addresses cannot guess one password.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginAccount:
    key: str
    username: str
    user_id: int | None


def login_account() -> LoginAccount:
    """The account a login request names: the user's id when it exists (its username and its
    e-mail are one account), else the name as typed, in the form auth_user_db reads it."""
    account = g.get("ciie_login_account")
    if account is None:
        body = request.get_json(silent=True) if request.is_json else request.form
        username = body.get("username") if isinstance(body, dict) else None
        username = username.strip() if isinstance(username, str) else ""
        sm = current_app.appbuilder.sm
        user = None
        if username:
            username = sm.canonical_username(username)
            user = sm.find_user(username=username) or sm.find_user(email=username)
        key = f"user:{user.id}" if user is not None else f"name:{username.lower()}"
        account = g.ciie_login_account = LoginAccount(key if username else "", username,
                                                      user.id if user is not None else None)
    return account


def _is_login() -> bool:
    return request.endpoint in current_app.extensions["ciie_login_endpoints"]


def _hold_account(limit: RequestLimit) -> None:
    """Remember the latest moment a breached account limit opens again (for the message)."""
    g.ciie_account_held_until = max(g.get("ciie_account_held_until", 0), limit.reset_at)


def _throttle_logins(app: Flask, appbuilder: AppBuilder) -> None:
    sm = appbuilder.sm
    security_api = next(v for v in appbuilder.baseviews if isinstance(v, sm.security_api))
    app.extensions["ciie_login_endpoints"] = frozenset(
        {f"{sm.auth_view.blueprint.name}.login", f"{security_api.blueprint.name}.login"})

    def not_a_named_login() -> bool:
        return not _is_login() or not login_account().key

    def failed(response: Response) -> bool:
        return response.status_code == 401

    limits = [
        sm.limiter.shared_limit(
            lambda: current_app.config["LOGIN_ACCOUNT_ADDRESS_RATE_LIMIT"],
            "login-account-address", methods=["POST"], exempt_when=not_a_named_login,
            key_func=lambda: f"{login_account().key}@{request.remote_addr}",
            deduct_when=failed, on_breach=_hold_account),
        sm.limiter.shared_limit(
            lambda: current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"],
            "login-account", methods=["POST"], exempt_when=not_a_named_login,
            key_func=lambda: login_account().key, deduct_when=failed,
            on_breach=_hold_account),
    ]
    for limit in limits:
        limit(sm.auth_view.blueprint)
        limit(security_api.blueprint)
    app.register_error_handler(RateLimitExceeded, _refuse_throttled)


def _refuse_throttled(exc: RateLimitExceeded) -> Any:
    """429 in the user's language; a held login is audited with the account and address."""
    from app.errors import error_response, status_message
    from app.scoping.actor import ANONYMOUS
    from app.workflow.audit import record

    db.session.rollback()
    message = status_message(429)
    if _is_login():
        account = login_account()
        # record_id 0: no account has the name that was tried.
        record(ANONYMOUS, "user", account.user_id or 0, "login_throttled",
               detail={"username": account.username, "address": request.remote_addr,
                       "limit": str(exc.limit.limit)})
        db.session.commit()
        held_until = g.get("ciie_account_held_until")
        if held_until:
            minutes = max(1, round((held_until - time.time()) / 60))
            message = _("Too many failed sign-ins for this account. Please try again in "
                        "%(minutes)s minutes.", minutes=minutes)
    return make_response(error_response(429, message))
