"""The delegation statistics page: numbers in the actor's scope that equal the lists they link
to, the industry roll-up shown apart, and a fixed number of queries whatever the data."""
from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from app import models as m
from app.demo import make_ric, make_uscc
from app.extensions import db
from app.workflow.persons import id_key
from tests.conftest import recorded_statements

STATS = "/delegation/stats/"


def record_count(page: str) -> int:
    """The "Record Count: N" (记录数目) of a list page, in any language."""
    found = re.search(r'<div class="pull-right">\s*<strong>[^<]*</strong>\s*(\d+)', page)
    assert found, "no record count on the list page"
    return int(found[1])


def count_links(page: str) -> list[tuple[str, int]]:
    """(list URL, number shown) of every count on the statistics page."""
    return [(html.unescape(href), int(n)) for href, n in
            re.findall(r'<a class="stat-count[^"]*" href="([^"]+)">(\d+)</a>', page)]


def chart(page: str, section: str, key: str) -> dict[str, int]:
    """{label: count} of one chart."""
    table = page.split(f'id="chart-{section}-{key}"', 1)[1].split("</table>", 1)[0]
    return {html.unescape(label).strip(): int(n) for label, n in re.findall(
        r'<th scope="row" class="label-cell">([^<]+)</th>.*?class="stat-count[^"]*"[^>]*>(\d+)<',
        table, flags=re.S)}


def summary(page: str, row: str) -> tuple[int, int]:
    """(units, persons) of one row of the summary table."""
    cells = page.split(f'id="summary-{row}"', 1)[1].split("</tr>", 1)[0]
    units, persons = re.findall(r'class="stat-count[^"]*"[^>]*>(\d+)<', cells)
    return int(units), int(persons)


def section_totals(page: str, section: str) -> tuple[int, int]:
    heading = page.split(f'id="section-{section}"', 1)[1].split('class="panel-body"', 1)[0]
    units, persons = re.findall(r'class="stat-count stat-total"[^>]*>(\d+)<', heading)
    return int(units), int(persons)


def stats_page(client) -> str:
    response = client.get(STATS)
    assert response.status_code == 200
    return response.data.decode()


def add_units(world, delegation_code: str, sub_code: str | None, count: int,
              persons_each: int, start: int) -> None:
    """Submitted units with submitted persons, straight into the database."""
    edition = db.session.scalars(sa.select(m.Edition).where(m.Edition.is_current)).one()
    delegation = db.session.scalars(
        sa.select(m.Delegation).where(m.Delegation.code == delegation_code)).one()
    sub = db.session.scalars(
        sa.select(m.Delegation).where(m.Delegation.code == sub_code)).one() if sub_code else None
    for i in range(start, start + count):
        code = make_uscc(f"91310000MA{i:07d}")
        unit = m.Unit(login=code, uscc=code, name=f"测试单位{i}", region=m.Region.domestic,
                      category=m.UnitCategory.public_institution)
        registration = m.UnitRegistration(edition=edition, unit=unit, delegation=delegation,
                                          sub_delegation=sub, status=m.UnitStatus.submitted)
        db.session.add_all([unit, registration])
        for j in range(persons_each):
            number = make_ric(f"3101041990{i:05d}{j:02d}"[:17])
            person = m.Person(unit=unit, name=f"测试{i}-{j}", gender=m.Gender.male,
                              id_type=m.IdType.mainland_id, id_number=number)
            db.session.add_all([person, m.PersonRegistration(
                edition=edition, person=person, unit_registration=registration,
                id_key=id_key(m.IdType.mainland_id, number), status=m.PersonStatus.submitted)])
    db.session.commit()


@pytest.mark.parametrize("username", ["sh-delegation", "sh-pudong", "med-delegation",
                                      "zj-delegation"])
def test_every_count_equals_the_list_it_links_to(login, world, username):
    # Units without a sub-delegation, so the "directly under the delegation" links are checked.
    add_units(world, "SH", None, 2, 1, start=1)
    add_units(world, "ZJ", None, 1, 2, start=10)
    client = login(username)
    links = count_links(stats_page(client))
    assert len(links) >= 12
    for url, shown in links:
        assert url.startswith(("/delegation/units/list/", "/delegation/persons/list/"))
        response = client.get(url)
        assert response.status_code == 200, url
        assert record_count(response.data.decode()) == shown, url


