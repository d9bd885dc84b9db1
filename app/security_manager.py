"""Flask-AppBuilder's security manager with our user model: login and logout, one permission
query per request, credit codes as logins, JWT answers in the user's language, and session
versions (logout and every new password end every session and API token of the user)."""
from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    g,
    has_request_context,
    jsonify,
    redirect,
    request,
    session,
)
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import no_cache
from flask_appbuilder.security.forms import LoginForm_db
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.views import AuthDBView, UserDBModelView
from flask_appbuilder.utils.base import get_safe_redirect
from flask_login import login_user, logout_user, user_logged_in

from app import models as m
from app.scoping.actor import ANONYMOUS, actor_for_user
from app.scoping.rules import row_id


class CiieUserDBModelView(UserDBModelView):
    """FAB's user admin, plus the organisation each user acts for."""

    show_fieldsets = [
        (None, {"fields": ["first_name", "last_name", "username", "email", "active", "roles"]}),
        ("Organisation", {"fields": ["unit", "delegation", "organiser"]}),
        ("Audit", {"fields": ["last_login", "login_count", "fail_login_count", "created_on",
                              "changed_on"], "expanded": False}),
    ]
    user_show_fieldsets = show_fieldsets
    add_columns = ["first_name", "last_name", "username", "active", "email", "roles",
                   "unit", "delegation", "organiser", "password", "conf_password"]
    edit_columns = ["first_name", "last_name", "username", "active", "email", "roles",
                    "unit", "delegation", "organiser"]


# --------------------------------------------------------------------------------------------
# Sessions that end for good: session cookies are signed, not stored, so a copy made before
# logout would still open the account. Each cookie and API token carries the user's
# session_version at issue; logout and every new password move it on (all sessions of the
# user end, on every device), and a cookie or token of another version is not a login.
# --------------------------------------------------------------------------------------------

SESSION_VERSION_KEY = "_ciie_sv"
SESSION_VERSION_CLAIM = "sv"


def end_sessions(user: Any) -> None:
    """Every session and API token of the user issued before this stops working (in SQL, so
    two logouts at once both count)."""
    user.session_version = m.User.session_version + 1


@sa.event.listens_for(m.User.password, "set")
def _new_password_ends_sessions(user: Any, value: Any, old: Any, _initiator: Any) -> None:
    # A password set anywhere (FAB's forms, a workflow, the CLI) ends the sessions; a new
    # user has none.
    if value != old and sa.inspect(user).persistent:
        end_sessions(user)


@user_logged_in.connect
def _remember_session_version(_app: Any, user: Any, **_extra: Any) -> None:
    session[SESSION_VERSION_KEY] = user.session_version


class CiieAuthDBView(AuthDBView):
    """FAB's login, answering a wrong login with 401 and the form (not a redirect), and a
    logout that is a POST with the CSRF token (a link or an image on another site signs no one
    out) and ends every session of the user."""

    # Copied from FAB 5.3's AuthDBView.login but for the wrong-login branch: FAB redirects
    # there, and the per-account login throttling (web_security.py) counts 401 answers only.
    @expose("/login/", methods=["GET", "POST"])
    @no_cache
    def login(self):
        if g.user is not None and g.user.is_authenticated:
            return redirect(self._get_safe_next_url())
        form = LoginForm_db()
        status = 200
        if form.validate_on_submit():
            next_url = get_safe_redirect(request.args.get("next", ""))
            user = self.appbuilder.sm.auth_user_db(form.username.data, form.password.data)
            if user:
                login_user(user, remember=False)
                return redirect(next_url)
            flash(str(self.invalid_login_message), "warning")
            status = 401
        return self.render_template(self.login_template, title=self.title, form=form,
                                    appbuilder=self.appbuilder), status

    @expose("/logout/", methods=["POST"])
    def logout(self):
        user = self._get_authenticated_user()
        logout_user()
        if user is not None:
            end_sessions(user)
            self.appbuilder.sm.on_user_logout(user)
        return redirect(current_app.config.get("LOGOUT_REDIRECT_URL",
                                               self.appbuilder.get_url_for_index))


