"""Flask-AppBuilder's security manager with our user model: login and logout, one permission
query per request, credit codes as logins, JWT answers in the user's language, and session
versions (logout and every new password end every session and API token of the user)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

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
    url_for,
)
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access_api, no_cache, permission_name
from flask_appbuilder.security.forms import LoginForm_db
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.views import (
    AuthDBView,
    PermissionViewModelView,
    RoleModelView,
    UserDBModelView,
    UserGroupModelView,
    UserStatsChartView,
)
from flask_appbuilder.utils.base import get_safe_redirect
from flask_appbuilder.widgets import ListWidget, ShowWidget
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user, user_logged_in
from markupsafe import Markup
from wtforms import Field
from wtforms.validators import Optional
from wtforms.widgets import html_params

from app import models as m
from app.extensions import db
from app.formatting import fmt_value
from app.input_checks import MAX_PAGE
from app.labels import COLUMN_LABELS, fmt_roles, role_label
from app.scoping.actor import ANONYMOUS, actor_for_user
from app.scoping.rules import get_scoped, row_id, scoped
from app.workflow.errors import InputRefused

# --------------------------------------------------------------------------------------------
# The user form's unit, delegation and organiser: searching selects that ask the server for
# one page of matches as the admin types (FAB's AJAX select loads the whole table at once).
# --------------------------------------------------------------------------------------------

SEARCH_PAGE_SIZE = 20


@dataclass(frozen=True)
class OrganisationSearch:
    """What the searching select of one column looks in, and how it names a row."""

    model: type
    columns: tuple[Any, ...]
    order: Any
    label: Callable[[Any], str]


ORGANISATION_SEARCHES = {
    "unit": OrganisationSearch(m.Unit, (m.Unit.name, m.Unit.name_en, m.Unit.login), m.Unit.name,
                               lambda unit: f"{unit.name} ({unit.login})"),
    "delegation": OrganisationSearch(
        m.Delegation, (m.Delegation.code, m.Delegation.name_zh, m.Delegation.name_en),
        m.Delegation.code, lambda delegation: f"{delegation.name} ({delegation.code})"),
    "organiser": OrganisationSearch(m.Organiser, (m.Organiser.name_zh, m.Organiser.name_en),
                                    m.Organiser.name_zh, lambda organiser: organiser.name),
}


class SearchingSelectWidget:
    """A select holding only the chosen row; app/static/select_search.js makes it search."""

    def __call__(self, field: "SearchingSelectField", **kwargs: Any) -> Markup:
        kwargs.setdefault("id", field.id)
        options = Markup('<option value=""></option>')
        if field.data is not None:
            options += Markup('<option value="%s" selected>%s</option>') % (
                field.data.id, field.search.label(field.data))
        params = html_params(name=field.name, class_="form-control ciie-select-search",
                             data_endpoint=url_for(f"{field.view}.related",
                                                   column=field.short_name), **kwargs)
        return Markup("<select %s>%s</select>") % (Markup(params), options)


class SearchingSelectField(Field):
    """One unit, delegation or organiser by id, read through the actor's scope."""

    widget = SearchingSelectWidget()

    def __init__(self, label: Any = None, validators: Any = None, column: str = "",
                 view: str = "", **kwargs: Any) -> None:
        super().__init__(label, validators or [Optional()], **kwargs)
        self.search = ORGANISATION_SEARCHES[column]
        self.view = view

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        self.data = get_scoped(self.search.model, valuelist[0].strip())
        if self.data is None:
            raise ValueError(_l("Choose one of the entries the list offers."))

    def _value(self) -> str:
        return "" if self.data is None else str(self.data.id)


def organisation_fields(view: str) -> dict[str, SearchingSelectField]:
    return {column: SearchingSelectField(COLUMN_LABELS[column], column=column, view=view)
            for column in ORGANISATION_SEARCHES}


def roles_by_label(*forms: Any) -> None:
    """The role choices of FAB's forms (and search filters) by their labels, not their codes."""
    for form in forms:
        form.roles.kwargs["get_label"] = role_label


