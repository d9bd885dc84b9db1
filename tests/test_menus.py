"""Every role is shown only what it can open: each link of its menu answers 200 (issue 13: an
admin's menu offered the unit's own pages, which answer 403 to anyone without a unit)."""
from __future__ import annotations

import re
from html import unescape

from app.demo import load_demo


def menu_links(html: str) -> list[str]:
    """The hrefs of the navigation bar's entries (the drop-downs' items and top-level links),
    without the user menu (logout is a POST) and the language switch."""
    nav = html.split('<div class="navbar-collapse', 1)[1].split('<ul class="nav navbar-nav '
                                                                 'navbar-right', 1)[0]
    hrefs = [unescape(h) for h in re.findall(r'<a[^>]+href="([^"#][^"]*)"', nav)]
    return [h for h in hrefs if h.startswith("/")]


def test_every_demo_role_has_menu_entries_checked(login, world):
    """The check below walks every demo role; a role without a single menu link would make
    it pass without checking anything."""
    roles = {role for role, _username in load_demo()}
    assert {"admin", "unit", "delegation", "sub_delegation", "finance", "reviewer",
            "organiser", "gate"} <= {r.lower() for r in roles}


def test_every_menu_link_a_role_is_shown_answers_200(login, world):
    failures = []
    for role, username in load_demo():
        client = login(username)
        home = client.get("/")
        assert home.status_code == 200, username
        links = menu_links(home.data.decode())
        if role.lower() != "person":
            assert links, f"{username} ({role}) is shown no menu at all"
        for href in links:
            status = client.get(href).status_code
            if status != 200:
                failures.append(f"{role} {username}: {href} -> {status}")
    assert not failures, "\n".join(failures)
