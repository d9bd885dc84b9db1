"""What each actor may see and change: one rule per model, and `scoped()`, the one helper every
view, action, relation drop-down, related view, export, API call and file download reads rows
through. A model without a rule is visible to admins only (fail closed)."""
from __future__ import annotations

from typing import Any, Callable

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from app.scoping.actor import (
    FINANCE,
    GATE,
    PERSON,
    READ,
    REVIEWER,
    UNIT,
    Actor,
    current_actor,
    scope_mode,
)

# For each model, a function (actor, mode) -> SQL condition, or TRUE / FALSE.
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


def _delegation_reach(actor: Actor, mode: str, delegation: Any, sub_delegation: Any) -> Any:
    """Rows whose delegation the actor manages, or reads as a roll-up, or whose sub-delegation
    it is. The managed and the rolled-up delegations make one IN list: PostgreSQL answers
    `delegation_id IN (1, 7)` from an index alone, `IN (1) OR IN (7)` by a bitmap or a scan."""
    delegations = [*actor.top_delegation_ids,
                   *(actor.rollup_delegation_ids if mode == READ else ())]
    return _any(bool(delegations) and delegation.in_(delegations),
                bool(actor.sub_delegation_ids) and sub_delegation.in_(actor.sub_delegation_ids))


def unit_registration_condition(actor: Actor, mode: str) -> Any:
    """Which unit registrations a delegation actor reaches: managed ones, plus roll-ups to read."""
    UR = m.UnitRegistration
    return _delegation_reach(actor, mode, UR.delegation_id, UR.sub_delegation_id)


def person_registration_condition(actor: Actor, mode: str) -> Any:
    """The same reach over person registrations, on the delegations each one carries (issue
    14): one index range instead of a semi-join through the unit registrations."""
    PR = m.PersonRegistration
    return _delegation_reach(actor, mode, PR.delegation_id, PR.sub_delegation_id)


def delegation_registration_ids(actor: Actor, mode: str) -> sa.Select:
    return sa.select(m.UnitRegistration.id).where(unit_registration_condition(actor, mode))


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
            sa.select(PR.person_id).where(person_registration_condition(actor, mode))
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
        actor.is_delegation and person_registration_condition(actor, mode),
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
RULES[m.PersonImport] = _owned_by_unit(m.PersonImport)
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


@rule(m.Overpayment)
def _overpayment_rule(actor: Actor, mode: str) -> Any:
    """Money paid twice: finance refunds it; the unit reads its own (it changes nothing)."""
    return _any(
        mode == READ and actor.unit_id is not None
        and m.Overpayment.order_id.in_(_unit_order_ids(actor)),
        actor.has(FINANCE) and TRUE,
    )


@rule(m.BankStatementLine, m.BankStatementImport)
def _bank_statement_rule(actor: Actor, mode: str) -> Any:
    """Bank statements are finance's: it imports and matches them; no one else sees them."""
    return _any(actor.has(FINANCE) and TRUE)


@rule(m.BankStatementProfile)
def _bank_profile_rule(actor: Actor, mode: str) -> Any:
    """Finance reads the bank layouts to choose one; admins edit them."""
    return _any(mode == READ and actor.has(FINANCE) and TRUE)


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
    pk = row_id(model, pk)
    if pk is None:
        return None
    stmt = scoped(sa.select(model).where(model.id == pk), model, actor, mode)
    return db.session.scalars(stmt).one_or_none()
