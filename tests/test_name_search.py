"""Search of persons by name (issue 14): the persons lists answer a one- or two-character
Chinese name from the name's GIN-indexed tokens (app.search_keys.name_tokens), and find exactly
the persons a plain "contains" finds (latin names, any case, full-width input); every write of
a name keeps the tokens, the migration's SQL makes the same tokens as Python, each role finds
only the persons it may see, and hostile input is no 5xx. Names: tests/data/names-SOURCES.md."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import unicodedata
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import models as m
from app.exports import PERSONS
from app.extensions import db
from app.scoping.actor import acting_as, actor_for_user
from app.scoping.interface import ScopedInterface, filtered_ids
from app.search_keys import name_search_tokens, name_tokens
from tests.bulk_persons import add_persons, analyze
from tests.conftest import ROOT, UNIT_A, text_of
from tests.test_app_api import app_user, join_body
from tests.test_person_search import ID_CN, ID_X, MOBILE_CN, add_person, person_form
from tests.test_registration import delegation

with open(os.path.join(ROOT, "tests", "data", "names.json"), encoding="utf-8") as fh:
    NAMES = json.load(fh)["names"]
PR = m.PersonRegistration
PS = m.PersonStatus
ROUTE = "/delegation/persons"
# FAB's text filters on the name, by their index in the list's URL (_flt_<index>_person_name).
STARTS, ENDS, CONTAINS, EQUALS, NOT_CONTAINS = 0, 1, 2, 3, 6


def _migration():
    path = os.path.join(ROOT, "migrations", "versions", "c14b00000002_name_search_tokens.py")
    spec = importlib.util.spec_from_file_location("name_search_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stored_names() -> list[str]:
    """The names as the workflow stores them (NFKC, trimmed)."""
    return [unicodedata.normalize("NFKC", name).strip() for name in NAMES]


def add_registered(registration: m.UnitRegistration, names: list[str], tag: str) -> dict:
    """Submitted persons of a unit with these names (test data, inserted through the ORM as
    the workflow writes a person): {registration id: name}."""
    ids = {}
    for i, name in enumerate(names):
        number = f"N{tag}{i:06d}"
        person = m.Person(unit_id=registration.unit_id, name=name, gender=m.Gender.female,
                          id_type=m.IdType.passport, id_number=number)
        pr = PR(edition_id=registration.edition_id, person=person,
                unit_registration_id=registration.id, id_key=f"passport:{number}",
                status=PS.submitted, entry_days=1)
        db.session.add(pr)
        db.session.flush()
        ids[pr.id] = name
    db.session.commit()
    return ids


def listed(client, typed: str, index: int = CONTAINS, route: str = ROUTE) -> set[int]:
    response = client.get(f"{route}/list/?" + urlencode({f"_flt_{index}_person_name": typed}))
    assert response.status_code == 200, (typed, response.status_code, text_of(response)[:300])
    return {int(i) for i in re.findall(r'name="rowid" value="(\d+)"', response.data.decode())}


def contains(typed: str, scope: set[int]) -> set[int]:
    """What a plain "contains" finds among these registrations: PostgreSQL's lower() of the
    name holds lower() of the text (read as NFKC, as names are stored), no index, no
    wildcards."""
    text = unicodedata.normalize("NFKC", typed).strip()
    return set(db.session.scalars(sa.select(PR.id).join(m.Person).where(
        PR.id.in_(scope), sa.func.strpos(sa.func.lower(m.Person.name),
                                         sa.func.lower(text)) > 0)))


def visible(world, username: str) -> set[int]:
    """Every registration the user's persons list shows (its scope and base filters)."""
    with acting_as(actor_for_user(world.user(username))):
        return set(db.session.scalars(filtered_ids(
            ScopedInterface(PR), PERSONS.search_columns, PERSONS.base_filters, [])))


# --------------------------------------------------------------------------- the tokens ---

def test_a_names_tokens_hold_the_tokens_of_every_text_it_contains():
    for name in stored_names():
        tokens = set(name_tokens(name))
        folded = "".join(ch.lower()[0] for ch in name)
        for start in range(len(folded)):
            for end in range(start + 1, min(len(folded), start + 4) + 1):
                assert set(name_search_tokens(folded[start:end])) <= tokens, (name, start, end)
    assert name_search_tokens("王") == ["王"]
    assert set(name_search_tokens("王楚钦")) == {"王楚", "楚钦"}
    assert name_search_tokens("ＬＩ　ｎa") == ["li", "na"]
    assert name_search_tokens(" · ") == name_tokens("   ") == []


