"""Badge photos are checked when they are uploaded (issue 17): one frontal face, large enough, in
good light, on a plain light background. Each picture of the test set (tests/data/photos/,
sources in SOURCES.md) gets its expected verdict; a refused photo is answered 400 (the form)
or 422 (the app) naming the photo and each reason in the user's language, and nothing is
stored; a warning is stored and told at once; reviewers read the stored verdict beside the
photo, without a second detection; no other unit sees it."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from app import models as m
from app.demo import DEMO_PASSWORD
from app.documents import photo_check
from app.documents.photo_check import PhotoLimits, check_photo, upright
from app.extensions import db
from config import TestConfig
from tests.conftest import UNIT_A, UNIT_B, text_of
from tests.photos import PHOTOS, expected_verdicts, face_photo, photo_bytes
from tests.test_app_api import app_user, join_body
from tests.test_browser_journeys import log_in, shot
from tests.test_review import awaiting

PS = m.PersonStatus
LIMITS = PhotoLimits.from_config(
    {name: getattr(TestConfig, name) for name in dir(TestConfig) if name.startswith("PHOTO_")})


def limits(**changes) -> PhotoLimits:
    return PhotoLimits(**{**LIMITS.__dict__, **changes})


# ------------------------------------------------------------------- the test set --------

@pytest.mark.parametrize("name, expected", sorted(expected_verdicts().items()))
def test_each_picture_of_the_test_set_gets_its_verdict(name, expected):
    image, _turned = upright(photo_bytes(name))
    check = check_photo(image, LIMITS)
    assert check.verdict.value == expected["verdict"]
    assert [p.value for p in check.problems] == expected["problems"]
    assert check.faces == expected["faces"]


def test_every_picture_in_the_folder_has_an_expected_verdict_and_a_source():
    pictures = {n for n in os.listdir(PHOTOS) if n.endswith((".jpg", ".png"))}
    assert pictures == set(expected_verdicts())
    with open(os.path.join(PHOTOS, "SOURCES.md"), encoding="utf-8") as fh:
        sources = fh.read()
    assert all(f"`{name}`" in sources for name in pictures)


def test_the_figures_are_measured_on_the_upright_picture():
    straight = check_photo(upright(photo_bytes("portrait.jpg"))[0], LIMITS)
    turned, was_turned = upright(photo_bytes("portrait_exif_rotated.jpg"))
    assert was_turned and not upright(photo_bytes("portrait.jpg"))[1]
    assert (turned.width, turned.height) == (straight.width, straight.height) == (315, 420)
    figures = straight.figures()
    assert figures["faces"] == 1 and 0.3 < figures["face_ratio"] < 0.45
    assert figures["background_luminance"] > 180 and figures["background_spread"] < 25
    assert figures["problems"] == []


def test_the_thresholds_are_those_of_the_config():
    portrait = upright(photo_bytes("portrait.jpg"))[0]
    # Asking for a face half the photo's height refuses the portrait as too small a face.
    assert check_photo(portrait, limits(min_face_ratio=0.5)).problems == [
        m.PhotoProblem.face_too_small]
    # A brightness floor above the portrait's refuses it as too dark, before any detection.
    dark = check_photo(portrait, limits(min_luminance=140))
    assert dark.problems == [m.PhotoProblem.too_dark] and dark.faces is None
    assert check_photo(portrait, limits(min_width=400)).problems == [
        m.PhotoProblem.image_too_small]
    # Any background accepted: the flag behind Grace Hopper is no longer a warning.
    hopper = upright(photo_bytes("hopper.jpg"))[0]
    assert check_photo(hopper, limits(background_min_luminance=0,
                                      background_max_spread=255)).verdict is m.PhotoVerdict.passed


class Detections:
    """A cascade that finds the boxes it is given (pixels of the picture it is shown)."""

    def __init__(self, boxes):
        self.boxes = boxes

    def detectMultiScale(self, image, **kwargs):  # noqa: N802 (OpenCV's name)
        return self.boxes


@pytest.mark.parametrize("boxes, faces", [
    # One face found three times over (nested and shifted boxes): one face.
    ([(10, 10, 100, 100), (20, 20, 90, 90), (15, 5, 95, 100)], 1),
    # A small pattern in the clothes beside the face is not a second person.
    ([(10, 10, 100, 100), (200, 300, 30, 30)], 1),
    # Two faces of comparable size side by side: two.
    ([(10, 10, 100, 100), (150, 12, 90, 90)], 2),
])
def test_overlapping_or_much_smaller_detections_are_not_more_faces(monkeypatch, boxes, faces):
    monkeypatch.setattr(photo_check, "_cascade", lambda: Detections(boxes))
    gray = np.asarray(upright(photo_bytes("portrait.jpg"))[0].convert("L"))
    found = photo_check.detect_faces(gray)
    assert len(found) == faces and found[0] == (10, 10, 100, 100)


# ------------------------------------------------------------- the unit's person form ----

def person_form(registration: m.PersonRegistration, photo: bytes, filename: str) -> dict:
    person = registration.person
    return {"name": person.name, "gender": person.gender.value, "id_type": person.id_type.value,
            "id_number": person.id_number, "nationality": "CN", "entry_dates": ["2022-11-05"],
            "photo": (io.BytesIO(photo), filename)}


def upload_folder_files(app) -> set[str]:
    return set(os.listdir(app.config["UPLOAD_FOLDER"]))


def audit_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent))


@pytest.mark.parametrize("lang, picture, reason", [
    ("zh", "two_faces.jpg", ["照片：检测到 2 张人脸：照片中只能有本人。"]),
    ("zh", "portrait_dark.jpg", ["照片：照片过暗（亮度 ", "/255，至少 60）：请在光线充足"]),
    ("en", "cat.jpg", ["Photo: No face was found: the photo must show the person's face from "
                       "the front, looking at the camera."]),
    ("en", "portrait_far.jpg", ["Photo: The face is too small (", "% of the photo's height, "
                                "at least 20%): crop the photo closer to the head"]),
    ("en", "tiny.jpg", ["Photo: The picture is too small (75 × 100 pixels): at least 100 × "
                        "120 pixels."]),
])
def test_a_refused_photo_is_a_400_naming_the_field_and_the_reason(app, login, world, lang,
                                                                  picture, reason):
    liu = world.person("刘洋")   # unit A, a draft
    before = (liu.person.photo_key, liu.person.thumb_key, liu.person.photo_verdict)
    client = login(UNIT_A)
    client.set_language(lang)
    files, audits = upload_folder_files(app), audit_count()   # the login is audited
    response = client.post(f"/unit/persons/edit/{liu.id}",
                           data=person_form(liu, photo_bytes(picture), picture),
                           content_type="multipart/form-data")
    assert response.status_code == 400
    # In the banner and at the photo field.
    for text in (text_of(response), text_of_field(response, "photo")):
        assert all(fragment in text for fragment in reason), text
    db.session.expire_all()
    assert (liu.person.photo_key, liu.person.thumb_key, liu.person.photo_verdict) == before
    assert upload_folder_files(app) == files and audit_count() == audits


def huge_png(width: int, height: int) -> bytes:
    """A picture of many pixels in a small file (one bit a pixel, all alike)."""
    buffer = io.BytesIO()
    Image.new("1", (width, height), 1).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_huge_picture_in_a_small_file_is_refused_before_its_pixels_are_read(app, login,
                                                                             world):
    liu = world.person("刘洋")
    client = login(UNIT_A)
    client.set_language("en")
    large = huge_png(6000, 5000)
    assert len(large) < app.config["MAX_PHOTO_BYTES"]
    response = client.post(f"/unit/persons/edit/{liu.id}",
                           data=person_form(liu, large, "large.png"),
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert ("Photo: The picture is too large (6000 × 5000 pixels): at most 25 megapixels; "
            "save it smaller.") in text_of(response)
    # Past Pillow's decompression-bomb limit the file is not even opened as an image.
    bomb = client.post(f"/unit/persons/edit/{liu.id}",
                       data=person_form(liu, huge_png(15000, 13000), "bomb.png"),
                       content_type="multipart/form-data")
    assert bomb.status_code == 400
    assert "Photo: The image is damaged or not an image." in text_of(bomb)
    db.session.expire_all()
    assert liu.person.photo_verdict is None


def text_of_field(response, field: str) -> str:
    """The text after the field's input up to the next form group (its error and help)."""
    html = response.data.decode()
    start = html.index(f'id="{field}"')
    end = html.find('class="form-group', start)
    return text_of(type("R", (), {"data": html[start:end if end > 0 else None].encode()}))


