"""Unit information: a refused save keeps everything the unit chose and typed and names the
field; zones (专区) are chosen under the exhibition areas (展区) the expo publishes, kept by
admins in zh and en; only a zone the form offers can be saved; the chosen zones are shown
grouped by area wherever the unit's information is shown; the migration keeps earlier
choices."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys

import sqlalchemy as sa

from app import models as m
from app.demo import EXHIBITION_AREAS
from app.extensions import db
from tests.conftest import ROOT, UNIT_A, UNIT_E, text_of
from tests.test_unit_journey import info_form

DATA = os.path.join(ROOT, "tests", "data")
ZONES_LABEL = "感兴趣的行业和专区"


def zone(name_zh: str) -> m.Zone:
    return db.session.scalars(sa.select(m.Zone).where(m.Zone.name_zh == name_zh)).one()


def checked(html: str) -> set[int]:
    return {int(v) for v in re.findall(
        r'<input type="checkbox" name="zones" value="(\d+)" id="zone-\d+" checked>', html)}


def offered(html: str) -> dict[str, list[str]]:
    """The form's choices: each area heading with the zone names under it."""
    groups = re.findall(r'<div class="ciie-area" id="area-\d+"[^>]*>\s*<h5[^>]*><strong>'
                        r'(.*?)</strong></h5>(.*?)</div>', html, flags=re.S)
    return {area: [z.strip() for z in re.findall(r'<input type="checkbox" name="zones"[^>]*>'
                                                 r'([^<]*)</label>', body)]
            for area, body in groups}


def alerts(response) -> str:
    """The text of the page's error messages."""
    html = response.data.decode()
    return " ".join(re.sub(r"<[^>]+>|&times;", " ", m) for m in re.findall(
        r'<div class="alert alert-danger">(.*?)</div>', html, flags=re.S))


def saved_state(registration: m.UnitRegistration) -> tuple:
    db.session.expire_all()
    return (registration.contact_mobile, registration.contact_name,
            registration.purchase_intentions, sorted(z.id for z in registration.zones))


# ------------------------------------------------------------------ a refused save -------

def test_a_refused_save_shows_every_tick_and_typed_value_and_names_the_field(login, world):
    client = login(UNIT_E)
    registration = world.registration("杭州进出口")
    before = saved_state(registration)
    chosen = {zone("集成电路专区").id, zone("汽车（综合）").id, zone("服务贸易（综合）").id}
    for bad, field in ((dict(contact_mobile="12"), "联系人手机"),
                       (dict(contact_email="zhou@"), "联系人邮箱"),
                       (dict(name=" "), "单位名称")):
        form = info_form(purchase_intentions="进口机床\n工业机器人", **bad)
        response = client.post("/unit/info/", data={**form, "zones": sorted(chosen)})
        assert response.status_code == 400, bad
        html = response.data.decode()
        assert field in alerts(response)
        assert checked(html) == chosen
        for key, value in form.items():
            if value.strip():
                assert value in html, key
        assert 'has-error"><label class="control-label" for="' + next(iter(bad)) in html
        assert saved_state(registration) == before


def test_the_refusal_reads_in_english_too(login, world):
    client = login(UNIT_E)
    client.set_language("en")
    response = client.post("/unit/info/", data=info_form(contact_mobile="12"))
    assert "contact&#39;s mobile: This is not a valid mobile number." in response.data.decode()


# ------------------------------------------------------- zones under exhibition areas ----

def test_the_form_offers_each_areas_zones_under_its_heading(login, world):
    html = login(UNIT_E).get("/unit/info/").data.decode()
    assert offered(html) == {area: [z for z, _en in zones] for area, _en, zones in EXHIBITION_AREAS}
    english = login(UNIT_E)
    english.set_language("en")
    groups = offered(english.get("/unit/info/").data.decode())
    assert groups["Automobile Exhibition Area"] == ["Automobile (general)", "Smart Mobility Zone"]


