"""Each role reaches only its own rows: by list, show, edit, delete, action, relation drop-down,
related view, download and API. Requests for another organisation's rows get 403/404 and
change nothing."""
from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import documents
from tests.conftest import UNIT_A, UNIT_B, UNIT_E, text_of

PS = m.PersonStatus
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


class Upload(io.BytesIO):
    def __init__(self, data: bytes, filename: str):
        super().__init__(data)
        self.filename = filename


def upload_document(world, username: str) -> m.UnitDocument:
    """A unit uploads a document through the workflow (its registration must be editable)."""
    user = world.user(username)
    registration = db.session.scalars(sa.select(m.UnitRegistration)
                                      .where(m.UnitRegistration.unit_id == user.unit_id)).one()
    registration.status = m.UnitStatus.draft
    db.session.commit()
    document = documents.add_document(actor_for_user(user), Upload(PDF, "licence.pdf"))
    return document


def status_of(registration_id: int):
    db.session.expire_all()
    return db.session.get(m.PersonRegistration, registration_id).status


# ---------------------------------------------------------------------------- unit --------

def test_unit_lists_only_its_own_persons(login, world):
    page = text_of(login(UNIT_A).get("/unit/persons/list/"))
    assert "王伟" in page and "刘洋" in page
    assert "赵敏" not in page and "郑浩" not in page


def test_unit_cannot_show_edit_or_delete_another_units_person(login, world):
    other = world.person("赵敏")  # unit B
    client = login(UNIT_A)
    assert client.get(f"/unit/persons/show/{other.id}").status_code == 404
    assert client.get(f"/unit/persons/edit/{other.id}").status_code == 404
    response = client.post(f"/unit/persons/edit/{other.id}", data={
        "name": "Hacked", "gender": "male", "id_type": "passport", "id_number": "E99999999",
        "nationality": "CN", "entry_dates": ["2022-11-05"]})
    assert response.status_code == 404
    assert client.post(f"/unit/persons/delete/{other.id}").status_code == 404
    db.session.expire_all()
    assert db.session.get(m.PersonRegistration, other.id).person.name == "赵敏"


def test_unit_action_on_another_units_person_is_refused_whole(login, world):
    mine = world.person("刘洋")      # unit A, draft
    theirs = world.person("吴芳")    # unit D, draft
    response = login(UNIT_A).action("/unit/persons", "submit_persons", [mine.id, theirs.id])
    assert response.status_code == 404
    assert status_of(mine.id) is PS.draft
    assert status_of(theirs.id) is PS.draft


def test_unit_action_on_its_own_person_works(login, world):
    mine = world.person("刘洋")
    response = login(UNIT_A).action("/unit/persons", "submit_persons", [mine.id])
    assert response.status_code == 302
    assert status_of(mine.id) is PS.submitted
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "person_registration",
        m.AuditEvent.record_id == mine.id, m.AuditEvent.action == "submit")).one()
    assert (audit.from_state, audit.to_state, audit.actor_name) == ("draft", "submitted", UNIT_A)


def test_unit_cannot_download_another_units_document(login, world):
    document = upload_document(world, UNIT_E)
    other = login(UNIT_A)
    assert other.get(f"/unit/documents/download/{document.storage_key}").status_code == 404
    assert other.get(f"/unit/documents/show/{document.id}").status_code == 404
    assert other.post(f"/unit/documents/delete/{document.id}").status_code == 404
    owner = login(UNIT_E)
    response = owner.get(f"/unit/documents/download/{document.storage_key}")
    assert response.status_code == 200 and response.data == PDF
    assert db.session.get(m.UnitDocument, document.id) is not None


def test_unit_cannot_touch_another_units_address(login, world):
    address = db.session.scalars(sa.select(m.Address)).one()  # unit A's
    client = login(UNIT_B)
    assert client.get(f"/unit/addresses/show/{address.id}").status_code == 404
    assert client.post(f"/unit/addresses/edit/{address.id}", data={
        "recipient": "x", "phone": "1", "province": "p", "city": "c",
        "detail": "d"}).status_code == 404
    assert client.post(f"/unit/addresses/delete/{address.id}").status_code == 404
    assert client.action("/unit/addresses", "set_default", [address.id]).status_code == 404
    db.session.expire_all()
    assert db.session.get(m.Address, address.id).recipient == "张经理"


def test_unit_api_sees_only_its_own_persons(login, world):
    client = login(None)
    headers = client.api_login(UNIT_A)
    listing = client.get("/api/v1/persons/", headers=headers).json
    names = {row["person"]["name"] for row in listing["result"]}
    assert "王伟" in names and "赵敏" not in names
    other = world.person("赵敏")
    assert client.get(f"/api/v1/persons/{other.id}", headers=headers).status_code == 404