def test_a_photo_with_a_doubtful_background_is_stored_with_a_warning_told_at_once(
        app, login, world):
    liu = world.person("刘洋")
    client = login(UNIT_A)
    response = client.post(f"/unit/persons/edit/{liu.id}",
                           data=person_form(liu, photo_bytes("hopper.jpg"), "hopper.jpg"),
                           content_type="multipart/form-data")
    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"]))
    assert "已保存。" in page
    assert "照片：背景不是浅色纯色，人员信息审核可能不予通过" in page
    db.session.expire_all()
    person = liu.person
    assert person.photo_verdict is m.PhotoVerdict.warning
    assert person.photo_check["problems"] == ["background"]
    assert person.photo_check["faces"] == 1 and person.photo_check["face_ratio"] > 0.3
    assert os.path.isfile(os.path.join(app.config["UPLOAD_FOLDER"], person.photo_key))
    # The unit's own person page shows the stored check.
    shown = text_of(client.get(f"/unit/persons/show/{liu.id}"))
    assert "照片检查：有提醒" in shown and "背景不是浅色纯色" in shown and "人脸：1" in shown


def test_a_good_photo_passes_and_a_phones_turned_picture_is_stored_upright(app, login, world):
    liu = world.person("刘洋")
    client = login(UNIT_A)
    client.set_language("en")
    response = client.post(f"/unit/persons/edit/{liu.id}", data=person_form(
        liu, photo_bytes("portrait_exif_rotated.jpg"), "phone.jpg"),
        content_type="multipart/form-data")
    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"]))
    assert "Saved." in page and "Photo:" not in page
    db.session.expire_all()
    assert liu.person.photo_verdict is m.PhotoVerdict.passed
    stored, turned = upright(client.get(f"/files/person/{liu.person_id}/photo").data)
    assert not turned and (stored.width, stored.height) == (315, 420)
    assert "Photo check passed" in text_of(client.get(f"/unit/persons/show/{liu.id}"))


