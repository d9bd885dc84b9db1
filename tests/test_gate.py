"""Gate verification: a badge's signed QR code is checked on the scan page and through the
JSON API on the business clock's today; forged, unknown, replaced, deactivated and cancelled
badges are refused with their reason, every scan is logged, and the gate role reaches nothing
but the scan."""
from __future__ import annotations

import string
from datetime import datetime

import pytest
import sqlalchemy as sa

from app import clock
from app import models as m
from app.badge_tokens import badge_token
from app.documents.badges import cards
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import badges
from app.workflow import persons as person_flow
from tests.conftest import UNIT_A, text_of
from tests.test_badges import approved_persons, jpeg_photo, reuse_locked  # noqa: F401

SR = m.ScanResult
OPENING = datetime.fromisoformat("2022-11-05T09:00:00+08:00")


def token_of(badge: m.Badge) -> str:
    """The code printed on the badge's card."""
    db.session.refresh(badge)
    return cards([badge.id])[0].token


@pytest.fixture
def issued(world) -> m.Badge:
    """A new badge for a person of unit A (with a photo) entering on 5 and 6 November."""
    [pr_id] = approved_persons(world, "浦东医疗", 1, "G")
    pr = db.session.get(m.PersonRegistration, pr_id)
    pr.person.name, pr.person.photo_key = "林晓", jpeg_photo()
    pr.person.thumb_key = pr.person.photo_key
    db.session.commit()
    made = badges.produce_badges(actor_for_user(world.user("admin")), [pr_id])
    return db.session.get(m.Badge, made.new_badge_ids[0])


def scan_page(client, token: str) -> tuple[str, str]:
    """(result code, page text) of one scan on the gate page."""
    response = client.post("/gate/", data={"token": token, "gate": "North 1"})
    assert response.status_code == 200
    html = response.data.decode()
    result = html.split('data-result="', 1)[1].split('"', 1)[0]
    return result, text_of(response)


def scans() -> list[m.GateScan]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.GateScan).order_by(m.GateScan.id)))


def test_a_valid_badge_on_an_entry_day(login, world, issued):
    clock.set_now(OPENING)
    gate = login("gate")
    gate.set_language("en")
    result, page = scan_page(gate, token_of(issued))
    assert result == "valid"
    assert "Valid" in page and "林晓" in page and "上海浦东医疗器械有限公司" in page
    assert "Professional visitor" in page and issued.number in page
    assert 'src="data:image/jpeg;base64,' in gate.post(
        "/gate/", data={"token": token_of(issued)}).data.decode()
    [first, _second] = scans()
    assert (first.result, first.badge_id, first.gate) == (SR.valid, issued.id, "North 1")
    assert first.scanned_by_id == world.user("gate").id
    assert first.scanned_at.astimezone(clock.SHANGHAI).date().isoformat() == "2022-11-05"


def test_not_an_entry_date(login, world, issued):
    clock.set_now(datetime.fromisoformat("2022-11-08T09:00:00+08:00"))
    gate = login("gate")
    gate.set_language("en")
    result, page = scan_page(gate, token_of(issued))
    assert result == "not_today" and "Not an entry date" in page and "林晓" in page
    clock.set_now(datetime.fromisoformat("2022-09-15T10:00:00+08:00"))   # before the expo
    assert scan_page(gate, token_of(issued))[0] == "not_today"
    assert [s.result for s in scans()] == [SR.not_today, SR.not_today]


def test_forged_and_unknown_codes(login, world, issued):
    clock.set_now(OPENING)
    gate = login("gate")
    genuine = token_of(issued)
    body, signature = genuine.rsplit(".", 1)
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(signature[-1])
    # A different signature, and a different spelling of the same one: base64 ignores the
    # four spare low bits of the signature's 86th character, so this one decodes to the
    # genuine bytes.
    flipped = signature[:-1] + alphabet[(last + 4) % 64]
    respelled = signature[:-1] + alphabet[last ^ 1]
    other_id = f"{issued.id + 1}.{issued.token_nonce}"
    for forged in (f"{body}.{flipped}", f"{body}.{respelled}", f"{other_id}.{signature}",
                   "hello", "", genuine + "x", "１２３"):
        result, page = scan_page(gate, forged)
        assert result == "forged", forged
        assert "林晓" not in page
    # Genuinely signed, but no such badge, or an earlier code of a badge printed anew.
    assert scan_page(gate, badge_token(999999, "0" * 32, 5, 1))[0] == "unknown"
    client = login("admin")
    client.get(client.action("/badges/all", "reprint_badges", [issued.id])
               .headers["Location"])
    assert scan_page(gate, genuine)[0] == "unknown"
    assert scan_page(gate, token_of(issued))[0] == "valid"
    results = [s.result for s in scans()]
    assert results == [SR.forged] * 7 + [SR.unknown, SR.unknown, SR.valid]
    assert [s.badge_id for s in scans()][:8] == [None] * 8


