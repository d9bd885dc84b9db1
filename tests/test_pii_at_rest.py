"""Personal data at rest (issue 17): ID and mobile numbers are sealed in the database (AES-GCM,
the key id beside each ciphertext), searched and kept unique by keyed hashes, and nothing
changes for the users: masking, the logged full display, exports and exact search keep
working, also after `flask ciie rotate-keys` sealed everything with a new key. Numbers: the
real published ones of tests/data/search_numbers.json (sources in search-SOURCES.md)."""
from __future__ import annotations

import base64
import json
import os
import re

import pytest
import sqlalchemy as sa

from app import create_app
from app import models as m
from app.extensions import db
from app.formatting import mask_id_number
from app.pii import DEV_KID, ID_NUMBER, MOBILE, KeySettingError, SealError, build_ring
from app.pii_rows import SEALED
from app.search_keys import normalised_mobile
from tests.conftest import ROOT, UNIT_A, text_of
from tests.test_exports import export
from tests.test_person_import import confirm, gbk_csv, preview
from tests.test_person_search import add_person

with open(os.path.join(ROOT, "tests", "data", "search_numbers.json"), encoding="utf-8") as fh:
    NUMBERS = json.load(fh)
ID_CN, ID_X, PASSPORT = NUMBERS["id_numbers"]
MOBILE_CN, MOBILE_GB, MOBILE_HK = NUMBERS["mobiles"]
PR = m.PersonRegistration
DELEGATION_SHANGHAI = "sh-delegation"


def key_line(kid: str, byte: int) -> str:
    return f"{kid}:{base64.b64encode(bytes([byte]) * 32).decode()}"


def raw_rows(connection) -> dict[str, list[str]]:
    """Every row of every table of the schema, as PostgreSQL prints it (all columns)."""
    tables = [t.name for t in m.metadata.sorted_tables]
    return {t: connection.execute(sa.text(f'SELECT row_to_json(r)::text FROM "{t}" r'))
            .scalars().all() for t in tables}


def plain_forms(number: str | None) -> set[str]:
    """What a number would look like stored plain: as kept, and normalised (no +86)."""
    if not number:
        return set()
    forms = {number, number.lstrip("+")}
    if (normalised := normalised_mobile(number)) is not None:
        forms.add(normalised.lstrip("+"))
    return forms


def person_numbers() -> set[str]:
    found: set[str] = set()
    for person in db.session.scalars(sa.select(m.Person)):
        found |= plain_forms(person.id_number) | plain_forms(person.mobile)
    return found


def contact_numbers() -> set[str]:
    found: set[str] = set()
    for unit in db.session.scalars(sa.select(m.Unit)):
        found |= plain_forms(unit.mobile)
    for registration in db.session.scalars(sa.select(m.UnitRegistration)):
        found |= plain_forms(registration.contact_mobile)
    for claim in db.session.scalars(sa.select(m.AccountClaim)):
        found |= plain_forms(claim.mobile)
    return found


def leaks(rows: dict[str, list[str]], numbers: set[str], skip: frozenset = frozenset()):
    return sorted({(table, number) for table, texts in rows.items() if table not in skip
                   for text in texts for number in numbers if number in text})


def test_the_raw_tables_hold_no_plain_id_or_mobile_number(login, world, app):
    unit = login(UNIT_A)
    confirm(unit, preview(unit, gbk_csv(), "人员名单.csv"))       # four persons imported
    edit = add_person(unit, "表单录入", PASSPORT, MOBILE_CN["typed"][-1], gender="female")
    response = unit.post(f"/unit/persons/edit/{edit.id}", data={
        "name": "表单录入", "gender": "", "id_type": ID_X["id_type"],
        "id_number": ID_X["typed"][1], "nationality": "CN",
        "mobile": MOBILE_GB["typed"][2], "entry_dates": ["2022-11-05"]})
    assert response.status_code == 302, text_of(response)[:400]
    db.session.expire_all()
    persons = person_numbers()
    assert {ID_X["stored"], "360426199101010071", "E87654321"} <= persons
    assert len(persons) > 20
    contacts = contact_numbers() - persons
    assert contacts

    with db.engine.connect() as connection:
        rows = raw_rows(connection)
    assert sum(map(len, rows.values())) > 500
    # No person's number anywhere: not in its table, the audit trail, the import's record.
    assert leaks(rows, persons) == []
    # A contact's mobile only as the address of a message (its queue row, see the docs).
    assert leaks(rows, contacts, skip=frozenset({"notification"})) == []
    with db.engine.connect() as connection:
        stored = connection.execute(sa.text(
            "SELECT id_number, mobile, id_search_key FROM person WHERE name = '表单录入'")).one()
    assert stored.id_number.startswith(f"{DEV_KID}.") and stored.mobile.startswith(f"{DEV_KID}.")
    assert re.fullmatch(r"[0-9a-f]{64}", stored.id_search_key)


