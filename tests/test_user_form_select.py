"""The user form's unit, delegation and organiser are searching selects (issue 13: the form
loaded every unit into one drop-down). They ask /users/related/<column> for one page of
matches, through the actor's scope; only a role that may edit users may ask."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from app import models as m
from app.extensions import db
from app.security_manager import SEARCH_PAGE_SIZE
from tests.conftest import UNIT_A, UNIT_B, UNIT_E
from tests.test_browser_every_form import choose, fresh, save, type_into
from tests.test_browser_smoke import log_in


def texts(response) -> list[str]:
    assert response.status_code == 200, response.data
    return [row["text"] for row in response.json["results"]]


@pytest.mark.parametrize("username", [UNIT_A, "sh-delegation", "finance", "organiser",
                                      "reviewer"])
def test_only_who_may_edit_users_may_search(login, username):
    client = login(username)
    for column in ("unit", "delegation", "organiser"):
        assert client.get(f"/users/related/{column}?q=").status_code == 403
    assert login(None).get("/users/related/unit?q=").status_code in (401, 403)


def test_the_search_finds_by_name_code_and_credit_code(login, world):
    admin = login("admin")
    found = texts(admin.get("/users/related/unit?q=浦东医疗"))
    assert found == [f"{world.unit('浦东医疗').name} ({UNIT_A})"]
    assert texts(admin.get(f"/users/related/unit?q={UNIT_B}")) == [
        f"{world.unit('徐汇贸易').name} ({UNIT_B})"]
    # Text that is a LIKE wildcard is searched for as typed.
    assert texts(admin.get("/users/related/unit?q=%25")) == []
    assert texts(admin.get("/users/related/delegation?q=ZJ")) == ["浙江交易团 (ZJ)"]
    assert texts(admin.get("/users/related/delegation?q=Pudong")) == ["浦东新区交易分团 (SH-PD)"]
    assert texts(admin.get("/users/related/organiser?q=进口博览")) == ["进口博览局"]
    admin.set_language("en")
    assert texts(admin.get("/users/related/organiser?q=Bureau")) == ["CIIE Bureau"]


def test_the_search_pages_and_refuses_what_it_cannot_read(login, world):
    db.session.add_all([m.Delegation(code=f"T{n:02d}", name_zh=f"测试交易团{n:02d}",
                                     name_en=f"Test delegation {n:02d}",
                                     kind=m.DelegationKind.local, region=m.Region.domestic,
                                     active=True)
                        for n in range(SEARCH_PAGE_SIZE + 5)])
    db.session.commit()
    admin = login("admin")
    first = admin.get("/users/related/delegation?q=测试交易团&page=0")
    second = admin.get("/users/related/delegation?q=测试交易团&page=1")
    assert len(texts(first)) == SEARCH_PAGE_SIZE and first.json["pagination"]["more"] is True
    assert len(texts(second)) == 5 and second.json["pagination"]["more"] is False
    assert set(texts(first)).isdisjoint(texts(second))
    assert admin.get("/users/related/delegation?page=-1").status_code == 400
    assert admin.get("/users/related/delegation?page=x").status_code == 400
    assert admin.get("/users/related/password?q=").status_code == 404


def test_the_search_goes_through_the_askers_scope(app, login, world):
    """A delegation granted the user admin (an admin may grant it) finds its own units only."""
    sm = world.app.appbuilder.sm
    role = sm.find_role("delegation")
    grant = sm.find_permission_view_menu("can_edit", "CiieUserDBModelView")
    sm.add_permission_role(role, grant)
    try:
        found = texts(login("sh-delegation").get("/users/related/unit?q="))
        assert f"{world.unit('浦东医疗').name} ({UNIT_A})" in found
        assert not any(UNIT_E in text for text in found)
    finally:
        sm.del_permission_role(role, grant)


def test_the_form_holds_only_the_chosen_row_and_refuses_a_made_up_one(login, world):
    admin = login("admin")
    admin.set_language("zh")
    user = world.user(UNIT_A)
    page = admin.get(f"/users/edit/{user.id}").data.decode()
    unit_select = re.search(r'<select[^>]*name="unit".*?</select>', page, re.S).group()
    assert re.findall(r'<option value="(\d*)"', unit_select) == ["", str(user.unit_id)]
    assert "徐汇贸易" not in page
    form = {"first_name": user.first_name, "last_name": user.last_name,
            "username": user.username, "email": user.email, "active": "y",
            "roles": [str(role.id) for role in user.roles], "unit": "987654",
            "delegation": "", "organiser": ""}
    refused = admin.post(f"/users/edit/{user.id}", data=form)
    assert refused.status_code == 400
    assert "请从列表提供的选项中选择。" in refused.data.decode()
    assert fresh(m.User, id=user.id).unit_id == world.unit("浦东医疗").id


def test_admin_adds_and_edits_a_user_in_chromium(page, world):
    log_in(page, "admin")
    page.goto("/users/add")
    type_into(page, "#first_name", "徐汇")
    type_into(page, "#last_name", "联络员")
    type_into(page, "#username", "xuhui-contact")
    type_into(page, "#email", "xuhui-contact@example.com")
    choose(page, "roles", "单位")
    choose(page, "unit", "徐汇贸易")
    type_into(page, "#password", "Xuhui-Passw0rd!")
    type_into(page, "#conf_password", "Xuhui-Passw0rd!")
    save(page)
    user = fresh(m.User, username="xuhui-contact")
    assert user.unit_id == world.unit("徐汇贸易").id and user.delegation_id is None
    assert [role.name for role in user.roles] == ["unit"]

    page.goto(f"/users/edit/{user.id}")
    # The page holds the chosen unit; the delegation and organiser are searched for.
    choose(page, "delegation", "浙江交易团")
    choose(page, "organiser", "进口博览局")
    page.locator("#unit + .select2 .select2-selection__clear").click()
    page.keyboard.press("Escape")
    save(page)
    user = fresh(m.User, username="xuhui-contact")
    zhejiang = db.session.scalars(sa.select(m.Delegation).where(m.Delegation.code == "ZJ")).one()
    assert (user.unit_id, user.delegation_id) == (None, zhejiang.id)
    assert user.organiser.name_zh == "进口博览局"