def test_views_of_other_roles_are_forbidden_to_a_unit(login, world):
    client = login(UNIT_A)
    for url in ("/delegation/units/list/", "/finance/orders/list/", "/review/queue/list/",
                "/organiser/events/list/", "/admin/editions/list/", "/admin/audit/list/",
                "/users/list/"):
        assert client.get(url).status_code == 403, url


# ---------------------------------------------------------------------- delegation --------

def test_delegation_sees_its_units_its_sub_delegations_and_rollups(login, world):
    page = text_of(login("sh-delegation").get("/delegation/units/list/"))
    assert "上海浦东医疗器械" in page and "上海徐汇贸易" in page
    assert "上海生物制药" in page        # industry delegation rolled up into Shanghai
    assert "浙江杭州进出口" not in page and "中国示范能源" not in page


def test_rolled_up_units_are_read_only_for_the_counting_delegation(login, world):
    rollup = world.registration("生物制药")
    client = login("sh-delegation")
    assert client.get(f"/delegation/units/show/{rollup.id}").status_code == 200
    assert client.action("/delegation/units", "approve_units", [rollup.id]).status_code == 404
    db.session.expire_all()
    assert db.session.get(m.UnitRegistration, rollup.id).status is m.UnitStatus.submitted
    # The industry delegation that manages it can approve it.
    assert login("med-delegation").action("/delegation/units", "approve_units",
                                          [rollup.id]).status_code == 302
    db.session.expire_all()
    assert db.session.get(m.UnitRegistration, rollup.id).status is m.UnitStatus.approved


def test_delegation_cannot_reach_another_delegations_unit(login, world):
    zhejiang = world.registration("杭州进出口")
    client = login("sh-delegation")
    assert client.get(f"/delegation/units/show/{zhejiang.id}").status_code == 404
    assert client.action("/delegation/units", "reject_units", [zhejiang.id],
                         reason="x").status_code == 404
    assert client.get(f"/delegation/persons/show/{world.person('郑浩').id}").status_code == 404
    headers = client.api_login("sh-delegation")
    assert client.get(f"/api/v1/units/{zhejiang.id}", headers=headers).status_code == 404
    db.session.expire_all()
    assert db.session.get(m.UnitRegistration, zhejiang.id).status is m.UnitStatus.returned


def test_sub_delegation_sees_only_its_own_units(login, world):
    xuhui = world.registration("徐汇贸易")
    client = login("sh-pudong")
    page = text_of(client.get("/delegation/units/list/"))
    assert "上海浦东医疗器械" in page and "上海徐汇贸易" not in page
    assert "上海生物制药" not in page   # roll-ups are for the delegation, not its sub-delegations
    assert client.get(f"/delegation/units/show/{xuhui.id}").status_code == 404
    assert client.action("/delegation/units", "approve_units", [xuhui.id]).status_code == 404
    db.session.expire_all()
    assert db.session.get(m.UnitRegistration, xuhui.id).status is m.UnitStatus.submitted


def test_delegation_downloads_only_documents_of_its_units(login, world):
    theirs = upload_document(world, UNIT_E)   # Zhejiang
    mine = upload_document(world, UNIT_B)     # Shanghai / Xuhui
    client = login("sh-delegation")
    assert client.get(f"/delegation/documents/download/{theirs.storage_key}").status_code == 404
    assert client.get(f"/delegation/documents/download/{mine.storage_key}").status_code == 200
    # The related view on the unit page lists the unit's own documents only.
    page = text_of(client.get(f"/delegation/units/show/{mine.registration_id}"))
    assert "licence.pdf" in page


def test_delegation_person_list_masks_id_and_mobile(login, world):
    wang = world.person("王伟")
    page = text_of(login("sh-delegation").get("/delegation/persons/list/"))
    full = wang.person.id_number
    assert full not in page
    assert f"{full[:4]}**********{full[-4:]}" in page
    assert wang.person.mobile not in page
    # The unit itself sees the full number.
    assert full in text_of(login(UNIT_A).get("/unit/persons/list/"))


def test_revealing_a_full_number_is_logged(login, world):
    wang = world.person("王伟")
    client = login("sh-delegation")
    show = client.get(f"/delegation/persons/show/{wang.id}").data.decode()
    assert f"/delegation/persons/reveal/{wang.id}" in show and wang.person.id_number not in show
    assert db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.action == "pii_view")).all() == []
    response = client.post(f"/delegation/persons/reveal/{wang.id}")
    assert response.json["id_number"] == wang.person.id_number
    logged = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.action == "pii_view", m.AuditEvent.record_id == wang.person_id)).one()
    assert logged.actor_name == "sh-delegation"
    zheng = world.person("郑浩")  # Zhejiang: not in scope
    assert client.post(f"/delegation/persons/reveal/{zheng.id}").status_code == 404
    assert login(UNIT_A).post(f"/delegation/persons/reveal/{wang.id}").status_code == 403


