"""ID documents as China issues them (tests/data/ids-SOURCES.md): any GB/T 2260 address code,
whatever the holder's birth year; no crash on a code python-stdnum does not know; no future or
impossible birth dates; the residence permit for Hong Kong, Macau and Taiwan residents;
full-width input; the gender digit; a photo before submission."""
from __future__ import annotations

import csv
import io
import os
from datetime import date

import pytest
import sqlalchemy as sa
from stdnum import numdb
from stdnum.cn import ric

from app import models as m
from app.demo import make_ric
from app.extensions import db
from app.validation import PROVINCE_CODES, ValidationFailed, read_id_document
from app.workflow.persons import id_key
from tests.conftest import UNIT_A, UNIT_B, UNIT_E, text_of
from tests.test_app_api import app_user, join_body, portrait
from tests.test_scoping import PDF
from tests.test_unit_journey import info_form, png

PS = m.PersonStatus
DATA = os.path.join(os.path.dirname(__file__), "data", "ids_numbers.csv")
# The business clock of the tests (conftest.DEMO_NOW).
TODAY = date(2022, 9, 15)

with open(DATA, encoding="utf-8") as fh:
    ROWS = list(csv.DictReader(fh))


def row_id(row: dict) -> str:
    return f"{row['id_type']}:{row['number']}"


def person_form(**changes) -> dict:
    data = {"name": "证件测试", "gender": "male", "id_type": "mainland_id",
            "id_number": "330113199001010011", "nationality": "CN",
            "entry_dates": ["2022-11-05"]}
    data.update(changes)
    return data


def persons_named(name: str) -> list[m.Person]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Person).where(m.Person.name == name)))


# ------------------------------------------------------------------ the published data ----

@pytest.mark.parametrize("row", [r for r in ROWS if r["verdict"] == "accept"], ids=row_id)
def test_published_numbers_are_accepted_with_their_birth_date_and_gender(row):
    document = read_id_document(row["id_type"], row["number"], today=TODAY)
    assert document.number == row["number"]
    assert document.birth_date == date.fromisoformat(row["birth_date"])
    assert document.gender is m.Gender(row["gender"])


@pytest.mark.parametrize("row", [r for r in ROWS if r["verdict"] == "refuse"], ids=row_id)
def test_wrong_numbers_are_refused_with_a_reason(row):
    with pytest.raises(ValidationFailed) as refused:
        read_id_document(row["id_type"], row["number"], today=TODAY)
    assert str(refused.value)


def test_the_fixture_holds_the_numbers_python_stdnum_refuses_or_crashes_on():
    """What made real people fail: stdnum's district-in-birth-year check, and a KeyError for a
    district its table does not know (the HTTP 500)."""
    shanghai = [r["number"] for r in ROWS if r["source"] == "gbt2260-stdnum-loc"
                and r["verdict"] == "accept"]
    assert len(shanghai) == 9 and not any(ric.is_valid(n) for n in shanghai)
    for number in (r["number"] for r in ROWS if r["source"] == "gbt2260-2021"
                   and r["verdict"] == "accept"):
        with pytest.raises(KeyError):
            ric.is_valid(number)


def test_province_codes_are_those_of_gbt2260():
    provinces = {code for code, _props in
                 (next(iter(numdb.get("cn/loc").info(f"{p}0000"))) for p in PROVINCE_CODES)}
    assert provinces == PROVINCE_CODES
    assert "99" not in PROVINCE_CODES and len(PROVINCE_CODES) == 34


def test_birth_dates_older_than_120_years_are_refused_from_the_day_after():
    oldest = make_ric("11010119020915001")        # 120 years old today
    assert read_id_document("mainland_id", oldest, today=TODAY).birth_date == date(1902, 9, 15)
    with pytest.raises(ValidationFailed):
        read_id_document("mainland_id", make_ric("11010119020914001"), today=TODAY)
    born_today = make_ric("11010120220915001")
    assert read_id_document("mainland_id", born_today, today=TODAY).birth_date == TODAY
    with pytest.raises(ValidationFailed):
        read_id_document("mainland_id", make_ric("11010120220916001"), today=TODAY)


def test_full_width_digits_letters_and_spaces_are_read_as_typed():
    typed = "３１０１１３　１９８６０６０６　００３ｘ"          # IME full-width, lower-case x
    assert read_id_document("mainland_id", typed, today=TODAY).number == "31011319860606003X"
    permit = "８２００００１９９２０２０２００２０"
    assert read_id_document("hmt_residence_permit", permit,
                            today=TODAY).number == "820000199202020020"
    assert read_id_document("passport", "ｅ１２３４５６７８").number == "E12345678"