def test_the_migrations_sql_makes_the_tokens_python_makes(app, world):
    """Raw names too (full-width, Turkish İ, Greek final sigma, ß), not only stored ones."""
    sql = _migration().NAME_TOKENS_SQL.format(name="n.name")
    names = NAMES + stored_names() + ["", "  ", "王 · 伟", "a\tb\nc", "ǅemal", "ΣΑΣ"]
    made = db.session.execute(sa.text(
        f"SELECT n.name, {sql} FROM unnest(CAST(:names AS text[])) AS n (name)"),
        {"names": names}).all()
    assert {name: list(tokens) for name, tokens in made} == \
        {name: name_tokens(name) for name in names}


def test_the_migration_backfills_the_tokens_every_write_keeps(app, world):
    add_registered(world.registration("浦东医疗"), stored_names(), "B")
    expected = {p.id: p.name_search for p in db.session.scalars(sa.select(m.Person))}
    assert len(expected) > len(NAMES)
    assert all(tokens == name_tokens(p.name) for p in db.session.scalars(sa.select(m.Person))
               for tokens in [expected[p.id]])
    db.session.execute(sa.update(m.Person).values(name_search=None))
    db.session.execute(sa.text(_migration().BACKFILL))
    db.session.commit()
    db.session.expire_all()
    assert {p.id: p.name_search for p in db.session.scalars(sa.select(m.Person))} == expected


# ------------------------------------------------------------------ exactly "contains" ----

@pytest.fixture
def named(world):
    """The names of tests/data/names.json as persons of Pudong (Shanghai), a few of them in
    Zhejiang too (the same names in another delegation)."""
    shanghai = add_registered(world.registration("浦东医疗"), stored_names(), "S")
    zhejiang = add_registered(world.registration("浙江"), ["王楚钦", "Li Na", "谷爱凌"], "Z")
    return shanghai, zhejiang


SEARCHES = ["王", "娜", "凌", "王楚", "爱凌", "欧阳", "罗纳", "王楚钦", "欧阳娜娜", "爱凌 E",
            "·", "梅西", "li", "LI", "Li Na", "na", "ＬＩ", "ｌｉ　ｎａ", "ming", "MÜLLER", "ö",
            "i̇lkay", "İlkay", "straß", "σωκράτης", "ánh", "o'c", "-p", "gu", "Ｅｉｌｅｅｎ", "x"]


def test_the_name_search_finds_exactly_what_contains_finds(login, world, named):
    sh = login("sh-delegation")
    scope = visible(world, "sh-delegation")
    assert set(named[0]) <= scope
    found_any = 0
    for typed in SEARCHES:
        expected = contains(typed, scope)
        assert len(expected) < 25, typed      # one page holds them all
        assert listed(sh, typed) == expected, typed
        found_any += bool(expected)
    assert found_any >= len(SEARCHES) - 2
    # Upper and lower case, full-width and half-width find the same persons.
    assert listed(sh, "ｌｉ　ｎａ") == listed(sh, "LI NA") == contains("li na", scope) != set()
    assert listed(sh, "王") >= {i for i, name in named[0].items() if name.startswith("王")}


def test_starts_ends_and_equals_are_answered_the_same_way(login, world, named):
    sh = login("sh-delegation")
    scope = visible(world, "sh-delegation")
    names = {pr.id: pr.person.name for pr in db.session.scalars(sa.select(PR).where(
        PR.id.in_(scope)))}
    for typed in ("王", "欧阳", "Li", "li n", "ｅｉｌｅｅｎ", "诸葛亮"):
        text = "".join(ch.lower()[0] for ch in unicodedata.normalize("NFKC", typed))
        folded = {i: "".join(ch.lower()[0] for ch in name) for i, name in names.items()}
        assert listed(sh, typed, STARTS) == {i for i, f in folded.items()
                                             if f.startswith(text)}, typed
        assert listed(sh, typed, ENDS) == {i for i, f in folded.items()
                                           if f.endswith(text)}, typed
    assert listed(sh, "诸葛亮", EQUALS) == {i for i, n in names.items() if n == "诸葛亮"} != set()
    assert listed(sh, "诸葛", EQUALS) == set()
    # "Not contains" stays FAB's own (a page of them).
    without = {i for i, n in names.items() if "王" not in n}
    assert listed(sh, "王", NOT_CONTAINS) <= without
    assert len(listed(sh, "王", NOT_CONTAINS)) == min(25, len(without))


