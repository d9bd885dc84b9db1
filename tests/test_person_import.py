"""Persons from a spreadsheet (issue 16), through the unit's pages: the template in zh and en,
a hand-written GBK CSV (tests/data/person_import-SOURCES.md) and openpyxl workbooks with a
hidden sheet, a merged title and merged cells, a formula and trailing empty rows; the preview
counts and explains and changes nothing; the confirmation adds drafts (or submits them),
audited, set-based, and hands back the refused rows; the same file twice creates nothing; other
units' data is untouched; the unit's state, the deadline and the limits refuse with a 4xx."""
from __future__ import annotations

import io
import os
import re
import zipfile
from datetime import datetime

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from app import clock, create_app
from app import models as m
from app.extensions import db
from app.search_keys import id_number_key
from tests.conftest import UNIT_A, UNIT_B, Client, base_config, run_worker, text_of

IMPORT = "/unit/persons/import"
DATA = os.path.join(os.path.dirname(__file__), "data")
PS = m.PersonStatus


def gbk_csv() -> bytes:
    with open(os.path.join(DATA, "person_import_gbk.csv"), "rb") as fh:
        return fh.read()


def workbook(rows: list[list], *, hidden_first: bool = False, title: str | None = None,
             merges: tuple[str, ...] = (), trailing_styled_rows: int = 0) -> bytes:
    """A workbook as openpyxl writes it: optionally a hidden first sheet, a merged title row
    above the header, merged ranges and styled empty rows after the data."""
    book = Workbook()
    sheet = book.active
    if hidden_first:
        sheet.title = "hidden"
        sheet.append(["姓名", "证件号码"])
        sheet.append(["隐藏的人", "110102199101010078"])
        sheet.sheet_state = "hidden"
        sheet = book.create_sheet("persons")
    if title:
        sheet.append([title])
        sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(rows[0]))
    for row in rows:
        sheet.append(row)
    for ref in merges:
        sheet.merge_cells(ref)
    for _extra in range(trailing_styled_rows):
        sheet.cell(row=sheet.max_row + 1, column=1).style = "Normal"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def unit_client(login, username: str = UNIT_A, language: str = "zh") -> Client:
    client = login(username)
    client.set_language(language)
    return client


