"""Badge production and delivery: persons who passed security review get a badge (a reused
badge with an unchanged tag is re-activated, an upgraded one replaced), sheets of cards are
printed with Chinese text and QR codes, and badges travel in parcels of at most ten that the
unit can follow (and no other unit can see)."""
from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image
from pypdf import PdfReader
from sqlalchemy.exc import IntegrityError

from app import models as m
from app import storage
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import addresses, badges, delivery, locking
from app.workflow import persons as person_flow
from app.workflow.editions import current_edition
from app.workflow.errors import WorkflowError
from tests.conftest import (
    UNIT_A,
    UNIT_B,
    Client,
    base_config,
    count_statements,
    run_worker,
    text_of,
)

PS = m.PersonStatus
T = m.Tag
BS = m.BadgeStatus


def approved_persons(world, name_part: str, count: int, prefix: str,
                     tag: m.Tag = T.visitor, photo: bool = True) -> list[int]:
    """`count` persons of a unit who passed security review (test data, inserted directly),
    with their photo unless told otherwise (no badge is made without one)."""
    registration = world.registration(name_part)
    edition = current_edition()
    ids = []
    for i in range(count):
        number = f"P{prefix}{i:06d}"
        person = m.Person(unit_id=registration.unit_id, name=f"{prefix}{i:03d}",
                          gender=m.Gender.female, id_type=m.IdType.passport, id_number=number)
        if photo:
            person.photo_key = person.thumb_key = jpeg_photo()
        pr = m.PersonRegistration(edition_id=registration.edition_id, person=person,
                                  unit_registration_id=registration.id,
                                  id_key=f"passport:{number}", status=PS.approved, tag=tag,
                                  entry_days=edition.days_to_mask(edition.days[:2]))
        db.session.add(pr)
        db.session.flush()
        ids.append(pr.id)
    db.session.commit()
    return ids


def approve_review(ids: list[int]) -> None:
    """Stand-in for the security reviewer's pass (the review queue is another issue)."""
    db.session.execute(sa.update(m.PersonRegistration).where(m.PersonRegistration.id.in_(ids))
                       .values(status=PS.approved))
    db.session.commit()


@pytest.fixture
def reuse_locked(world):
    """黄磊 (4th-edition staff badge) keeps his tag; 何静 (visitor badge) is upgraded to staff.
    Both are locked and have passed security review."""
    unit = actor_for_user(world.user(UNIT_A))
    names = {p.name: p.id for p in db.session.scalars(
        sa.select(m.Person).where(m.Person.name.in_(["黄磊", "何静"])))}
    new = person_flow.carry_forward_persons(unit, list(names.values()), list(names.values()))
    person_flow.submit_persons(unit, new)
    delegation = actor_for_user(world.user("sh-delegation"))
    he = world.person("何静")
    locking.tag_persons(delegation, [he.id], T.staff)
    locking.lock_persons(delegation, new)
    approve_review(new)
    return new


def produce(client: Client, view: str, ids: list[int]) -> dict:
    """Run the production action; returns the finished task's state."""
    response = client.action(view, "produce_badges", ids)
    assert response.status_code == 302
    task_url = response.headers["Location"]
    assert re.search(r"/tasks/\d+$", task_url)
    state = client.get(task_url + "/status").json
    assert state["status"] == "done", state
    state["url"] = task_url
    return state