# ---------------------------------------------------------------- through the person form --

def test_a_district_python_stdnum_does_not_know_is_saved_not_a_500(login, world):
    client = login(UNIT_A)
    response = client.post("/unit/persons/add", data=person_form())
    assert response.status_code == 302
    [person] = persons_named("证件测试")
    assert person.id_number == "330113199001010011" and person.gender is m.Gender.male


def test_a_pudong_number_of_someone_born_before_1992_is_accepted(login, world):
    response = login(UNIT_A).post("/unit/persons/add", data=person_form(
        id_number="310115198001010016"))
    assert response.status_code == 302
    assert [p.id_number for p in persons_named("证件测试")] == ["310115198001010016"]


@pytest.mark.parametrize("id_type,number", [
    ("mainland_id", make_ric("33011320300101003")),
    ("mainland_id", make_ric("11010118000101001")),
    ("hmt_residence_permit", make_ric("83000020300101001")),
    ("foreign_permanent_id", make_ric("93182618000101001")),
])
def test_future_and_impossible_birth_dates_are_refused_on_the_form(login, world, id_type,
                                                                   number):
    response = login(UNIT_A).post("/unit/persons/add", data=person_form(
        id_type=id_type, id_number=number, gender=""))
    assert response.status_code == 400
    assert "出生日期" in text_of(response)
    assert persons_named("证件测试") == []


def test_hmt_residence_permit_is_a_document_type_of_its_own(login, world):
    client = login(UNIT_A)
    form = text_of(client.get("/unit/persons/add"))
    assert "港澳台居民居住证" in form
    wrong = client.post("/unit/persons/add", data=person_form(
        id_type="hmt_residence_permit", id_number="310115198001010016"))
    assert wrong.status_code == 400 and "810000" in text_of(wrong)
    typed_as_mainland = client.post("/unit/persons/add", data=person_form(
        id_number="810000198808080013"))
    assert typed_as_mainland.status_code == 400
    assert "请选择证件类型“港澳台居民居住证”" in text_of(typed_as_mainland)
    response = client.post("/unit/persons/add", data=person_form(
        id_type="hmt_residence_permit", id_number="８３００００１９７５０５０５００３５",
        nationality="tw"))
    assert response.status_code == 302
    [person] = persons_named("证件测试")
    assert person.id_type is m.IdType.hmt_residence_permit
    assert person.id_number == "830000197505050035"
    registration = db.session.scalars(sa.select(m.PersonRegistration)
                                      .where(m.PersonRegistration.person_id == person.id)).one()
    # The per-edition document key: the keyed hash of type and number (app.pii).
    assert registration.id_key == id_key(m.IdType.hmt_residence_permit, "830000197505050035")
    assert registration.id_key != id_key(m.IdType.mainland_id, "830000197505050035")
    assert "港澳台居民居住证" in text_of(client.get("/unit/persons/list/"))


def test_full_width_id_and_mobile_are_normalised_on_the_form(login, world):
    response = login(UNIT_A).post("/unit/persons/add", data=person_form(
        id_number="３３０１１４　２００１０７１５００２２", gender="female",
        mobile="１３８　１２３４　５６７８"))
    assert response.status_code == 302
    [person] = persons_named("证件测试")
    assert person.id_number == "330114200107150022" and person.mobile == "+8613812345678"


def test_the_gender_must_agree_with_the_id_number(login, world):
    client = login(UNIT_A)
    response = client.post("/unit/persons/add", data=person_form(gender="female"))
    assert response.status_code == 400
    page = text_of(response)
    assert "性别：该证件号码对应的性别为“男”" in page
    assert 'value="330113199001010011"' in response.data.decode()     # typed values kept
    assert persons_named("证件测试") == []
    # Left empty, the gender is read from the number (odd 17th digit: a man).
    assert client.post("/unit/persons/add", data=person_form(gender="")).status_code == 302
    assert [p.gender for p in persons_named("证件测试")] == [m.Gender.male]


def test_a_passport_needs_the_gender_typed(login, world):
    response = login(UNIT_A).post("/unit/persons/add", data=person_form(
        id_type="passport", id_number="E99887766", nationality="GB", gender=""))
    assert response.status_code == 400 and "性别：请选择性别" in text_of(response)
    assert persons_named("证件测试") == []


def test_a_draft_edited_with_the_wrong_gender_is_left_unchanged(login, world):
    liu = world.person("刘洋")
    response = login(UNIT_A).post(f"/unit/persons/edit/{liu.id}", data=person_form(
        name="刘洋改", gender="female", id_number=liu.person.id_number))
    assert response.status_code == 400 and "性别" in text_of(response)
    db.session.expire_all()
    assert liu.person.name == "刘洋" and liu.person.gender is m.Gender.male


