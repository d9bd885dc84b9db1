"""The badge office's work queues (issue 13): persons waiting for a badge (and nothing else:
no drafts), reuse re-activations, reprints and badges to pack, counted on its home page; no
card is made or printed without the holder's photo; many units' badges are packed at once and
a parcel's page lists what is inside. Every other role reaches none of it."""
from __future__ import annotations

import os
import re

import pytest
import sqlalchemy as sa

from app import models as m
from app import storage
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import addresses, badges, delivery
from tests.conftest import UNIT_A, UNIT_B, count_statements, text_of
from tests.test_badges import (
    approved_persons,
    pdf_text,
    produce,
    produced_badges,
    reuse_locked,  # noqa: F401 (a fixture)
)
from tests.test_home import counts

PS = m.PersonStatus
QUEUES = ("/badges/production", "/badges/reactivations", "/badges/reprints",
          "/badges/to-pack")


def listed_ids(response, view: str) -> set[int]:
    """The primary keys of the rows a view's list page shows."""
    assert response.status_code == 200
    html = response.data.decode()
    if f'id="list-{view}"' not in html:
        return set()   # an empty list has no table
    return {int(pk) for pk in re.findall(r'<tr data-pk="(\d+)"', html)}


def audit(record_type: str, action: str) -> list[tuple]:
    return db.session.execute(sa.select(m.AuditEvent.record_id, m.AuditEvent.actor_name,
                                        m.AuditEvent.reason)
                              .where(m.AuditEvent.record_type == record_type,
                                     m.AuditEvent.action == action)).all()


# ------------------------------------------------------------------- waiting for a badge ---

@pytest.mark.usefixtures("reuse_locked")
def test_the_queue_lists_exactly_the_approved_persons_waiting_for_a_badge(login, world):
    waiting = approved_persons(world, "浦东医疗", 2, "Q")
    he, huang = world.person("何静"), world.person("黄磊")   # upgraded / keeps his badge
    client = login("admin")
    response = client.get("/badges/production/list/")
    assert listed_ids(response, "BadgeProductionView") == set(waiting) | {he.id}
    # Every other state of the demo world stays out, drafts included, whatever the filter.
    draft, in_review = world.person("刘洋"), world.person("张强")
    assert draft.status is PS.draft and in_review.status is PS.awaiting_review
    for status in ("draft", "awaiting_review", "badge_issued"):
        assert listed_ids(client.get(f"/badges/production/list/?_flt_0_status={status}"),
                          "BadgeProductionView") == set()
    for pr in (draft, in_review, huang):
        assert client.get(f"/badges/production/show/{pr.id}").status_code == 404
    assert client.get(f"/badges/production/show/{waiting[0]}").status_code == 200
    assert "刘洋" not in text_of(response) and "Q000" in text_of(response)


@pytest.mark.usefixtures("reuse_locked")
def test_a_reused_badge_with_its_tag_waits_in_the_reactivation_queue(login, world):
    huang, he = world.person("黄磊"), world.person("何静")
    client = login("admin")
    page = client.get("/badges/reactivations/list/")
    assert listed_ids(page, "ReactivationQueueView") == {huang.id}
    assert "B04000001" in text_of(page)   # the badge he keeps
    assert client.get(f"/badges/reactivations/show/{he.id}").status_code == 404

    # 何静 needs a new card, which this action never makes (it prints nothing).
    refused = client.action("/badges/reactivations", "reactivate_badges", [he.id])
    assert refused.status_code == 302
    assert "需要新证件" in text_of(client.get("/badges/reactivations/list/"))
    db.session.expire_all()
    assert world.person("何静").status is PS.approved and world.person("何静").badge_id is None
    response = client.action("/badges/reactivations", "reactivate_badges", [huang.id])
    assert response.status_code == 302
    db.session.expire_all()
    huang = world.person("黄磊")
    assert huang.status is PS.badge_issued and huang.badge.number == "B04000001"
    assert listed_ids(client.get("/badges/reactivations/list/"),
                      "ReactivationQueueView") == set()
    # Nothing was made: the earlier badge is valid again, audited as a re-activation.
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Badge)
                             .where(m.Badge.number.like("B05%"))) == 0
    assert [(row.record_id, row.actor_name) for row in audit("badge", "reactivate")] == [
        (huang.badge_id, "admin")]


# ------------------------------------------------------------------------- photo rule ---