def pdf_text(data: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


# ------------------------------------------------------------------------- production ------

def test_the_card_printer_reads_the_token_module_not_the_badge_workflow():
    """documents/ is called by the workflow and never imports it; the signed QR token lives
    in app.badge_tokens (crypto only, nothing of the app), which both use: no cycle."""
    app_dir = Path(__file__).parents[1] / "app"

    def imported(path: Path) -> set[str]:
        return {node.module or "" for node in ast.walk(ast.parse(path.read_text("utf-8")))
                if isinstance(node, ast.ImportFrom)}

    for path in sorted((app_dir / "documents").glob("*.py")):
        assert not any(name.startswith("app.workflow") for name in imported(path)), path
    assert not any(name.startswith("app") for name in imported(app_dir / "badge_tokens.py"))


def test_production_gives_numbers_moves_persons_and_audits(app, login, world):
    ids = approved_persons(world, "浦东医疗", 3, "N")
    not_yet = world.person("张强")   # awaiting review
    client = login("admin")
    state = produce(client, "/badges/production", ids + [not_yet.id])
    assert state["result"]["done"] == 3
    [refusal] = state["result"]["refused"]
    assert refusal["label"] == "张强" and refusal["reason"]
    assert state["has_file"]

    db.session.expire_all()
    regs = db.session.scalars(sa.select(m.PersonRegistration)
                              .where(m.PersonRegistration.id.in_(ids))).all()
    assert {r.status for r in regs} == {PS.badge_issued}
    numbers = sorted(r.badge.number for r in regs)
    assert numbers == ["B05000001", "B05000002", "B05000003"]
    badge = regs[0].badge
    assert (badge.status, badge.active, badge.tag, badge.edition.number) == (
        BS.produced, True, T.visitor, 5)
    assert badge.printed_unit == "上海浦东医疗器械有限公司"
    assert badge.printed_delegation == "浦东新区交易分团"   # the sub-delegation
    assert badge.printed_name == regs[0].person.name and len(badge.token_nonce) == 32
    assert world.person("张强").status is PS.awaiting_review

    audit = db.session.execute(sa.select(m.AuditEvent.record_type, m.AuditEvent.action,
                                         m.AuditEvent.from_state, m.AuditEvent.to_state)
                               .where(m.AuditEvent.actor_name == "admin")).all()
    assert audit.count(("person_registration", "issue_badge", "approved", "badge_issued")) == 3
    assert audit.count(("badge", "produce", None, "produced")) == 3

    # Producing again changes nothing: the persons are no longer approved.
    again = produce(client, "/badges/production", ids)
    assert again["result"]["done"] == 0 and len(again["result"]["refused"]) == 3
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Badge)
                             .where(m.Badge.edition_id == current_edition().id)) == 3


def test_production_costs_the_same_statements_for_2_or_30_persons(app, world):
    from app.documents.badges import badge_sheet

    few, many = approved_persons(world, "浦东医疗", 2, "F"), \
        approved_persons(world, "浦东医疗", 30, "M")
    admin = actor_for_user(world.user("admin"))
    costs = {}
    for name, ids in (("few", few), ("many", many)):
        db.session.expire_all()
        assert current_edition().number == 5   # the cached edition is read outside the count
        made: list = []
        produced = count_statements(
            lambda ids=ids, made=made: made.append(badges.produce_badges(admin, ids)))
        printed = count_statements(lambda made=made: badge_sheet(made[0].new_badge_ids))
        costs[name] = (produced, printed)
        assert made[0].result.done_count == len(ids)
    assert costs["few"] == costs["many"], costs
    numbers = db.session.scalars(sa.select(m.Badge.number)).all()
    assert len(numbers) == len(set(numbers))


def test_a_reused_badge_with_its_tag_is_reactivated_and_not_printed(app, login, world,
                                                                   reuse_locked):
    old_huang, old_he = (db.session.scalars(sa.select(m.Badge).where(m.Badge.number == n))
                         .one() for n in ("B04000001", "B04000002"))
    state = produce(login("admin"), "/badges/production", reuse_locked)
    assert state["result"]["done"] == 2 and state["result"]["refused"] == []
    # New badges printed, earlier badges re-activated, earlier badges deactivated.
    assert len(state["result"]["notes"]) == 3

    db.session.expire_all()
    huang, he = world.person("黄磊"), world.person("何静")
    assert huang.status is he.status is PS.badge_issued
    # 黄磊 keeps his 4th-edition badge: valid again for the 5th, nothing new made.
    assert huang.badge.number == "B04000001" and huang.badge_id == huang.previous_badge_id
    assert huang.badge.active and huang.badge.reactivated_for_edition_id == current_edition().id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Badge).where(
        m.Badge.person_id == huang.person_id)) == 1
    # 何静 was upgraded: a new staff badge, the old one deactivated.
    assert he.badge.number == "B05000001" and he.badge.tag is T.staff
    db.session.refresh(old_he)
    assert not old_he.active and old_he.deactivated_at is not None

    # Only the new badge was printed.
    client = login("admin")
    text = " ".join(pdf_text(client.get(state["url"] + "/file").data))
    assert "何静" in text and "B05000001" in text
    assert "黄磊" not in text and "B04000001" not in text
    actions = set(db.session.execute(sa.select(m.AuditEvent.record_id, m.AuditEvent.action)
                                     .where(m.AuditEvent.record_type == "badge")).all())
    assert {(old_huang.id, "reactivate"), (old_he.id, "deactivate"),
            (he.badge_id, "produce")} <= actions