def test_another_unit_sees_neither_the_photo_nor_its_check(login, world):
    liu = world.person("刘洋")
    login(UNIT_A).post(f"/unit/persons/edit/{liu.id}",
                       data=person_form(liu, photo_bytes("hopper.jpg"), "hopper.jpg"),
                       content_type="multipart/form-data")
    other = login(UNIT_B)
    assert other.get(f"/unit/persons/show/{liu.id}").status_code == 404
    assert other.get(f"/files/person/{liu.person_id}/photo").status_code == 404
    listed = text_of(other.get("/unit/persons/list/"))
    assert "刘洋" not in listed and "照片检查" not in listed
    # Nor can it reach the reviewers' queue, where the verdict is shown.
    assert other.get(f"/review/queue/show/{liu.id}").status_code == 403
    # Nor change the photo of unit A's person.
    response = other.post(f"/unit/persons/edit/{liu.id}",
                          data=person_form(liu, face_photo("JPEG"), "me.jpg"),
                          content_type="multipart/form-data")
    assert response.status_code == 404
    db.session.expire_all()
    assert liu.person.photo_verdict is m.PhotoVerdict.warning


# ----------------------------------------------------------------------- the reviewer ----

def test_the_reviewer_sees_the_stored_verdict_beside_the_photo_without_a_new_detection(
        login, world, monkeypatch):
    unit = login(UNIT_A)
    liu, li = world.person("刘洋"), world.person("李娜")
    unit.post(f"/unit/persons/edit/{liu.id}",
              data=person_form(liu, photo_bytes("hopper.jpg"), "hopper.jpg"),
              content_type="multipart/form-data")
    awaiting(world, "刘洋", "王伟")
    wang = world.person("王伟")
    # 王伟's photo passed its check.
    wang.person.photo_verdict = m.PhotoVerdict.passed
    wang.person.photo_check = check_photo(upright(photo_bytes("portrait.jpg"))[0],
                                          LIMITS).figures()
    db.session.commit()

    def no_detection(*args, **kwargs):
        raise AssertionError("the reviewer's pages must not detect faces again")

    monkeypatch.setattr(photo_check, "detect_faces", no_detection)
    reviewer = login("reviewer")
    listed = reviewer.get("/review/queue/list/")
    assert listed.status_code == 200
    html = listed.data.decode()
    assert html.count("ciie-photo-check") >= 2
    assert 'data-verdict="warning"' in html and 'data-verdict="passed"' in html
    page = text_of(listed)
    assert "照片检查：有提醒" in page and "背景不是浅色纯色" in page and "照片检查通过" in page
    shown = text_of(reviewer.get(f"/review/queue/show/{liu.id}"))
    assert "照片检查：有提醒" in shown and "人脸：1" in shown and "亮度 77/255" in shown
    reviewer.set_language("en")
    assert "Background not plain and light" in text_of(reviewer.get("/review/queue/list/"))
    # A person not awaiting review stays out of the reviewer's reach, check included.
    assert li.status is not PS.awaiting_review
    assert reviewer.get(f"/review/queue/show/{li.id}").status_code == 404