def preview(client: Client, data: bytes, name: str):
    return client.post(f"{IMPORT}/preview", data={"person_sheet": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def confirm(client: Client, page, submit: bool = False):
    pending = re.search(r'name="pending" value="([^"]+)"', page.data.decode()).group(1)
    data = {"pending": pending, **({"submit": "y"} if submit else {})}
    response = client.post(f"{IMPORT}/confirm", data=data)
    assert response.status_code == 302, response.data[:500]
    return response.headers["Location"]


def counts(page) -> dict[str, int]:
    html = page.data.decode()
    return {action: int(n) for action, n in re.findall(
        r'data-action="(\w+)"><span[^>]*>[^<]*</span> <strong>(\d+)</strong>', html)}


def registrations(unit_name: str) -> dict[str, m.PersonRegistration]:
    db.session.expire_all()
    rows = db.session.scalars(
        sa.select(m.PersonRegistration).join(m.Person).join(m.Unit, m.Unit.id == m.Person.unit_id)
        .join(m.Edition).where(m.Unit.name.contains(unit_name), m.Edition.is_current)).all()
    return {r.person.id_number: r for r in rows}


def test_the_template_in_chinese_and_english(login, world):
    client = unit_client(login)
    page = client.get(f"{IMPORT}/")
    assert page.status_code == 200
    assert "下载" in text_of(page) or "模板" in text_of(page)
    for language, header, allowed in (("zh", "姓名 *", "允许的值"),
                                      ("en", "Name *", "Allowed values")):
        response = client.get(f"{IMPORT}/template.xlsx?lang={language}")
        assert response.status_code == 200
        book = load_workbook(io.BytesIO(response.data))
        persons, values = book.worksheets
        assert persons.cell(1, 1).value == header and values.title == allowed
        headers = [c.value for c in persons[1]]
        assert len(headers) == 9 and "Tag" not in headers
        kinds = {v.type for v in persons.data_validations.dataValidation}
        assert {"list", "textLength"} <= kinds
        lists = [v.formula1 for v in persons.data_validations.dataValidation
                 if v.type == "list"]
        assert all(allowed in f for f in lists)
        # The example row under the allowed values reads back as a valid person.
        texts = [[c.value for c in row] for row in values.iter_rows()]
        assert any("360426199101010071" in [str(v) for v in row] for row in texts)
    zh = load_workbook(io.BytesIO(client.get(f"{IMPORT}/template.xlsx?lang=zh").data))
    assert "男" in [c.value for c in zh.worksheets[1]["G"]]


def test_gbk_csv_preview_explains_then_confirm_adds_audited_drafts(login, world):
    client = unit_client(login)
    before = set(registrations("浦东医疗器械"))
    page = preview(client, gbk_csv(), "人员名单.csv")
    assert page.status_code == 200
    assert counts(page) == {"add": 4, "update": 0, "unchanged": 0, "refused": 1}
    refused = re.findall(r'<tr class="danger import-refused-row" data-row="(\d+)" '
                         r'data-column="(\w+)">', page.data.decode())
    assert refused == [("5", "id_number")]
    assert "校验位" in text_of(page)           # the form's own message, in Chinese
    assert set(registrations("浦东医疗器械")) == before      # the preview changed nothing

    task_url = confirm(client, page)
    report = client.get(task_url)
    text = text_of(report)
    assert "已完成 4 条记录" in text and "第 5 行" in text
    after = registrations("浦东医疗器械")
    new = {k: v for k, v in after.items() if k not in before}
    assert set(new) == {"360426199101010071", "310112197503030021", "412723199010050012",
                        "E87654321"}
    unit_registration = world.registration("浦东医疗器械")
    edition = unit_registration.edition
    for registration in new.values():
        assert registration.status is PS.draft
        assert (registration.delegation_id, registration.sub_delegation_id) == (
            unit_registration.delegation_id, unit_registration.sub_delegation_id)
        assert registration.person.id_search_key == id_number_key(registration.person.id_number)
        assert registration.person.name_search
    wang = new["360426199101010071"]
    assert (wang.person.name, wang.person.gender, wang.person.mobile) == (
        "王建国", m.Gender.male, "+8613800138000")
    assert [d.isoformat() for d in edition.mask_to_days(wang.entry_days)] == [
        "2022-11-05", "2022-11-06"]
    assert edition.mask_to_days(new["310112197503030021"].entry_days) == edition.days
    assert new["412723199010050012"].person.nationality == "CN"
    assert new["E87654321"].person.mobile == "+447400123456"
    audits = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "person_registration", m.AuditEvent.action == "create",
        m.AuditEvent.record_id.in_([r.id for r in new.values()]))).all()
    record = db.session.scalars(sa.select(m.PersonImport)).one()
    assert len(audits) == 4 and {a.detail["import"] for a in audits} == {record.id}
    assert all(a.actor_name and a.to_state == "draft" for a in audits)
    assert (record.added, record.refused, record.rows_read, record.file_name) == (
        4, 1, 5, "人员名单.csv")
    # The refused row comes back as a workbook: the row as read, the reason last.
    download = client.get(task_url + "/file")
    assert download.status_code == 200
    sheet = load_workbook(io.BytesIO(download.data)).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][0] == "姓名" and len(rows) == 2
    assert rows[1][3] == "36042619910102009X" and "校验位" in rows[1][-1]
    # … and, uploaded again as it is, is read with the same header (the reason ignored).
    again = preview(client, download.data, "refused.xlsx")
    assert counts(again)["refused"] == 1