def test_users_see_what_they_saw_masked_revealed_exported_and_searched(login, world):
    unit = login(UNIT_A)
    registration = add_person(unit, "加密可见", ID_CN, MOBILE_CN["typed"][-1])
    delegation = login(DELEGATION_SHANGHAI)
    masked = text_of(delegation.get(f"/delegation/persons/list/?_flt_0_person_id_search="
                                    f"{ID_CN['typed'][2]}"))
    assert "加密可见" in masked and ID_CN["stored"] not in masked
    assert ID_CN["stored"][:4] + "*" in masked
    full = delegation.post(f"/delegation/persons/reveal/{registration.id}")
    assert full.status_code == 200
    assert full.json == {"id_number": ID_CN["stored"], "mobile": MOBILE_CN["stored"]}
    by_mobile = text_of(delegation.get(f"/delegation/persons/list/?_flt_0_person_mobile_search="
                                       f"{MOBILE_CN['typed'][0]}"))
    assert "加密可见" in by_mobile


def test_a_sealed_value_opens_only_as_its_kind_with_its_key(app):
    ring = build_ring({"PII_KEYS": key_line("a1", 1), "PII_SEARCH_KEY":
                       base64.b64encode(b"s" * 32).decode()})
    sealed = ring.seal(ID_CN["stored"], ID_NUMBER)
    assert sealed.startswith("a1.") and ID_CN["stored"] not in sealed
    assert sealed != ring.seal(ID_CN["stored"], ID_NUMBER)     # a fresh nonce each time
    assert ring.open(sealed, ID_NUMBER) == ID_CN["stored"]
    with pytest.raises(SealError):
        ring.open(sealed, MOBILE)                              # bound to what it holds
    changed = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(SealError):
        ring.open(changed, ID_NUMBER)
    with pytest.raises(SealError, match="'zz'"):
        ring.open("zz." + sealed[3:], ID_NUMBER)
    other = build_ring({"PII_KEYS": key_line("a1", 2), "PII_SEARCH_KEY":
                        base64.b64encode(b"t" * 32).decode()})
    with pytest.raises(SealError):
        other.open(sealed, ID_NUMBER)
    assert ring.digest("x") != other.digest("x") and len(ring.digest("x")) == 64


@pytest.mark.parametrize("settings, named", [
    ({"PII_KEYS": "a1:bm90LWJhc2U2NA", "PII_SEARCH_KEY": "c" * 44}, "PII_KEYS a1"),
    ({"PII_KEYS": "a1:" + base64.b64encode(b"k" * 16).decode(),
      "PII_SEARCH_KEY": base64.b64encode(b"s" * 32).decode()}, "16 bytes"),
    ({"PII_KEYS": key_line("a1", 1), "PII_KEY_ID": "b2",
      "PII_SEARCH_KEY": base64.b64encode(b"s" * 32).decode()}, "PII_KEY_ID"),
    ({"PII_KEYS": key_line("a1", 1), "PII_SEARCH_KEY": base64.b64encode(b"s" * 8).decode()},
     "PII_SEARCH_KEY"),
    ({"PII_KEYS": "no key here", "PII_SEARCH_KEY": base64.b64encode(b"s" * 32).decode()},
     "kid:base64"),
    ({"PII_KEYS_REQUIRED": True}, "PII_KEYS"),
])
def test_bad_key_settings_are_refused_naming_the_setting(settings, named):
    with pytest.raises(KeySettingError, match=re.escape(named)):
        build_ring(settings)


def test_every_sealed_column_of_the_models_is_resealed_by_rotate_keys():
    from app.pii import sealed_columns

    assert {(t.name, c.name) for t, c in sealed_columns(m.metadata)} == {
        (table, column) for table, columns in SEALED.items() for column in columns}


def use_ring(apps, config: dict) -> None:
    for application in apps:
        application.config.update(config)
        application.extensions["ciie_pii"] = build_ring(application.config)


