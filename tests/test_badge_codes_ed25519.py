"""Badge codes signed with Ed25519: a printed code verifies with the published public key
alone (as an offline gate does it), forged and altered codes are refused, keys rotate without
breaking printed codes, production refuses to start without a key, and the HMAC codes of
before still verify online. The offline gate's sync and upload endpoints are for gate staff
only; uploads are idempotent, audited and cost the same statements for 2 scans or 60."""
from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import datetime

import pytest
import segno
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from itsdangerous import Signer

from app import badge_tokens, clock
from app import models as m
from app.badge_tokens import PAYLOAD, b64url, badge_token, generate_key, load_keys
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import badges
from tests.conftest import UNIT_A, statements_of
from tests.test_badges import approved_persons, jpeg_photo, reuse_locked  # noqa: F401 (fixtures)
from tests.test_gate import OPENING, issued, scan_page, scans, token_of  # noqa: F401

SR = m.ScanResult


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def gate_sync(client, since: str | None = None) -> dict:
    response = client.get("/gate/sync", query_string={"since": since} if since else None)
    assert response.status_code == 200, response.data
    return response.json


def json_post(client, url: str, body, csrf: bool = True):
    headers = {"X-CSRFToken": client.csrf_token()} if csrf else {}
    return client.http.post(url, json=body, headers=headers)


@pytest.fixture
def key_dir(app, data_app, tmp_path, monkeypatch):
    """The app (and the tests' own) sign with keys of a folder of this test's own."""
    folder = tmp_path / "badge-keys"
    for application in (app, data_app):
        monkeypatch.setitem(application.config, "BADGE_SIGNING_KEYS_DIR", str(folder))
    generate_key(folder)
    return folder


def test_a_printed_code_verifies_with_the_published_public_key_alone(login, world, issued):  # noqa: F811
    clock.set_now(OPENING)
    code = token_of(issued)
    # Compact: a version 7 QR code at level M, as on the card.
    assert len(code) == 111
    assert segno.make(code, error="m", micro=False).version <= 7
    published = gate_sync(login("gate"))["keys"]
    payload_text, signature_text = code.split(".")
    payload, signature = unb64(payload_text), unb64(signature_text)
    version, kid, badge_id, edition, entry_days, tag = PAYLOAD.unpack(payload)
    assert (version, badge_id, edition) == (1, issued.id, 5)
    assert kid.hex() in published and tag.hex() == issued.token_nonce[:8]
    # 5 and 6 November: days 0 and 1 of the 5th edition (5–10 November).
    assert entry_days == 0b11
    # What a gate holds (the raw public key) is enough; a changed byte is not genuine.
    public = Ed25519PublicKey.from_public_bytes(unb64(published[kid.hex()]))
    public.verify(signature, payload)
    altered = payload[:-1] + bytes([payload[-1] ^ 1])
    with pytest.raises(InvalidSignature):
        public.verify(signature, altered)
    # The private key is nowhere in what the gate gets.
    assert "PRIVATE" not in str(gate_sync(login("gate")))


def test_codes_signed_by_no_published_key_or_altered_are_forged(login, world, issued):  # noqa: F811
    clock.set_now(OPENING)
    gate = login("gate")
    genuine = token_of(issued)
    payload = unb64(genuine.split(".")[0])
    version, kid, badge_id, edition, entry_days, tag = PAYLOAD.unpack(payload)
    stranger = Ed25519PrivateKey.generate()
    # The same claims, signed by a key the system never published, with or without our kid.
    own_kid = stranger.sign(payload)
    other = PAYLOAD.pack(version, badges_kid(stranger), badge_id, edition, entry_days, tag)
    # Another badge id or more entry days under the genuine signature.
    more_days = PAYLOAD.pack(version, kid, badge_id, edition, 0b111111, tag)
    for code in (f"{b64url(payload)}.{b64url(own_kid)}",
                 f"{b64url(other)}.{b64url(stranger.sign(other))}",
                 f"{b64url(more_days)}.{genuine.split('.')[1]}",
                 f"{b64url(payload)}.{b64url(bytes(64))}",
                 genuine.replace(".", "..", 1), genuine[:-1]):
        assert scan_page(gate, code)[0] == "forged", code
    assert scan_page(gate, genuine)[0] == "valid"
    assert [s.result for s in scans()] == [SR.forged] * 6 + [SR.valid]


def badges_kid(key: Ed25519PrivateKey) -> bytes:
    return bytes.fromhex(badge_tokens.key_id(key.public_key()))