def test_the_same_file_twice_creates_nothing(login, world):
    client = unit_client(login)
    confirm(client, preview(client, gbk_csv(), "a.csv"))
    made = registrations("浦东医疗器械")
    audits = db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent))
    page = preview(client, gbk_csv(), "a.csv")
    assert counts(page) == {"add": 0, "update": 0, "unchanged": 4, "refused": 1}
    assert 'id="import-earlier"' in page.data.decode()
    assert 'disabled' in re.search(r'<button[^>]*id="confirm-person-import"[^>]*>',
                                   page.data.decode()).group(0)
    # Even confirmed (a copy of the page, a double click), nothing new is written.
    confirm(client, page)
    assert registrations("浦东医疗器械").keys() == made.keys()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent).where(
        m.AuditEvent.record_type == "person_registration")) == db.session.scalar(
        sa.select(sa.func.count()).select_from(m.AuditEvent).where(
            m.AuditEvent.record_type == "person_registration", m.AuditEvent.id <= audits))
    # A confirmation already used is refused, nothing done.
    response = client.post(f"{IMPORT}/confirm", data={"pending": "whatever"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{IMPORT}/")


def test_openpyxl_workbook_hidden_sheet_merged_cells_formula_trailing_rows(login, world):
    client = unit_client(login, language="en")
    rows = [["Name", "Gender", "ID document", "ID number", "Nationality", "Mobile", "E-mail",
             "Job title", "Entry dates"],
            ["Wang Fang", "", "Mainland ID card", "310114197009090048", "CN", "13912345670",
             "", "Buyer", datetime(2022, 11, 5)],
            ["Liu Yang", "", "Mainland ID card", "31011319860606003X", "", "13912345671", "",
             "", "2022-11-05, 2022-11-06"],
            ["=CONCAT(\"A\",\"B\")", "", "Mainland ID card", "310117198808080069", "",
             "13912345672", "", "", ""],
            ["Sun Li", "Male", "Passport", "=1+1", "", "", "", "", ""]]
    data = workbook(rows, hidden_first=True, title="Delegation list (merged title)",
                    merges=("E3:E4",), trailing_styled_rows=300)
    page = preview(client, data, "list.xlsx")
    assert page.status_code == 200, text_of(page)[:400]
    assert counts(page) == {"add": 2, "update": 0, "unchanged": 0, "refused": 2}
    html = page.data.decode()
    assert 'data-row="5" data-column="name"' in html and "is a formula" in html
    assert 'data-row="6" data-column="id_number"' in html
    assert "隐藏的人" not in html                 # the hidden sheet is not read
    confirm(client, page)
    made = registrations("浦东医疗器械")
    # The merged nationality (E3:E4) is every row's of the range; a date cell is a day.
    assert made["31011319860606003X"].person.nationality == "CN"
    wang = made["310114197009090048"]
    assert wang.entry_dates[0].isoformat() == "2022-11-05"
    assert "=1+1" not in made and "310117198808080069" not in made


def test_a_changed_draft_shows_its_differences_and_a_submitted_person_is_refused(
        login, world):
    client = unit_client(login, language="en")
    confirm(client, preview(client, gbk_csv(), "first.csv"))
    submitted = db.session.scalars(
        sa.select(m.PersonRegistration).join(m.Person).join(m.Unit, m.Unit.id == m.Person.unit_id)
        .where(m.Unit.login == UNIT_A, m.PersonRegistration.status == PS.awaiting_payment)
        ).first()
    assert submitted is not None
    person = submitted.person
    csv = ("Name,ID document,ID number,Mobile,Entry dates,Gender\r\n"
           "王建国,Mainland ID card,360426199101010071,13800138009,2022-11-07,\r\n"
           f"{person.name}-changed,{person.id_type.label},{person.id_number},,,"
           f"{person.gender.label}\r\n").encode("utf-8")
    page = preview(client, csv, "second.csv")
    assert counts(page)["update"] == 1 and counts(page)["refused"] == 1
    html = page.data.decode()
    changes = re.findall(r'data-row="2" data-column="(\w+)">.*?'
                         r'<td class="import-before">([^<]*)</td>'
                         r'<td class="import-after">([^<]*)</td>', html, re.S)
    assert ("mobile", "+8613800138000", "+8613800138009") in changes
    assert ("entry_dates", "2022-11-05, 2022-11-06", "2022-11-07") in changes
    assert "already submitted" in text_of(page)
    confirm(client, page)
    made = registrations("浦东医疗器械")
    assert made["360426199101010071"].person.mobile == "+8613800138009"
    db.session.refresh(person)
    assert not person.name.endswith("-changed")
    update = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_id == made["360426199101010071"].id,
        m.AuditEvent.action == "update")).one()
    assert update.detail["import"]


def test_duplicates_in_the_file_and_persons_of_other_units_are_refused(login, world):
    other = next(iter(registrations("徐汇贸易").values()))
    other_before = (other.person.name, other.person.mobile, other.status)
    csv = ("姓名,证件类型,证件号码\r\n"
           f"甲,{other.person.id_type.label},{other.person.id_number}\r\n"
           "乙,居民身份证,110102199101010078\r\n"
           "丙,居民身份证,110102199101010078\r\n").encode("gbk")
    page = preview(unit_client(login), csv, "dup.csv")
    assert counts(page) == {"add": 0, "update": 0, "unchanged": 0, "refused": 3}
    text = text_of(page)
    assert "已由其他单位报名本届" in text and "第 3, 4 行" in text
    # The other unit is not named.
    assert "徐汇贸易" not in text
    db.session.expire_all()
    again = db.session.get(m.PersonRegistration, other.id)
    assert (again.person.name, again.person.mobile, again.status) == other_before


