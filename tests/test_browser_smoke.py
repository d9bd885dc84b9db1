"""In Chromium: each role logs in, sees only its own menus, switches to English and back."""
from __future__ import annotations

import os

import pytest

from app.demo import DEMO_PASSWORD
from tests.conftest import ROOT, UNIT_A

# role login -> (menus it must see, menus it must not see), as zh labels
MENUS = {
    UNIT_A: (["报名"], ["交易团", "财务", "人员信息审核", "配套活动", "系统管理"]),
    "sh-delegation": (["交易团"], ["报名", "财务", "人员信息审核", "系统管理"]),
    "sh-pudong": (["交易团"], ["报名", "财务", "系统管理"]),
    "finance": (["财务"], ["报名", "交易团", "人员信息审核", "系统管理"]),
    "reviewer": (["人员信息审核"], ["报名", "交易团", "财务", "系统管理"]),
    "organiser": (["配套活动"], ["报名", "交易团", "财务", "系统管理"]),
    "person-demo": ([], ["报名", "交易团", "财务", "人员信息审核", "系统管理"]),
    "gate": ([], ["报名", "交易团", "财务", "人员信息审核", "配套活动", "系统管理"]),
    "admin": (["系统管理", "用户权限"], []),
}
ENGLISH = {UNIT_A: "Registration", "sh-delegation": "Delegation", "finance": "Finance",
           "reviewer": "Security review", "organiser": "Supporting events",
           "admin": "Administration"}


def log_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("#username", username)
    page.fill("#password", DEMO_PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_selector("#home")


def log_out(page) -> None:
    """Through the user menu: logout is a POST with the CSRF token."""
    page.click("#user-menu")
    page.click("#logout")
    page.wait_for_selector("#username")


def menu_texts(page) -> list[str]:
    toggles = page.locator(".navbar-nav > li > a.dropdown-toggle")
    return [t.strip() for t in toggles.all_inner_texts()]


@pytest.mark.parametrize("username", list(MENUS))
def test_each_role_sees_its_menus_and_switches_language(page, username):
    log_in(page, username)
    shown, hidden = MENUS[username]
    menus = " ".join(menu_texts(page))
    for label in shown:
        assert label in menus, (username, label, menus)
    for label in hidden:
        assert label not in menus, (username, label, menus)
    assert "欢迎" in page.inner_text("#home")

    page.click("#lang-en")
    page.wait_for_selector("#home")
    assert "Welcome" in page.inner_text("#home")
    if username in ENGLISH:
        assert ENGLISH[username] in " ".join(menu_texts(page))
    os.makedirs(os.path.join(ROOT, "test-artifacts"), exist_ok=True)
    page.screenshot(path=os.path.join(ROOT, "test-artifacts", f"home-{username}-en.png"))

    page.click("#lang-zh")
    page.wait_for_selector("#home")
    assert "欢迎" in page.inner_text("#home")
    page.screenshot(path=os.path.join(ROOT, "test-artifacts", f"home-{username}-zh.png"))