# ------------------------------------------------------------------------- finance --------

def test_finance_sees_money_but_not_unit_or_delegation_pages(login, world):
    client = login("finance")
    assert "O2022000001" in text_of(client.get("/finance/orders/list/"))
    for url in ("/unit/persons/list/", "/delegation/units/list/", "/review/queue/list/",
                "/unit/addresses/list/", "/admin/units/list/"):
        assert client.get(url).status_code == 403, url
    assert client.get("/finance/transfers/voucher/999999").status_code == 404


# ------------------------------------------------------------------------ reviewer --------

def test_reviewer_reaches_only_persons_awaiting_review(login, world):
    waiting = world.person("张强")
    draft = world.person("刘洋")
    client = login("reviewer")
    page = text_of(client.get("/review/queue/list/"))
    assert "张强" in page and "王伟" not in page and "刘洋" not in page
    assert waiting.person.id_number in page          # reviewers see full ID numbers
    assert client.get(f"/review/queue/show/{draft.id}").status_code == 404
    headers = client.api_login("reviewer")
    assert client.get(f"/api/v1/persons/{draft.id}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/persons/{waiting.id}", headers=headers).status_code == 200
    for url in ("/finance/orders/list/", "/finance/payments/list/", "/unit/orders/list/"):
        assert client.get(url).status_code == 403, url


# ----------------------------------------------------------------------- organiser --------

@pytest.fixture
def second_organiser(world):
    sm = world.app.appbuilder.sm
    other = m.Organiser(name_zh="另一主办方", name_en="Other Organiser")
    db.session.add(other)
    db.session.flush()
    event = db.session.scalars(sa.select(m.Event)).one()
    theirs = m.Event(edition_id=event.edition_id, organiser_id=other.id, title_zh="别人的活动",
                     title_en="Someone else's event", starts_at=event.starts_at,
                     ends_at=event.ends_at, place="X", capacity=10, seats_taken=0,
                     status=m.EventStatus.draft)
    db.session.add(theirs)
    user = sm.add_user(username="organiser2", first_name="o", last_name="2",
                       email="o2@demo.ciie.local", role=sm.find_role("organiser"),
                       password="Demo@2022")
    user.organiser_id = other.id
    db.session.commit()
    return theirs


def test_organiser_reaches_only_its_own_events(login, world, second_organiser):
    client = login("organiser")
    page = text_of(client.get("/organiser/events/list/"))
    assert "进口医疗器械采购对接会" in page and "别人的活动" not in page
    theirs = second_organiser.id
    assert client.get(f"/organiser/events/show/{theirs}").status_code == 404
    assert client.post(f"/organiser/events/delete/{theirs}").status_code == 404
    assert client.action("/organiser/events", "publish_events", [theirs]).status_code == 404
    db.session.expire_all()
    assert db.session.get(m.Event, theirs).status is m.EventStatus.draft


def test_relation_drop_down_lists_only_the_organisers_own_events(login, world,
                                                                 second_organiser):
    # The search form's drop-down fetches its choices when opened (views/filter_choices.py).
    def offered(who: str) -> set[str]:
        answer = login(who).get("/organiser/applications/filter_choices/event").json
        return {row["text"] for row in answer["results"]}

    assert "进口医疗器械采购对接会" in offered("organiser")
    assert "别人的活动" not in offered("organiser")
    other = offered("organiser2")
    assert "别人的活动" in other and "进口医疗器械采购对接会" not in other


# -------------------------------------------------------------------------- person --------

def test_app_person_sees_only_its_own_record(login, world):
    mine = world.person("刘洋")  # linked to person-demo
    client = login(None)
    headers = client.api_login("person-demo")
    listing = client.get("/api/v1/persons/", headers=headers).json
    assert [row["id"] for row in listing["result"]] == [mine.id]
    assert client.get(f"/api/v1/persons/{world.person('王伟').id}",
                      headers=headers).status_code == 404
    web = login("person-demo")
    assert web.get("/unit/persons/list/").status_code == 403


# --------------------------------------------------------------------------- admin --------

def test_admin_sees_every_unit(login, world):
    page = text_of(login("admin").get("/admin/units/list/"))
    for name in ("上海浦东医疗器械", "上海徐汇贸易", "浙江杭州进出口", "Global Sourcing"):
        assert name in page