def test_zones_are_saved_grouped_and_shown_grouped(login, world):
    client = login(UNIT_E)
    chosen = [zone("生物医药专区"), zone("农作物种业专区"), zone("公共卫生防疫专区")]
    response = client.post("/unit/info/", data={**info_form(), "zones": [z.id for z in chosen]})
    assert response.status_code == 302
    registration = world.registration("杭州进出口")
    assert saved_state(registration)[3] == sorted(z.id for z in chosen)
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "unit_registration", m.AuditEvent.action == "update")
        .order_by(m.AuditEvent.id.desc())).first()
    assert audit.detail["zones"] == sorted(z.id for z in chosen)
    grouped = ("<li><strong>食品及农产品展区</strong>：农作物种业专区</li>"
               "<li><strong>医疗器械及医药保健展区</strong>：公共卫生防疫专区、生物医药专区</li>")
    assert grouped in client.get("/unit/preview/").data.decode()
    assert checked(client.get("/unit/info/").data.decode()) == {z.id for z in chosen}
    page = login("zj-delegation").get(f"/delegation/units/show/{registration.id}")
    assert grouped in page.data.decode()
    assert grouped in login("admin").get(f"/admin/units/show/{registration.id}").data.decode()


def test_an_area_unknown_or_retired_zone_is_refused_naming_the_field(login, world):
    client = login(UNIT_E)
    registration = world.registration("杭州进出口")
    before = saved_state(registration)
    good = zone("集成电路专区").id
    retired = zone("体育用品及赛事专区")
    retired.active = False
    zone("汽车展区").active = False
    db.session.commit()
    cases = [(zone("技术装备展区").id, "技术装备展区"), (987654, "987654"),
             (retired.id, "体育用品及赛事专区"), (zone("智慧出行专区").id, "智慧出行专区"),
             ("²", "²"), ("-1", "-1"), ("1e3", "1e3"), (2 ** 40, str(2 ** 40))]
    for value, named in cases:
        response = client.post("/unit/info/", data={**info_form(contact_name="改过的名字"),
                                                    "zones": [good, value]})
        assert response.status_code == 400, value
        message = alerts(response)
        assert ZONES_LABEL in message and named in message, value
        assert 'id="zones-group"' in response.data.decode()     # the form again, not a dead end
        assert saved_state(registration) == before
    too_many = {**info_form(), "zones": [good] * 201}
    assert client.post("/unit/info/", data=too_many).status_code == 400
    # JSON to the form's own address: a zone list that is no list is refused as well.
    for zones in ({"a": 1}, True, [[1]]):
        response = client.http.post("/unit/info/", json={**info_form(), "zones": zones},
                                    headers={"X-CSRFToken": client.csrf_token()})
        assert response.status_code == 400, zones
    assert saved_state(registration) == before


def test_a_zone_no_longer_offered_is_named_and_dropped_at_the_next_save(login, world):
    client = login(UNIT_E)   # chose 医疗器械及医药保健（综合）, 生物医药专区, 食品及农产品（综合）
    zone("生物医药专区").active = False
    db.session.commit()
    page = client.get("/unit/info/")
    assert "生物医药专区" in re.search(r'id="zones-no-longer-offered">(.*?)</p>',
                                    page.data.decode()).group(1)
    assert client.post("/unit/info/", data={**info_form(), "zones": sorted(
        checked(page.data.decode()))}).status_code == 302
    assert {z.name_zh for z in world.registration("杭州进出口").zones} == {
        "医疗器械及医药保健（综合）", "食品及农产品（综合）"}


def test_the_autosave_keeps_only_zone_ids_and_never_fails_on_odd_digits(login, world):
    client = login(UNIT_E)
    response = client.http.post("/unit/info/draft", json={"zones": ["²", "3", "x", 5, "-"]},
                                headers={"X-CSRFToken": client.csrf_token()})
    assert response.status_code == 200
    assert world.registration("杭州进出口").draft_data["zones"] == [3, 5]


# ----------------------------------------------------------------------- the admin -------