class CiieUserDBModelView(UserDBModelView):
    """FAB's user admin, plus the organisation each user acts for."""

    show_fieldsets = [
        (_l("User info"), {"fields": ["first_name", "last_name", "username", "email", "active",
                                      "roles"]}),
        (_l("Organisation"), {"fields": ["unit", "delegation", "organiser"]}),
        (_l("Login history"), {"fields": ["last_login", "login_count", "fail_login_count",
                                          "created_on", "changed_on"], "expanded": False}),
    ]
    user_show_fieldsets = show_fieldsets
    add_columns = ["first_name", "last_name", "username", "active", "email", "roles",
                   "unit", "delegation", "organiser", "password", "conf_password"]
    edit_columns = ["first_name", "last_name", "username", "active", "email", "roles",
                    "unit", "delegation", "organiser"]
    label_columns = {**UserDBModelView.label_columns,
                     **{c: COLUMN_LABELS[c] for c in ("unit", "delegation", "organiser")}}
    description_columns = {**UserDBModelView.description_columns,
                           # FAB's texts speak of LDAP and OpenID, which no one here uses.
                           "username": _l("Units log in with their unified social credit "
                                          "code; staff with the name given here."),
                           "email": _l("Where the system writes to this user.")}
    # Yes/No, role names and Beijing time instead of True, [unit] and UTC.
    formatters_columns = {**{c: fmt_value for c in (
        "active", "unit", "delegation", "organiser", "last_login", "created_on",
        "changed_on")}, "roles": fmt_roles,
        **{c: lambda count: count or 0 for c in ("login_count", "fail_login_count")}}
    add_form_extra_fields = {**UserDBModelView.add_form_extra_fields,
                             **organisation_fields("CiieUserDBModelView")}
    edit_form_extra_fields = organisation_fields("CiieUserDBModelView")

    @expose("/related/<column>")
    @has_access_api
    @permission_name("edit")
    def related(self, column: str) -> Any:
        """One page (from 0) of the units, delegations or organisers whose name, credit code
        or delegation code has the typed text, as select2 reads it."""
        search = ORGANISATION_SEARCHES.get(column)
        if search is None:
            abort(404)
        page = request.args.get("page", "0")
        if not re.fullmatch(r"[0-9]{1,12}", page) or int(page) > MAX_PAGE:
            raise InputRefused(_l("Check \"%(field)s\": pages are numbered from 0 to "
                                  "%(last)d.", field=_l("Page"), last=MAX_PAGE))
        text = " ".join(request.args.get("q", "").split())[:100]
        query = scoped(sa.select(search.model), search.model)
        if text:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
            query = query.where(sa.or_(*(searched.ilike(pattern, escape="\\")
                                         for searched in search.columns)))
        rows = db.session.scalars(
            query.order_by(search.order, search.model.id)
            .offset(int(page) * SEARCH_PAGE_SIZE).limit(SEARCH_PAGE_SIZE + 1)).all()
        return jsonify(results=[{"id": row.id, "text": search.label(row)}
                                for row in rows[:SEARCH_PAGE_SIZE]],
                       pagination={"more": len(rows) > SEARCH_PAGE_SIZE})

    def _init_forms(self) -> None:
        super()._init_forms()
        roles_by_label(self.add_form, self.edit_form, self.search_form)


class CiieUserStatsChartView(UserStatsChartView):
    """FAB's login statistics, its filters and series named in the reader's language."""

    # FAB's address and permission name, so roles keep granting it.
    route_base = "/userstatschartview"
    class_permission_name = "UserStatsChartView"
    label_columns = dict(UserDBModelView.label_columns)
    definitions = [
        {"label": _l("Login count"), "group": "username", "series": ["login_count"]},
        {"label": _l("Failed login count"), "group": "username",
         "series": ["fail_login_count"]},
    ]

    def _init_forms(self) -> None:
        super()._init_forms()
        roles_by_label(self.search_form)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # FAB renames the group after the last chart and each series after its column code.
        self.label_columns.update(UserDBModelView.label_columns)


class CiieGroupModelView(UserGroupModelView):
    """FAB's user groups, with labelled columns and role names."""

    class_permission_name = "UserGroupModelView"   # FAB's, so roles keep granting it
    label_columns = {"name": _l("Name"), "label": _l("Label"),
                     "description": _l("Description"), "users": _l("Users"),
                     "roles": UserDBModelView.label_columns["roles"]}
    formatters_columns = {"roles": fmt_roles, "users": fmt_value}

    def _init_forms(self) -> None:
        super()._init_forms()
        roles_by_label(self.add_form, self.edit_form, self.search_form)


class CiiePermissionViewModelView(PermissionViewModelView):
    """FAB's permission-on-view list, with its role filter labelled."""

    class_permission_name = "PermissionViewModelView"   # FAB's, so roles keep granting it
    label_columns = {**PermissionViewModelView.label_columns, "role": _l("Role")}


