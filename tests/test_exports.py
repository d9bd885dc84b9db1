"""Excel exports of the delegation lists: exactly the rows of the list's filter, in the user's
language, numbers masked as listed, run as the user who asked (through Redis and a real rq
worker too), and the file served to that user only."""
from __future__ import annotations

import html
import io
import re
import zipfile
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from app import create_app
from app import models as m
from app.extensions import db
from app.formatting import mask_id_number, mask_mobile
from tests.conftest import UNIT_A, Client, base_config, run_worker

PERSONS = "/delegation/persons"
UNITS = "/delegation/units"


def start_export(client, view: str, query: str = "") -> int:
    response = client.post(f"{view}/export{query}")
    assert response.status_code == 302, response.data[:500]
    found = re.search(r"/tasks/(\d+)$", response.headers["Location"])
    assert found, response.headers["Location"]
    return int(found[1])


def download(client, task_id: int) -> bytes:
    response = client.get(f"/tasks/{task_id}/file")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].endswith(".xlsx")
    return response.data


def sheet_rows(data: bytes) -> list[list[str]]:
    workbook = load_workbook(io.BytesIO(data), read_only=True)
    return [["" if v is None else v for v in row]
            for row in workbook.worksheets[0].iter_rows(values_only=True)]


def export(client, view: str, query: str = "") -> list[list[str]]:
    """Header row, then the data rows."""
    return sheet_rows(download(client, start_export(client, view, query)))


def listed_names(client, view: str, query: str = "") -> list[str]:
    """The first data column (the person's or the unit's name) of every row the list shows."""
    name = "DelegationPersonView" if view == PERSONS else "DelegationUnitView"
    joiner = "&" if query else "?"
    page = client.get(f"{view}/list/{query}{joiner}psize_{name}=100").data.decode()
    names = []
    for row in re.findall(r'<tr data-pk="\d+">(.*?)</tr>', page, flags=re.S):
        cells = re.findall(r"<td>(.*?)</td>", row, flags=re.S)
        names.append(html.unescape(re.sub(r"<[^>]+>", "", cells[2])).strip())
    return names


def delegation_id(code: str) -> int:
    return db.session.scalar(sa.select(m.Delegation.id).where(m.Delegation.code == code))


@pytest.mark.parametrize("query", [
    "", "?_flt_0_status=awaiting_payment", "?_flt_2_tag=", "?_flt_0_tag=visitor",
    "?_flt_0_unit_sub_delegation_id={SH-PD}", "?_flt_1_unit_delegation_id={SH}",
    "?_flt_0_person_name=王", "?_flt_0_status=awaiting_payment&_flt_0_tag=staff",
])
def test_person_export_has_exactly_the_rows_of_the_list(login, world, query):
    query = query.format(**{"SH-PD": delegation_id("SH-PD"), "SH": delegation_id("SH")})
    client = login("sh-delegation")
    header, *rows = export(client, PERSONS, query)
    assert [row[0] for row in rows] == listed_names(client, PERSONS, query)
    assert all(len(row) == len(header) for row in rows)


@pytest.mark.parametrize("query", ["", "?_flt_0_status=submitted", "?_flt_0_delegation={SH}",
                                   "?_flt_0_unit_name=上海"])
def test_unit_export_has_exactly_the_rows_of_the_list(login, world, query):
    query = query.format(SH=delegation_id("SH"))
    client = login("sh-delegation")
    header, *rows = export(client, UNITS, query)
    assert [row[0] for row in rows] == listed_names(client, UNITS, query)
    assert rows