def test_a_rejected_unit_and_a_passed_deadline_refuse_the_import(login, world):
    registration = world.registration("浦东医疗器械")
    client = unit_client(login, language="en")
    clock.set_now(datetime.fromisoformat("2022-10-08T10:00:00+08:00"))
    page = preview(client, gbk_csv(), "late.csv")
    assert page.status_code == 409 and "deadline" in text_of(page)
    assert 'id="import-refusal"' in client.get(f"{IMPORT}/").data.decode()
    clock.set_now(datetime.fromisoformat("2022-09-15T10:00:00+08:00"))
    db.session.execute(sa.update(m.UnitRegistration).where(
        m.UnitRegistration.id == registration.id).values(status=m.UnitStatus.rejected))
    db.session.commit()
    page = preview(client, gbk_csv(), "rejected.csv")
    assert page.status_code == 409 and "rejected" in text_of(page)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.PersonImport)) == 0


def test_bad_files_and_limits_are_refused_naming_the_field_and_the_limit(login, world, app,
                                                                           monkeypatch):
    client = unit_client(login, language="en")
    for data, name, words in ((b"%PDF-1.4 not a sheet", "x.csv", "not a spreadsheet"),
                              (b"", "x.csv", "empty"),
                              (b"a,b\r\n1,2\r\n", "x.doc", "not accepted"),
                              (b"PK\x03\x04broken", "x.xlsx", "damaged"),
                              (b"a,b\r\n1,2\r\n", "x.csv", "no header row")):
        page = preview(client, data, name)
        assert page.status_code == 400, name
        assert "Spreadsheet of persons" in text_of(page) and words in text_of(page), name
    # An .xls (BIFF) is read by calamine: a bank's statement has no persons' header row.
    with open(os.path.join(DATA, "statements_icbc_next_day.xls"), "rb") as fh:
        page = preview(client, fh.read(), "statement.xls")
    assert page.status_code == 400 and "no header row" in text_of(page)
    monkeypatch.setitem(app.config, "PERSON_IMPORT_MAX_ROWS", 3)
    page = preview(client, gbk_csv(), "long.csv")
    assert page.status_code == 400 and "more than 3 rows" in text_of(page)
    monkeypatch.setitem(app.config, "PERSON_IMPORT_MAX_BYTES", 1024 * 1024)
    big = gbk_csv() + b"\r\n" * (1024 * 1024)
    page = preview(client, big, "big.csv")
    assert page.status_code == 400 and "larger than 1 MB" in text_of(page)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.PersonImport)) == 0


def test_no_one_but_a_unit_reaches_the_import(login, world):
    for username in ("sh-delegation", "finance", "reviewer", "gate"):
        client = login(username)
        for url in (f"{IMPORT}/", f"{IMPORT}/template.xlsx"):
            assert client.get(url).status_code in (302, 403), (username, url)
        response = preview(client, gbk_csv(), "x.csv")
        assert response.status_code in (302, 403), username
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.PersonImport)) == 0
    # A unit's import history is its own.
    confirm(unit_client(login), preview(unit_client(login), gbk_csv(), "mine.csv"))
    assert "mine.csv" not in unit_client(login, UNIT_B).get(f"{IMPORT}/").data.decode()


def test_ticking_submit_submits_the_persons_with_a_photo(login, world):
    client = unit_client(login, language="en")
    confirm(client, preview(client, gbk_csv(), "drafts.csv"))
    wang = registrations("浦东医疗器械")["360426199101010071"]
    wang.person.photo_key, wang.person.thumb_key = "import-test-photo.jpg", "import-test-t.jpg"
    db.session.commit()
    csv = ("Name,ID number,Mobile,Entry dates\r\n"
           "王建国,360426199101010071,13800138007,2022-11-05\r\n"
           "赵磊,412723199010050012,15012345670,2022-11-07\r\n").encode("utf-8")
    task_url = confirm(client, preview(client, csv, "submit.csv"), submit=True)
    text = text_of(client.get(task_url))
    assert "1 submitted." in text and "1 not submitted (kept as drafts)" in text
    assert "photo first" in text
    made = registrations("浦东医疗器械")
    assert made["360426199101010071"].status is PS.submitted
    assert made["412723199010050012"].status is PS.draft
    moves = db.session.scalars(sa.select(m.AuditEvent.action).where(
        m.AuditEvent.record_id == made["360426199101010071"].id)).all()
    assert "submit" in moves


@pytest.fixture
def redis_app(database_url, smtp_server, redis_url):
    return create_app("test", **{**base_config(database_url, smtp_server.port),
                                 "REDIS_URL": redis_url, "BATCH_INLINE_MAX": 2})


