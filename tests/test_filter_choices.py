"""A list page carries no search-filter choices: the delegation and sub-delegation drop-downs
(and every other row drop-down of a search form) fetch theirs, scoped to the user, when
opened (app/views/filter_choices.py)."""
from __future__ import annotations

import json

from tests.conftest import statements_of, text_of

PERSONS = "/delegation/persons/list/"
CHOICES = "/delegation/persons/filter_choices/unit_sub_delegation_id"


def escaped(html: str) -> str:
    """Text as it travels in the page's filter form (Jinja's tojson: non-ASCII and the HTML
    specials escaped)."""
    return (json.dumps(html)[1:-1].replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("'", "\\u0027"))


def test_the_list_page_neither_reads_nor_renders_the_choices(app, login, world):
    client = login("sh-delegation")
    pages = []
    seen = statements_of(lambda: pages.append(client.get(PERSONS)))
    page = pages[0].data.decode()
    assert pages[0].status_code == 200
    assert escaped("浦东新区交易分团") not in page and escaped("徐汇区交易分团") not in page
    assert escaped(f'data-endpoint="{CHOICES}"') in page
    # The choice query orders delegations by code: the page no longer sends it.
    assert not [s for s in seen if "ORDER BY delegation.code" in s]


def test_the_drop_down_offers_the_users_own_sub_delegations_and_searches(login, world):
    client = login("sh-delegation")
    answer = client.get(CHOICES).json
    texts = [row["text"] for row in answer["results"]]
    # "(none)" first, as FAB's drop-down offered it, then the user's own sub-delegations.
    assert answer["results"][0]["id"] == "__None" and texts[0] == "（无）"
    assert {"浦东新区交易分团", "徐汇区交易分团"} <= set(texts)
    assert not {"浙江交易团", "中央企业交易团", "上海交易团"} & set(texts)
    assert answer["pagination"] == {"more": False}
    searched = client.get(CHOICES + "?q=浦东").json["results"]
    assert [row["text"] for row in searched] == ["浦东新区交易分团"]
    assert client.get(CHOICES + "?q=浦东&page=1").json["results"] == []
    client.set_language("en")
    assert "(none)" == client.get(CHOICES).json["results"][0]["text"]


def test_a_filtered_page_names_its_chosen_value_and_filters(login, world):
    pudong = world.registration("浦东医疗").sub_delegation
    client = login("sh-delegation")
    response = client.get(f"{PERSONS}?_flt_0_unit_sub_delegation_id={pudong.id}")
    page = response.data.decode()
    # The select holds "(none)" and the chosen sub-delegation, which FAB's script selects.
    assert escaped(f'<option value="{pudong.id}">浦东新区交易分团</option>') in page
    assert escaped("徐汇区交易分团") not in page
    listed = text_of(response)
    assert "交易分团 等于 “浦东新区交易分团”" in listed and "孙磊" not in listed


def test_other_roles_strangers_and_wrong_columns_get_no_choices(login, world):
    for who in ("finance", "reviewer", "91310115MA1K4AB30U"):
        response = login(who).get(CHOICES)
        assert response.status_code in (302, 403) and response.json is None
    assert login(None).get(CHOICES).status_code == 302
    client = login("sh-delegation")
    # A column without a row drop-down, and one that is no search column.
    assert client.get("/delegation/persons/filter_choices/status").status_code == 404
    assert client.get("/delegation/persons/filter_choices/password").status_code == 404
    refused = client.get(CHOICES + "?page=x")
    assert refused.status_code == 400 and "页码" in text_of(refused)
    client.set_language("en")
    assert "Page" in text_of(client.get(CHOICES + "?page=-1"))


def test_another_delegation_sees_only_its_own(login, world):
    texts = {row["text"] for row in login("zj-delegation").get(
        "/delegation/units/filter_choices/delegation").json["results"]}
    assert "浙江交易团" in texts and "上海交易团" not in texts and "医药行业交易团" not in texts
