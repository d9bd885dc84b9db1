"""The unit's own journey after registering: information (autosaved), documents, persons with
photos, carrying persons forward with badge reuse, preview and submit, the progress chart."""
from __future__ import annotations

import io
import re

import sqlalchemy as sa
from PIL import Image

from app import models as m
from app.demo import make_ric
from app.extensions import db
from tests.conftest import UNIT_A, UNIT_B, UNIT_E, text_of
from tests.photos import face_photo
from tests.test_scoping import PDF

PS = m.PersonStatus


def png() -> bytes:
    """A badge photo the upload check passes (tests/photos.py), as a PNG."""
    return face_photo("PNG")


def info_form(**changes) -> dict:
    form = {"name": "浙江杭州进出口有限公司", "name_en": "", "address": "杭州市",
            "contact_name": "周经理", "contact_title": "", "contact_mobile": "13900001111",
            "contact_email": "zhou@example.com", "purchase_intentions": "进口机械",
            "reason": "采购"}
    form.update(changes)
    return form


# -------------------------------------------------------------- unit information --------

def test_autosave_keeps_an_invalid_draft_and_the_form_restores_it(login, world):
    client = login(UNIT_E)   # returned for changes: editable
    response = client.http.post("/unit/info/draft", json={
        "contact_email": "not-an-email", "reason": "尚未写完的原因……"},
        headers={"X-CSRFToken": client.csrf_token()})
    assert response.status_code == 200 and len(response.json["saved_at"]) == 8
    registration = world.registration("杭州进出口")
    db.session.refresh(registration)
    assert registration.draft_data["reason"] == "尚未写完的原因……"
    assert registration.contact_email != "not-an-email"     # the record itself is unchanged
    page = client.get("/unit/info/").data.decode()
    assert "尚未写完的原因……" in page and "not-an-email" in page


def test_autosave_needs_the_csrf_token(login, world):
    client = login(UNIT_E)
    response = client.http.post("/unit/info/draft", json={"reason": "x"})
    assert response.status_code == 400
    assert world.registration("杭州进出口").draft_data is None


def test_saving_checks_formats_and_clears_the_draft(login, world):
    client = login(UNIT_E)
    bad = client.post("/unit/info/", data=info_form(contact_mobile="12"))
    assert "手机号码无效" in text_of(bad)
    zone = db.session.scalars(m.Zone.choosable()).first()
    response = client.post("/unit/info/", data={**info_form(), "zones": [str(zone.id)]})
    assert response.status_code == 302
    registration = world.registration("杭州进出口")
    db.session.refresh(registration)
    assert registration.contact_mobile == "+8613900001111" and registration.draft_data is None
    assert [z.id for z in registration.zones] == [zone.id]


def test_another_units_information_is_out_of_reach(login, world):
    before = world.registration("杭州进出口").reason
    login(UNIT_B).http.post("/unit/info/draft", json={"reason": "hijack"})
    db.session.expire_all()
    assert world.registration("杭州进出口").reason == before
    assert world.registration("杭州进出口").draft_data is None


def test_submitted_information_is_read_only(login, world):
    client = login(UNIT_B)   # submitted
    response = client.http.post("/unit/info/draft", json={"reason": "late change"},
                                headers={"X-CSRFToken": client.csrf_token()})
    assert response.status_code == 409
    assert "只读" in text_of(client.get("/unit/info/")) or "不能更改" in text_of(
        client.get("/unit/info/"))
    assert world.registration("徐汇贸易").draft_data is None


# ---------------------------------------------------------------- preview, submit --------

def test_submission_lists_what_is_missing_and_needs_a_person(login, world):
    client = login(UNIT_E)
    response = client.post("/unit/preview/submit", data={"with_draft_persons": "1"})
    page = text_of(client.get(response.headers["Location"]))
    assert "请先完善单位信息" in page and "单位资质证明" in page
    assert world.registration("杭州进出口").status is m.UnitStatus.returned


def test_unit_submits_with_its_draft_persons(login, world):
    client = login(UNIT_E)
    zone = db.session.scalars(m.Zone.choosable()).first()
    client.post("/unit/info/", data={**info_form(), "zones": [str(zone.id)]})
    client.post("/unit/documents/add", data={"file": (io.BytesIO(PDF), "licence.pdf")},
                content_type="multipart/form-data")
    zheng = world.person("郑浩")                 # already submitted
    number = make_ric("33010619900101004")      # an even 17th digit: a woman
    client.post("/unit/persons/add", data={
        "name": "新人员", "gender": "female", "id_type": "mainland_id", "id_number": number,
        "nationality": "CN", "entry_dates": ["2022-11-06"],
        "photo": (io.BytesIO(png()), "me.png")}, content_type="multipart/form-data")
    preview = text_of(client.get("/unit/preview/"))
    assert "待提交人数：1" in preview and "郑浩" in preview and "licence.pdf" in preview
    response = client.post("/unit/preview/submit", data={"with_draft_persons": "1"})
    assert "已提交交易团审核" in text_of(client.get(response.headers["Location"]))
    db.session.expire_all()
    registration = world.registration("杭州进出口")
    assert registration.status is m.UnitStatus.submitted and registration.review_reason is None
    assert world.person("新人员").status is PS.submitted and zheng.status is PS.submitted
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "unit_registration", m.AuditEvent.action == "submit")).one()
    assert (audit.from_state, audit.to_state) == ("returned", "submitted")