def test_a_person_without_a_photo_gets_no_badge_on_any_path(login, world):
    with_photo = approved_persons(world, "浦东医疗", 1, "F")
    without = approved_persons(world, "浦东医疗", 2, "N", photo=False)
    gone = approved_persons(world, "浦东医疗", 1, "G")
    os.remove(storage.path_of(db.session.get(m.PersonRegistration, gone[0]).person.photo_key))
    client = login("admin")
    client.set_language("zh")
    # The batch: done for the one with a photo, the others refused with the reason.
    state = produce(client, "/badges/production", with_photo + without + gone)
    assert state["result"]["done"] == 1
    refused = {row["label"]: row["reason"]["zh"] for row in state["result"]["refused"]}
    assert refused == {"N000": "无照片：没有持证人照片不能制证",
                       "N001": "无照片：没有持证人照片不能制证",
                       "G000": "无照片：没有持证人照片不能制证"}
    report = text_of(client.get(state["url"]))
    assert "无照片：没有持证人照片不能制证" in report and "N001" in report
    # The sheet holds the one card, with no "No photo" placeholder anywhere.
    text = " ".join(pdf_text(client.get(state["url"] + "/file").data))
    assert "F000" in text and "N000" not in text
    assert "No photo" not in text and "无照片" not in text
    # One row's own action, read in English, and the workflow called directly: the same rule.
    client.set_language("en")
    single = client.post(f"/badges/production/action/produce_badges/{without[0]}")
    assert "no photo: a badge is not made without the holder&#39;s photo" in (
        client.get(single.headers["Location"]).data.decode())
    state = client.get(single.headers["Location"] + "/status").json
    assert state["result"]["done"] == 0
    made = badges.produce_badges(actor_for_user(world.user("admin")), without)
    assert made.result.done == [] and made.new_badge_ids == []
    db.session.expire_all()
    assert {db.session.get(m.PersonRegistration, i).status
            for i in without + gone} == {PS.approved}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Badge)
                             .where(m.Badge.edition_id == world.registration("浦东").edition_id)
                             ) == 1
    # The queue shows who has no photo.
    assert "无照片" in text_of(login("admin").get("/badges/production/list/"))


def test_a_badge_whose_photo_was_removed_is_not_printed_again(login, world):
    [badge_id] = produced_badges(world, "浦东医疗", 1, "P")
    badge = db.session.get(m.Badge, badge_id)
    badge.person.photo_key = None
    db.session.commit()
    client = login("admin")
    response = client.action("/badges/all", "print_badges", [badge_id])
    state = client.get(response.headers["Location"] + "/status").json
    assert state["result"]["done"] == 0 and not state["has_file"]
    assert state["result"]["refused"][0]["label"] == badge.number


# --------------------------------------------------------------------------- reprints ---

def test_a_lost_card_goes_through_the_reprint_queue(login, world):
    ids = produced_badges(world, "浦东医疗", 3, "R")
    client = login("admin")
    assert client.action("/badges/all", "request_reprints", ids[:2],
                         reason="持证人遗失").status_code == 302
    db.session.expire_all()
    first = db.session.get(m.Badge, ids[0])
    old_nonce = first.token_nonce
    assert first.reprint_reason == "持证人遗失" and first.reprint_requested_at is not None
    page = client.get("/badges/reprints/list/")
    assert listed_ids(page, "ReprintQueueView") == set(ids[:2])
    assert "持证人遗失" in text_of(page)
    assert client.get(f"/badges/reprints/show/{ids[2]}").status_code == 404
    assert sorted((row.record_id, row.reason) for row in audit("badge", "request_reprint")) \
        == [(ids[0], "持证人遗失"), (ids[1], "持证人遗失")]
    # Asked for again: refused, naming the badge; nothing changes.
    again = badges.request_reprints(actor_for_user(world.user("admin")), ids[:1], "又丢了")
    assert again.done == [] and again.refused[0].label == first.number
    # Without a reason: refused, nothing asked.
    client.action("/badges/all", "request_reprints", ids[2:], reason=" ")
    db.session.expire_all()
    assert db.session.get(m.Badge, ids[2]).reprint_requested_at is None

    # Printed with a new code from the queue: the old code dies, the queue empties.
    response = client.action("/badges/reprints", "reprint_badges", ids[:2])
    state = client.get(response.headers["Location"] + "/status").json
    assert state["result"]["done"] == 2 and state["has_file"]
    db.session.expire_all()
    first = db.session.get(m.Badge, ids[0])
    assert first.token_nonce != old_nonce and first.reprint_requested_at is None
    assert listed_ids(client.get("/badges/reprints/list/"), "ReprintQueueView") == set()