def test_a_photo_stored_before_the_check_reads_not_checked(login, world):
    awaiting(world, "王伟")
    wang = world.person("王伟")
    assert wang.person.thumb_key and wang.person.photo_verdict is None   # the demo's photo
    shown = text_of(login("reviewer").get(f"/review/queue/show/{wang.id}"))
    assert "未检查" in shown


# ------------------------------------------------------------------------------ the app ----

def test_the_app_upload_is_checked_the_same_way(login, world):
    client = login(None)
    headers = app_user(client)
    client.http.post("/api/v1/app/join", json=join_body(), headers=headers)

    def send(picture: str, language: str):
        return client.http.put("/api/v1/app/me/photo",
                               headers={**headers, "Accept-Language": language},
                               data={"photo": (io.BytesIO(photo_bytes(picture)), picture)},
                               content_type="multipart/form-data")

    refused = send("two_faces.jpg", "zh-CN")
    assert refused.status_code == 422
    assert refused.json == {"message": "照片：检测到 2 张人脸：照片中只能有本人。"}
    refused = send("coffee.jpg", "en-US")
    assert refused.status_code == 422
    assert refused.json["message"].startswith("Photo: No face was found")
    person = db.session.scalars(sa.select(m.Person).where(m.Person.name == "李明")).one()
    assert person.photo_key is None
    warned = send("hopper.jpg", "en-US")
    assert warned.status_code == 200
    assert warned.json["photo_warnings"] == [
        "The background is not plain and light, and the security review may refuse the "
        "photo: a plain white or light grey background is best."]
    passed = send("portrait.jpg", "en-US")
    assert passed.status_code == 200 and passed.json["photo_warnings"] == []
    db.session.expire_all()
    assert person.photo_verdict is m.PhotoVerdict.passed


# --------------------------------------------------------------------------- Chromium ----

def test_the_person_form_tells_what_is_wrong_with_the_photo_in_chromium(page, world,
                                                                        tmp_path):
    liu = world.person("刘洋")
    log_in(page, UNIT_A, DEMO_PASSWORD)
    page.goto(f"/unit/persons/edit/{liu.id}")
    assert "保存时自动检查" in page.inner_text("body")
    two = tmp_path / "two.jpg"
    two.write_bytes(photo_bytes("two_faces.jpg"))
    page.check("input[name=entry_dates][value='2022-11-06']")
    page.set_input_files("#photo", str(two))
    page.click("button[type=submit]")
    page.wait_for_selector(".alert-danger")
    shot(page, "photo-check-01-two-faces-refused")
    assert "照片：检测到 2 张人脸：照片中只能有本人。" in page.inner_text(".alert-danger")
    # What was typed is kept; the photo is chosen again.
    assert page.is_checked("input[name=entry_dates][value='2022-11-06']")
    db.session.expire_all()
    assert liu.person.photo_verdict is None
    hopper = tmp_path / "hopper.jpg"
    hopper.write_bytes(photo_bytes("hopper.jpg"))
    page.set_input_files("#photo", str(hopper))
    page.click("button[type=submit]")
    page.wait_for_selector(".alert-success")
    shot(page, "photo-check-02-background-warning")
    warning = page.locator(".alert-warning", has_text="照片：")
    assert "背景不是浅色纯色，人员信息审核可能不予通过" in warning.inner_text()
    db.session.expire_all()
    assert liu.person.photo_verdict is m.PhotoVerdict.warning
    assert liu.entry_dates[-1].isoformat() == "2022-11-06"
