"""A person registration carries its unit's delegation and sub-delegation (issue 14), and the
delegations' person lists, counts, filters and statistics read those copies. So the copies
follow the unit: when a person is added, when the unit moves to another delegation, when a
claim hands the unit to the delegation the claimant chose; the database refuses a copy that
differs from the unit's; and a sub-delegation still sees none of its siblings' persons."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A, Client, text_of
from tests.test_account_claims import ATTACKER_PASSWORD, claim, fail_every_check, the_claim
from tests.test_identity_documents import person_form
from tests.test_registration import RETURNING, delegation

PR, UR = m.PersonRegistration, m.UnitRegistration
PERSONS = "/delegation/persons/list/"


def copies_differing_from_the_units() -> list[int]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(PR.id).join(UR, UR.id == PR.unit_registration_id)
                                   .where(sa.or_(
                                       PR.delegation_id.is_distinct_from(UR.delegation_id),
                                       PR.sub_delegation_id.is_distinct_from(
                                           UR.sub_delegation_id)))))


def listed(client: Client, query: str = "") -> str:
    response = client.get(PERSONS + query)
    assert response.status_code == 200
    return text_of(response)


def statements_of(call) -> list[str]:
    seen: list[str] = []

    def listen(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", listen)
    try:
        call()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", listen)
    return seen


def test_every_person_carries_its_units_delegations(login, world):
    # The demo's persons (ORM), and one added through the unit's person form (workflow).
    assert login(UNIT_A).post("/unit/persons/add", data=person_form()).status_code == 302
    assert copies_differing_from_the_units() == []
    added = db.session.scalars(sa.select(PR).join(m.Person)
                               .where(m.Person.name == "证件测试")).one()
    assert (added.delegation_id, added.sub_delegation_id) == (delegation("SH").id,
                                                              delegation("SH-PD").id)
    # The overseas unit has no delegation: neither have its persons.
    john = world.person("John Smith")
    assert (john.delegation_id, john.sub_delegation_id) == (None, None)


def test_a_copy_differing_from_the_units_is_refused_by_the_database(world):
    wang = world.person("王伟")   # Shanghai / Pudong
    for values in ({"delegation_id": delegation("ZJ").id},
                   {"sub_delegation_id": delegation("SH-XH").id}):
        with pytest.raises(IntegrityError):
            db.session.execute(sa.update(PR).where(PR.id == wang.id).values(**values))
            db.session.flush()
        db.session.rollback()
    assert copies_differing_from_the_units() == []


def test_a_unit_moved_to_another_delegation_takes_its_persons_along(login, world):
    xuhui = world.registration("徐汇贸易")   # Shanghai / Xuhui: 赵敏 and 孙磊
    zhao = world.person("赵敏")
    # A set-based move (as an operator's correction would run): the keys cascade.
    db.session.execute(sa.update(UR).where(UR.id == xuhui.id).values(
        delegation_id=delegation("ZJ").id, sub_delegation_id=None))
    db.session.commit()
    assert copies_differing_from_the_units() == []
    shanghai, zhejiang = login("sh-delegation"), login("zj-delegation")
    assert "赵敏" not in listed(shanghai) and "孙磊" not in listed(shanghai)
    assert "赵敏" in listed(zhejiang) and "孙磊" in listed(zhejiang)
    assert shanghai.get(f"/delegation/persons/show/{zhao.id}").status_code == 404
    assert zhejiang.get(f"/delegation/persons/show/{zhao.id}").status_code == 200
    assert zhejiang.get("/delegation/stats/").status_code == 200
    # And back, through the ORM, into a sub-delegation again.
    moved = db.session.get(UR, xuhui.id)
    moved.delegation_id, moved.sub_delegation_id = delegation("SH").id, delegation("SH-XH").id
    db.session.commit()
    assert copies_differing_from_the_units() == []
    assert "赵敏" in listed(shanghai) and "赵敏" not in listed(zhejiang)
    assert "赵敏" not in listed(login("sh-pudong"))


def test_a_unit_given_a_delegation_it_had_none_of_brings_its_persons(login, world):
    """From no delegation to one (and back) a foreign key with a NULL does not cascade: the
    unit registration's change takes its persons along in the same flush."""
    overseas = world.registration("Global Sourcing")
    overseas.delegation_id = delegation("ZJ").id
    db.session.commit()
    assert copies_differing_from_the_units() == []
    assert "John Smith" in listed(login("zj-delegation"))
    overseas = db.session.get(UR, overseas.id)
    overseas.delegation_id = None
    db.session.commit()
    assert copies_differing_from_the_units() == []
    assert "John Smith" not in listed(login("zj-delegation"))


