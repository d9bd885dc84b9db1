"""In Chromium: the badge office starts from the counts on its home page, produces the
persons waiting for a badge (one without a photo is refused, the report says why), packs the
badges of two units in one action, opens a parcel to see its badges, and asks for a reprint
through the reason dialog. A unit's menu offers none of it."""
from __future__ import annotations

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import addresses
from tests.conftest import UNIT_A, UNIT_B
from tests.test_badges import approved_persons
from tests.test_browser_delegation import run_action, shot
from tests.test_browser_smoke import log_in, log_out


def home_count(page, label: str) -> str:
    return page.inner_text(f".ciie-panel tr:has(a:text-is('{label}')) .badge")


def test_badge_office_works_through_its_queues(page, world):
    addresses.add_address(actor_for_user(world.user(UNIT_B)), {
        "recipient": "赵敏", "phone": "021-64000000", "province": "上海市", "city": "上海市",
        "detail": "徐汇区漕溪北路88号"}, make_default=True)
    ids = approved_persons(world, "浦东医疗", 2, "Y") + approved_persons(world, "徐汇贸易", 1, "X")
    [faceless] = approved_persons(world, "浦东医疗", 1, "Z", photo=False)
    confirmations = []

    def answer(dialog):
        confirmations.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    log_in(page, "admin")
    assert home_count(page, "待制证") == "4" and home_count(page, "待装箱") == "0"
    page.click(".ciie-panel a:text-is('待制证')")
    page.wait_for_selector("#queue-tab-badges.active")
    row = page.locator(f"tr[data-pk='{faceless}']")
    assert row.locator(".ciie-no-photo").inner_text() == "无照片"
    page.check("#check_all")
    run_action(page, "制作证件")
    page.wait_for_selector("#task-file")
    assert "3" in page.inner_text("#task-done")
    refused = page.inner_text("#task-reasons")
    assert "无照片：没有持证人照片不能制证" in refused
    assert page.inner_text(".task-reason .refused-row") .endswith("Z000")
    shot(page, "badge-queue-01-no-photo-refused")

    # Three badges of two units wait to be packed: one action packs them all.
    page.goto("/badges/production/list/")
    assert page.locator("tr[data-pk]").count() == 1   # only Z000 still waits
    page.click("#queue-tab-parcels a")
    page.wait_for_selector("#queue-tab-parcels.active")
    assert page.locator("tr[data-pk]").count() == 3
    page.check("#check_all")
    run_action(page, "打包寄送")
    page.wait_for_selector(".alert-success")
    db.session.expire_all()
    boxes = db.session.scalars(sa.select(m.Shipment).order_by(m.Shipment.unit_id)).all()
    assert [box.badge_count for box in boxes] == [2, 1]
    assert page.url.endswith("/badges/parcels/list/")

    # The parcel's page lists what is inside, each badge linked.
    page.goto(f"/badges/parcels/show/{boxes[0].id}")
    table = page.inner_text("#parcel-badges")
    assert "Y000" in table and "Y001" in table and "X000" not in table and "已制作" in table
    shot(page, "badge-queue-02-parcel")
    badge = db.session.scalars(sa.select(m.Badge).where(m.Badge.printed_name == "Y000")).one()
    page.click(f"#parcel-badges a:text-is('{badge.number}')")
    page.wait_for_url(f"**/badges/all/show/{badge.id}")

    # A lost card: the reason dialog, then the reprint tab shows it.
    page.goto("/badges/all/list/")
    page.check(f"input.action_check[value='{badge.id}']")
    run_action(page, "申请补打")
    page.wait_for_selector("#ciie-reason-modal", state="visible")
    assert page.inner_text("#ciie-reason-label") == "补打原因（遗失、损坏等）："
    page.fill("#ciie-reason-text", "持证人遗失")
    page.click("#ciie-reason-ok")
    page.wait_for_selector(".alert-success")
    page.goto("/badges/reprints/list/")
    assert "持证人遗失" in page.inner_text(f"tr[data-pk='{badge.id}']")
    assert page.inner_text("#queue-tab-reprints .badge") == "1"
    shot(page, "badge-queue-03-reprints")
    db.session.expire_all()
    assert db.session.get(m.Badge, badge.id).reprint_reason == "持证人遗失"
    assert {db.session.get(m.PersonRegistration, pk).status for pk in ids} == {
        m.PersonStatus.badge_issued}

    # The unit sees no queue in its menu and none on its home page.
    log_out(page)
    log_in(page, UNIT_A)
    assert page.locator("a:has-text('制证工作队列')").count() == 0
    page.goto("/badges/to-pack/list/")
    assert "待装箱" not in page.content()
