"""After login each role lands on a page that counts what waits for it, in its own scope."""
from __future__ import annotations

import re
from datetime import datetime

import sqlalchemy as sa

from app import models as m
from app.clock import SHANGHAI
from app.extensions import db
from tests.conftest import UNIT_A, text_of


def counts(page: str, panel: str) -> dict[str, int]:
    """{label: count} from one panel of the home page."""
    body = page.split(f"<b>{panel}</b>", 1)[1].split('class="panel panel-default', 1)[0]
    return {label.strip(): int(n) for label, n in
            re.findall(r"<td>(?:<a[^>]*>)?([^<]+)(?:</a>)?</td>\s*<td class=\"num\">"
                       r"<span class=\"badge\">(\d+)</span>", body)}


def test_unit_home_counts_its_persons_by_status(login, world):
    client = login(UNIT_A)
    response = client.get("/")
    assert response.status_code == 200
    page = response.data.decode()
    found = counts(page, "人员状态统计")
    assert found == {"草稿": 1, "待支付": 2, "已下单": 1, "待人员信息审核": 1}
    assert counts(page, "证件订单") == {"待支付": 1}
    assert "单位编号：T05000001" in text_of(response)
    assert "/unit/persons/list/?_flt_0_status=awaiting_payment" in page


def test_delegation_home_counts_only_its_scope(login, world):
    page = login("sh-delegation").get("/").data.decode()
    # Units: A approved; B and the rolled-up C submitted. Zhejiang's unit is not counted.
    assert counts(page, "单位状态统计") == {"审核通过": 1, "已提交": 2}
    sub = login("sh-pudong").get("/").data.decode()
    assert counts(sub, "单位状态统计") == {"审核通过": 1}


def test_reviewer_home_shows_the_queue(login, world):
    page = login("reviewer").get("/").data.decode()
    assert counts(page, "人员信息审核队列") == {"待人员信息审核": 1}


def test_finance_home_shows_orders(login, world):
    page = login("finance").get("/").data.decode()
    assert counts(page, "证件订单") == {"待支付": 1}


def test_anonymous_visitor_goes_to_login(app):
    response = app.test_client().get("/")
    assert response.status_code == 302 and "/login/" in response.headers["Location"]


def test_the_greeting_names_the_organisation_or_the_person(login, world):
    """"欢迎，浦东医疗 单位" read badly (issue 13): a unit, delegation or organiser account is
    greeted by its organisation's name; a person's Chinese name has no space inside."""
    unit = world.unit("浦东")
    assert f"欢迎，{unit.name}" in text_of(login(UNIT_A).get("/"))
    assert "欢迎，上海交易团" in text_of(login("sh-delegation").get("/"))
    finance = text_of(login("finance").get("/"))
    assert "欢迎，财务专员" in finance and "财务 专员" not in finance
    english = login("sh-delegation")
    english.set_language("en")
    assert "Welcome, Shanghai Delegation" in text_of(english.get("/"))


def test_home_shows_the_deadline_with_the_delegations_extension(login, world):
    """An extension moves the deadline the delegation, its sub-delegations and its units work
    to; the home page said the edition's date to all (issue 13)."""
    edition = db.session.scalars(sa.select(m.Edition).where(m.Edition.is_current)).one()
    standard = edition.delegation_deadline.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    shanghai = db.session.scalars(sa.select(m.Delegation).where(m.Delegation.code == "SH")).one()
    db.session.add(m.DelegationExtension(
        edition_id=edition.id, delegation_id=shanghai.id, reason="展期",
        until=datetime(2022, 10, 8, 23, 59, tzinfo=SHANGHAI)))
    db.session.commit()
    for username in ("sh-delegation", "sh-pudong", UNIT_A):
        page = text_of(login(username).get("/"))
        assert "2022-10-08 23:59" in page and standard not in page, username
    assert standard in text_of(login("zj-delegation").get("/"))
