"""The peer of the benchmark: plain Flask-AppBuilder `ModelView`s over the same tables as the
project's lists, scoped with FAB's own `base_filters`, FAB's own count, query and templates.

Registered only in the benchmark's app (`add_peer_views`), never by the app itself, and opened
by the same users as the project's pages through a bench-only role (`granted`)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import sqlalchemy as sa
from flask import Flask, g
from flask_appbuilder import ModelView
from flask_appbuilder.models.sqla.filters import (
    FilterContains,
    FilterEqual,
    FilterEqualFunction,
    FilterInFunction,
)
from flask_appbuilder.models.sqla.interface import SQLAInterface

from app import models as m
from app.extensions import db
from app.labels import MASKED, fmt_entry_days
from app.views.finance import voucher_link
from app.views.review import fmt_waiting
from app.views.unit import thumbnail

ROLE = "bench_peer"
PREFIX = "/bench-peer"
# The name the benchmark searches for (bench/run.py PAGES).
NAME_SEARCHED = "王"


def _edition_id() -> int:
    """The current edition, as a FAB user would look it up: one query."""
    return db.session.scalar(sa.select(m.Edition.id).where(m.Edition.is_current.is_(True)))


def _delegation_ids() -> list[int]:
    """The user's delegation and the industry delegations rolled up into it (read)."""
    D = m.Delegation
    return list(db.session.scalars(sa.select(D.id).where(sa.or_(
        D.id == g.user.delegation_id, D.rollup_delegation_id == g.user.delegation_id))))


def _unit_id() -> int | None:
    return g.user.unit_id


class PeerList(ModelView):
    """Only the list is measured; FAB builds the add and edit forms anyway, and cannot build
    them from the models' column properties: one plain column is enough for them."""

    add_columns = edit_columns = ["status"]
    base_permissions = ["can_list"]


PR_EDITION = ["edition_id", FilterEqualFunction, _edition_id]


class PeerDelegationPersons(PeerList):
    """Delegation persons: the person registrations of the user's delegation's units."""

    route_base = f"{PREFIX}/delegation-persons"
    datamodel = SQLAInterface(m.PersonRegistration)
    # The registration carries its unit's delegation (as our scope reads it); FAB's filter on
    # "unit_registration.delegation_id" cannot join: the tables share two foreign keys.
    base_filters = [PR_EDITION, ["delegation_id", FilterInFunction, _delegation_ids]]
    base_order = ("id", "desc")
    list_columns = ["person.name", "unit_registration.unit.name", "person.id_type",
                    "person.id_number", "person.mobile", "tag", "entry_days", "status",
                    "is_reuse"]
    # Our search columns that are the table's own: FAB's search form takes neither column
    # properties (the person's name) nor, without listing the whole table, relations.
    search_columns = ["status", "tag", "is_reuse", "submitted_at"]
    formatters_columns = {"person.id_number": MASKED["person.id_number"],
                          "person.mobile": MASKED["person.mobile"],
                          "entry_days": fmt_entry_days}


class PeerDelegationPersonsNamed(PeerDelegationPersons):
    """The name search as plain FAB does it: its filter on a related column (a join and
    ILIKE), here a base filter, as the search form cannot offer it."""

    route_base = f"{PREFIX}/delegation-persons-named"
    base_filters = [*PeerDelegationPersons.base_filters,
                    ["person.name", FilterContains, NAME_SEARCHED]]


class PeerDelegationUnits(PeerList):
    route_base = f"{PREFIX}/delegation-units"
    datamodel = SQLAInterface(m.UnitRegistration)
    base_filters = [["edition_id", FilterEqualFunction, _edition_id],
                    ["delegation_id", FilterInFunction, _delegation_ids]]
    base_order = ("id", "desc")
    list_columns = ["unit.name", "unit.uscc", "unit.region", "unit.category", "sub_delegation",
                    "status", "unit_number", "submitted_at"]
    search_columns = ["status", "submitted_at"]
    formatters_columns = {"contact_mobile": MASKED["contact_mobile"]}