def test_headers_and_values_read_in_the_users_language(login, world):
    client = login("sh-delegation")
    header, *rows = export(client, PERSONS, "?_flt_0_person_name=王伟")
    assert header[:5] == ["姓名", "性别", "单位", "交易团", "交易分团"]
    assert {"证件号码", "手机", "人员标签", "状态", "提交时间"} <= set(header)
    [row] = rows
    value = dict(zip(header, row, strict=True))
    assert value["状态"] == "待支付" and value["人员标签"] == "专业观众"
    assert value["交易分团"] == "浦东新区交易分团"

    client.set_language("en")
    header, *rows = export(client, PERSONS, "?_flt_0_person_name=王伟")
    assert header == ["Name", "Gender", "Unit", "Delegation", "Sub-delegation", "ID document",
                      "ID number", "Mobile", "Job title", "Tag", "Entry dates", "Status",
                      "Badge reuse", "Submitted at"]
    value = dict(zip(header, rows[0], strict=True))
    assert value == {
        "Name": "王伟", "Gender": "Male", "Unit": "上海浦东医疗器械有限公司",
        "Delegation": "Shanghai Delegation", "Sub-delegation": "Pudong Sub-delegation",
        "ID document": "Mainland ID card", "ID number": mask_id_number(
            world.person("王伟").person.id_number),
        "Mobile": mask_mobile(world.person("王伟").person.mobile), "Job title": "采购经理",
        "Tag": "Professional visitor", "Entry dates": "11-05, 11-06",
        "Status": "Awaiting payment", "Badge reuse": "No",
        # Stored in UTC; shown, like the list, in Beijing time.
        "Submitted at": "2022-09-15 10:00"}

    header, *rows = export(client, UNITS, "?_flt_0_status=approved")
    assert header[:4] == ["Unit", "Unified social credit code", "Region", "Unit category"]
    value = dict(zip(header, rows[0], strict=True))
    assert value["Status"] == "Approved" and value["Unit number"] == "T05000001"
    assert value["Contact's mobile"] == "138****8000"


def test_masked_exports_never_hold_a_full_number(login, world):
    client = login("sh-delegation")
    files = [download(client, start_export(client, PERSONS)),
             download(client, start_export(client, UNITS))]
    text = "".join(part for data in files for part in (
        zipfile.ZipFile(io.BytesIO(data)).read(name).decode()
        for name in zipfile.ZipFile(io.BytesIO(data)).namelist()))
    persons = db.session.scalars(sa.select(m.Person)).all()
    numbers = {p.id_number for p in persons} | {
        p.mobile for p in persons if p.mobile} | {p.mobile[3:] for p in persons if p.mobile}
    numbers |= {"+8613800138000", "13800138000"}
    assert not [n for n in numbers if n in text]
    wang = world.person("王伟").person
    assert mask_id_number(wang.id_number) in text and mask_mobile(wang.mobile) in text


def test_another_delegations_rows_never_appear(login, world):
    shanghai = login("sh-delegation")
    names = [row[0] for row in export(shanghai, PERSONS)[1:]]
    assert len(names) == 8 and "郑浩" not in names
    units = [row[0] for row in export(shanghai, UNITS)[1:]]
    assert "浙江杭州进出口有限公司" not in units and len(units) == 3
    # Filtering on another delegation reaches nothing.
    assert export(shanghai, PERSONS, f"?_flt_0_unit_delegation_id={delegation_id('ZJ')}")[1:] \
        == []
    zhejiang = login("zj-delegation")
    assert [row[0] for row in export(zhejiang, PERSONS)[1:]] == ["郑浩"]
    assert [row[0] for row in export(zhejiang, UNITS)[1:]] == ["浙江杭州进出口有限公司"]


def test_a_sub_delegation_exports_only_its_own_units(login, world):
    client = login("sh-pudong")
    assert [row[0] for row in export(client, UNITS)[1:]] == ["上海浦东医疗器械有限公司"]
    persons = export(client, PERSONS)[1:]
    assert sorted(row[0] for row in persons) == sorted(["王伟", "李娜", "张强", "刘洋", "陈静"])
    assert {row[2] for row in persons} == {"上海浦东医疗器械有限公司"}


def test_the_task_keeps_the_filter_and_the_user(login, world):
    client = login("sh-delegation")
    task_id = start_export(client, PERSONS, "?_flt_0_status=awaiting_payment&page_Delegation"
                                            "PersonView=1")
    task = db.session.get(m.BackgroundTask, task_id)
    assert task.operation == "export_persons" and task.status is m.TaskStatus.done
    assert task.user_id == world.user("sh-delegation").id
    assert task.params == {"filters": [["status", 0, ["awaiting_payment"]]], "language": "zh"}
    assert task.result["done"] == 2 and task.total == 2
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.action == "export")).one()
    assert audit.record_id == task_id and audit.actor_name == "sh-delegation"


