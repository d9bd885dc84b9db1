"""In Chromium, the person form as a unit fills it: an ID number typed with a Chinese input
method's full-width characters, the residence permit for Hong Kong, Macau and Taiwan residents,
and a gender that disagrees with the ID number (the error at the field, the typed values kept)."""
from __future__ import annotations

import sqlalchemy as sa

from app import models as m
from app.demo import DEMO_PASSWORD
from app.extensions import db
from tests.conftest import UNIT_A
from tests.test_browser_journeys import log_in, shot
from tests.test_unit_journey import png


def saved(name: str) -> m.Person | None:
    db.session.expire_all()
    return db.session.scalars(sa.select(m.Person).where(m.Person.name == name)).one_or_none()


def test_person_form_full_width_permit_and_gender_mismatch(page, tmp_path):
    log_in(page, UNIT_A, DEMO_PASSWORD)
    photo = tmp_path / "photo.png"
    photo.write_bytes(png())

    # A full-width ID number and mobile, as a Chinese input method types them.
    page.goto("/unit/persons/add")
    page.fill("#name", "全角录入")
    page.select_option("#id_type", "mainland_id")
    page.fill("#id_number", "３３０１１４　２００１０７１５００２２")
    page.fill("#mobile", "１３８１２３４５６７８")
    page.check("input[name=entry_dates][value='2022-11-05']")
    page.set_input_files("#photo", str(photo))
    page.click("button[type=submit]")            # gender left empty: read from the number
    page.wait_for_selector(".alert-success")
    person = saved("全角录入")
    assert person.id_number == "330114200107150022" and person.gender is m.Gender.female
    assert person.mobile == "+8613812345678"

    # A Taiwan resident's residence permit.
    page.goto("/unit/persons/add")
    page.fill("#name", "居住证人员")
    page.select_option("#id_type", "hmt_residence_permit")
    assert "港澳台居民居住证" in page.inner_text("#id_type")
    page.select_option("#gender", "male")
    page.fill("#id_number", "830000197505050035")
    page.fill("#nationality", "TW")
    page.check("input[name=entry_dates][value='2022-11-06']")
    page.click("button[type=submit]")
    page.wait_for_selector(".alert-success")
    permit = saved("居住证人员")
    assert permit.id_type is m.IdType.hmt_residence_permit

    # The gender typed disagrees with the number: the error shows, nothing typed is lost.
    page.goto("/unit/persons/add")
    page.fill("#name", "性别不符")
    page.select_option("#gender", "male")
    page.fill("#id_number", "310114197009090048")          # an even 17th digit: a woman
    page.fill("#job_title", "采购经理")
    page.check("input[name=entry_dates][value='2022-11-07']")
    page.click("button[type=submit]")
    page.wait_for_selector(".alert-danger")
    shot(page, "person-form-gender-mismatch")
    assert "性别：该证件号码对应的性别为“女”" in page.inner_text("body")
    assert page.input_value("#name") == "性别不符"
    assert page.input_value("#id_number") == "310114197009090048"
    assert page.input_value("#job_title") == "采购经理"
    assert page.input_value("#gender") == "male"
    assert page.is_checked("input[name=entry_dates][value='2022-11-07']")
    assert saved("性别不符") is None
    # Corrected, it saves.
    page.select_option("#gender", "female")
    page.click("button[type=submit]")
    page.wait_for_selector(".alert-success")
    assert saved("性别不符").gender is m.Gender.female
