"""Badge delivery: produced badges of a unit are packed into parcels of at most ten (slots
1-10; the database refuses an 11th) addressed to one of the unit's saved addresses, shipped with
a carrier and tracking number, then delivered. Badges follow their parcel:
produced → shipped → delivered.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from app import models as m
from app.clock import now
from app.extensions import db
from app.scoping.actor import WRITE, Actor
from app.scoping.rules import get_scoped, scoped
from app.workflow.audit import record_many
from app.workflow.editions import current_edition
from app.workflow.errors import BatchResult, WorkflowError
from app.workflow.transitions import Move, as_id_select, move, table, wrong_state

B = m.Badge
S = m.Shipment
SS = m.ShipmentStatus
BS = m.BadgeStatus
# The parcel's state machine, and the badge's: a badge moves only with its parcel.
SHIPMENT_MOVES = table({
    "ship": Move(from_={SS.packed}, to=SS.shipped),
    "deliver": Move(from_={SS.shipped}, to=SS.delivered),
})
BADGE_MOVES = table({
    "ship": Move(from_={BS.produced}, to=BS.shipped),
    "deliver": Move(from_={BS.shipped}, to=BS.delivered),
})
PARCEL_SLOTS = 10


@dataclass
class Packing(BatchResult):
    """The badges packed (done), the refusals, and the parcels opened for them."""

    new_parcels: list[int] = field(default_factory=list)


def waiting_for_parcel(edition_id: int) -> sa.ColumnElement:
    """SQL: produced, active badges of the edition not in a parcel yet (the packing queue;
    the partial index ix_badge_to_pack holds exactly these)."""
    return sa.and_(B.edition_id == edition_id, B.status == BS.produced, B.active.is_(True),
                   B.shipment_id.is_(None))


def parcel_badges(actor: Actor, shipment_id: int) -> list[sa.Row]:
    """The badges in a parcel, slot by slot, with their holder (one scoped query)."""
    return list(db.session.execute(scoped(
        sa.select(B.id, B.number, B.printed_name, B.status, B.active, B.parcel_slot)
        .where(B.shipment_id == shipment_id).order_by(B.parcel_slot), B, actor)).all())


def shipment_label() -> sa.ColumnElement:
    return sa.literal("#") + sa.cast(S.id, sa.String)


def pack_badges(actor: Actor, ids: Iterable[int] | sa.Select,
                address_id: int | None = None) -> Packing:
    """Pack the selected produced badges: each unit's badges go to its default address (or to
    `address_id`, which must be an address of the one unit selected). Parcels still being
    packed for the same address are topped up first, then new ones are opened."""
    edition = current_edition()
    selected = as_id_select(B, ids)
    unit_of = sa.select(m.Person.unit_id).where(m.Person.id == B.person_id).scalar_subquery()
    # Packers of the same unit take turns: the unit rows are the lock.
    db.session.execute(sa.select(m.Unit.id).where(m.Unit.id.in_(
        sa.select(m.Person.unit_id).join(B, B.person_id == m.Person.id)
        .where(B.id.in_(selected)))).order_by(m.Unit.id).with_for_update())
    rows = db.session.execute(scoped(
        sa.select(B.id, B.number, B.status, B.active, B.shipment_id, B.edition_id,
                  unit_of.label("unit_id")).where(B.id.in_(selected)).order_by(B.number),
        B, actor, WRITE)).all()
    destination = _destinations(actor, {row.unit_id for row in rows}, address_id)
    packing = Packing()
    to_pack: dict[int, list] = defaultdict(list)  # address id -> badge rows
    for row in rows:
        address = destination.get(row.unit_id)
        if row.status is not BS.produced:
            packing.refuse(row.id, row.number, wrong_state(row.status))
        elif not row.active:
            packing.refuse(row.id, row.number, _l("the badge is deactivated"))
        elif row.edition_id != edition.id:
            packing.refuse(row.id, row.number, _l("the badge is not of the current edition"))
        elif row.shipment_id is not None:
            packing.refuse(row.id, row.number, _l("already packed in parcel #%(parcel)s",
                                                  parcel=row.shipment_id))
        elif address is None:
            packing.refuse(row.id, row.number,
                           _l("the unit has no default delivery address")
                           if address_id is None else _l("the address is not this unit's"))
        else:
            to_pack[address.id].append((row, address))
    if to_pack:
        _fill_parcels(actor, to_pack, packing)
    db.session.commit()
    return packing


def _destinations(actor: Actor, unit_ids: set[int], address_id: int | None
                  ) -> dict[int, m.Address]:
    """{unit id: address}: the chosen address for its unit, else each unit's default."""
    if address_id is not None:
        address = get_scoped(m.Address, address_id, actor)
        if address is None:
            raise WorkflowError(_l("No such address."), 404)
        return {address.unit_id: address}
    if not unit_ids:
        return {}
    return {a.unit_id: a for a in db.session.scalars(sa.select(m.Address).where(
        m.Address.unit_id.in_(unit_ids), m.Address.is_default.is_(True)))}


