"""Who the actor is: the acting user resolved once per request into its roles and the
organisations it acts for; SYSTEM for jobs and commands; which scope (read or write) applies."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

import sqlalchemy as sa
from flask import g, has_app_context, has_request_context

from app import models as m
from app.extensions import db

# Role names, as stored in ab_role.
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
        return getattr(g, "ciie_actor", SYSTEM) if has_app_context() else SYSTEM
    actor = getattr(g, "ciie_actor", None)
    user = getattr(g, "user", None)
    user_id = getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
    if actor is None or actor.user_id != user_id:
        actor = actor_for_user(user)
        g.ciie_actor = actor
    return actor


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
    return g.get("ciie_scope_mode", READ) if has_app_context() else READ


@contextmanager
def write_scope() -> Iterator[None]:
    """Inside this block FAB's generic reads use the write scope (edit, delete, actions)."""
    previous = g.get("ciie_scope_mode")
    g.ciie_scope_mode = WRITE
    try:
        yield
    finally:
        g.ciie_scope_mode = previous or READ