# --------------------------------------------------------------------------------------------
# The role pages: each permission ("can_list · DelegationUnits") with what it allows in the
# reader's language ("List · Delegation › Units"), made from the registered views' menu
# labels, titles and actions, so a new view is labelled without touching this.
# --------------------------------------------------------------------------------------------

_PERMISSION_VERBS = {
    "menu_access": _l("Menu entry"),
    "can_list": _l("List"), "can_show": _l("Show"), "can_add": _l("Add"),
    "can_edit": _l("Edit"), "can_delete": _l("Delete"), "can_download": _l("Download"),
    "can_export": _l("Export"), "can_get": _l("Read one"), "can_info": _l("Field information"),
    "can_get_me": _l("Read own record"), "can_put_me": _l("Change own record"),
    "can_put_photo": _l("Send own photo"), "can_join": _l("Join a unit"),
    "can_apply": _l("Apply"), "can_batch": _l("Batch actions"), "can_cancel": _l("Cancel"),
    "can_carry_forward": _l("Carry persons forward"), "can_chart": _l("Chart"),
    "can_import": _l("Import"), "can_issue": _l("Issue"), "can_logistics": _l("Delivery"),
    "can_mail": _l("Mail"), "can_match": _l("Match"), "can_pack": _l("Pack"),
    "can_pay": _l("Pay"), "can_photo": _l("Photo"), "can_report": _l("Report"),
    "can_request": _l("Request"), "can_reveal": _l("Display the full number"),
    "can_scan": _l("Scan"), "can_ship": _l("Ship"), "can_submit": _l("Submit"),
    "can_this_form_get": _l("Open the form"), "can_this_form_post": _l("Send the form"),
    "can_template": _l("Download the template"), "can_userinfo": _l("Own user information"),
    "can_voucher": _l("Transfer voucher"),
    "resetmypassword": _l("Change own password"), "resetpasswords": _l("Reset passwords"),
    "userinfoedit": _l("Edit own user information"),
}
# Views with neither a menu entry, a title nor a model to name them.
_UNLISTED_VIEWS = {
    "AppPersonApi": _l("Mobile app"), "GateApi": _l("Gate scan API"),
    "MenuApi": _l("Menu API"), "SwaggerView": _l("API documentation"),
    "UnitOrderPage": _l("Badge-fee order page"), "UnitPayments": _l("Payment page"),
    "PersonFiles": _l("Person photos"), "Tasks": _l("Background tasks"),
    "DelegationDocuments": _l("Qualification documents"),
    "ResetMyPasswordView": _l("Change own password"),
    "ResetPasswordView": _l("Reset password"), "UserInfoEditView": _l("Edit own user information"),
}


def _labels() -> tuple[dict[str, Any], dict[str, Any]]:
    """({view or menu name: label}, {action name: label}) for the registered views."""
    from app.workflow.audit import RECORD_KINDS

    appbuilder = current_app.appbuilder
    views: dict[str, Any] = {}
    for top in appbuilder.menu.get_list():
        views.setdefault(top.name, top.label)
        if top.baseview is not None:
            views.setdefault(top.baseview.class_permission_name, top.label)
        for child in top.childs:
            if child.name == "-":
                continue
            label = Markup("{} › {}").format(top.label, child.label)
            views.setdefault(child.name, label)
            if child.baseview is not None:
                views.setdefault(child.baseview.class_permission_name, label)
    actions: dict[str, Any] = {}
    for view in appbuilder.baseviews:
        for name, action in getattr(view, "actions", {}).items():
            actions.setdefault(name, action.text)
        name = view.class_permission_name
        model = getattr(getattr(view, "datamodel", None), "obj", None)
        kind = RECORD_KINDS.get(getattr(model, "__tablename__", ""))
        if name in views:
            continue
        if getattr(view, "title", None):
            views[name] = view.title
        elif name in _UNLISTED_VIEWS:
            views[name] = _UNLISTED_VIEWS[name]
        elif kind is not None:
            views[name] = _l("%(name)s (API)", name=kind.label)
    return views, actions


def permission_label(pvm: Any) -> str | None:
    """What a permission allows, in the reader's language, or None if a part has no label."""
    views, actions = g.ciie_permission_labels if "ciie_permission_labels" in g else \
        g.setdefault("ciie_permission_labels", _labels())
    verb = actions.get(pvm.permission.name) or _PERMISSION_VERBS.get(pvm.permission.name)
    where = views.get(pvm.view_menu.name)
    if verb is None or where is None:
        return None
    return f"{verb} · {where}"


