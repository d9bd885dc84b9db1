"""Ids typed or forged with Unicode digits that are not 0-9 ("²", "٣", full-width "１"):
`str.isdigit()` says yes, `int()` says no (or reads another number). Every form that reads an id
treats them as no id: a 4xx or a refusal, never a 500, nothing changed (siblings of the unit
information form's zone ids, issue 12)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A, Client
from tests.test_registration import new_unit_form

ODD = ["²", "٣", "¹²"]


@pytest.mark.parametrize("odd", ODD)
def test_a_refund_request_with_odd_digits_asks_for_nothing(login, world, odd):
    client = login(UNIT_A)
    response = client.post("/unit/refunds/request", data={"person": [odd], "route": "original"})
    assert response.status_code in (302, 400)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Refund)) == 0


@pytest.mark.parametrize("odd", ODD)
def test_parcel_packing_with_odd_digits_is_refused(login, world, odd):
    client = login("admin")
    response = client.post("/badges/parcels/pack", data={"unit": odd, "address": odd})
    assert response.status_code in (302, 400, 404)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Shipment)) == 0


@pytest.mark.parametrize("odd", ODD)
def test_registration_with_odd_digit_delegation_is_refused(app, world, odd):
    app.appbuilder.sm.limiter.reset()
    response = Client(app).post("/register/new", data=new_unit_form(delegation=odd,
                                                                    sub_delegation=odd))
    assert response.status_code in (200, 400)
    assert Client(app).get(f"/register/delegations?parent={odd}").status_code < 500
