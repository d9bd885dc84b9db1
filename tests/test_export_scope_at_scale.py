"""The persons export at a mid size: a delegation's file holds every one of its persons and
never one of another delegation's, and the export sends the same statements for 1,500 more
rows (no query per row)."""
from __future__ import annotations

from app import models as m
from app.scoping.actor import actor_for_user
from tests.bulk_persons import add_persons
from tests.conftest import count_statements
from tests.test_exports import PERSONS, export

MANY = 1500


def _many_persons(registration: m.UnitRegistration, mark: str, count: int) -> None:
    """`count` more submitted persons of one unit, named mark + number (e.g. 沪0042)."""
    add_persons(registration, ((f"{mark}{n:04d}", f"X{registration.id}{n:08d}", None)
                               for n in range(1, count + 1)), gender="female")


def _export_statements(app, world, username: str) -> int:
    from app import exports

    actor = actor_for_user(world.user(username))
    return count_statements(lambda: exports.export_persons(
        actor, {"filters": [], "language": "zh"}, lambda done, total: None))


def test_a_delegations_export_never_holds_another_delegations_person(app, login, world):
    small = _export_statements(app, world, "sh-delegation")
    _many_persons(world.registration("浦东医疗"), "沪", MANY)
    _many_persons(world.registration("浙江杭州"), "浙", MANY)

    header, *rows = export(login("sh-delegation"), PERSONS)
    names = [row[0] for row in rows]
    assert len(names) == 8 + MANY and len(set(names)) == len(names)
    assert sum(name.startswith("沪") for name in names) == MANY
    assert not [name for name in names if name.startswith("浙") or name == "郑浩"]
    assert {row[header.index("交易团")] for row in rows} <= {"上海交易团", "医药行业交易团"}

    names = [row[0] for row in export(login("zj-delegation"), PERSONS)[1:]]
    assert sorted(names) == sorted(["郑浩"] + [f"浙{n:04d}" for n in range(1, MANY + 1)])

    # A sub-delegation sees its own unit's persons only, the 1,500 new ones among them.
    names = [row[0] for row in export(login("sh-pudong"), PERSONS)[1:]]
    assert len(names) == 5 + MANY and not [n for n in names if n.startswith("浙")]

    assert _export_statements(app, world, "sh-delegation") == small