def test_after_a_claim_the_units_new_persons_belong_to_the_delegation_it_chose(app, world,
                                                                            login):
    app.appbuilder.sm.limiter.reset()
    try:
        client = Client(app)
        fail_every_check(client)
        # The food importer was Shanghai / Pudong's; the claimant registers it with Zhejiang.
        claim(client, delegation=str(delegation("ZJ").id), sub_delegation="")
        assert login("zj-delegation").action("/delegation/claims", "approve_claims",
                                             [the_claim().id]).status_code == 302
    finally:
        app.appbuilder.sm.limiter.reset()
    new_owner = Client(app, RETURNING, ATTACKER_PASSWORD)
    assert new_owner.post("/unit/persons/add", data=person_form()).status_code == 302
    assert copies_differing_from_the_units() == []
    assert "证件测试" in listed(login("zj-delegation"))
    for other in ("sh-delegation", "sh-pudong"):
        assert "证件测试" not in listed(login(other)), other
    # The unit's earlier edition stays with the delegation it was registered with then.
    earlier = world.person("钱峰")
    assert (earlier.delegation_id, earlier.sub_delegation_id) == (delegation("SH").id,
                                                                  delegation("SH-PD").id)


def test_a_sub_delegation_sees_none_of_its_siblings_persons(login, world):
    client = login("sh-pudong")
    page = listed(client)
    assert "王伟" in page and "赵敏" not in page and "孙磊" not in page
    assert "周杰" not in page   # the roll-up is the delegation's, not its sub-delegations'
    zhao = world.person("赵敏")   # Xuhui, Pudong's sibling
    assert client.get(f"/delegation/persons/show/{zhao.id}").status_code == 404
    assert client.post(f"/delegation/persons/reveal/{zhao.id}").status_code == 404
    assert client.action("/delegation/persons", "tag_staff", [zhao.id]).status_code == 404
    db.session.expire_all()
    assert db.session.get(PR, zhao.id).tag is None
    # Asking for the sibling's persons by the filter finds nothing rather than them.
    sibling = listed(client, f"?_flt_0_unit_sub_delegation_id={delegation('SH-XH').id}")
    assert "赵敏" not in sibling and "王伟" not in sibling


def test_the_filters_keep_their_names_and_the_scope_reads_no_unit_registration(app, login,
                                                                              world):
    client = login("sh-delegation")
    xuhui = listed(client, f"?_flt_0_unit_sub_delegation_id={delegation('SH-XH').id}")
    assert "赵敏" in xuhui and "孙磊" in xuhui and "王伟" not in xuhui
    # Not Shanghai: what is counted under it (the pharmaceutical roll-up, 周杰).
    rollup = listed(client, f"?_flt_1_unit_delegation_id={delegation('SH').id}")
    assert "周杰" in rollup and "王伟" not in rollup and "赵敏" not in rollup
    assert "周杰" in listed(client, f"?_flt_0_unit_delegation_id={delegation('IND-MED').id}")
    seen = statements_of(lambda: client.get(
        PERSONS + f"?_flt_0_status=submitted&_flt_0_unit_delegation_id={delegation('SH').id}"))
    [count] = [s for s in seen if s.lstrip().startswith("SELECT count(*)")]
    assert "person_registration.delegation_id IN" in count
    assert "unit_registration" not in count