def test_production_runs_in_a_worker_through_redis(database_url, smtp_server, redis_url, app,
                                                   world, worker_env):
    from app import create_app

    ids = approved_persons(world, "浦东医疗", 2, "R")
    redis_app = create_app("test", **{**base_config(database_url, smtp_server.port),
                                      "REDIS_URL": redis_url})
    client = Client(redis_app, "admin")
    task_url = client.action("/badges/production", "produce_badges", ids).headers["Location"]
    assert client.get(task_url + "/status").json["status"] == "queued"
    worker = run_worker(dict(worker_env, UPLOAD_FOLDER=app.config["UPLOAD_FOLDER"]))
    assert worker.returncode == 0, worker.stderr
    state = client.get(task_url + "/status").json
    assert state["status"] == "done" and state["result"]["done"] == 2 and state["has_file"]
    text = " ".join(pdf_text(client.get(task_url + "/file").data))
    assert "R000" in text and "B05000002" in text
    db.session.expire_all()
    assert world.person("R001").status is PS.badge_issued


# ------------------------------------------------------------------------------- PDF ------

def jpeg_photo() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 400), (200, 120, 60)).save(buffer, "JPEG")
    return storage.store(buffer.getvalue(), "jpg")


def test_a_sheet_prints_chinese_names_numbers_and_eight_cards_a_page(app, login, world,
                                                                    reuse_locked):
    he = world.person("何静")
    he.person.photo_key = jpeg_photo()
    db.session.commit()
    ids = [he.id] + approved_persons(world, "浦东医疗", 9, "S", tag=T.vip)
    state = produce(login("admin"), "/badges/production", ids)
    assert state["result"]["done"] == 10 and state["has_file"]
    response = login("admin").get(state["url"] + "/file")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    assert "attachment" in response.headers["Content-Disposition"]
    pages = pdf_text(response.data)
    assert len(pages) == 2
    assert "何静" in pages[0] and "上海浦东医疗器械有限公司" in pages[0]
    first = [f"B05{n:06d}" for n in range(1, 9)]
    assert all(number in pages[0] for number in first)
    assert "B05000009" in pages[1] and "B05000010" in pages[1]
    assert "工作人员" in pages[0] and "VIP" in pages[0] and "11-05" in pages[0]
    # The task and its file are the starter's only.
    assert login("finance").get(state["url"] + "/file").status_code == 404
    # A reused (earlier-edition) badge is not printed again.
    old = db.session.scalars(sa.select(m.Badge).where(m.Badge.number == "B04000001")).one()
    client = login("admin")
    response = client.action("/badges/all", "print_badges", [old.id])
    state = client.get(response.headers["Location"] + "/status").json
    assert state["result"]["done"] == 0 and not state["has_file"]
    assert state["result"]["refused"][0]["label"] == "B04000001"


# -------------------------------------------------------------------------- delivery ------

def produced_badges(world, name_part: str, count: int, prefix: str) -> list[int]:
    ids = approved_persons(world, name_part, count, prefix)
    made = badges.produce_badges(actor_for_user(world.user("admin")), ids)
    return sorted(made.new_badge_ids)


def parcels() -> list[m.Shipment]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Shipment).order_by(m.Shipment.id)))


def test_23_badges_of_a_unit_go_in_three_parcels(app, login, world):
    ids = produced_badges(world, "浦东医疗", 23, "D")
    client = login("admin")
    response = client.action("/badges/all", "pack_badges", ids)
    assert response.status_code == 302
    boxes = parcels()
    assert [box.badge_count for box in boxes] == [10, 10, 3]
    default = db.session.scalars(sa.select(m.Address).where(m.Address.is_default)).one()
    assert {box.address_id for box in boxes} == {default.id}
    assert {box.status for box in boxes} == {m.ShipmentStatus.packed}
    slots = db.session.execute(sa.select(m.Badge.shipment_id, m.Badge.parcel_slot)
                               .where(m.Badge.id.in_(ids))).all()
    assert sorted(slot for parcel, slot in slots if parcel == boxes[0].id) == list(range(1, 11))
    assert sorted(slot for parcel, slot in slots if parcel == boxes[2].id) == [1, 2, 3]
    # Packing again refuses them all, naming the parcel.
    again = delivery.pack_badges(actor_for_user(world.user("admin")), ids)
    assert again.done == [] and len(again.refused) == 23
    # Three more badges top up the open third parcel.
    more = produced_badges(world, "浦东医疗", 3, "E")
    delivery.pack_badges(actor_for_user(world.user("admin")), more)
    assert [box.badge_count for box in parcels()] == [10, 10, 6]