def _raw_name(pvm: Any) -> str:
    # FAB writes "can list on UnitPersons"; the two names as the database and
    # config.CIIE_ROLES spell them, and no English word between them on a zh page.
    return f"{pvm.permission.name} · {pvm.view_menu.name}"


def raw_permission_label(raw: str) -> str:
    """The label of a permission written as `_raw_name` spells it (as the audit trail keeps
    it), else the raw name."""
    views, actions = g.ciie_permission_labels if "ciie_permission_labels" in g else \
        g.setdefault("ciie_permission_labels", _labels())
    permission, _sep, view = raw.partition(" · ")
    verb = actions.get(permission) or _PERMISSION_VERBS.get(permission)
    where = views.get(view)
    return f"{verb} · {where}" if verb is not None and where is not None else raw


def permission_choice(pvm: Any) -> str:
    """A permission in the role form's searching select: its raw name and its label."""
    label = permission_label(pvm)
    return f"{_raw_name(pvm)} — {label}" if label else _raw_name(pvm)


def fmt_permissions(permissions: list) -> Markup:
    row = Markup('<li><code>{}</code> <span class="ciie-permission-label">{}</span></li>')
    return Markup('<ul class="list-unstyled ciie-permissions">{}</ul>').format(
        Markup("").join(row.format(_raw_name(p), permission_label(p) or "")
                        for p in permissions or []))


class CiieRoleModelView(RoleModelView):
    """FAB's roles, each permission shown beside what it allows (FAB's role widgets show the
    raw list and ignore formatters; its standard widgets do not, roles having no builtins)."""

    list_widget = ListWidget
    show_widget = ShowWidget
    formatters_columns = {"permissions": fmt_permissions}
    # FAB's filter on permissions lists them in its own English wording: roles are few.
    search_columns = ["name"]

    def _init_forms(self) -> None:
        super()._init_forms()
        for form in (self.add_form, self.edit_form):
            form.permissions.kwargs["get_label"] = permission_choice


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
    @property
    def security_api(self) -> type:
        """The token login refusing a malformed body in the user's language; imported late,
        as the API layer imports the app's error handling, which must not load this module's
        dependencies first (FAB would then silently fall back to its own manager)."""
        from app.api.meta import CiieSecurityApi

        return CiieSecurityApi
    userdbmodelview = CiieUserDBModelView
    rolemodelview = CiieRoleModelView
    userstatschartview = CiieUserStatsChartView
    groupmodelview = CiieGroupModelView
    permissionviewmodelview = CiiePermissionViewModelView
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

    def has_access(self, permission_name: str, view_name: str) -> bool:
        """Answered once per request and user: a list page asks it about 50 times (each menu
        entry and its category, each button and action), some pairs several times, and FAB
        re-resolves the user and its roles for every question."""
        if not has_request_context():
            return self._menu_aware_access(permission_name, view_name)
        cache = g.setdefault("ciie_access", {})
        # Who asks: the session's user (changes at a login or logout within the request), the
        # token's (set on g.user) and an API key's.
        key = (permission_name, view_name, current_user._get_current_object(),
               g.get("user"), g.get("_api_key_user", False))
        if key not in cache:
            cache[key] = self._menu_aware_access(permission_name, view_name)
        return cache[key]

    def _menu_aware_access(self, permission_name: str, view_name: str) -> bool:
        # FAB's navbar asks menu_access of each entry but never the entry's menu_cond (only
        # its menu API does): an admin, who holds every permission, was shown the unit's own
        # pages, which answer only a unit. Here an entry is shown only if its condition
        # holds, and a category only if one of its entries is shown.
        if permission_name == "menu_access" and has_request_context():
            item = self.appbuilder.menu.find(view_name)
            if item is not None and not item.should_render():
                return False
            if item is not None and item.childs and not any(
                    child.name != "-" and self.has_access(permission_name, child.name)
                    for child in item.childs):
                return False
        return super().has_access(permission_name, view_name)

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


# --------------------------------------------------------------------------------------------
# Users and roles are audited however they change (FAB's security views, its password reset,
# a workflow, the CLI): who, when, from and to, written in the flush that changes them.
# Passwords and their hashes are never written, only that one changed.
# --------------------------------------------------------------------------------------------

_USER_FIELDS = ("username", "first_name", "last_name", "email", "active")
_USER_LINKS = ("unit", "delegation", "organiser")