@pytest.fixture
def rotated(app, data_app):
    """Both apps on a ring of the development key and a new one; back to the development key
    afterwards (the tables are emptied after each test)."""
    names = ("PII_KEYS", "PII_KEY_ID", "PII_SEARCH_KEY")
    before = [{n: a.config.get(n) for n in names} for a in (app, data_app)]
    yield lambda config: use_ring((app, data_app), config)
    for application, config in zip((app, data_app), before, strict=True):
        application.config.update(config)
        application.extensions["ciie_pii"] = build_ring(application.config)


def dev_key_line(application) -> str:
    """The development ring's key as a PII_KEYS entry (it opens what the app sealed)."""
    from app.pii import DEV_SECRET, _derived

    line = f"{DEV_KID}:{base64.b64encode(_derived(DEV_SECRET, b'pii encryption')).decode()}"
    sealed = application.extensions["ciie_pii"].seal("E12345678", ID_NUMBER)
    as_entry = build_ring({"PII_KEYS": line, "PII_SEARCH_KEY": base64.b64encode(b"s" * 32)
                           .decode()})
    assert as_entry.open(sealed, ID_NUMBER) == "E12345678"
    return line


def test_rotate_keys_seals_everything_again_and_users_notice_nothing(login, world, app,
                                                                     rotated):
    unit = login(UNIT_A)
    registration = add_person(unit, "轮换密钥", ID_CN, MOBILE_CN["typed"][-1])
    old_line = dev_key_line(app)
    new_search = base64.b64encode(os.urandom(32)).decode()
    rotated({"PII_KEYS": f"{old_line},{key_line('k2', 7)}", "PII_KEY_ID": "k2",
             "PII_SEARCH_KEY": new_search})
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ciie", "rotate-keys", "--batch", "7"])
    assert result.exit_code == 0, result.output
    assert "sealed with key k2" in result.output and "person.id_number" in result.output
    with db.engine.connect() as connection:
        for table, columns in SEALED.items():
            for column in columns:
                values = connection.execute(sa.text(
                    f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")).scalars().all()
                assert all(v.startswith("k2.") for v in values), (table, column)
                assert values or table == "account_claim"      # the demo has no claim
        audit = connection.execute(sa.text(
            "SELECT detail FROM audit_event WHERE record_type = 'pii_keys'")).scalar_one()
    persons = db.session.scalar(sa.select(sa.func.count()).select_from(m.Person))
    assert audit["key"] == "k2" and audit["person.id_number"] == persons
    assert audit["person.id_search_key"] == persons     # a new search key: every hash again
    again = runner.invoke(args=["ciie", "rotate-keys"])
    assert again.exit_code == 0 and "nothing out of date" in again.output

    # The development key can go: every value opens with k2, searches use the new hash key.
    rotated({"PII_KEYS": key_line("k2", 7), "PII_KEY_ID": "k2", "PII_SEARCH_KEY": new_search})
    delegation = login(DELEGATION_SHANGHAI)
    found = text_of(delegation.get(f"/delegation/persons/list/?_flt_0_person_id_search="
                                   f"{ID_CN['typed'][1]}"))
    assert "轮换密钥" in found and ID_CN["stored"] not in found
    full = delegation.post(f"/delegation/persons/reveal/{registration.id}")
    assert full.json == {"id_number": ID_CN["stored"], "mobile": MOBILE_CN["stored"]}
    rows = export(delegation, "/delegation/persons")
    [row] = [r for r in rows if "轮换密钥" in r]
    assert mask_id_number(ID_CN["stored"]) in row and ID_CN["stored"] not in row
    # The same document in the same edition is still refused (the hash holds the uniqueness).
    twice = unit.post("/unit/persons/add", data={
        "name": "重复证件", "gender": "", "id_type": ID_CN["id_type"],
        "id_number": ID_CN["typed"][0], "nationality": "CN", "entry_dates": ["2022-11-05"]})
    assert twice.status_code in (400, 409)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Person).where(
        m.Person.name == "重复证件")) == 0


def test_a_stored_value_under_a_key_no_longer_held_is_reported_not_guessed(login, world,
                                                                          rotated):
    rotated({"PII_KEYS": key_line("k9", 9), "PII_KEY_ID": "k9",
             "PII_SEARCH_KEY": base64.b64encode(b"s" * 32).decode()})
    db.session.expire_all()
    with pytest.raises(SealError, match="'dev'"):
        assert db.session.scalars(sa.select(m.Person)).first().id_number is None