def test_the_file_is_served_only_to_the_user_who_started_it(login, world):
    owner = login("sh-delegation")
    task_id = start_export(owner, PERSONS)
    for other in ("sh-pudong", "zj-delegation", "med-delegation", UNIT_A):
        client = login(other)
        assert client.get(f"/tasks/{task_id}/file").status_code == 404
        assert client.get(f"/tasks/{task_id}").status_code == 404
        assert client.get(f"/tasks/{task_id}/status").status_code == 404
    owner.set_language("en")
    page = owner.get(f"/tasks/{task_id}")
    assert page.status_code == 200 and "Download the file" in page.data.decode()
    assert owner.get(f"/tasks/{task_id}/status").json["has_file"] is True
    assert download(owner, task_id)


def test_only_delegation_lists_offer_the_export(login, world):
    page = login("sh-delegation").get(f"{PERSONS}/list/?_flt_0_status=submitted").data.decode()
    assert 'id="export-xlsx"' in page
    assert f'action="{PERSONS}/export?_flt_0_status=submitted"' in page
    unit = login(UNIT_A)
    assert 'id="export-xlsx"' not in unit.get("/unit/persons/list/").data.decode()
    assert unit.post(f"{PERSONS}/export").status_code in (302, 403)
    assert unit.post("/unit/persons/export").status_code in (302, 403, 404)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.BackgroundTask)) == 0


def test_a_formula_in_a_name_stays_text(login, world):
    registration = world.registration("徐汇贸易")
    registration.unit.name = '=HYPERLINK("http://example.com","x")'
    db.session.commit()
    client = login("sh-delegation")
    data = download(client, start_export(client, UNITS, "?_flt_0_status=submitted"))
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    cells = [row[0] for row in sheet.iter_rows(min_row=2)]
    [cell] = [c for c in cells if str(c.value).startswith("=")]
    assert cell.data_type == "s" and cell.value == '=HYPERLINK("http://example.com","x")'


def test_progress_is_reported_while_rows_are_written(world, monkeypatch):
    from app import exports
    from app.scoping.actor import actor_for_user

    monkeypatch.setattr(exports, "PROGRESS_EVERY", 3)
    calls = []
    actor = actor_for_user(world.user("sh-delegation"))
    result = exports.export_persons(actor, {"filters": [], "language": "en"},
                                    lambda done, total: calls.append((done, total)))
    assert calls == [(3, 8), (6, 8)] and result["done"] == 8
    assert result["filename"].startswith("ciie-persons-") and result["file_key"]


def test_an_unmasked_number_column_refuses_to_export():
    from app.exports import Column, _formatter

    view = SimpleNamespace(formatters_columns={"person.id_number": str})
    with pytest.raises(RuntimeError):
        _formatter(view, Column("person.id_number", None, pii=True))


def test_export_through_redis_and_a_real_worker(database_url, smtp_server, redis_url, world,
                                                worker_env):
    redis_app = create_app("test", **{**base_config(database_url, smtp_server.port),
                                      "REDIS_URL": redis_url})
    client = Client(redis_app, "sh-delegation")
    client.set_language("en")
    task_id = start_export(client, PERSONS, "?_flt_0_status=awaiting_payment")
    task = db.session.get(m.BackgroundTask, task_id)
    assert task.status is m.TaskStatus.queued and task.total == 2
    assert client.get(f"/tasks/{task_id}/file").status_code == 404

    # The worker shares the web app's upload folder, as in production.
    result = run_worker(dict(worker_env, UPLOAD_FOLDER=redis_app.config["UPLOAD_FOLDER"]))
    assert result.returncode == 0, result.stderr
    db.session.expire_all()
    task = db.session.get(m.BackgroundTask, task_id)
    assert task.status is m.TaskStatus.done, task.result
    assert client.get(f"/tasks/{task_id}/status").json["has_file"] is True
    header, *rows = sheet_rows(download(client, task_id))
    assert header[0] == "Name" and sorted(r[0] for r in rows) == ["李娜", "王伟"]
    assert {r[header.index("Status")] for r in rows} == {"Awaiting payment"}
    assert Client(redis_app, "zj-delegation").get(f"/tasks/{task_id}/file").status_code == 404