def test_rotation_keeps_printed_codes_valid_and_publishes_every_key(app, login, world, issued,  # noqa: F811
                                                                    key_dir):
    clock.set_now(OPENING)
    gate = login("gate")
    first = load_keys(key_dir).signing_kid
    old_code = token_of(issued)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ciie", "badge-keys", "rotate"])
    assert result.exit_code == 0, result.output
    second = load_keys(key_dir).signing_kid
    assert second != first and second in result.output, (first, result.output)
    new_code = token_of(issued)
    assert unb64(new_code.split(".")[0])[1:5].hex() == second
    assert set(gate_sync(gate)["keys"]) == {first, second}
    assert scan_page(gate, old_code)[0] == "valid" and scan_page(gate, new_code)[0] == "valid"
    # The old private key is no longer needed: without it, its codes still verify.
    (key_dir / f"{first}.key").unlink()
    assert scan_page(gate, old_code)[0] == "valid"
    listed = runner.invoke(args=["ciie", "badge-keys", "list"]).output
    assert f"{second}  signing" in listed and f"{first}  published  (private key removed)" in listed
    # Withdrawn (its public key removed): the cards it signed are refused everywhere.
    (key_dir / f"{first}.pub").unlink()
    assert scan_page(gate, old_code)[0] == "forged"
    assert set(gate_sync(gate)["keys"]) == {second}
    # generate makes only the first key.
    again = runner.invoke(args=["ciie", "badge-keys", "generate"])
    assert again.exit_code != 0 and "rotate" in again.output
    assert load_keys(key_dir).signing_kid == second


def test_development_makes_a_key_and_production_refuses_to_start_without_one(
        database_url, smtp_server, tmp_path):
    from app import create_app
    from tests.conftest import base_config
    from tests.production_settings import production_settings

    folder = tmp_path / "keys"
    config = {**base_config(database_url, smtp_server.port), "BADGE_SIGNING_KEYS_DIR": str(folder)}
    production = {**config, **production_settings(tmp_path)}
    with pytest.raises(RuntimeError, match="badge signing key"):
        create_app("production", **production)
    assert not folder.exists() or not any(folder.iterdir())
    create_app("test", **config)
    kid = (folder / "current").read_text().strip()
    assert os.stat(folder / f"{kid}.key").st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in (folder / f"{kid}.key").read_bytes()
    assert create_app("production", **production)


def test_hmac_codes_of_before_still_verify_online(app, login, world, issued):  # noqa: F811
    """Cards printed before Ed25519 (and reused cards) carry `<id>.<nonce>.<HMAC>`: the server
    reads them until they are out of use; offline gates send them to the online page."""
    clock.set_now(OPENING)
    db.session.refresh(issued)
    signer = Signer(app.config["SECRET_KEY"], salt="ciie.badge-qr", sep=".",
                    key_derivation="hmac", digest_method=hashlib.sha256)
    legacy = signer.sign(f"{issued.id}.{issued.token_nonce}").decode()
    gate = login("gate")
    assert scan_page(gate, legacy)[0] == "valid"
    assert scan_page(gate, legacy[:-2] + ("A" if legacy[-2] != "A" else "B") + legacy[-1]
                     )[0] == "forged"
    other_secret = Signer("another-secret", salt="ciie.badge-qr", sep=".",
                          key_derivation="hmac", digest_method=hashlib.sha256)
    assert scan_page(gate, other_secret.sign(f"{issued.id}.{issued.token_nonce}").decode()
                     )[0] == "forged"


def test_only_gate_staff_sync_and_upload(login, world, issued):  # noqa: F811
    clock.set_now(OPENING)
    body = {"scans": [{"id": str(uuid.uuid4()), "token": token_of(issued), "result": "valid",
                       "scanned_at": "2022-11-05T09:00:00+08:00"}]}
    anonymous = login(None)
    assert anonymous.get("/gate/sync").status_code == 401
    assert json_post(anonymous, "/gate/scans", body).status_code == 401
    for role in (UNIT_A, "sh-delegation", "reviewer", "finance", "organiser"):
        client = login(role)
        assert client.get("/gate/sync").status_code == 403, role
        assert json_post(client, "/gate/scans", body).status_code == 403, role
        assert client.get("/gate/offline").status_code == 403, role
    assert scans() == []
    gate = login("gate")
    assert gate.get("/gate/offline").status_code == 200
    assert json_post(gate, "/gate/scans", body).status_code == 200
    assert len(scans()) == 1
    # The service worker and the manifest hold no data and are served to anyone.
    assert anonymous.get("/gate/sw.js").status_code == 200
    manifest = anonymous.get("/gate/manifest.webmanifest")
    assert manifest.mimetype == "application/manifest+json"
    assert manifest.json["start_url"] == "/gate/offline"