def test_the_database_refuses_an_11th_badge_or_a_shared_slot(app, world):
    ids = produced_badges(world, "浦东医疗", 11, "X")
    delivery.pack_badges(actor_for_user(world.user("admin")), ids[:10])
    [box] = parcels()
    for slot in (11, 0, 3):
        with pytest.raises(IntegrityError):
            db.session.execute(sa.update(m.Badge).where(m.Badge.id == ids[10])
                               .values(shipment_id=box.id, parcel_slot=slot))
            db.session.flush()
        db.session.rollback()


def test_packing_to_another_address_shipping_and_delivery(app, login, world):
    unit = actor_for_user(world.user(UNIT_A))
    office = addresses.add_address(unit, {"recipient": "李秘书", "phone": "021-60000000",
                                          "province": "上海市", "city": "上海市",
                                          "detail": "青浦区崧泽大道333号"})
    ids = produced_badges(world, "浦东医疗", 4, "G")
    client = login("admin")
    listing = text_of(client.get("/badges/parcels/list/"))
    assert "上海浦东医疗器械有限公司" in listing and "青浦区崧泽大道333号" in listing
    client.post("/badges/parcels/pack", data={"unit": str(unit.unit_id),
                                               "address": str(office.id)})
    [box] = parcels()
    assert box.address_id == office.id and box.badge_count == 4

    # Shipping needs the carrier and tracking number; the parcel's badges follow it.
    form = client.get(f"/badges/parcels/ship/{box.id}")
    assert form.status_code == 200 and "青浦区崧泽大道333号" in text_of(form)
    refused = client.post(f"/badges/parcels/ship/{box.id}", data={"carrier": "顺丰速运",
                                                                   "tracking_no": ""})
    assert refused.status_code == 200 and 'id="tracking_no"' in refused.data.decode()
    assert parcels()[0].status is m.ShipmentStatus.packed
    client.post(f"/badges/parcels/ship/{box.id}", data={"carrier": "顺丰速运",
                                                         "tracking_no": "SF1234567890"})
    [box] = parcels()
    assert (box.status, box.carrier, box.tracking_no) == (
        m.ShipmentStatus.shipped, "顺丰速运", "SF1234567890")
    assert set(db.session.scalars(sa.select(m.Badge.status)
                                  .where(m.Badge.id.in_(ids)))) == {BS.shipped}
    client.action("/badges/parcels", "deliver_parcels", [box.id])
    assert parcels()[0].status is m.ShipmentStatus.delivered
    assert set(db.session.scalars(sa.select(m.Badge.status)
                                  .where(m.Badge.id.in_(ids)))) == {BS.delivered}
    audit = db.session.execute(sa.select(m.AuditEvent.record_type, m.AuditEvent.action)
                               .where(m.AuditEvent.actor_name == "admin")).all()
    assert audit.count(("shipment", "ship")) == 1 and audit.count(("badge", "ship")) == 4
    assert audit.count(("badge", "deliver")) == 4 and audit.count(("badge", "pack")) == 4

    listing = text_of(client.get("/badges/all/list/"))
    assert "B05000004" in listing and "SF1234567890" in listing
    assert "SF1234567890" in text_of(client.get("/badges/parcels/list/"))
    # The unit follows its badges: number, parcel, carrier and tracking number.
    page = text_of(login(UNIT_A).get("/unit/badges/list/"))
    assert "B05000001" in page and "SF1234567890" in page and "顺丰速运" in page


def test_units_see_only_their_own_badges_and_cannot_pack_or_ship(app, login, world):
    ids = produced_badges(world, "浦东医疗", 2, "H")
    delivery.pack_badges(actor_for_user(world.user("admin")), ids)
    [box] = parcels()
    owner, other = login(UNIT_A), login(UNIT_B)
    assert "B05000001" in text_of(owner.get("/unit/badges/list/"))
    assert owner.get(f"/unit/badges/show/{ids[0]}").status_code == 200
    page = text_of(other.get("/unit/badges/list/"))
    assert "B05000001" not in page and "B05000002" not in page
    assert other.get(f"/unit/badges/show/{ids[0]}").status_code == 404
    # Packing, shipping and delivering are the badge office's.
    assert owner.post(f"/badges/parcels/ship/{box.id}", data={
        "carrier": "x", "tracking_no": "y"}).status_code == 403
    assert owner.action("/badges/all", "pack_badges", ids).status_code == 403
    assert owner.action("/badges/parcels", "deliver_parcels", [box.id]).status_code == 403
    assert owner.get("/badges/production/list/").status_code == 403
    unit = actor_for_user(world.user(UNIT_A))
    with pytest.raises(WorkflowError):
        delivery.ship_parcel(unit, box.id, "x", "y")
    assert delivery.pack_badges(unit, ids).done == []
    assert parcels()[0].status is m.ShipmentStatus.packed