def test_admin_adds_edits_and_retires_areas_and_zones_in_both_languages(login, world):
    admin = login("admin")
    response = admin.post("/admin/exhibition-areas/add", data={
        "name_zh": "创新孵化展区", "name_en": "Innovation Incubation Exhibition Area",
        "sort": "9", "active": "y"})
    assert response.status_code == 302
    area = zone("创新孵化展区")
    assert area.parent_id is None
    assert admin.post("/admin/zones/add", data={
        "parent": str(area.id), "name_zh": "数字经济赛道", "name_en": "Digital economy track",
        "sort": "0", "active": "y"}).status_code == 302
    track = zone("数字经济赛道")
    assert track.parent_id == area.id
    assert admin.post(f"/admin/zones/edit/{track.id}", data={
        "parent": str(area.id), "name_zh": "数字经济", "name_en": "Digital economy",
        "sort": "0", "active": "y"}).status_code == 302
    unit = login(UNIT_E)
    assert offered(unit.get("/unit/info/").data.decode())["创新孵化展区"] == ["数字经济"]
    english = login(UNIT_E)
    english.set_language("en")
    assert offered(english.get("/unit/info/").data.decode())[
        "Innovation Incubation Exhibition Area"] == ["Digital economy"]
    # Retiring the area takes its zones off the form, and a save of one is refused.
    assert admin.post(f"/admin/exhibition-areas/edit/{area.id}", data={
        "name_zh": "创新孵化展区", "name_en": "Innovation Incubation Exhibition Area",
        "sort": "9"}).status_code == 302
    assert "创新孵化展区" not in offered(unit.get("/unit/info/").data.decode())
    assert unit.post("/unit/info/", data={**info_form(), "zones": [track.id]}).status_code == 400
    # Each list shows only its own kind; the audit names every change.
    assert "数字经济" not in text_of(admin.get("/admin/exhibition-areas/list/"))
    assert "数字经济" in text_of(admin.get("/admin/zones/list/"))
    assert admin.get(f"/admin/zones/edit/{area.id}").status_code == 404
    assert admin.get(f"/admin/exhibition-areas/edit/{track.id}").status_code == 404
    actions = db.session.scalars(sa.select(m.AuditEvent.action).where(
        m.AuditEvent.record_type == "zone").order_by(m.AuditEvent.id)).all()
    assert actions == ["create", "create", "update", "update"]


def test_a_zone_needs_an_exhibition_area_and_cannot_be_nested(login, world):
    admin = login("admin")
    count = db.session.scalar(sa.select(sa.func.count()).select_from(m.Zone))
    for parent in ("", str(zone("集成电路专区").id), "987654"):
        response = admin.post("/admin/zones/add", data={
            "parent": parent, "name_zh": "嵌套专区", "name_en": "Nested zone", "sort": "0",
            "active": "y"})
        assert response.status_code in (200, 400), parent
    # Deleting an area with zones (or a zone units chose) is refused by the data: retire it.
    area = zone("汽车展区")
    response = admin.post(f"/admin/exhibition-areas/delete/{area.id}")
    assert "有其他记录依赖此记录" in text_of(admin.get(response.headers["Location"]))
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Zone)) == count
    assert zone("智慧出行专区").parent_id == area.id


def test_only_the_admin_reaches_the_area_and_zone_pages(login, world):
    count = db.session.scalar(sa.select(sa.func.count()).select_from(m.Zone))
    for username in (UNIT_A, "sh-delegation", "finance", "reviewer", "organiser"):
        client = login(username)
        for url in ("/admin/exhibition-areas/list/", "/admin/zones/list/"):
            assert client.get(url).status_code in (302, 403), (username, url)
        client.post("/admin/exhibition-areas/add", data={
            "name_zh": "越权展区", "name_en": "Intruder area", "sort": "0", "active": "y"})
        client.post(f"/admin/zones/edit/{zone('集成电路专区').id}", data={
            "parent": str(zone("汽车展区").id), "name_zh": "越权", "name_en": "x", "sort": "0"})
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Zone)) == count
    assert zone("集成电路专区").parent.name_zh == "技术装备展区"


# ------------------------------------------------------------ carried forward, sources ---