def _fill_parcels(actor: Actor, to_pack: dict[int, list], packing: Packing) -> None:
    """Free slots of open parcels first, then new parcels of ten (one SELECT, one INSERT and
    one UPDATE for the whole batch)."""
    open_slots = db.session.execute(
        sa.select(S.id, S.address_id, B.parcel_slot).outerjoin(B, B.shipment_id == S.id)
        .where(S.address_id.in_(list(to_pack)), S.status == SS.packed).order_by(S.id)).all()
    used: dict[int, dict[int, set[int]]] = defaultdict(dict)  # address -> parcel -> slots
    for parcel_id, parcel_address, slot in open_slots:
        used[parcel_address].setdefault(parcel_id, set())
        if slot is not None:
            used[parcel_address][parcel_id].add(slot)
    placed: list[tuple[int, int | None, int, int]] = []  # (badge, parcel, slot, new index)
    new_parcels: list[dict] = []
    for address_id, items in to_pack.items():
        free = [(parcel_id, slot) for parcel_id, slots in used[address_id].items()
                for slot in range(1, PARCEL_SLOTS + 1) if slot not in slots]
        for i, (row, address) in enumerate(items):
            if i < len(free):
                placed.append((row.id, free[i][0], free[i][1], -1))
                continue
            extra = i - len(free)
            if extra % PARCEL_SLOTS == 0:
                new_parcels.append({"unit_id": address.unit_id, "address_id": address.id,
                                    "status": SS.packed})
            placed.append((row.id, None, extra % PARCEL_SLOTS + 1, len(new_parcels) - 1))
    new_ids = list(db.session.scalars(
        sa.insert(S).returning(S.id, sort_by_parameter_order=True), new_parcels)) \
        if new_parcels else []
    db.session.execute(sa.update(B), [
        {"id": badge_id, "shipment_id": parcel if parcel is not None else new_ids[index],
         "parcel_slot": slot} for badge_id, parcel, slot, index in placed])
    record_many(actor, "shipment", [(parcel_id, None) for parcel_id in new_ids], "pack",
                SS.packed)
    record_many(actor, "badge", [(badge_id, BS.produced) for badge_id, *_rest in placed],
                "pack", BS.produced)
    packing.done = [badge_id for badge_id, *_rest in placed]
    packing.new_parcels = new_ids


def ship_parcel(actor: Actor, shipment_id: int, carrier: str, tracking_no: str) -> None:
    """Hand a packed parcel to the carrier: it and its badges become shipped."""
    carrier, tracking_no = (carrier or "").strip(), (tracking_no or "").strip()
    if not carrier or not tracking_no:
        raise WorkflowError(_l("Enter the carrier and the tracking number."), 400)
    if len(carrier) > 50 or len(tracking_no) > 64:
        raise WorkflowError(_l("The carrier or the tracking number is too long."), 400)
    result = move(actor, S, [shipment_id], SHIPMENT_MOVES["ship"], label=shipment_label(),
                  checks=[(S.id.in_(sa.select(B.shipment_id)), _l("the parcel is empty"))],
                  values={"carrier": carrier, "tracking_no": tracking_no, "shipped_at": now()},
                  reason=f"{carrier} {tracking_no}", commit=False)
    if result.refused:
        raise WorkflowError(result.refused[0].reason)
    if not result.done:
        raise WorkflowError(_l("No such parcel."), 404)
    _badges_follow(actor, result.done, BADGE_MOVES["ship"])
    db.session.commit()


def deliver_parcels(actor: Actor, ids: Iterable[int] | sa.Select) -> BatchResult:
    """The carrier delivered these parcels: they and their badges become delivered."""
    result = move(actor, S, ids, SHIPMENT_MOVES["deliver"], label=shipment_label(),
                  values={"delivered_at": now()}, commit=False)
    if result.done:
        _badges_follow(actor, result.done, BADGE_MOVES["deliver"])
    db.session.commit()
    return result


def _badges_follow(actor: Actor, shipment_ids: list[int], step: Move) -> None:
    """The badges of parcels that moved move with them (audited as the same actor)."""
    move(actor, B, sa.select(B.id).where(B.shipment_id.in_(shipment_ids)), step,
         label=B.number, commit=False)