def test_submission_without_any_submitted_person_is_refused(login, world):
    client = login("OS2022000001")    # overseas draft unit: its only person is a draft
    zone = db.session.scalars(m.Zone.choosable()).first()
    client.post("/unit/info/", data={**info_form(name="Global Sourcing Ltd."),
                                     "zones": [str(zone.id)]})
    response = client.post("/unit/preview/submit", data={})
    assert "至少同时或提前提交一名人员" in text_of(client.get(response.headers["Location"]))
    assert world.registration("Global Sourcing").status is m.UnitStatus.draft


# -------------------------------------------------------------------------- photos --------

def test_photo_upload_makes_a_thumbnail_served_only_within_scope(login, world):
    liu = world.person("刘洋")   # unit A, draft
    client = login(UNIT_A)
    data = {"name": "刘洋", "gender": "male", "id_type": "mainland_id",
            "id_number": liu.person.id_number, "nationality": "CN",
            "entry_dates": ["2022-11-05"], "photo": (io.BytesIO(png()), "me.png")}
    response = client.post(f"/unit/persons/edit/{liu.id}", data=data,
                           content_type="multipart/form-data")
    assert response.status_code == 302
    db.session.expire_all()
    assert liu.person.thumb_key and liu.person.photo_key
    thumb = client.get(f"/files/person/{liu.person_id}/thumb")
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.data)).height <= 160
    assert login("sh-delegation").get(f"/files/person/{liu.person_id}/photo").status_code == 200
    assert login(UNIT_B).get(f"/files/person/{liu.person_id}/photo").status_code == 404
    assert login("finance").get(f"/files/person/{liu.person_id}/photo").status_code == 403


def test_a_non_image_photo_is_refused(login, world):
    liu = world.person("刘洋")
    photo = liu.person.photo_key
    response = login(UNIT_A).post(f"/unit/persons/edit/{liu.id}", data={
        "name": "刘洋", "gender": "male", "id_type": "mainland_id",
        "id_number": liu.person.id_number, "nationality": "CN", "entry_dates": ["2022-11-05"],
        "photo": (io.BytesIO(PDF), "me.png")}, content_type="multipart/form-data")
    assert "不接受此类型的文件" in text_of(response)
    db.session.expire_all()
    assert liu.person.photo_key == photo


# ------------------------------------------------------- carry forward, badge reuse --------

def test_returning_unit_carries_persons_forward_with_badge_reuse(login, world):
    client = login(UNIT_A)
    page = text_of(client.get("/unit/previous-persons/"))
    assert "黄磊" in page and "何静" in page and "王伟" not in page   # 王伟 is already in
    huang = db.session.scalars(sa.select(m.Person).where(m.Person.name == "黄磊")).one()
    he = db.session.scalars(sa.select(m.Person).where(m.Person.name == "何静")).one()
    response = client.post("/unit/previous-persons/", data={
        "person": [str(huang.id), str(he.id)], "reuse": [str(huang.id)]})
    assert response.status_code == 302
    reuse, plain = world.person("黄磊"), world.person("何静")
    assert reuse.is_reuse and reuse.tag is m.Tag.staff and reuse.previous_tag is m.Tag.staff
    assert reuse.entry_days > 0 and reuse.previous_badge.number.startswith("B04")
    assert not plain.is_reuse and plain.tag is None and plain.entry_days == 0
    # A reused person keeps what the badge shows: the name cannot change.
    client.post(f"/unit/persons/edit/{reuse.id}", data={
        "name": "改名", "gender": "male", "id_type": "mainland_id",
        "id_number": huang.id_number, "nationality": "CN", "mobile": "13700009999",
        "entry_dates": ["2022-11-10"]})
    db.session.expire_all()
    assert huang.name == "黄磊" and huang.mobile == "+8613700009999"
    # Submitted, the reuse person waits for the delegation's lock with its old tag.
    client.action("/unit/persons", "submit_persons", [reuse.id])
    db.session.expire_all()
    assert reuse.status is PS.awaiting_lock


def test_reuse_is_refused_without_an_eligible_badge(login, world):
    client = login(UNIT_A)
    he = db.session.scalars(sa.select(m.Person).where(m.Person.name == "何静")).one()
    badge = db.session.scalars(sa.select(m.Badge).where(m.Badge.person_id == he.id)).one()
    badge.active = False
    db.session.commit()
    response = client.post("/unit/previous-persons/", data={
        "person": [str(he.id)], "reuse": [str(he.id)]})
    assert "没有可复用" in text_of(response)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.PersonRegistration)
                             .where(m.PersonRegistration.person_id == he.id)) == 1


def test_a_unit_cannot_carry_forward_another_units_person(login, world):
    qian = db.session.scalars(sa.select(m.Person).where(m.Person.name == "钱峰")).one()
    response = login(UNIT_A).post("/unit/previous-persons/", data={"person": [str(qian.id)]})
    assert response.status_code == 404
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.PersonRegistration)
                             .where(m.PersonRegistration.person_id == qian.id)) == 1


# ------------------------------------------------------------------ progress chart --------

def test_progress_chart_shows_where_the_unit_stands(login, world):
    page = login(UNIT_A).get("/").data.decode()
    states = dict(re.findall(r'id="step-(\w+)" data-state="(\w+)"', page))
    # Approved; persons locked; three still to pay, one awaiting security review.
    assert states == {"register": "done", "info": "done", "persons": "done", "review": "done",
                      "lock": "done", "payment": "current", "security": "current",
                      "badge": "todo"}
    returned = login(UNIT_E).get("/").data.decode()
    assert 'id="step-review" data-state="attention"' in returned
    assert 'href="/unit/info/"' in returned