def _named(value: Any) -> Any:
    """A value as the trail keeps it: a linked record by its name, JSON's own types as is."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(getattr(value, "name", value))


def _user_state(user: Any) -> dict[str, Any]:
    return {**{f: getattr(user, f) for f in _USER_FIELDS},
            **{f: _named(getattr(user, f)) for f in _USER_LINKS},
            "roles": sorted(r.name for r in user.roles)}


def _role_state(role: Any) -> dict[str, Any]:
    return {"name": role.name, "permissions": sorted(_raw_name(p) for p in role.permissions)}


def _change(obj: Any, field: str) -> tuple[Any, Any] | None:
    history = sa.inspect(obj).attrs[field].history
    if not history.has_changes():
        return None
    before = _named(history.deleted[0]) if history.deleted else None
    after = _named(history.added[0]) if history.added else None
    return None if before == after else (before, after)


def _collection_change(obj: Any, field: str, name: Any) -> dict[str, list[str]] | None:
    history = sa.inspect(obj).attrs[field].history
    added = sorted({name(x) for x in history.added} - {name(x) for x in history.deleted})
    removed = sorted({name(x) for x in history.deleted} - {name(x) for x in history.added})
    return {"added": added, "removed": removed} if added or removed else None


def _changed_security_rows(session: Any, actor: Any) -> list[dict[str, Any]]:
    """An audit row for each user and role this flush changes or deletes: read before the
    flush, while deleted rows still have their roles."""
    from flask_appbuilder.security.sqla.models import Role

    from app.workflow.audit import audit_values

    rows: list[dict[str, Any]] = []
    for obj in session.deleted:
        if isinstance(obj, m.User):
            rows.append(audit_values(actor, "user", obj.id, "delete",
                                     detail={"from": _user_state(obj)}))
        elif isinstance(obj, Role):
            rows.append(audit_values(actor, "role", obj.id, "delete",
                                     detail={"from": _role_state(obj)}))
    for obj in session.dirty:
        if isinstance(obj, m.User):
            changes = {f: list(c) for f in _USER_FIELDS + _USER_LINKS
                       if (c := _change(obj, f)) is not None}
            if changes:
                rows.append(audit_values(actor, "user", obj.id, "update",
                                         detail={"changes": changes}))
            roles = _collection_change(obj, "roles", lambda r: r.name)
            if roles:
                rows.append(audit_values(actor, "user", obj.id, "roles_change", detail=roles))
            if _change(obj, "password") is not None:
                rows.append(audit_values(actor, "user", obj.id, "password_change"))
        elif isinstance(obj, Role):
            name = _change(obj, "name")
            if name:
                rows.append(audit_values(actor, "role", obj.id, "update",
                                         detail={"changes": {"name": list(name)}}))
            permissions = _collection_change(obj, "permissions", _raw_name)
            if permissions:
                rows.append(audit_values(actor, "role", obj.id, "permissions_change",
                                         detail=permissions))
    return rows


_PENDING = "ciie_security_audit"


@sa.event.listens_for(sa.orm.Session, "before_flush")
def _read_security_changes(session: Any, _context: Any, _instances: Any) -> None:
    from flask_appbuilder.security.sqla.models import Role

    # What a failed flush read is not written by the next one.
    session.info.pop(_PENDING, None)
    new = [obj for obj in session.new if isinstance(obj, (m.User, Role))]
    if not new and not any(isinstance(obj, (m.User, Role))
                           for obj in (*session.dirty, *session.deleted)):
        return
    from app.scoping.actor import current_actor

    actor = current_actor()
    changed = _changed_security_rows(session, actor)
    if new or changed:
        session.info[_PENDING] = (actor, new, changed)


@sa.event.listens_for(sa.orm.Session, "after_flush")
def _audit_security_changes(session: Any, _context: Any) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending is None:
        return
    from flask_appbuilder.security.sqla.models import Role

    from app.workflow.audit import audit_values

    actor, new, rows = pending
    # New rows have their ids now.
    for obj in new:
        if isinstance(obj, Role):
            rows.append(audit_values(actor, "role", obj.id, "create",
                                     detail={"to": _role_state(obj)}))
        else:
            rows.append(audit_values(actor, "user", obj.id, "create",
                                     detail={"to": _user_state(obj)}))
    # A Core INSERT on the flush's connection: rows added to the session now would wait for
    # the next flush, which may never come.
    session.connection().execute(sa.insert(m.AuditEvent), rows)
