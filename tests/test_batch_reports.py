"""Batches a clerk can act on: rows the actor may only read (an industry delegation's units
rolled up into a trading delegation) offer no action and are counted as skipped before "all
matching" runs; a batch's refusals make one report (grouped by reason, paged, as Excel, back
to the filtered list) for its owner alone; a filtered list says what it is filtered by."""
from __future__ import annotations

import io
import re

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from app import create_app
from app import models as m
from app.extensions import db
from tests.conftest import Client, base_config, run_worker, text_of
from tests.test_tag_and_lock import approve, persons_of

UNITS = "/delegation/units"
PERSONS = "/delegation/persons"


def tick_boxes(html: str) -> set[int]:
    return {int(v) for v in re.findall(r'class="action_check" name="rowid" value="(\d+)"', html)}


def english(login, username: str) -> Client:
    client = login(username)
    client.set_language("en")
    return client


# ------------------------------------------------------------ read-only rows, counts ------

def test_rolled_up_units_show_no_tick_box_to_the_delegation_that_only_reads_them(login, world):
    rollup, xuhui = world.registration("生物制药"), world.registration("徐汇贸易")
    page = login("sh-delegation").get(f"{UNITS}/list/").data.decode()
    assert f'data-pk="{rollup.id}"' in page          # listed (read) ...
    assert rollup.id not in tick_boxes(page)          # ... but nothing to tick
    assert xuhui.id in tick_boxes(page)
    # Nor does its page offer the actions (each was a 404).
    button = 'id="btn-action-DelegationUnitView.action-approve_units"'
    shown = login("sh-delegation").get(f"{UNITS}/show/{rollup.id}")
    assert shown.status_code == 200 and button not in shown.data.decode()
    assert button in login("sh-delegation").get(f"{UNITS}/show/{xuhui.id}").data.decode()
    # The industry delegation that manages it may act on it.
    manager = login("med-delegation")
    assert rollup.id in tick_boxes(manager.get(f"{UNITS}/list/").data.decode())
    assert button in manager.get(f"{UNITS}/show/{rollup.id}").data.decode()


def test_the_count_for_an_action_says_what_it_changes_and_what_it_skips(login, world):
    client = english(login, "sh-delegation")
    answer = client.get(f"{UNITS}/count?action=approve_units").json
    # 浦东 is approved already, 生物制药 is a roll-up (read-only): only 徐汇 can be approved.
    assert answer["count"] == 3 and answer["actionable"] == 1
    assert {(s["why"], s["count"]) for s in answer["skipped"]} == {("read_only", 1),
                                                                   ("approved", 1)}
    assert answer["confirm_text"] == (
        'Apply this action to 1 of the 3 records matching the current filter? It will skip '
        '1 read-only, 1 with the status "Approved".')
    # The count follows the list's filters; without an action it is the plain count.
    filtered = client.get(f"{UNITS}/count?_flt_0_status=submitted&action=approve_units").json
    assert (filtered["count"], filtered["actionable"]) == (2, 1)
    assert client.get(f"{UNITS}/count?_flt_0_status=submitted").json == {"count": 2}
    assert client.get(f"{UNITS}/count?action=no_such_action").status_code == 404


def test_nothing_to_do_is_said_before_anything_runs(login, world):
    """The roll-up is the only submitted unit left: "all matching" has nothing it may change."""
    approve(login, world, "徐汇贸易")
    answer = login("sh-delegation").get(
        f"{UNITS}/count?_flt_0_status=submitted&action=approve_units").json
    assert (answer["count"], answer["actionable"]) == (1, 0)
    assert answer["confirm_text"] == "" and "1 条只读" in answer["nothing_text"]
    # For the delegation that manages it, the same filter has one unit to approve.
    managed = login("med-delegation").get(
        f"{UNITS}/count?_flt_0_status=submitted&action=approve_units").json
    assert (managed["actionable"], managed["skipped"]) == (1, [])


def test_all_matching_changes_only_rows_in_the_write_scope(login, world):
    rollup = world.registration("生物制药")
    client = login("sh-delegation")
    response = client.post(f"{UNITS}/action_post?_flt_0_status=submitted",
                           data={"action": "approve_units", "all_matching": "1"})
    assert response.status_code == 302
    db.session.expire_all()
    assert world.registration("徐汇贸易").status is m.UnitStatus.approved
    assert db.session.get(m.UnitRegistration, rollup.id).status is m.UnitStatus.submitted


def test_the_count_is_the_actors_own(login, world):
    """A sub-delegation counts its own units only; other roles may not ask."""
    answer = login("sh-pudong").get(f"{UNITS}/count?action=approve_units").json
    assert (answer["count"], answer["actionable"]) == (1, 0)      # 浦东, approved
    assert login("zj-delegation").get(f"{UNITS}/count?action=approve_units").json[
        "count"] == 1
    for who in ("finance", "91310115MA1K4AB30U"):
        assert login(who).get(f"{UNITS}/count?action=approve_units").status_code in (302, 403)


# ------------------------------------------------------------------------- the report -----

def refuse_many(world, login, count: int) -> tuple[Client, list[int]]:
    """`count` more submitted persons of 徐汇, a unit not approved yet: tagging refuses each
    of them for that reason."""
    ids = persons_of(world, "徐汇贸易", count, "R")
    return english(login, "sh-delegation"), ids