def test_the_export_of_a_name_search_holds_what_the_list_shows(login, world, named):
    sh = login("sh-delegation")
    with acting_as(actor_for_user(world.user("sh-delegation"))):
        ids = set(db.session.scalars(filtered_ids(
            ScopedInterface(PR), PERSONS.search_columns, PERSONS.base_filters,
            [["person_name", CONTAINS, ["王楚"]]])))
    assert ids == listed(sh, "王楚") == {i for i, n in named[0].items() if "王楚" in n}


# ------------------------------------------------------------------------- per role -------

def test_a_delegations_name_search_never_shows_another_delegations_persons(login, world,
                                                                           named):
    shanghai, zhejiang = named
    sh, zj, pudong = login("sh-delegation"), login("zj-delegation"), login("sh-pudong")
    for typed in ("王楚钦", "王", "Li Na", "爱凌"):
        in_shanghai = {i for i, n in shanghai.items() if typed.lower() in n.lower()}
        in_zhejiang = {i for i, n in zhejiang.items() if typed.lower() in n.lower()}
        assert in_shanghai and in_zhejiang, typed
        assert in_shanghai <= listed(sh, typed) and not listed(sh, typed) & set(zhejiang)
        assert listed(zj, typed) == in_zhejiang
        assert listed(pudong, typed) >= in_shanghai
        assert not listed(pudong, typed) & set(zhejiang)
    # A Xuhui person (same delegation, other sub-delegation) is not Pudong's.
    xuhui = world.person("赵敏")
    assert xuhui.id in listed(sh, "赵敏") and xuhui.id not in listed(pudong, "赵敏")


def test_the_reviewer_and_the_badge_office_search_their_queues_by_name(login, world):
    waiting = world.person("张强")      # awaiting review in the demo
    assert waiting.id in listed(login("reviewer"), "张", route="/review/queue")
    assert listed(login("reviewer"), "张强", route="/review/queue") == {waiting.id}
    waiting.status, waiting.tag = PS.approved, m.Tag.visitor
    db.session.commit()
    assert listed(login("admin"), "强", route="/badges/production") == {waiting.id}


# ------------------------------------------------------------------ the write paths -------

def test_the_tokens_follow_the_name_through_the_unit_form_and_the_app(login, world):
    unit = login(UNIT_A)
    sh = login("sh-delegation")
    draft = add_person(unit, "王晓明", ID_CN, MOBILE_CN["typed"][1])
    assert draft.person.name_search == name_tokens("王晓明")
    assert listed(sh, "晓明") == {draft.id}
    response = unit.post(f"/unit/persons/edit/{draft.id}", data=person_form(
        "欧阳娜娜", ID_CN, MOBILE_CN["typed"][1]))
    assert response.status_code == 302, text_of(response)[:400]
    db.session.expire_all()
    assert db.session.get(PR, draft.id).person.name_search == name_tokens("欧阳娜娜")
    assert listed(sh, "晓明") == set() and listed(sh, "阳娜") == {draft.id}

    client = login(None)
    headers = app_user(client)
    joined = client.http.post("/api/v1/app/join", headers=headers, json=join_body(
        name="Ｅｉｌｅｅｎ Ｇｕ", id_type="mainland_id", id_number=ID_X["stored"]))
    assert joined.status_code == 201, joined.json
    own = db.session.get(PR, joined.json["id"])
    assert own.person.name == "Eileen Gu" and own.person.name_search == name_tokens("Eileen Gu")
    body = join_body(name="谷爱凌", id_type="mainland_id", id_number=ID_X["stored"])
    del body["unit_number"]
    changed = client.http.put("/api/v1/app/me", headers=headers, json=body)
    assert changed.status_code == 200, changed.json
    db.session.expire_all()
    assert db.session.get(PR, own.id).person.name_search == name_tokens("谷爱凌")
    # Awaiting its unit's decision: the unit's own list finds it by the new name.
    assert own.id in listed(unit, "爱凌", route="/unit/persons")
    assert own.id not in listed(unit, "Eileen", route="/unit/persons")


def test_the_demo_world_has_every_names_tokens(world):
    persons = list(db.session.scalars(sa.select(m.Person)))
    assert persons and all(p.name_search == name_tokens(p.name) for p in persons)
    assert copies_differing_from_the_persons() == []


# ------------------------------------------------- the registrations' copies of the tokens --

def copies_differing_from_the_persons() -> list[int]:
    """Registrations whose copy of the name's tokens is not their person's."""
    db.session.expire_all()
    return list(db.session.scalars(
        sa.select(PR.id).join(m.Person, m.Person.id == PR.person_id)
        .where(PR.name_search.is_distinct_from(m.Person.name_search))))