class PeerFinanceTransfers(PeerList):
    route_base = f"{PREFIX}/finance-transfers"
    datamodel = SQLAInterface(m.Payment)
    base_filters = [["channel", FilterEqual, m.PaymentChannel.transfer]]
    base_order = ("id", "asc")
    list_columns = ["number", "order.number", "order.unit.name", "status", "amount_fen",
                    "payer_name", "payer_bank", "payer_account", "remitted_on", "voucher",
                    "reject_reason"]
    search_columns = ["status", "number", "payer_name", "remitted_on"]
    formatters_columns = {"voucher": voucher_link}


class PeerReviewQueue(PeerList):
    route_base = f"{PREFIX}/review-queue"
    datamodel = SQLAInterface(m.PersonRegistration)
    base_filters = [PR_EDITION, ["status", FilterEqual, m.PersonStatus.awaiting_review]]
    base_order = ("status_changed_at", "asc")
    list_columns = ["photo", "person.name", "person.gender", "person.id_type",
                    "person.id_number", "person.nationality", "unit_registration.unit.name",
                    "unit_registration.delegation", "tag", "waiting"]
    search_columns = ["tag", "status_changed_at"]
    formatters_columns = {"photo": thumbnail, "waiting": fmt_waiting}


class PeerUnitPersons(PeerList):
    route_base = f"{PREFIX}/unit-persons"
    datamodel = SQLAInterface(m.PersonRegistration)
    base_filters = [PR_EDITION, ["person.unit_id", FilterEqualFunction, _unit_id]]
    base_order = ("id", "desc")
    list_columns = ["photo", "person.name", "person.gender", "person.id_type",
                    "person.id_number", "person.mobile", "tag", "entry_days", "status",
                    "is_reuse"]
    search_columns = ["status", "tag", "is_reuse"]
    formatters_columns = {"entry_days": fmt_entry_days, "photo": thumbnail}


PEERS = (PeerDelegationPersons, PeerDelegationPersonsNamed, PeerDelegationUnits,
         PeerFinanceTransfers, PeerReviewQueue, PeerUnitPersons)


def add_peer_views(app: Flask) -> None:
    """Register the peer views on the app's appbuilder (before its first request), without
    menu entries, so that the project's pages render the same menu as without them."""
    appbuilder = app.appbuilder
    with app.app_context():
        for view in PEERS:
            appbuilder.add_view_no_menu(view)


@contextmanager
def granted(app: Flask, usernames: list[str]) -> Iterator[None]:
    """The users may list the peer views while the block runs: a bench-only role with
    `can_list` on each, added to them and dropped afterwards (the database stays as built)."""
    sm = app.appbuilder.sm
    with app.app_context():
        role = sm.find_role(ROLE) or sm.add_role(ROLE)
        for view in PEERS:
            pv = sm.add_permission_view_menu("can_list", view.__name__)
            sm.add_permission_role(role, pv)
        users = db.session.scalars(sa.select(m.User).where(m.User.username.in_(usernames)))
        for user in users:
            if role not in user.roles:
                user.roles.append(role)
        db.session.commit()
        role_id = role.id
        db.session.remove()
    try:
        yield
    finally:
        with app.app_context():
            _drop_role(role_id)


def _drop_role(role_id: int) -> None:
    from flask_appbuilder.security.sqla.models import (
        PermissionView,
        Role,
        ViewMenu,
        assoc_permissionview_role,
        assoc_user_role,
    )

    views = sa.select(ViewMenu.id).where(ViewMenu.name.in_([v.__name__ for v in PEERS]))
    statements: list[Any] = [
        sa.delete(assoc_user_role).where(assoc_user_role.c.role_id == role_id),
        sa.delete(assoc_permissionview_role)
        .where(assoc_permissionview_role.c.role_id == role_id),
        sa.delete(Role).where(Role.id == role_id),
        sa.delete(PermissionView).where(PermissionView.view_menu_id.in_(views)),
        sa.delete(ViewMenu).where(ViewMenu.id.in_(views)),
    ]
    for statement in statements:
        db.session.execute(statement)
    db.session.commit()
    db.session.remove()
