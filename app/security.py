"""Who the actor is, and what each actor may see and change: the one scoping helper.

Every view, action, relation drop-down, related view, export, API call and file download reads
rows through `scoped()`; a model without a rule is visible to admins only (fail closed).
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator

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

# Role names, as stored in ab_role. Labels for the UI live in ROLE_LABELS.
ADMIN = "admin"
UNIT = "unit"
PERSON = "person"
DELEGATION = "delegation"
SUB_DELEGATION = "sub_delegation"
FINANCE = "finance"
REVIEWER = "reviewer"
ORGANISER = "organiser"
GATE = "gate"
ROLES = (ADMIN, UNIT, PERSON, DELEGATION, SUB_DELEGATION, FINANCE, REVIEWER, ORGANISER, GATE)

READ = "read"
WRITE = "write"


@dataclass(frozen=True)
class Actor:
    """The acting user, resolved once per request: roles and the organisations it acts for."""

    user_id: int | None
    name: str
    roles: frozenset[str]
    unit_id: int | None = None
    organiser_id: int | None = None
    # Delegations whose units this actor manages (top-level: by delegation; sub: by sub).
    top_delegation_ids: tuple[int, ...] = ()
    sub_delegation_ids: tuple[int, ...] = ()
    # Industry delegations rolled up into this actor's delegation: read-only.
    rollup_delegation_ids: tuple[int, ...] = ()
    # A unit that registered afresh (docs/account-claims.md) sees none of its earlier editions
    # (nor what its account did before the hand-over), except, once its delegation approved
    # the new registration, its earlier badge-fee orders.
    hidden_edition_ids: tuple[int, ...] = ()
    history_since: datetime | None = None
    earlier_orders_visible: bool = False
    system: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.system or ADMIN in self.roles

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def is_delegation(self) -> bool:
        return self.has(DELEGATION, SUB_DELEGATION) and bool(
            self.top_delegation_ids or self.sub_delegation_ids
        )

    @property
    def delegation_id(self) -> int | None:
        ids = self.top_delegation_ids or self.sub_delegation_ids
        return ids[0] if ids else None


SYSTEM = Actor(user_id=None, name="system", roles=frozenset({ADMIN}), system=True)
ANONYMOUS = Actor(user_id=None, name="anonymous", roles=frozenset())


def actor_for_user(user: Any) -> Actor:
    """Resolve a user row into an Actor (one query for a delegation's roll-up)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return ANONYMOUS
    roles = frozenset(r.name for r in user.roles)
    top: tuple[int, ...] = ()
    sub: tuple[int, ...] = ()
    rollup: tuple[int, ...] = ()
    if user.delegation_id and roles.intersection({DELEGATION, SUB_DELEGATION}):
        from app.extensions import db

        # One query: the user's delegation and the industry delegations counted under it.
        D = m.Delegation
        rows = db.session.execute(sa.select(D.id, D.parent_id, D.rollup_delegation_id).where(
            sa.or_(D.id == user.delegation_id,
                   sa.and_(D.rollup_delegation_id == user.delegation_id,
                           D.parent_id.is_(None))))).all()
        own = next((r for r in rows if r.id == user.delegation_id), None)
        if own is not None and own.parent_id is None:
            top = (own.id,)
            rollup = tuple(r.id for r in rows if r.id != own.id)
        elif own is not None:
            sub = (own.id,)
    unit_id = user.unit_id if UNIT in roles else None
    return Actor(
        user_id=user.id,
        name=user.username,
        roles=roles,
        unit_id=unit_id,
        organiser_id=user.organiser_id if ORGANISER in roles else None,
        top_delegation_ids=top,
        sub_delegation_ids=sub,
        rollup_delegation_ids=rollup,
        **(_hidden_history(unit_id) if unit_id else {}),
    )


def _hidden_history(unit_id: int) -> dict[str, Any]:
    """What a unit that registered afresh may not see: one query, and one more only for such
    a unit (the earlier editions)."""
    from app.extensions import db

    UR = m.UnitRegistration
    E = m.Edition
    current = db.session.execute(sa.select(UR.history_hidden, UR.status, UR.created_at, E.number)
                                 .join(E, E.id == UR.edition_id)
                                 .where(UR.unit_id == unit_id, E.is_current.is_(True))).first()
    if current is None or not current.history_hidden:
        return {}
    earlier = tuple(db.session.scalars(sa.select(E.id).where(E.number < current.number)))
    return {"hidden_edition_ids": earlier or (-1,), "history_since": current.created_at,
            "earlier_orders_visible": current.status is m.UnitStatus.approved}


def current_actor() -> Actor:
    """The actor of this request (cached on g), or SYSTEM outside any request (jobs, CLI)."""
    if not has_request_context():
        return getattr(g, "ciie_actor", SYSTEM) if _has_app_g() else SYSTEM
    actor = getattr(g, "ciie_actor", None)
    user = getattr(g, "user", None)
    user_id = getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
    if actor is None or actor.user_id != user_id:
        actor = actor_for_user(user)
        g.ciie_actor = actor
    return actor


def _has_app_g() -> bool:
    from flask import has_app_context

    return has_app_context()


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Run a block (a job, a CLI command) as a given actor."""
    previous = g.get("ciie_actor")
    g.ciie_actor = actor
    try:
        yield actor
    finally:
        if previous is None:
            g.pop("ciie_actor", None)
        else:
            g.ciie_actor = previous


def scope_mode() -> str:
    return g.get("ciie_scope_mode", READ) if _has_app_g() else READ


@contextmanager
def write_scope() -> Iterator[None]:
    """Inside this block FAB's generic reads use the write scope (edit, delete, actions)."""
    previous = g.get("ciie_scope_mode")
    g.ciie_scope_mode = WRITE
    try:
        yield
    finally:
        g.ciie_scope_mode = previous or READ


# --------------------------------------------------------------------------------------------
# The rules: for each model, a function (actor, mode) -> SQL condition, or TRUE / FALSE.
# --------------------------------------------------------------------------------------------

TRUE = sa.true()
FALSE = sa.false()
Rule = Callable[[Actor, str], Any]
RULES: dict[type, Rule] = {}


def rule(*models: type) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for model in models:
            RULES[model] = fn
        return fn

    return register


def _any(*conditions: Any) -> Any:
    """OR of the conditions that apply; the Python falsy ones (rules that do not apply) drop."""
    conditions = [c for c in conditions
                  if c is not None and c is not False and c is not FALSE]
    if not conditions:
        return FALSE
    if any(c is TRUE for c in conditions):
        return TRUE
    return sa.or_(*conditions) if len(conditions) > 1 else conditions[0]


def unit_registration_condition(actor: Actor, mode: str) -> Any:
    """Which unit registrations a delegation actor reaches: managed ones, plus roll-ups to read."""
    UR = m.UnitRegistration
    conditions = []
    if actor.top_delegation_ids:
        conditions.append(UR.delegation_id.in_(actor.top_delegation_ids))
    if actor.sub_delegation_ids:
        conditions.append(UR.sub_delegation_id.in_(actor.sub_delegation_ids))
    if mode == READ and actor.rollup_delegation_ids:
        conditions.append(UR.delegation_id.in_(actor.rollup_delegation_ids))
    return _any(*conditions)


def delegation_registration_ids(actor: Actor, mode: str) -> sa.Select:
    return sa.select(m.UnitRegistration.id).where(unit_registration_condition(actor, mode))


def reviewable_registration_ids() -> sa.Select:
    return sa.select(m.PersonRegistration.id).where(
        m.PersonRegistration.status == m.PersonStatus.awaiting_review
    )


def _seen(actor: Actor, edition_column: Any) -> Any:
    """For a unit actor: rows of editions it may see (all, unless it registered afresh)."""
    return edition_column.notin_(actor.hidden_edition_ids) if actor.hidden_edition_ids else TRUE


def _since(actor: Actor, created_column: Any) -> Any:
    """For a unit actor: rows made since its account was handed over (all, if never)."""
    return created_column >= actor.history_since if actor.history_since else TRUE


def _unit_registration_ids(actor: Actor) -> sa.Select:
    UR = m.UnitRegistration
    return sa.select(UR.id).where(UR.unit_id == actor.unit_id, _seen(actor, UR.edition_id))


def _unit_order_ids(actor: Actor) -> sa.Select:
    O = m.Order  # noqa: E741
    return sa.select(O.id).where(O.unit_id == actor.unit_id, _order_seen(actor))


def _order_seen(actor: Actor) -> Any:
    return TRUE if actor.earlier_orders_visible else _seen(actor, m.Order.edition_id)


def _unit_person_condition(actor: Actor) -> Any:
    P = m.Person
    PR = m.PersonRegistration
    if not actor.hidden_edition_ids:
        return P.unit_id == actor.unit_id
    return sa.and_(P.unit_id == actor.unit_id, P.id.notin_(
        sa.select(PR.person_id).where(PR.edition_id.in_(actor.hidden_edition_ids))))


def _own_person_ids(actor: Actor) -> sa.Select:
    return sa.select(m.Person.id).where(m.Person.user_id == actor.user_id)


def _organiser_application_registrations(actor: Actor) -> sa.Select:
    return sa.select(m.EventApplication.person_registration_id).join(m.Event).where(
        m.Event.organiser_id == actor.organiser_id
    )


@rule(m.Unit)
def _unit_rule(actor: Actor, mode: str) -> Any:
    U = m.Unit
    UR = m.UnitRegistration
    PR = m.PersonRegistration
    return _any(
        actor.unit_id is not None and U.id == actor.unit_id,
        actor.is_delegation and U.id.in_(
            sa.select(UR.unit_id).where(unit_registration_condition(actor, mode))
        ),
        mode == READ and actor.has(FINANCE) and TRUE,
        mode == READ and actor.has(REVIEWER) and U.id.in_(
            sa.select(UR.unit_id).join(PR, PR.unit_registration_id == UR.id)
            .where(PR.status == m.PersonStatus.awaiting_review)
        ),
        mode == READ and actor.has(PERSON) and U.id.in_(
            sa.select(m.Person.unit_id).where(m.Person.user_id == actor.user_id)
        ),
        mode == READ and actor.organiser_id is not None and U.id.in_(
            sa.select(m.EventApplication.unit_id).join(m.Event)
            .where(m.Event.organiser_id == actor.organiser_id)
        ),
    )


@rule(m.UnitRegistration)
def _unit_registration_rule(actor: Actor, mode: str) -> Any:
    UR = m.UnitRegistration
    return _any(
        actor.unit_id is not None and sa.and_(UR.unit_id == actor.unit_id,
                                              _seen(actor, UR.edition_id)),
        actor.is_delegation and unit_registration_condition(actor, mode),
        mode == READ and actor.has(FINANCE) and TRUE,
        mode == READ and actor.has(PERSON) and UR.id.in_(
            sa.select(m.PersonRegistration.unit_registration_id)
            .where(m.PersonRegistration.person_id.in_(_own_person_ids(actor)))
        ),
    )


@rule(m.UnitDocument)
def _unit_document_rule(actor: Actor, mode: str) -> Any:
    return _any(
        actor.unit_id is not None and m.UnitDocument.registration_id.in_(
            _unit_registration_ids(actor)
        ),
        mode == READ and actor.is_delegation and m.UnitDocument.registration_id.in_(
            delegation_registration_ids(actor, mode)
        ),
    )


@rule(m.Person)
def _person_rule(actor: Actor, mode: str) -> Any:
    P = m.Person
    PR = m.PersonRegistration
    return _any(
        actor.unit_id is not None and _unit_person_condition(actor),
        actor.is_delegation and P.id.in_(
            sa.select(PR.person_id).where(
                PR.unit_registration_id.in_(delegation_registration_ids(actor, mode))
            )
        ),
        actor.has(REVIEWER) and P.id.in_(
            sa.select(PR.person_id).where(PR.status == m.PersonStatus.awaiting_review)
        ),
        mode == READ and actor.has(FINANCE) and P.id.in_(
            sa.select(PR.person_id).join(m.OrderItem, m.OrderItem.person_registration_id == PR.id)
        ),
        actor.has(PERSON) and P.user_id == actor.user_id,
        mode == READ and actor.organiser_id is not None and P.id.in_(
            sa.select(PR.person_id).where(PR.id.in_(_organiser_application_registrations(actor)))
        ),
    )


@rule(m.PersonRegistration)
def _person_registration_rule(actor: Actor, mode: str) -> Any:
    PR = m.PersonRegistration
    return _any(
        actor.unit_id is not None and PR.unit_registration_id.in_(_unit_registration_ids(actor)),
        actor.is_delegation and PR.unit_registration_id.in_(
            delegation_registration_ids(actor, mode)
        ),
        actor.has(REVIEWER) and PR.status == m.PersonStatus.awaiting_review,
        mode == READ and actor.has(FINANCE) and PR.id.in_(
            sa.select(m.OrderItem.person_registration_id)
        ),
        actor.has(PERSON) and PR.person_id.in_(_own_person_ids(actor)),
        mode == READ and actor.organiser_id is not None and PR.id.in_(
            _organiser_application_registrations(actor)
        ),
    )


def _owned_by_unit(model: type, finance: bool = False,
                   history: Callable[[Actor], Any] = lambda actor: TRUE) -> Rule:
    """Rows carrying the unit's id; `history` hides what a unit that registered afresh may not
    see of its earlier editions."""
    def owned(actor: Actor, mode: str) -> Any:
        return _any(
            actor.unit_id is not None and sa.and_(model.unit_id == actor.unit_id,
                                                  history(actor)),
            finance and actor.has(FINANCE) and TRUE,
        )

    return owned


RULES[m.Address] = _owned_by_unit(m.Address)
# Units follow their parcels; packing and shipping are the badge office's (admins).
RULES[m.Shipment] = lambda actor, mode: _any(
    mode == READ and actor.unit_id is not None and sa.and_(
        m.Shipment.unit_id == actor.unit_id,
        TRUE if not actor.hidden_edition_ids else m.Shipment.id.in_(
            sa.select(m.Badge.shipment_id).where(_seen(actor, m.Badge.edition_id))))
)
RULES[m.Notification] = lambda actor, mode: _any(
    mode == READ and actor.unit_id is not None and sa.and_(
        m.Notification.unit_id == actor.unit_id, _since(actor, m.Notification.created_at)),
    # Finance follows and re-sends the notices to units; a one-time code is nobody's to send
    # again (its code is gone, its row holds the redacted text).
    actor.has(FINANCE) and sa.and_(m.Notification.unit_id.is_not(None),
                                   m.Notification.dedupe_key.not_like("verify:%")),
)
RULES[m.Order] = _owned_by_unit(m.Order, finance=True, history=_order_seen)
RULES[m.Invoice] = _owned_by_unit(m.Invoice, finance=True, history=lambda actor: (
    TRUE if actor.earlier_orders_visible or not actor.hidden_edition_ids
    else m.Invoice.order_id.in_(_unit_order_ids(actor))))
RULES[m.Refund] = _owned_by_unit(m.Refund, finance=True, history=lambda actor: (
    TRUE if actor.earlier_orders_visible or not actor.hidden_edition_ids
    else m.Refund.payment_id.in_(sa.select(m.Payment.id).where(
        m.Payment.order_id.in_(_unit_order_ids(actor))))))


@rule(m.OrderItem)
def _order_item_rule(actor: Actor, mode: str) -> Any:
    return _any(
        actor.unit_id is not None and m.OrderItem.order_id.in_(_unit_order_ids(actor)),
        actor.has(FINANCE) and TRUE,
    )


@rule(m.Payment)
def _payment_rule(actor: Actor, mode: str) -> Any:
    return _any(
        actor.unit_id is not None and m.Payment.order_id.in_(_unit_order_ids(actor)),
        actor.has(FINANCE) and TRUE,
    )


@rule(m.RefundItem)
def _refund_item_rule(actor: Actor, mode: str) -> Any:
    return _any(
        actor.unit_id is not None and m.RefundItem.refund_id.in_(
            sa.select(m.Refund.id).where(m.Refund.unit_id == actor.unit_id,
                                         RULES[m.Refund](actor, READ))
        ),
        actor.has(FINANCE) and TRUE,
    )


@rule(m.ReviewDecision)
def _review_decision_rule(actor: Actor, mode: str) -> Any:
    PR = m.PersonRegistration
    return _any(
        actor.has(REVIEWER) and (TRUE if mode == READ else FALSE),
        mode == READ and actor.unit_id is not None
        and m.ReviewDecision.person_registration_id.in_(
            sa.select(PR.id).where(PR.unit_registration_id.in_(_unit_registration_ids(actor)))
        ),
    )


@rule(m.Badge)
def _badge_rule(actor: Actor, mode: str) -> Any:
    return _any(
        mode == READ and actor.unit_id is not None and sa.and_(m.Badge.person_id.in_(
            sa.select(m.Person.id).where(_unit_person_condition(actor))
        ), _seen(actor, m.Badge.edition_id)),
        mode == READ and actor.has(PERSON) and m.Badge.person_id.in_(_own_person_ids(actor)),
    )


@rule(m.GateScan)
def _gate_scan_rule(actor: Actor, mode: str) -> Any:
    """Gate staff read back their own scans (never badges or persons: the scan answers)."""
    return _any(mode == READ and actor.has(GATE) and actor.user_id is not None
                and m.GateScan.scanned_by_id == actor.user_id)


@rule(m.Event)
def _event_rule(actor: Actor, mode: str) -> Any:
    E = m.Event
    return _any(
        actor.organiser_id is not None and E.organiser_id == actor.organiser_id,
        mode == READ and actor.has(UNIT, PERSON) and sa.and_(
            E.status == m.EventStatus.published, E.open_to_visitors.is_(True)
        ),
    )


@rule(m.EventApplication)
def _event_application_rule(actor: Actor, mode: str) -> Any:
    EA = m.EventApplication
    return _any(
        actor.unit_id is not None and sa.and_(EA.unit_id == actor.unit_id, TRUE if not
                                              actor.hidden_edition_ids else EA.event_id.in_(
            sa.select(m.Event.id).where(_seen(actor, m.Event.edition_id)))),
        actor.organiser_id is not None and EA.event_id.in_(
            sa.select(m.Event.id).where(m.Event.organiser_id == actor.organiser_id)
        ),
    )


def _owned_by_delegation(model: type) -> Rule:
    def owned(actor: Actor, mode: str) -> Any:
        return _any(
            mode == READ and actor.is_delegation and model.delegation_id.in_(
                actor.top_delegation_ids + actor.sub_delegation_ids
            )
        )

    return owned


@rule(m.AccountClaim)
def _account_claim_rule(actor: Actor, mode: str) -> Any:
    """A claim to register a unit afresh is decided by the delegation the claimant chose (its
    sub-delegation, if one was chosen, decides too); nobody else but admins sees it."""
    AC = m.AccountClaim
    return _any(
        bool(actor.top_delegation_ids) and AC.delegation_id.in_(actor.top_delegation_ids),
        bool(actor.sub_delegation_ids)
        and AC.sub_delegation_id.in_(actor.sub_delegation_ids),
    )


RULES[m.LockBatch] = _owned_by_delegation(m.LockBatch)
RULES[m.DelegationExtension] = _owned_by_delegation(m.DelegationExtension)


@rule(m.BackgroundTask)
def _task_rule(actor: Actor, mode: str) -> Any:
    """A task is its starter's: its report may name rows of that actor's scope only."""
    return _any(actor.user_id is not None and sa.and_(
        m.BackgroundTask.user_id == actor.user_id, _since(actor, m.BackgroundTask.created_at)))


@rule(m.Edition, m.Delegation, m.Zone, m.Organiser)
def _reference_rule(actor: Actor, mode: str) -> Any:
    """Reference data: every signed-in actor reads it (drop-downs); admins change it."""
    return _any(mode == READ and actor.user_id is not None and TRUE)


def condition(model: type, actor: Actor | None = None, mode: str | None = None) -> Any:
    """The SQL condition limiting `model` to what `actor` may read (or write)."""
    actor = actor or current_actor()
    mode = mode or scope_mode()
    if actor.is_admin:
        return TRUE
    fn = RULES.get(model)
    if fn is None:
        return FALSE
    return fn(actor, mode)


def scoped(query: Any, model: type, actor: Actor | None = None, mode: str | None = None) -> Any:
    """Limit a Query or Select over `model` to the actor's scope."""
    cond = condition(model, actor, mode)
    if cond is TRUE:
        return query
    return query.filter(cond)


def row_id(model: type, value: Any) -> int | None:
    """A primary key from a URL, form or request body, or None unless it is an integer that
    the model's id column can hold (a bigger one is a database error, not a missing row)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    bits = 64 if isinstance(model.__table__.c.id.type, sa.BigInteger) else 32
    return number if -(2 ** (bits - 1)) <= number < 2 ** (bits - 1) else None


def get_scoped(model: type, pk: Any, actor: Actor | None = None, mode: str | None = None) -> Any:
    """One row by primary key, or None when it does not exist or is out of scope."""
    from app.extensions import db

    pk = row_id(model, pk)
    if pk is None:
        return None
    stmt = scoped(sa.select(model).where(model.id == pk), model, actor, mode)
    return db.session.scalars(stmt).one_or_none()


def can_see_full_pii(actor: Actor, unit_id: int | None) -> bool:
    """ID and mobile numbers in full: the person's own unit, the security reviewer."""
    return (actor.unit_id is not None and actor.unit_id == unit_id) or actor.has(REVIEWER)


# --------------------------------------------------------------------------------------------
# Flask-AppBuilder's security manager, with our user model
# --------------------------------------------------------------------------------------------


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