# ------------------------------------------------------------------------ the app API ----

def test_the_app_reads_a_new_district_and_refuses_a_wrong_gender(login, world):
    client = login(None)
    headers = app_user(client)
    wrong = client.http.post("/api/v1/app/join", headers=headers, json=join_body(
        id_number="330114200107150022"))               # a woman's number, gender male
    assert wrong.status_code == 422 and wrong.json["message"].startswith("性别")
    future = client.http.post("/api/v1/app/join", headers=headers, json=join_body(
        id_number=make_ric("33011420300101001")))
    assert future.status_code == 422 and "出生日期" in future.json["message"]
    assert persons_named("李明") == []
    joined = client.http.post("/api/v1/app/join", headers=headers, json=join_body(
        id_number="３３０１１３１９９００１０１００１１"))
    assert joined.status_code == 201, joined.json
    assert joined.json["id_number"] == "330113199001010011"


# ---------------------------------------------------------------- photo before submission --

def test_a_person_is_submitted_only_with_a_photo(login, world):
    client = login(UNIT_A)
    client.post("/unit/persons/add", data=person_form())       # a draft without a photo
    [person] = persons_named("证件测试")
    draft = db.session.scalars(sa.select(m.PersonRegistration)
                               .where(m.PersonRegistration.person_id == person.id)).one()
    liu = world.person("刘洋")                                   # a draft with a photo
    response = client.action("/unit/persons", "submit_persons", [draft.id, liu.id])
    page = text_of(client.get(response.headers["Location"]))
    assert "证件测试: 请先上传该人员的照片" in page and "已完成 1 条" in page
    db.session.expire_all()
    assert draft.status is PS.draft and liu.status is PS.submitted
    # With the photo, it goes.
    client.post(f"/unit/persons/edit/{draft.id}", data={
        **person_form(), "photo": (io.BytesIO(png()), "me.png")},
        content_type="multipart/form-data")
    client.action("/unit/persons", "submit_persons", [draft.id])
    db.session.expire_all()
    assert draft.status is PS.submitted


def test_the_unit_submission_with_drafts_reports_the_person_without_photo(login, world):
    client = login(UNIT_E)
    zone = db.session.scalars(sa.select(m.Zone)).first()
    client.post("/unit/info/", data={**info_form(), "zones": [str(zone.id)]})
    client.post("/unit/documents/add", data={"file": (io.BytesIO(PDF), "licence.pdf")},
                content_type="multipart/form-data")
    client.post("/unit/persons/add", data=person_form(id_number="330114200107150022",
                                                      gender="female"))
    response = client.post("/unit/preview/submit", data={"with_draft_persons": "1"})
    page = text_of(client.get(response.headers["Location"]))
    assert "证件测试: 请先上传该人员的照片" in page
    db.session.expire_all()
    assert world.person("证件测试").status is PS.draft
    assert world.registration("杭州进出口").status is m.UnitStatus.submitted   # 郑浩 went before


def test_a_join_is_accepted_only_once_the_app_sent_a_photo(login, world):
    client = login(None)
    headers = app_user(client)
    record = client.http.post("/api/v1/app/join", json=join_body(), headers=headers).json
    unit = login(UNIT_A)
    response = unit.action("/unit/persons", "accept_joins", [record["id"]])
    assert "请先上传该人员的照片" in text_of(unit.get(response.headers["Location"]))
    assert client.get("/api/v1/app/me", headers=headers).json["status"] == "awaiting_unit"
    bad = client.http.put("/api/v1/app/me/photo", headers=headers,
                          data={"photo": (io.BytesIO(b"%PDF-1.4"), "me.jpg")},
                          content_type="multipart/form-data")
    assert bad.status_code == 422
    sent = client.http.put("/api/v1/app/me/photo", headers=headers,
                           data={"photo": (io.BytesIO(portrait()), "me.jpg")},
                           content_type="multipart/form-data")
    assert sent.status_code == 200
    # Another unit cannot accept it; its own unit now can.
    login(UNIT_B).action("/unit/persons", "accept_joins", [record["id"]])
    assert client.get("/api/v1/app/me", headers=headers).json["status"] == "awaiting_unit"
    unit.action("/unit/persons", "accept_joins", [record["id"]])
    assert client.get("/api/v1/app/me", headers=headers).json["status"] == "submitted"
    # Accepted, the app can no longer change the photo.
    late = client.http.put("/api/v1/app/me/photo", headers=headers,
                           data={"photo": (io.BytesIO(portrait()), "me.jpg")},
                           content_type="multipart/form-data")
    assert late.status_code == 409