def test_production_refuses_to_start_without_the_personal_data_keys(tmp_path):
    from tests.production_settings import production_settings

    settings = {k: v for k, v in production_settings(tmp_path).items()
                if not k.startswith("PII_")}
    with pytest.raises(RuntimeError, match="PII_KEYS"):
        create_app("production", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/p.db",
                   **settings)
    # With them (files outside the repository), it starts.
    keys, search = tmp_path / "pii-keys", tmp_path / "pii-search"
    keys.write_text(key_line("p1", 3) + "\n" + key_line("p2", 4) + "\n")
    search.write_text(base64.b64encode(b"q" * 32).decode())
    started = create_app("production", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/p.db",
                         PII_KEYS_FILE=str(keys), PII_SEARCH_KEY_FILE=str(search), **settings)
    assert started.extensions["ciie_pii"].current == "p2"


@pytest.fixture
def scratch_database(app):
    """An empty PostgreSQL database of its own, for a migration test."""
    from tests.conftest import PG_SERVER, fresh_database

    with fresh_database(PG_SERVER, f"ciie_pii_migration_{os.getpid()}") as url:
        yield url


def test_the_migration_seals_the_plain_numbers_of_an_existing_database(scratch_database,
                                                                      smtp_server):
    from flask_migrate import downgrade, upgrade

    from app.demo import load_demo
    from app.search_keys import id_number_key
    from app.workflow.persons import id_key
    from tests.conftest import base_config

    application = create_app("test", **base_config(scratch_database, smtp_server.port))
    with application.app_context():
        upgrade()
        load_demo()
        known = {p.id: (p.id_number, p.mobile) for p in db.session.scalars(sa.select(m.Person))}
        units = {u.id: u.mobile for u in db.session.scalars(sa.select(m.Unit))}
        db.session.remove()
        # Back to the schema before: every number plain, the keys the plain numbers.
        downgrade(revision="c17b0000000a")
        with db.engine.connect() as connection:
            plain = {r.id: (r.id_number, r.mobile) for r in connection.execute(
                sa.text("SELECT id, id_number, mobile FROM person"))}
            key = connection.execute(sa.text(
                "SELECT id_key FROM person_registration ORDER BY id LIMIT 1")).scalar_one()
        assert plain == known and ":" in key
        # The upgrade seals what the earlier schema held plain.
        upgrade()
        with db.engine.connect() as connection:
            sealed = connection.execute(sa.text(
                "SELECT id, id_number, mobile, id_search_key FROM person")).all()
            unit_mobiles = connection.execute(sa.text(
                "SELECT mobile FROM unit WHERE mobile IS NOT NULL")).scalars().all()
            keys = connection.execute(sa.text(
                "SELECT r.id_key, p.id FROM person_registration r JOIN person p "
                "ON p.id = r.person_id")).all()
        assert len(sealed) == len(known) > 10
        for row in sealed:
            assert row.id_number.startswith(f"{DEV_KID}.") and row.id_number != known[row.id][0]
            assert row.id_search_key == id_number_key(known[row.id][0])
        assert unit_mobiles and all(v.startswith(f"{DEV_KID}.") for v in unit_mobiles)
        db.session.remove()
        people = {p.id: p for p in db.session.scalars(sa.select(m.Person))}
        assert {i: (p.id_number, p.mobile) for i, p in people.items()} == known
        assert {u.id: u.mobile for u in db.session.scalars(sa.select(m.Unit))} == units
        assert all(k == id_key(people[i].id_type, people[i].id_number) for k, i in keys)
        db.session.remove()


def test_sql_cannot_compare_a_sealed_column_and_lists_do_not_sort_by_one(login, world):
    # Each sealing differs: a comparison could never match, so writing one is refused.
    for column in (m.Person.id_number, m.Person.mobile, m.Unit.mobile):
        with pytest.raises(SealError, match="search key"):
            column == "13123456789"  # noqa: B015
    assert str(m.Person.mobile.is_(None)) == "person.mobile IS NULL"
    page = login(DELEGATION_SHANGHAI).get("/delegation/persons/list/").data.decode()
    assert "_oc_DelegationPersonView=person.name" in page
    assert "_oc_DelegationPersonView=person.id_number" not in page
    assert "_oc_DelegationPersonView=person.mobile" not in page
