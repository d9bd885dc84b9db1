"""The select boxes and radio buttons of the forms issue 12 added or changed, posted with a
value they do not offer (a wrong enum value, an unknown or malformed id): a 4xx, never a 5xx,
and nothing stored."""
from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A
from tests.test_identity_documents import person_form

WRONG = ["nonsense", "9" * 30, "²", "\x00"]


def count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


@pytest.mark.parametrize("field", ["id_type", "gender"])
@pytest.mark.parametrize("value", WRONG)
def test_person_form_with_a_wrong_choice(login, world, field, value):
    before = count(m.Person)
    response = login(UNIT_A).post("/unit/persons/add", data=person_form(**{field: value}))
    assert 400 <= response.status_code < 500, (field, value, response.status_code)
    assert count(m.Person) == before


@pytest.mark.parametrize("value", WRONG)
def test_statement_import_with_a_wrong_bank(login, world, value):
    response = login("finance").post("/finance/statements/import", data={
        "statement": (io.BytesIO("交易日期,贷方金额\n".encode()), "s.csv"), "profile": value},
        content_type="multipart/form-data")
    assert 400 <= response.status_code < 500, (value, response.status_code)
    assert count(m.BankStatementImport) == 0


@pytest.mark.parametrize("value", WRONG)
def test_zone_admin_with_a_wrong_area(login, world, value):
    before = count(m.Zone)
    response = login("admin").post("/admin/zones/add", data={
        "parent": value, "name_zh": "测试专区", "name_en": "Test zone", "sort": "1",
        "active": "y"})
    assert 400 <= response.status_code < 500, (value, response.status_code)
    assert count(m.Zone) == before


@pytest.mark.parametrize("value", WRONG)
def test_refund_request_with_a_wrong_route(login, world, value):
    response = login(UNIT_A).post("/unit/refunds/request", data={
        "person": [str(world.person("王伟").id)], "route": value})
    assert response.status_code < 500
    assert count(m.Refund) == 0
