"""Badge delivery addresses: at most five per unit (slots 1-5), exactly one default."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError

from app import models as m
from app.extensions import db
from app.scoping.actor import WRITE, Actor
from app.scoping.rules import get_scoped
from app.workflow.audit import record
from app.workflow.errors import WorkflowError

FIELDS = ("recipient", "phone", "province", "city", "detail", "postcode")
MAX_ADDRESSES = 5


def _own(actor: Actor, address_id: int) -> m.Address:
    address = get_scoped(m.Address, address_id, actor, WRITE)
    if address is None:
        raise WorkflowError(_l("No such address."), 404)
    return address


def add_address(actor: Actor, data: dict[str, Any], make_default: bool = False) -> m.Address:
    if actor.unit_id is None:
        raise WorkflowError(_l("Only a unit account can do this."), 403)
    used = set(db.session.scalars(sa.select(m.Address.slot)
                                  .where(m.Address.unit_id == actor.unit_id)))
    free = [s for s in range(1, MAX_ADDRESSES + 1) if s not in used]
    if not free:
        raise WorkflowError(_l("A unit can keep at most five addresses. Delete one first."))
    first = not used
    address = m.Address(unit_id=actor.unit_id, slot=free[0], is_default=False,
                        **{k: data.get(k) for k in FIELDS})
    try:
        db.session.add(address)
        db.session.flush()
        if first or make_default:
            _make_default(actor.unit_id, address)
        record(actor, "address", address.id, "create", detail={"slot": address.slot})
        db.session.commit()
    except IntegrityError:
        # A concurrent add took the same slot: the unique (unit, slot) key refused it.
        db.session.rollback()
        raise WorkflowError(_l("The address could not be saved; please try again."), 409) \
            from None
    return address


def _make_default(unit_id: int, address: m.Address) -> None:
    # Clear first: the partial unique index allows one default per unit at any moment.
    db.session.execute(sa.update(m.Address).where(m.Address.unit_id == unit_id,
                                                  m.Address.id != address.id)
                       .values(is_default=False))
    db.session.execute(sa.update(m.Address).where(m.Address.id == address.id)
                       .values(is_default=True))


def update_address(actor: Actor, address_id: int, data: dict[str, Any],
                   make_default: bool = False) -> m.Address:
    address = _own(actor, address_id)
    for key in FIELDS:
        if key in data:
            setattr(address, key, data[key])
    if make_default and not address.is_default:
        db.session.flush()
        _make_default(address.unit_id, address)
    record(actor, "address", address.id, "update")
    db.session.commit()
    return address


def set_default_address(actor: Actor, address_id: int) -> m.Address:
    address = _own(actor, address_id)
    _make_default(address.unit_id, address)
    record(actor, "address", address.id, "set_default")
    db.session.commit()
    return address


def delete_address(actor: Actor, address_id: int) -> None:
    """Delete an address; if it was the default, the next one becomes the default."""
    address = _own(actor, address_id)
    in_use = db.session.scalar(sa.select(sa.func.count()).select_from(m.Shipment)
                               .where(m.Shipment.address_id == address.id))
    if in_use:
        raise WorkflowError(_l("Badges were shipped to this address; it cannot be deleted."))
    was_default, unit_id = address.is_default, address.unit_id
    db.session.delete(address)
    db.session.flush()
    if was_default:
        successor = db.session.scalars(sa.select(m.Address).where(m.Address.unit_id == unit_id)
                                       .order_by(m.Address.slot).limit(1)).first()
        if successor is not None:
            _make_default(unit_id, successor)
    record(actor, "address", address_id, "delete")
    db.session.commit()
