"""Large lists count their rows only up to LIST_COUNT_LIMIT (so a page costs the same for
20,000 rows or 200,000); the exact number is asked for when an action needs it, in scope."""
from __future__ import annotations

import pytest

from tests.conftest import text_of

LISTING = "/delegation/persons/list/?_flt_0_status=submitted"


@pytest.fixture
def limit(app):
    default = app.config["LIST_COUNT_LIMIT"]

    def set_limit(value: int) -> None:
        app.config["LIST_COUNT_LIMIT"] = value

    yield set_limit
    app.config["LIST_COUNT_LIMIT"] = default


def test_a_list_past_the_limit_says_more_than_and_pages_on(login, world, limit):
    client = login("sh-delegation")
    # 赵敏, 孙磊 (Xuhui) and 周杰 (pharmaceutical roll-up, read-only) are submitted.
    assert "记录数目: 3" in text_of(client.get(LISTING))
    limit(2)
    page = text_of(client.get(LISTING))
    assert "记录数目: 超过 2 条" in page and "超过 2 条），而不仅是本页勾选的记录" in page
    client.set_language("en")
    assert "Record Count: more than 2" in text_of(client.get(LISTING))


def test_the_exact_count_follows_the_filter_and_the_scope(login, world, limit):
    limit(1)
    assert login("sh-delegation").get(LISTING.replace("list/", "count")).json == {"count": 3}
    assert login("sh-delegation").get(
        "/delegation/persons/count?_flt_0_status=awaiting_payment").json == {"count": 2}
    # The Pudong sub-delegation counts only its own units' persons.
    assert login("sh-pudong").get(LISTING.replace("list/", "count")).json == {"count": 0}
    assert login("zj-delegation").get(LISTING.replace("list/", "count")).json == {"count": 1}


def test_the_count_is_refused_to_other_roles_and_strangers(login, world):
    for who in ("finance", "reviewer", "91310115MA1K4AB30U"):
        response = login(who).get("/delegation/persons/count")
        assert response.status_code in (302, 403) and response.json is None
    assert login(None).get("/delegation/persons/count").status_code == 302


def test_delegation_filters_offer_only_the_users_own_delegations(login, world):
    pudong = world.unit("浦东医疗")
    sub = world.registration("浦东医疗").sub_delegation
    def offered(client, view: str) -> set[str]:
        # The drop-downs fetch their choices when opened (app/views/filter_choices.py).
        names = set()
        for column in {"persons": ("unit_delegation_id", "unit_sub_delegation_id"),
                       "units": ("delegation", "sub_delegation")}[view]:
            answer = client.get(f"/delegation/{view}/filter_choices/{column}").json
            names |= {row["text"] for row in answer["results"]}
        return names

    for view in ("persons", "units"):
        names = offered(login("sh-delegation"), view)
        assert {"浦东新区交易分团", "医药行业交易团"} <= names
        assert not {"浙江交易团", "中央企业交易团"} & names
    zhejiang = offered(login("zj-delegation"), "units")
    assert "浙江交易团" in zhejiang and "上海交易团" not in zhejiang
    # The sub-delegation filter still filters, by the chosen sub-delegation's id.
    listed = text_of(login("sh-delegation").get(
        f"/delegation/units/list/?_flt_0_sub_delegation={sub.id}"))
    assert pudong.name in listed and "徐汇贸易" not in listed


def test_searches_on_another_tables_column_filter_right_through_a_semi_join(app, login, world):
    """A person's name and unit name live on other tables: the filters are applied as EXISTS
    (one semi-join) and still find, or leave out, exactly the right rows."""
    import sqlalchemy as sa

    client = login("sh-delegation")
    seen: list[str] = []

    def listen(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", listen)
    try:
        contains = text_of(client.get("/delegation/persons/list/?_flt_2_person_name=赵"))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", listen)
    assert "赵敏" in contains and "孙磊" not in contains and "王伟" not in contains
    [count] = [s for s in seen if s.lstrip().startswith("SELECT count(*)")]
    # One character: the tokens on the registration answer it, no person is read
    # (tests/test_name_search.py).
    assert "person_registration.name_search @>" in count and "FROM person " not in count
    # Not contains, equal, and a two-table column (the unit's name through its registration).
    others = text_of(client.get("/delegation/persons/list/?_flt_6_person_name=赵"))
    assert "赵敏" not in others and "孙磊" in others and "王伟" in others
    assert "记录数目: 1" in text_of(client.get("/delegation/persons/list/?_flt_3_person_name=孙磊"))
    xuhui = text_of(client.get("/delegation/persons/list/?_flt_2_unit_name=徐汇"))
    assert "赵敏" in xuhui and "孙磊" in xuhui and "王伟" not in xuhui
    units = text_of(client.get("/delegation/units/list/?_flt_2_unit_name=浦东"))
    assert "上海浦东医疗器械有限公司" in units and "徐汇贸易" not in units


def test_the_rest_api_still_counts_exactly(login, world, limit):
    limit(1)
    client = login(None)
    headers = client.api_login("sh-delegation")
    listing = client.get("/api/v1/persons/", headers=headers).json
    assert listing["count"] == len(listing["result"]) > 1