def test_the_sync_sends_what_changed_since_the_last_one(login, world, issued,  # noqa: F811
                                                        reuse_locked):  # noqa: F811
    clock.set_now(OPENING)
    gate = login("gate")
    first = gate_sync(gate)
    assert first["full"] and first["edition"] == {"number": 5, "start": "2022-11-05",
                                                  "end": "2022-11-10"}
    assert first["badges"] == [[issued.id, issued.token_nonce[:8], 0b11, issued.number]]
    assert first["deactivated"] == [] and first["cancelled"] == []
    assert "csrf_token" in first
    # Nothing changed: nothing sent again once the overlap has passed.
    clock.set_now(datetime.fromisoformat("2022-11-05T09:30:00+08:00"))
    assert gate_sync(gate, first["next_since"])["badges"] == []
    # Reuse: 黄磊's 4th-edition badge is re-activated, 何静's is replaced and deactivated.
    made = badges.produce_badges(actor_for_user(world.user("admin")), reuse_locked)
    db.session.expire_all()
    he, huang = world.person("何静"), world.person("黄磊")
    later = gate_sync(gate, first["next_since"])
    assert not later["full"]
    assert sorted(row[0] for row in later["badges"]) == sorted([he.badge_id, huang.badge_id])
    assert later["deactivated"] == made.deactivated_badge_ids
    # A reprint draws a new nonce: the gates learn the new tag, so the old card is refused.
    clock.set_now(datetime.fromisoformat("2022-11-05T10:00:00+08:00"))
    third = gate_sync(gate, later["next_since"])
    badges.reissue_codes(actor_for_user(world.user("admin")), [issued.id])
    db.session.commit()
    db.session.refresh(issued)
    fourth = gate_sync(gate, third["next_since"])
    assert [row[:2] for row in fourth["badges"]] == [[issued.id, issued.token_nonce[:8]]]
    # A cursor that is not a moment with its offset is refused, naming it.
    gate.set_language("zh")
    for bad in ("yesterday", "2022-11-05T09:00:00"):
        refused = gate.get("/gate/sync", query_string={"since": bad})
        assert refused.status_code == 400 and "since" in refused.json["message"]


def upload_body(codes: list[tuple[str, str]]) -> dict:
    return {"scans": [{"id": str(uuid.uuid4()), "token": code, "result": result,
                       "scanned_at": "2022-11-05T09:0%d:00+08:00" % (i % 10), "gate": "北3"}
                      for i, (code, result) in enumerate(codes)]}


def test_uploaded_scans_are_logged_once_and_audited(login, world, issued):  # noqa: F811
    clock.set_now(OPENING)
    gate = login("gate")
    body = upload_body([(token_of(issued), "valid"), ("not a code", "forged")])
    answer = json_post(gate, "/gate/scans", body)
    assert answer.status_code == 200
    assert answer.json == {"received": 2, "logged": 2, "already_logged": 0}
    # The connection broke before the answer: the gate sends the batch again, with one more.
    body["scans"].append(upload_body([(token_of(issued), "valid")])["scans"][0])
    again = json_post(gate, "/gate/scans", body).json
    assert again == {"received": 3, "logged": 1, "already_logged": 2}
    logged = scans()
    assert [(s.result, s.badge_id, s.offline, s.gate) for s in logged] == [
        (SR.valid, issued.id, True, "北3"), (SR.forged, None, True, "北3"),
        (SR.valid, issued.id, True, "北3")]
    assert {s.scanned_by_id for s in logged} == {world.user("gate").id}
    assert logged[0].scanned_at == datetime.fromisoformat("2022-11-05T09:00:00+08:00")
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "gate_scan")).all()
    assert sorted(a.record_id for a in audit) == [s.id for s in logged]
    assert {a.action for a in audit} == {"upload"}
    # The badge office sees them in the gate log, marked as checked offline.
    log = login("admin").get("/badges/scans/list/").data.decode()
    assert "北3" in log and issued.number in log


def test_a_refused_upload_names_the_field_and_changes_nothing(login, world, issued):  # noqa: F811
    clock.set_now(OPENING)
    gate = login("gate")
    gate.set_language("zh")
    good = upload_body([(token_of(issued), "valid")])["scans"][0]
    for scan, field in (({**good, "result": "bogus"}, "结果"),
                        ({**good, "scanned_at": "2022-11-05 09:00"}, "验证时间"),
                        ({**good, "id": "42"}, "扫描编号"),
                        ({**good, "gate": "x" * 51}, "入口验证"),
                        ({**good, "gate": "北\u0000"}, "入口验证"),
                        ({**good, "gate": "\ud800"}, "入口验证")):
        refused = json_post(gate, "/gate/scans", {"scans": [good, scan]})
        assert refused.status_code == 400, scan
        assert field in refused.json["message"], refused.json
    assert json_post(gate, "/gate/scans", {"scans": []}).status_code == 400
    assert json_post(gate, "/gate/scans", ["x"]).status_code == 400
    assert json_post(gate, "/gate/scans", {"scans": [good]}, csrf=False).status_code == 400
    assert scans() == []


def test_an_upload_costs_the_same_statements_for_few_or_many_scans(app, login, world, issued):  # noqa: F811
    clock.set_now(OPENING)
    gate = login("gate")
    code = token_of(issued)
    small = upload_body([(code, "valid")] * 2)
    large = upload_body([(code, "valid"), ("x", "forged")] * 30)
    costs = [len(statements_of(lambda body=body: json_post(gate, "/gate/scans", body)))
             for body in (small, large)]
    assert costs[0] == costs[1]
    assert len(scans()) == 62


def test_badge_token_needs_a_signing_key(data_app, tmp_path, monkeypatch):
    empty = tmp_path / "none"
    monkeypatch.setitem(data_app.config, "BADGE_SIGNING_KEYS_DIR", str(empty))
    with data_app.app_context(), pytest.raises(badge_tokens.BadgeKeyError):
        badge_token(1, "0" * 32, 5, 1)