def test_shanghai_sees_what_it_manages_and_the_roll_up_apart(login, world):
    client = login("sh-delegation")
    client.set_language("en")
    page = stats_page(client)
    # Managed: A (Pudong, approved, 5 persons) and B (Xuhui, submitted, 2 persons); counted
    # under Shanghai: the pharmaceutical industry delegation's C (1 person).
    assert summary(page, "managed") == (2, 7)
    assert summary(page, "rollup") == (1, 1)
    assert summary(page, "total") == (3, 8)
    assert section_totals(page, "managed") == (2, 7)
    assert section_totals(page, "rollup") == (1, 1)
    assert chart(page, "managed", "status") == {
        "Draft": 0, "Submitted": 1, "Approved": 1, "Returned for changes": 0, "Rejected": 0}
    assert chart(page, "managed", "sub") == {"Pudong Sub-delegation": 1,
                                             "Xuhui Sub-delegation": 1}
    assert chart(page, "managed", "region") == {"Domestic": 2, "Overseas": 0}
    assert chart(page, "managed", "category") == {"Enterprise": 2}
    assert chart(page, "managed", "tag") == {
        "Professional visitor": 3, "Staff": 1, "VIP": 0, "Not tagged yet": 3}
    assert chart(page, "managed", "status") != chart(page, "rollup", "status")
    assert chart(page, "rollup", "delegation") == {"Pharmaceutical Industry Delegation": 1}
    assert chart(page, "rollup", "status")["Submitted"] == 1
    assert chart(page, "rollup", "tag") == {
        "Professional visitor": 0, "Staff": 0, "VIP": 0, "Not tagged yet": 1}
    assert chart(page, "rollup", "delegation") and "chart-rollup-sub" not in page
    assert chart(page, "managed", "sub") and "chart-managed-delegation" not in page
    # Each count links to the list filtered the same way, managed rows only.
    shanghai = world.user("sh-delegation").delegation_id
    assert (f"/delegation/persons/list/?_flt_0_unit_delegation_id={shanghai}"
            "&_flt_0_status=awaiting_payment", 2) in count_links(page)


def test_a_sub_delegation_sees_only_its_own_numbers(login, world):
    client = login("sh-pudong")
    client.set_language("en")
    page = stats_page(client)
    assert section_totals(page, "managed") == (1, 5)
    assert 'id="section-rollup"' not in page and 'id="stats-summary"' not in page
    assert chart(page, "managed", "sub") == {"Pudong Sub-delegation": 1}
    assert chart(page, "managed", "status")["Approved"] == 1
    assert chart(page, "managed", "tag") == {
        "Professional visitor": 3, "Staff": 1, "VIP": 0, "Not tagged yet": 1}


def test_an_industry_delegation_sees_its_own_units_and_where_they_count(login, world):
    client = login("med-delegation")
    client.set_language("en")
    page = stats_page(client)
    assert section_totals(page, "managed") == (1, 1)
    assert 'id="section-rollup"' not in page
    assert "Shanghai Delegation" in page.split('id="counted-under"', 1)[1].split("</p>", 1)[0]


def test_one_delegations_stats_never_include_anothers_units(login, world):
    add_units(world, "ZJ", None, 3, 2, start=20)
    add_units(world, "NHC", None, 2, 1, start=30)
    shanghai = stats_page(login("sh-delegation"))
    assert summary(shanghai, "total") == (3, 8)
    zhejiang = stats_page(login("zj-delegation"))
    assert section_totals(zhejiang, "managed") == (4, 7)
    assert 'id="section-rollup"' not in zhejiang
    assert section_totals(stats_page(login("sh-pudong")), "managed") == (1, 5)


def test_the_page_costs_the_same_queries_for_3_or_60_units(app, login, world):
    client = login("sh-delegation")
    stats_page(client)  # warm caches (roles, permissions)
    with recorded_statements() as before:
        stats_page(client)
    add_units(world, "SH", "SH-PD", 30, 2, start=100)
    add_units(world, "SH", "SH-XH", 20, 1, start=200)
    add_units(world, "IND-MED", None, 10, 3, start=300)
    with recorded_statements() as after:
        page = stats_page(client)
    assert summary(page, "total") == (63, 8 + 60 + 20 + 30)
    assert len(after) == len(before)


def test_only_delegations_reach_the_page(login, world):
    from tests.conftest import UNIT_A

    assert login(UNIT_A).get(STATS).status_code in (302, 403)
    assert login("finance").get(STATS).status_code in (302, 403)