class CiieSecurityManager(SecurityManager):
    user_model = m.User
    userdbmodelview = CiieUserDBModelView
    authdbview = CiieAuthDBView

    # ---- one query for the user with its roles, one for all its permissions per request ----

    def get_user_by_id(self, pk: Any) -> Any:
        from sqlalchemy.orm import joinedload

        # FAB's admin reset-password view hands over the id from the URL as text.
        pk = row_id(self.user_model, pk)
        if pk is None:
            return None
        return self.session.scalars(
            sa.select(self.user_model).where(self.user_model.id == pk)
            .options(joinedload(self.user_model.roles), joinedload(self.user_model.groups))
        ).unique().one_or_none()

    def _role_ids(self, user: Any) -> tuple[int, ...]:
        return tuple(sorted(role.id for role in self.get_user_roles(user)))

    def _permissions_of(self, role_ids: tuple[int, ...]) -> frozenset[tuple[str, str]]:
        """Every (permission, view) the roles grant, read once per request: FAB would ask the
        database once per menu entry, button and action on a page."""
        cache = g.setdefault("ciie_permissions", {})
        if role_ids not in cache:
            from flask_appbuilder.security.sqla.models import (
                Permission,
                PermissionView,
                ViewMenu,
                assoc_permissionview_role,
            )

            rows = self.session.execute(
                sa.select(Permission.name, ViewMenu.name)
                .select_from(assoc_permissionview_role)
                .join(PermissionView,
                      PermissionView.id == assoc_permissionview_role.c.permission_view_id)
                .join(Permission, Permission.id == PermissionView.permission_id)
                .join(ViewMenu, ViewMenu.id == PermissionView.view_menu_id)
                .where(assoc_permissionview_role.c.role_id.in_(role_ids))).all()
            cache[role_ids] = frozenset((perm, view) for perm, view in rows)
        return cache[role_ids]

    # FAB's one hook under every has_access check (views, menus, buttons), which it answers
    # with a query each; no builtin roles (FAB_ROLES) are configured, which FAB checks first.
    def _has_view_access(self, user: Any, permission_name: str, view_name: str) -> bool:
        return (permission_name, view_name) in self._permissions_of(self._role_ids(user))

    def _get_user_permission_view_menus(self, user: Any, permission_name: str,
                                        view_menus_name: list[str]) -> set[str]:
        roles = [self.get_public_role()] if user is None else self.get_user_roles(user)
        granted = self._permissions_of(tuple(sorted(r.id for r in roles if r is not None)))
        return {name for name in view_menus_name if (permission_name, name) in granted}

    @staticmethod
    def canonical_username(username: str) -> str:
        """Units log in with their credit code: accept it in any case and with spaces."""
        compact = re.sub(r"[\s-]", "", username or "").upper()
        return compact if re.fullmatch(r"[0-9A-Z]{18}|OS\d{10}", compact) else username

    def auth_user_db(self, username: str, password: str) -> Any:
        return super().auth_user_db(self.canonical_username(username), password)

    def create_jwt_manager(self, app: Any) -> Any:
        jwt_manager = super().create_jwt_manager(app)

        # flask-jwt-extended answers {"msg": …} in English (and 422 for a malformed token);
        # API refusals here are {"message": …} in the request's language.
        def please_log_in(*_args: Any) -> Any:
            from app.errors import status_message

            return jsonify({"message": status_message(401)}), 401

        for register in (jwt_manager.unauthorized_loader, jwt_manager.invalid_token_loader,
                         jwt_manager.expired_token_loader, jwt_manager.revoked_token_loader,
                         jwt_manager.needs_fresh_token_loader,
                         jwt_manager.user_lookup_error_loader,
                         jwt_manager.token_verification_failed_loader):
            register(please_log_in)

        @jwt_manager.additional_claims_loader
        def session_version_claim(identity: Any) -> dict:
            user = self.get_user_by_id(identity)
            return {SESSION_VERSION_CLAIM: user.session_version if user else None}

        return jwt_manager

    def _active_user(self, pk: Any) -> Any:
        user = self.get_user_by_id(pk)
        return user if user is not None and user.is_active else None

    def load_user(self, pk: Any) -> Any:
        """The session's user, unless the session predates a logout or a new password."""
        user = self._active_user(pk)
        if user is None or session.get(SESSION_VERSION_KEY) != user.session_version:
            return None
        return user

    def load_user_jwt(self, _jwt_header: dict, jwt_data: dict) -> Any:
        """The token's user, unless the token predates a logout or a new password (then
        flask-jwt-extended answers 401 through the user-lookup error)."""
        user = self._active_user(jwt_data["sub"])
        if user is None or jwt_data.get(SESSION_VERSION_CLAIM) != user.session_version:
            return None
        g.user = user
        return user

    def reset_password(self, userid: Any, password: str) -> None:
        """A new password ends the user's sessions (the password's set event); the session
        that changed its own password stays open."""
        user = self.get_user_by_id(userid)
        if user is None:
            abort(404)
        super().reset_password(user.id, password)
        if has_request_context() and getattr(g.user, "id", None) == user.id:
            session[SESSION_VERSION_KEY] = user.session_version

    def on_user_logout(self, user: Any) -> None:
        from app.workflow.audit import record

        record(actor_for_user(user), "user", user.id, "logout")
        self.session.commit()

    def on_user_login(self, user: Any) -> None:
        from app.workflow.audit import record

        record(actor_for_user(user), "user", user.id, "login")
        self.session.commit()

    def on_user_login_failed(self, user: Any) -> None:
        from app.workflow.audit import record

        record(ANONYMOUS, "user", user.id, "login_failed")
        self.session.commit()