def test_a_person_carried_forward_and_renamed_takes_every_registrations_tokens_along(login,
                                                                                     world):
    unit, sh = login(UNIT_A), login("sh-delegation")
    huang = db.session.scalars(sa.select(m.Person).where(m.Person.name == "黄磊")).one()
    # The 4th edition's person, carried forward by the unit into the current edition.
    assert unit.post("/unit/previous-persons/", data={"person": [str(huang.id)]}
                     ).status_code == 302
    registrations = list(db.session.scalars(sa.select(PR).where(PR.person_id == huang.id)))
    assert len(registrations) == 2 and copies_differing_from_the_persons() == []
    [current] = [r for r in registrations if r.edition.is_current]
    assert current.status is PS.draft and listed(sh, "黄磊") == {current.id}
    # Renamed on the unit's form: both registrations' copies follow, the old name finds none.
    response = unit.post(f"/unit/persons/edit/{current.id}", data=person_form(
        "黄晓磊", ID_CN, MOBILE_CN["typed"][1]))
    assert response.status_code == 302, text_of(response)[:400]
    assert copies_differing_from_the_persons() == []
    assert [r.name_search for r in db.session.scalars(
        sa.select(PR).where(PR.person_id == huang.id))] == [name_tokens("黄晓磊")] * 2
    assert listed(sh, "晓磊") == {current.id} and listed(sh, "黄磊") == set()
    # Another delegation finds it under neither name.
    zj = login("zj-delegation")
    assert listed(zj, "晓磊") == listed(zj, "黄磊") == set()


def test_writers_without_the_orm_keep_the_copies_too(login, world):
    """Set-based writers (an import's Core INSERTs and bulk UPDATEs, SQL by hand) write the
    person's tokens only, or nothing: the database copies them, and a copy written by hand
    gives way to the person's."""
    sh = login("sh-delegation")
    pudong = world.registration("浦东医疗")
    person_id = db.session.execute(m.Person.__table__.insert().returning(m.Person.id), {
        "unit_id": pudong.unit_id, "name": "上官婉儿", "name_search": name_tokens("上官婉儿"),
        "gender": "female", "id_type": "passport", "id_number": "K00000001",
        "nationality": "GB"}).scalar_one()
    registration_id = db.session.execute(PR.__table__.insert().returning(PR.id), {
        "edition_id": pudong.edition_id, "person_id": person_id,
        "unit_registration_id": pudong.id, "delegation_id": pudong.delegation_id,
        "sub_delegation_id": pudong.sub_delegation_id, "id_key": "passport:K00000001",
        "status": "submitted", "entry_days": 1, "is_reuse": False}).scalar_one()
    db.session.commit()
    assert copies_differing_from_the_persons() == []
    assert listed(sh, "婉儿") == {registration_id}
    # Renamed by a bulk UPDATE (no ORM events), then a copy overwritten by hand.
    db.session.execute(sa.update(m.Person), [
        {"id": person_id, "name": "上官仪", "name_search": name_tokens("上官仪")}])
    db.session.execute(sa.update(PR).where(PR.id == registration_id).values(
        name_search=name_tokens("王")))
    db.session.commit()
    assert copies_differing_from_the_persons() == []
    assert listed(sh, "婉儿") == set() and listed(sh, "官仪") == {registration_id}
    assert registration_id not in listed(sh, "王")


def test_a_unit_moved_to_another_delegation_is_found_by_name_there_only(login, world):
    xuhui = world.registration("徐汇贸易")   # Shanghai / Xuhui: 赵敏 and 孙磊
    zhao, sun = world.person("赵敏"), world.person("孙磊")
    sh, zj, pudong = login("sh-delegation"), login("zj-delegation"), login("sh-pudong")
    assert zhao.id in listed(sh, "赵") and zhao.id not in listed(zj, "赵")
    # Moved set-based (an operator's correction): the delegation copies cascade, the tokens
    # stay on the rows that moved.
    db.session.execute(sa.update(m.UnitRegistration).where(m.UnitRegistration.id == xuhui.id)
                       .values(delegation_id=delegation("ZJ").id, sub_delegation_id=None))
    db.session.commit()
    assert copies_differing_from_the_persons() == []
    for typed in ("赵", "赵敏", "磊", "孙磊"):
        moved = {i for i, name in ((zhao.id, "赵敏"), (sun.id, "孙磊")) if typed in name}
        assert moved <= listed(zj, typed), typed
        assert not moved & listed(sh, typed), typed
    # And back, through the ORM, into Pudong this time: Pudong finds them, Zhejiang no more.
    moved_back = db.session.get(m.UnitRegistration, xuhui.id)
    moved_back.delegation_id = delegation("SH").id
    moved_back.sub_delegation_id = delegation("SH-PD").id
    db.session.commit()
    assert listed(pudong, "赵敏") == {zhao.id} and listed(zj, "赵敏") == set()
    assert listed(sh, "孙磊") == {sun.id}