def test_a_refused_carry_forward_keeps_the_ticks(login, world):
    client = login(UNIT_A)    # returning: its 4th-edition persons may be carried forward
    page = client.get("/unit/previous-persons/").data.decode()
    reusable = re.findall(r'name="reuse" value="(\d+)"', page)
    assert reusable
    # Badge reuse ticked without ticking the person: refused, and the tick is still there.
    response = client.post("/unit/previous-persons/", data={"reuse": reusable[:1]})
    html = response.data.decode()
    assert f'id="reuse-{reusable[0]}" checked>' in html
    assert "checked>" not in html.replace(f'id="reuse-{reusable[0]}" checked>', "")
    assert client.post("/unit/previous-persons/", data={"person": ["²"]}).status_code == 200


def test_a_returning_unit_carries_forward_the_zones_still_offered(login, world):
    client = login(None)
    response = client.post("/register/returning", data={
        "step": "password", "login": "91310115MA1H7G8K32", "password": "Demo@2022"})
    assert response.status_code == 302
    assert [z.name_zh for z in world.registration("进口食品").zones] == ["食品及农产品（综合）"]


def test_a_returning_unit_does_not_carry_forward_a_retired_area(login, world):
    zone("食品及农产品展区").active = False
    db.session.commit()
    client = login(None)
    client.post("/register/returning", data={
        "step": "password", "login": "91310115MA1H7G8K32", "password": "Demo@2022"})
    assert world.registration("进口食品").zones == []


def test_the_demo_loads_the_published_areas_and_zones(world):
    with open(os.path.join(DATA, "unitinfo_exhibition_areas.json"), encoding="utf-8") as fh:
        published = json.load(fh)["areas"]
    assert [(a["zh"], a["en"], [(z["zh"], z["en"]) for z in a["zones"]]) for a in published] \
        == [(zh, en, list(zones)) for zh, en, zones in EXHIBITION_AREAS]
    areas = db.session.scalars(sa.select(m.Zone).where(m.Zone.parent_id.is_(None))
                               .order_by(m.Zone.sort)).all()
    assert [a.name_zh for a in areas] == [a["zh"] for a in published]
    assert all(z.parent is not None for z in db.session.scalars(m.Zone.choosable()))
    with open(os.path.join(DATA, "unitinfo-SOURCES.md"), encoding="utf-8") as fh:
        sources = fh.read()
    keys = {a["source"] for a in published} | {z["source"] for a in published
                                               for z in a["zones"]}
    assert all(f"| {key} |" in sources for key in keys - {"general"})


# --------------------------------------------------------------------------- migration ---

def test_the_migration_puts_each_flat_zone_under_an_area_keeping_the_choices(tmp_path):
    path = tmp_path / "flat.db"
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{path}", FLASK_APP="run.py",
               CIIE_CONFIG="development", PYTHONPATH=ROOT)
    env.pop("REDIS_URL", None)

    def upgrade(revision: str) -> None:
        result = subprocess.run([sys.executable, "-m", "flask", "db", "upgrade", revision],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr

    upgrade("c12a00000001")
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO zone (id, parent_id, name_zh, name_en, sort, active) "
                         "VALUES (?, ?, ?, ?, ?, ?)", [
                             (1, None, "食品及农产品", "Food and agricultural products", 0, 1),
                             (2, None, "汽车", "Automobile", 1, 0),
                             (3, None, "服务贸易展区", "Trade in Services Exhibition Area", 2, 1),
                             (4, 3, "金融服务", "Financial services", 0, 1)])
        conn.executemany("INSERT INTO unit_registration_zone VALUES (?, ?)",
                         [(10, 1), (10, 2), (11, 4)])
    upgrade("c12b00000002")
    with sqlite3.connect(path) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT z.name_zh, a.name_zh, a.name_en, a.sort, a.active FROM zone z "
            "LEFT JOIN zone a ON a.id = z.parent_id")}
        choices = conn.execute("SELECT unit_registration_id, zone_id FROM "
                               "unit_registration_zone ORDER BY 1, 2").fetchall()
    assert rows["食品及农产品"] == ("食品及农产品展区", "Food and agricultural products "
                              "Exhibition Area", 0, 1)
    assert rows["汽车"] == ("汽车展区", "Automobile Exhibition Area", 1, 0)
    assert rows["金融服务"][0] == "服务贸易展区"      # already an area with zones: unchanged
    assert rows["服务贸易展区"][0] is None
    assert len(rows) == 6
    assert choices == [(10, 1), (10, 2), (11, 4)]