def test_a_reason_too_long_for_its_column_is_refused_with_a_400(login, world):
    ids = produced_badges(world, "浦东医疗", 1, "L")
    client = login("admin")
    response = client.action("/badges/all", "request_reprints", ids, reason="遗" * 201)
    assert response.status_code == 400
    assert "补打原因" in text_of(response)
    db.session.expire_all()
    assert db.session.get(m.Badge, ids[0]).reprint_requested_at is None


# ---------------------------------------------------------------------------- packing ---

@pytest.fixture
def two_units_produced(world):
    """Badges of unit A (default address from the demo) and of unit B (given one here)."""
    unit_b = actor_for_user(world.user(UNIT_B))
    addresses.add_address(unit_b, {"recipient": "赵敏", "phone": "021-64000000",
                                   "province": "上海市", "city": "上海市",
                                   "detail": "徐汇区漕溪北路88号"}, make_default=True)
    return produced_badges(world, "浦东医疗", 12, "A"), produced_badges(world, "徐汇贸易", 3, "B")


def test_one_action_packs_the_badges_of_many_units(login, world, two_units_produced):
    a_ids, b_ids = two_units_produced
    client = login("admin")
    assert listed_ids(client.get("/badges/to-pack/list/"), "PackingQueueView") == set(
        a_ids + b_ids)
    response = client.post("/badges/to-pack/action_post",
                           data={"action": "pack_badges", "all_matching": "1"})
    assert response.status_code == 302 and "/badges/parcels/" in response.headers["Location"]
    db.session.expire_all()
    boxes = db.session.scalars(sa.select(m.Shipment).order_by(m.Shipment.id)).all()
    by_unit = {}
    for box in boxes:
        by_unit.setdefault(box.unit_id, []).append(box.badge_count)
    assert by_unit == {world.unit("浦东医疗").id: [10, 2], world.unit("徐汇贸易").id: [3]}
    defaults = dict(db.session.execute(sa.select(m.Address.unit_id, m.Address.id)
                                       .where(m.Address.is_default)).all())
    assert all(box.address_id == defaults[box.unit_id] for box in boxes)
    assert len(audit("shipment", "pack")) == 3 and len(audit("badge", "pack")) == 15
    assert listed_ids(client.get("/badges/to-pack/list/"), "PackingQueueView") == set()


def test_packing_costs_the_same_statements_for_one_unit_or_two(app, world):
    unit_b = actor_for_user(world.user(UNIT_B))
    addresses.add_address(unit_b, {"recipient": "赵敏", "phone": "021-64000000",
                                   "province": "上海市", "city": "上海市",
                                   "detail": "徐汇区漕溪北路88号"}, make_default=True)
    few = produced_badges(world, "浦东医疗", 2, "S")
    many = produced_badges(world, "浦东医疗", 25, "M") + produced_badges(world, "徐汇贸易", 7, "X")
    admin = actor_for_user(world.user("admin"))
    costs = [count_statements(lambda ids=ids: delivery.pack_badges(admin, ids))
             for ids in (few, many)]
    assert costs[0] == costs[1], costs
    # 1 parcel, topped up with 8 and 2 more for unit A, 1 for unit B.
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Shipment)) == 4


def test_a_parcels_page_lists_its_badges(login, world, two_units_produced):
    a_ids, b_ids = two_units_produced
    admin = actor_for_user(world.user("admin"))
    delivery.pack_badges(admin, a_ids[:2] + b_ids[:1])
    box_a, box_b = db.session.scalars(sa.select(m.Shipment).order_by(m.Shipment.unit_id)).all()
    client = login("admin")
    page = client.get(f"/badges/parcels/show/{box_a.id}")
    html, text = page.data.decode(), text_of(page)
    first, second = (db.session.get(m.Badge, i) for i in a_ids[:2])
    assert first.number in text and first.printed_name in text and second.number in text
    assert "已制作" in text   # the badge's status
    assert f'href="/badges/all/show/{first.id}"' in html
    other = db.session.get(m.Badge, b_ids[0])
    assert other.number not in text and other.printed_name not in text
    assert other.number in text_of(client.get(f"/badges/parcels/show/{box_b.id}"))