# ------------------------------------------------------------------- hostile input --------

def test_hostile_name_searches_are_answered_not_a_server_error(login, world, named):
    sh = login("sh-delegation")
    everyone = listed(sh, "", index=STARTS) | visible(world, "sh-delegation")
    for typed in ("%", "_", "%%", "\\", "\\%", "王%", "_娜", "[王]", "*"):
        assert listed(sh, typed) == set(), typed      # searched as typed, no wildcard
    for typed in (" ", "   ", "\u3000", "\t"):
        response = sh.get(f"{ROUTE}/list/?" + urlencode({"_flt_2_person_name": typed}))
        assert response.status_code == 200, typed    # narrows nothing
    assert listed(sh, "   ") <= everyone
    for typed in ("王" * 101, "王伟" * 5000, "a" * 20000):
        response = sh.get(f"{ROUTE}/list/?" + urlencode({"_flt_2_person_name": typed}))
        assert response.status_code in (200, 400, 414), response.status_code
        if response.status_code == 200:
            assert listed(sh, typed) == set()
    response = sh.get(f"{ROUTE}/list/?" + urlencode({"_flt_2_person_name": "王\x00"}))
    assert response.status_code == 400 and "姓名" in text_of(response)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=12), index=st.sampled_from([STARTS, ENDS, CONTAINS, EQUALS]))
def test_any_name_search_text_answers_without_a_server_error(login, world, named, text,
                                                             index):
    response = login("sh-delegation").get(f"{ROUTE}/list/?" + urlencode(
        {f"_flt_{index}_person_name": text}))
    assert response.status_code in (200, 400), text
    if index == CONTAINS and response.status_code == 200 and text.strip():
        scope = visible(world, "sh-delegation")
        found = {int(i) for i in re.findall(r'name="rowid" value="(\d+)"',
                                             response.data.decode())}
        assert found == contains(text, scope) or len(found) == 25, text


# ------------------------------------------------------------ an index, not a scan --------

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"


def _many_named_persons(registration: m.UnitRegistration, count: int) -> None:
    """`count` more persons of one unit with generated Chinese names (their tokens as every
    write path makes them: the migration's SQL makes the same, tested above), then VACUUM
    ANALYZE as autovacuum would after a bulk load."""
    def given(position: int) -> str:        # SQL's substr: '' past the end
        return GIVEN[position] if position < len(GIVEN) else ""

    add_persons(registration, ((SURNAMES[n % 20] + given(n // 20 % 26) + given(n // 520 % 27),
                                f"G{n:08d}", None) for n in range(1, count + 1)))
    analyze("person", "person_registration", vacuum=True)


def test_a_name_search_is_answered_from_the_registrations_tokens_index_on_postgresql(app, login,
                                                                                     world):
    _many_named_persons(world.registration("浦东医疗"), 30_000)
    client = login("sh-delegation")
    with app.app_context():
        engine = db.engine
    for typed in ("王", "秀英", "桂", "赵秀英"):
        seen = []

        def note(conn, cursor, statement, parameters, context, executemany, seen=seen):
            if "name_search" in statement:
                seen.append((statement, parameters))

        sa.event.listen(engine, "before_cursor_execute", note)
        try:
            found = listed(client, typed)
        finally:
            sa.event.remove(engine, "before_cursor_execute", note)
        assert found, typed
        assert len(seen) == 2, typed    # the page's bounded count and its rows
        # One or two characters: the registration's tokens are the answer, no name is read;
        # three: the name is compared too.
        assert all(("ILIKE" in statement) == (len(typed) > 2) for statement, _ in seen), typed
        for statement, parameters in seen:
            assert "person_registration.name_search @>" in statement, statement
            with db.engine.connect() as conn:
                plan = "\n".join(r[0] for r in conn.exec_driver_sql(
                    "EXPLAIN " + statement, parameters))
            assert not re.search(r"Seq Scan on person(_registration)?\b", plan), (typed, plan)
            if "count(*)" in statement:
                # The tokens (and the delegation where it narrows: at full size) in one bitmap
                # of one index.
                assert re.search(r"Bitmap Index Scan on ix_person_registration_name_search .*\n"
                                 r"\s+Index Cond: .*name_search @>", plan), (typed, plan)