def test_deactivated_badges_are_refused(login, world, issued, reuse_locked):  # noqa: F811
    clock.set_now(OPENING)
    old_he = db.session.scalars(sa.select(m.Badge).where(m.Badge.number == "B04000002")).one()
    old_huang = db.session.scalars(sa.select(m.Badge)
                                   .where(m.Badge.number == "B04000001")).one()
    gate = login("gate")
    # Before production the earlier badges open nothing at this expo.
    assert scan_page(gate, token_of(old_huang))[0] == "unknown"
    badges.produce_badges(actor_for_user(world.user("admin")), reuse_locked)
    # 何静 was upgraded: her old badge is deactivated, her new one works.
    result, page = scan_page(gate, token_of(old_he))
    assert result == "deactivated" and "何静" in page
    db.session.expire_all()
    assert scan_page(gate, token_of(world.person("何静").badge))[0] == "valid"
    # 黄磊 kept his badge: re-activated for the 5th edition, it works.
    assert scan_page(gate, token_of(old_huang))[0] == "valid"
    # The badge office deactivates a lost badge.
    login("admin").action("/badges/all", "deactivate_badges", [issued.id], reason="lost")
    assert scan_page(gate, token_of(issued))[0] == "deactivated"


def test_a_cancelled_person_is_refused(login, world):
    """黄磊 asked for badge reuse, then his unit withdrew him: his old badge is still active
    but opens nothing."""
    unit = actor_for_user(world.user(UNIT_A))
    huang = db.session.scalars(sa.select(m.Person).where(m.Person.name == "黄磊")).one()
    [new] = person_flow.carry_forward_persons(unit, [huang.id], [huang.id])
    person_flow.cancel_persons(unit, [new])
    clock.set_now(OPENING)
    old = db.session.scalars(sa.select(m.Badge).where(m.Badge.number == "B04000001")).one()
    assert old.active
    gate = login("gate")
    gate.set_language("en")
    result, page = scan_page(gate, token_of(old))
    assert result == "cancelled" and "cancelled" in page and "黄磊" in page


def test_the_api_answers_the_same_and_logs(login, world, issued):
    clock.set_now(OPENING)
    client = login(None)
    headers = {**client.api_login("gate"), "Accept-Language": "en"}
    answer = client.http.post("/api/v1/gate/scan", json={"token": token_of(issued),
                                                        "gate": "East 2"}, headers=headers)
    assert answer.status_code == 200
    body = answer.json
    assert (body["result"], body["valid"], body["entry_today"], body["today"]) == (
        "valid", True, True, "2022-11-05")
    assert body["person"]["name"] == "林晓" and body["badge"]["tag"] == "visitor"
    assert body["person"]["photo"].startswith("data:image/jpeg;base64,")
    assert body["entry_dates"] == ["2022-11-05", "2022-11-06"]
    assert body["message"].startswith("Valid")

    forged = client.http.post("/api/v1/gate/scan", json={"token": token_of(issued) + "0"},
                              headers=headers).json
    assert (forged["result"], forged["valid"], forged["person"]) == ("forged", False, None)
    clock.set_now(datetime.fromisoformat("2022-11-10T18:00:00+08:00"))
    late = client.http.post("/api/v1/gate/scan", json={"token": token_of(issued)},
                            headers=headers).json
    assert (late["result"], late["entry_today"]) == ("not_today", False)
    assert [(s.result, s.gate) for s in scans()] == [
        (SR.valid, "East 2"), (SR.forged, None), (SR.not_today, None)]
    # No token is no scan; other roles and anonymous callers cannot scan.
    assert client.http.post("/api/v1/gate/scan", json={},
                            headers=headers).status_code == 400
    assert client.http.post("/api/v1/gate/scan", json={"token": "x"}).status_code == 401
    unit = client.api_login(UNIT_A)
    assert client.http.post("/api/v1/gate/scan", json={"token": "x"},
                            headers=unit).status_code == 403
    assert len(scans()) == 3
    log = text_of(login("admin").get("/badges/scans/list/"))
    assert "East 2" in log and issued.number in log and "林晓" in log


def test_the_gate_role_reaches_nothing_else(login, world, issued):
    gate = login("gate")
    assert gate.get("/gate/").status_code == 200
    wang = world.person("王伟")
    for url in ("/unit/persons/list/", "/delegation/units/list/", "/delegation/persons/list/",
                "/finance/orders/list/", "/finance/payments/list/", "/review/queue/list/",
                "/badges/all/list/", "/badges/production/list/", "/badges/parcels/list/",
                "/badges/scans/list/", "/unit/badges/list/", f"/unit/badges/show/{issued.id}",
                "/admin/units/list/", f"/files/person/{wang.person_id}/photo",
                "/users/list/"):
        assert gate.get(url).status_code == 403, url
    assert gate.action("/badges/all", "deactivate_badges", [issued.id]).status_code == 403
    headers = gate.api_login("gate")
    for url in ("/api/v1/persons/", "/api/v1/units/", f"/api/v1/persons/{wang.id}"):
        assert gate.get(url, headers=headers).status_code == 403, url
    db.session.refresh(issued)
    assert issued.active
    # Other roles cannot use the scan page.
    assert login(UNIT_A).get("/gate/").status_code == 403
    assert login("reviewer").post("/gate/", data={"token": "x"}).status_code == 403
    assert scans() == []