def test_a_file_above_the_inline_limit_is_imported_by_a_worker(world, redis_app, worker_env):
    worker_env = {**worker_env, "UPLOAD_FOLDER": redis_app.config["UPLOAD_FOLDER"]}
    client = Client(redis_app, UNIT_A)
    client.set_language("en")
    page = preview(client, gbk_csv(), "worker.csv")
    task_url = confirm(client, page)
    running = client.get(task_url).data.decode()
    assert 'id="task-progress"' in running
    assert run_worker(worker_env).returncode == 0
    text = text_of(client.get(task_url))
    assert "Done for 4 record(s)." in text and "4 added" in text
    assert len(registrations("浦东医疗器械")) >= 4


def test_photos_from_a_zip_named_by_id_number_are_checked_and_stored(login, world):
    """The zip's photos go through the person form's photo check (tests/data/photos): a
    passing one is stored and lets the person be submitted, a refused one leaves the person
    without a photo and the report says why; a file naming no row is listed, unused."""
    from tests.photos import face_photo, photo_bytes

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("照片/360426199101010071.jpg", face_photo("JPEG"))
        zipped.writestr("310112197503030021.JPG", photo_bytes("cat.jpg"))
        zipped.writestr("110102199101010078.jpg", face_photo("JPEG"))
    client = unit_client(login, language="en")
    page = client.post(f"{IMPORT}/preview", data={
        "person_sheet": (io.BytesIO(gbk_csv()), "with-photos.csv"),
        "person_photos": (io.BytesIO(archive.getvalue()), "photos.zip")},
        content_type="multipart/form-data")
    assert page.status_code == 200
    text = text_of(page)
    assert "Photos matched to a row: 2." in text
    assert "110102199101010078.jpg" in page.data.decode().split('id="import-unmatched-photos"')[1]
    task_url = confirm(client, page, submit=True)
    report = text_of(client.get(task_url))
    assert "310112197503030021.JPG was not taken" in report
    made = registrations("浦东医疗器械")
    wang = made["360426199101010071"]
    assert wang.person.photo_key and wang.person.thumb_key
    assert wang.status is PS.submitted
    assert made["310112197503030021"].person.photo_key is None
    assert made["310112197503030021"].status is PS.draft
    assert client.get(f"/files/person/{wang.person_id}/thumb").status_code == 200


def test_a_file_that_is_no_zip_of_photos_is_refused(login, world):
    client = unit_client(login, language="en")
    page = client.post(f"{IMPORT}/preview", data={
        "person_sheet": (io.BytesIO(gbk_csv()), "x.csv"),
        "person_photos": (io.BytesIO(b"not a zip"), "photos.zip")},
        content_type="multipart/form-data")
    assert page.status_code == 400 and "Photos (zip)" in text_of(page)


@pytest.mark.parametrize("column, value", [
    ("职务", "采购\x00经理"), ("职务", "经" * 5000), ("姓名", "王\x00建国"),
    ("性别", "第三种"), ("证件类型", "驾驶证"), ("电子邮箱", "a\x00@example.com"),
])
def test_hostile_cells_are_refused_never_a_server_error(login, world, column, value):
    """A NUL byte, text longer than its column and a value outside a list, typed into a
    cell: a file with a NUL byte is no text file (refused at the file's field); any other
    bad cell refuses its row naming the column. Nothing is added either way."""
    header = ["姓名", "性别", "证件类型", "证件号码", "国籍", "手机", "电子邮箱", "职务",
              "入场日期"]
    row = ["王建国", "", "居民身份证", "360426199101010071", "CN", "13800138000",
           "wangjg@example.com", "采购经理", "全部"]
    row[header.index(column)] = value
    client = unit_client(login)
    before = set(registrations("浦东医疗器械"))
    # As a CSV: a worksheet cannot hold a NUL byte (openpyxl refuses to write one).
    text = "\n".join(",".join(cells) for cells in (header, row)) + "\n"
    page = preview(client, text.encode("utf-8"), "hostile.csv")
    if "\x00" in value:
        assert page.status_code == 400
        assert "人员名单表格" in text_of(page)
    else:
        assert page.status_code == 200
        assert counts(page)["refused"] == 1 and counts(page)["add"] == 0
        assert re.search(r'class="danger import-refused-row" data-row="2"', page.data.decode())
    assert set(registrations("浦东医疗器械")) == before


def test_a_file_name_with_a_nul_byte_is_refused_naming_the_field(login, world):
    client = unit_client(login)
    before = set(registrations("浦东医疗器械"))
    page = preview(client, gbk_csv(), "人员\x00名单.csv")
    assert page.status_code == 400
    assert "人员名单表格" in text_of(page) and "控制字符" in text_of(page)
    assert set(registrations("浦东医疗器械")) == before