def test_an_inline_batch_reports_every_refusal_grouped_by_reason(login, world):
    client, ids = refuse_many(world, login, 60)
    listing = f"{PERSONS}/list/?_flt_0_status=submitted"
    response = client.post(f"{PERSONS}/action_post?_flt_0_status=submitted",
                           data={"action": "tag_visitor", "rowid": [str(i) for i in ids]})
    assert response.status_code == 302
    flashed = client.get(response.headers["Location"])
    # The flash groups the refusals and names a few; every row is on the report.
    assert "Not done for 60 record(s):" in text_of(flashed)
    assert "the unit is not approved yet (60): R000, R001, R002…" in text_of(flashed)
    task = db.session.scalars(sa.select(m.BackgroundTask)).one()
    assert task.status is m.TaskStatus.done and task.user_id == world.user("sh-delegation").id
    assert f'href="/tasks/{task.id}" id="batch-report-link"' in flashed.data.decode()

    page = client.get(f"/tasks/{task.id}")
    text = text_of(page)
    assert page.status_code == 200 and "Not done for 60 record(s):" in text
    assert "the unit is not approved yet" in text and "Page 1 of 2" in text
    html = page.data.decode()
    assert html.count('class="refused-row"') == 50
    assert f'href="{listing}"' in html and "Back to the list" in text
    second = client.get(f"/tasks/{task.id}?reason=0&page=1").data.decode()
    assert second.count('class="refused-row"') == 10 and "R059" in second
    # A page past the end shows the last one; a page that is no number, the first.
    assert client.get(f"/tasks/{task.id}?reason=0&page=99").data.decode().count(
        'class="refused-row"') == 10
    assert client.get(f"/tasks/{task.id}?reason=x&page=-3").status_code == 200
    # The same report in Chinese.
    client.set_language("zh")
    assert "单位尚未审核通过" in text_of(client.get(f"/tasks/{task.id}"))


def test_the_report_downloads_as_excel_with_names_kept_as_text(login, world):
    client, ids = refuse_many(world, login, 3)
    db.session.execute(sa.update(m.Person).where(m.Person.name == "R001")
                       .values(name="=HYPERLINK(\"http://x\")"))
    db.session.commit()
    client.action(PERSONS, "tag_visitor", ids)
    task = db.session.scalars(sa.select(m.BackgroundTask)).one()
    response = client.get(f"/tasks/{task.id}/report.xlsx")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(response.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("Record ID", "Record name", "Reason")
    assert {r[1] for r in rows[1:]} == {"R000", "=HYPERLINK(\"http://x\")", "R002"}
    assert {r[2] for r in rows[1:]} == {"the unit is not approved yet"}
    formula = next(c for c in sheet["B"] if c.value == "=HYPERLINK(\"http://x\")")
    assert formula.data_type == "s"


def test_only_the_owner_sees_a_report(login, world):
    client, ids = refuse_many(world, login, 2)
    client.action(PERSONS, "tag_visitor", ids)
    task = db.session.scalars(sa.select(m.BackgroundTask)).one()
    for url in (f"/tasks/{task.id}", f"/tasks/{task.id}/report.xlsx",
                f"/tasks/{task.id}/status"):
        assert client.get(url).status_code == 200, url
        for other in ("sh-pudong", "med-delegation", "finance"):
            assert login(other).get(url).status_code == 404, (other, url)


def test_a_batch_without_refusals_keeps_no_report(login, world):
    approve(login, world, "徐汇贸易")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.BackgroundTask)) == 0


@pytest.fixture
def redis_app(database_url, smtp_server, redis_url):
    return create_app("test", **{**base_config(database_url, smtp_server.port),
                                 "REDIS_URL": redis_url, "BATCH_INLINE_MAX": 1})


def test_a_background_batch_has_the_same_report(world, redis_app, worker_env):
    ids = persons_of(world, "徐汇贸易", 4, "Q")
    client = Client(redis_app, "sh-delegation")
    client.set_language("en")
    response = client.post(f"{PERSONS}/action_post?_flt_0_status=submitted",
                           data={"action": "tag_staff", "rowid": [str(i) for i in ids]})
    task_url = response.headers["Location"]
    assert re.search(r"/tasks/\d+$", task_url)
    running = client.get(task_url).data.decode()
    assert 'id="task-progress"' in running and "task.js" in running
    assert run_worker(worker_env).returncode == 0
    page = client.get(task_url)
    text = text_of(page)
    assert "Not done for 4 record(s):" in text and "the unit is not approved yet" in text
    assert page.data.decode().count('class="refused-row"') == 4 and "task.js" not in text
    assert f'href="{PERSONS}/list/?_flt_0_status=submitted"' in page.data.decode()
    # Reasons were kept in both languages, whoever reads the report in which.
    client.set_language("zh")
    assert "单位尚未审核通过 4" in text_of(client.get(task_url))
    assert Client(redis_app, "zj-delegation").get(task_url).status_code == 404


# ------------------------------------------------------------------- active filters -------

def test_a_filtered_list_says_what_it_is_filtered_by(login, world):
    xuhui_sub = world.registration("徐汇贸易").sub_delegation
    client = english(login, "sh-delegation")
    page = client.get(f"{UNITS}/list/?_flt_0_status=submitted"
                      f"&_flt_0_sub_delegation={xuhui_sub.id}")
    html = page.data.decode()
    filters = text_of(page).split("Filtered by:")[1]
    assert "Status Equal to “Submitted”" in filters
    assert "Sub-delegation Relation “Xuhui Sub-delegation”" in filters    # its name, not its id
    assert 'id="accordion1_href" class="panel-collapse collapse in"' in html
    plain = client.get(f"{UNITS}/list/").data.decode()
    assert 'id="active-filters"' not in plain
    assert 'id="accordion1_href" class="panel-collapse collapse"' in plain