def test_bad_input_on_the_queues_is_a_4xx_and_changes_nothing(login, world,
                                                              two_units_produced):
    a_ids, _b_ids = two_units_produced
    client = login("admin")
    for url, column in (("/badges/production", "tag"), ("/badges/to-pack", "tag")):
        response = client.get(f"{url}/list/?_flt_0_{column}=nonsense")
        assert response.status_code == 400 and "人员标签" in text_of(response), url
    for url in QUEUES + ("/badges/parcels",):
        assert client.get(f"{url}/show/99999999").status_code == 404, url
        assert client.get(f"{url}/show/abc").status_code == 404, url
    # A tampered or unknown id refuses the whole batch: nothing is packed.
    assert client.action("/badges/to-pack", "pack_badges", a_ids[:1] + ["x"]).status_code \
        == 400
    assert client.action("/badges/to-pack", "pack_badges", [99999999]).status_code == 404
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Shipment)) == 0


# ------------------------------------------------------------------------------ home ---

@pytest.mark.usefixtures("reuse_locked")
def test_the_badge_office_home_counts_each_queue(login, world, two_units_produced):
    approved_persons(world, "浦东医疗", 4, "H")
    a_ids, _b_ids = two_units_produced
    badges.request_reprints(actor_for_user(world.user("admin")), a_ids[:2], "损坏")
    page = login("admin").get("/").data.decode()
    # 4 new persons and 何静 (upgraded) wait for a badge; 黄磊 keeps his; 15 badges to pack.
    assert counts(page, "制证工作队列") == {"待制证": 5, "复用激活": 1, "补打": 2, "待装箱": 15}
    for url in QUEUES:
        assert f'href="{url}/list/"' in page
    # The four counts are one statement, however many rows wait.
    admin = actor_for_user(world.user("admin"))
    edition_id = world.registration("浦东").edition_id
    assert count_statements(lambda: badges.queue_counts(admin, edition_id)) == 1
    # The queue page's tabs show the same counts.
    tabs = text_of(login("admin").get("/badges/to-pack/list/"))
    assert "待制证 5" in tabs and "待装箱 15" in tabs


# ------------------------------------------------------------------- other roles ---

@pytest.mark.parametrize("username", [UNIT_A, "sh-delegation", "sh-pudong", "finance",
                                      "reviewer", "organiser", "gate"])
def test_no_other_role_opens_or_changes_the_queues_or_parcels(login, world, username,
                                                               two_units_produced):
    a_ids, _b_ids = two_units_produced
    admin = actor_for_user(world.user("admin"))
    delivery.pack_badges(admin, a_ids[:1])
    box = db.session.scalars(sa.select(m.Shipment)).one()
    [waiting] = approved_persons(world, "浦东医疗", 1, "W")
    client = login(username)
    for url in QUEUES:
        assert client.get(f"{url}/list/").status_code == 403, url
    assert client.get(f"/badges/production/show/{waiting}").status_code == 403
    assert client.get(f"/badges/parcels/show/{box.id}").status_code == 403
    for url, action, ids in (("/badges/production", "produce_badges", [waiting]),
                             ("/badges/to-pack", "pack_badges", a_ids[1:]),
                             ("/badges/all", "request_reprints", a_ids[1:]),
                             ("/badges/reprints", "reprint_badges", a_ids[1:])):
        assert client.action(url, action, ids, reason="x").status_code in (403, 404), url
    assert "制证工作队列" not in client.get("/").data.decode()
    db.session.expire_all()
    assert db.session.get(m.PersonRegistration, waiting).status is PS.approved
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Shipment)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Badge).where(
        m.Badge.reprint_requested_at.is_not(None))) == 0


def test_the_workflow_refuses_a_unit_reprints_and_packing(world, two_units_produced):
    """Called as the unit (as an API or job would), the same functions change nothing: its
    badges are readable to it, never writable."""
    a_ids, _b_ids = two_units_produced
    unit = actor_for_user(world.user(UNIT_A))
    assert badges.request_reprints(unit, a_ids, "lost").done == []
    assert delivery.pack_badges(unit, a_ids).done == []
    # Counted in its scope, it would see only its own 12, not unit B's 3.
    assert badges.queue_counts(unit, world.registration("浦东").edition_id)["parcels"] == 12
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Shipment)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Badge).where(
        m.Badge.reprint_requested_at.is_not(None))) == 0
