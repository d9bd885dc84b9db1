"""In Chromium, in Chinese and in English: a unit opens the import from its menu, downloads the
template, fills it (as Excel would, with openpyxl) or writes a GBK CSV by hand, uploads it,
reads the preview, confirms (ticking "submit" once), reads the report and downloads the
refused rows."""
from __future__ import annotations

import io

import sqlalchemy as sa
from openpyxl import load_workbook

from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A
from tests.test_browser_smoke import log_in


def _download(page, selector: str) -> io.BytesIO:
    with page.expect_download() as download:
        page.click(selector)
    assert download.value.suggested_filename.endswith(".xlsx")
    with open(download.value.path(), "rb") as fh:
        return io.BytesIO(fh.read())


def _registrations() -> dict[str, m.PersonRegistration]:
    db.session.expire_all()
    rows = db.session.scalars(
        sa.select(m.PersonRegistration).join(m.Person).join(m.Unit, m.Unit.id == m.Person.unit_id)
        .join(m.Edition).where(m.Unit.login == UNIT_A, m.Edition.is_current)).all()
    return {r.person.id_number: r for r in rows}


def test_a_unit_imports_persons_from_the_chinese_template(page, world, tmp_path):
    log_in(page, UNIT_A)
    page.click("text=报名")
    page.click("text=导入人员")
    page.wait_for_selector("#person-import-page")
    template = load_workbook(_download(page, "#template-zh"))
    sheet = template.worksheets[0]
    assert sheet.cell(1, 1).value == "姓名 *" and template.worksheets[1].title == "允许的值"
    sheet.append(["周敏", "", "居民身份证", "310114197009090048", "CN", "13912345670", "",
                  "采购经理", "2022-11-05，2022-11-06"])
    sheet.append(["吴刚", "", "居民身份证", "31011319860606003X", "", "13912345671", "", "",
                  "全部"])
    sheet.append(["郑爽", "女", "居民身份证", "36042619910102009X", "", "13912345672", "", "",
                  "2022-11-05"])
    filled = tmp_path / "人员名单.xlsx"
    template.save(filled)

    page.set_input_files("#person_sheet", str(filled))
    page.click("#preview-person-import")
    page.wait_for_selector("#person-import-preview")
    assert page.inner_text(".import-count[data-action='add'] strong") == "2"
    assert page.inner_text(".import-count[data-action='refused'] strong") == "1"
    refused = page.inner_text("#import-refused")
    assert "郑爽" in refused and "证件号码" in refused and "校验位" in refused
    assert "2022-11-05, 2022-11-06" in page.inner_text("#import-adds")
    assert "310114197009090048" not in _registrations()
    page.click("#confirm-person-import")
    page.wait_for_selector("#task-done")
    assert "已完成 2 条记录" in page.inner_text("#task-done")
    assert "第 4 行，郑爽" in page.inner_text("#task-reasons") or \
        "第 4 行，郑爽" in page.inner_text("#task-page")
    refused_rows = load_workbook(_download(page, "#task-file")).active
    values = [[c.value for c in row] for row in refused_rows.iter_rows()]
    assert values[0][-1] == "未导入原因" and values[1][0] == "郑爽"
    made = _registrations()
    assert made["310114197009090048"].status is m.PersonStatus.draft
    assert made["31011319860606003X"].entry_days == 0b111111
    page.click("#task-back")
    page.wait_for_selector("text=周敏")


def test_a_unit_imports_a_hand_written_gbk_csv_in_english_and_submits(page, world, tmp_path):
    log_in(page, UNIT_A)
    page.goto("/lang/en")
    page.goto("/unit/persons/import/")
    page.wait_for_selector("#person-import-page")
    template = load_workbook(_download(page, "#template-en"))
    assert template.worksheets[0].cell(1, 4).value == "ID number *"
    assert template.worksheets[1].title == "Allowed values"
    csv = tmp_path / "delegation.csv"
    csv.write_bytes(("姓名,证件类型,证件号码,手机,入场日期\r\n"
                     "钱进,居民身份证,310117198808080069,13912345673,11-08\r\n"
                     "孙悦,居民身份证,310118199012120070,13912345674,\r\n").encode("gbk"))
    page.set_input_files("#person_sheet", str(csv))
    page.click("#preview-person-import")
    page.wait_for_selector("#person-import-preview")
    assert page.inner_text(".import-count[data-action='add'] strong") == "2"
    assert page.inner_text("#confirm-person-import") == "Import the 2 rows that apply"
    page.check("#import-submit")
    page.click("#confirm-person-import")
    page.wait_for_selector("#task-done")
    text = page.inner_text("#task-page")
    assert "Done for 2 record(s)." in text and "2 added" in text
    # No photo yet, one without an entry date: both stay drafts, and the report says why.
    assert "1 not submitted (kept as drafts): upload the person's photo first" in text
    assert "1 not submitted (kept as drafts): choose at least one entry date" in text
    made = _registrations()
    assert made["310117198808080069"].status is m.PersonStatus.draft
    assert made["310117198808080069"].entry_dates[0].isoformat() == "2022-11-08"
