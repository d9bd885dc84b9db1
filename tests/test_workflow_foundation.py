"""The first transitions: units reviewed by their delegation, persons submitted by their unit,
addresses kept to five with one default. Refusals name the reason and change nothing."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from app import clock
from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A, UNIT_B, text_of

US = m.UnitStatus


def audit_rows(record_type: str, action: str) -> list[m.AuditEvent]:
    return list(db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == record_type, m.AuditEvent.action == action)))


def test_approval_gives_a_unit_number_and_is_audited(login, world):
    xuhui, rollup = world.registration("徐汇贸易"), world.registration("生物制药")
    login("sh-delegation").action("/delegation/units", "approve_units", [xuhui.id])
    login("med-delegation").action("/delegation/units", "approve_units", [rollup.id])
    db.session.expire_all()
    assert xuhui.status is US.approved and xuhui.unit_number == "T05000002"
    assert rollup.unit_number == "T05000003"
    [row] = [a for a in audit_rows("unit_registration", "approve") if a.record_id == xuhui.id]
    assert (row.from_state, row.to_state, row.actor_name) == ("submitted", "approved",
                                                              "sh-delegation")


def test_approving_twice_is_refused_with_the_reason(login, world):
    approved = world.registration("浦东医疗")
    client = login("sh-delegation")
    response = client.action("/delegation/units", "approve_units", [approved.id])
    page = text_of(client.get(response.headers["Location"]))
    assert "以下 1 条记录未处理" in page and "状态为“审核通过”时不能进行此操作" in page
    db.session.expire_all()
    assert approved.unit_number == "T05000001"
    assert audit_rows("unit_registration", "approve") == []


def test_return_needs_a_reason_the_unit_sees(login, world):
    xuhui = world.registration("徐汇贸易")
    client = login("sh-delegation")
    response = client.action("/delegation/units", "return_units", [xuhui.id], reason="  ")
    assert "请填写原因" in text_of(client.get(response.headers["Location"]))
    db.session.expire_all()
    assert xuhui.status is US.submitted
    client.action("/delegation/units", "return_units", [xuhui.id], reason="请补充资质证明")
    db.session.expire_all()
    assert xuhui.status is US.returned
    assert "请补充资质证明" in text_of(login(UNIT_B).get("/"))


def test_review_is_refused_after_the_deadline_unless_extended(login, world):
    xuhui = world.registration("徐汇贸易")
    clock.set_now(datetime.fromisoformat("2022-10-01T00:00:01+08:00"))
    client = login("sh-delegation")
    response = client.action("/delegation/units", "approve_units", [xuhui.id])
    assert "已于 2022-09-30 23:59（北京时间）截止" in text_of(
        client.get(response.headers["Location"]))
    db.session.expire_all()
    assert xuhui.status is US.submitted
    shanghai = db.session.scalars(sa.select(m.Delegation).where(m.Delegation.code == "SH")).one()
    db.session.add(m.DelegationExtension(
        edition_id=xuhui.edition_id, delegation_id=shanghai.id, reason="疫情",
        until=datetime.fromisoformat("2022-10-08T23:59:59+08:00")))
    db.session.commit()
    client.action("/delegation/units", "approve_units", [xuhui.id])
    db.session.expire_all()
    assert xuhui.status is US.approved


def test_apply_to_all_rows_matching_the_filter(login, world):
    xuhui = world.registration("徐汇贸易")
    client = login("sh-delegation")
    # Filter: status = submitted. Xuhui is managed; the rolled-up unit is read-only and the
    # approved one is filtered out, so exactly one row moves.
    response = client.post("/delegation/units/action_post?_flt_0_status=submitted",
                           data={"action": "approve_units", "all_matching": "1"})
    assert response.status_code == 302
    db.session.expire_all()
    assert xuhui.status is US.approved
    assert world.registration("生物制药").status is US.submitted
    assert world.registration("杭州进出口").status is US.returned


def test_submitting_a_person_needs_an_entry_date(login, world):
    draft = world.person("刘洋")
    draft.entry_days = 0
    db.session.commit()
    client = login(UNIT_A)
    response = client.action("/unit/persons", "submit_persons", [draft.id])
    assert "请至少选择一个入场日期" in text_of(client.get(response.headers["Location"]))
    db.session.expire_all()
    assert draft.status is m.PersonStatus.draft


def test_unit_adds_a_person_with_a_checked_id_number(login, world):
    client = login(UNIT_A)
    bad = client.post("/unit/persons/add", data={
        "name": "测试", "gender": "male", "id_type": "mainland_id",
        "id_number": "310115198001010011", "nationality": "CN", "entry_dates": ["2022-11-05"]})
    assert "居民身份证号码无效" in text_of(bad)
    from app.demo import make_ric

    good_number = make_ric("31011519950505001")
    response = client.post("/unit/persons/add", data={
        "name": "测试", "gender": "male", "id_type": "mainland_id", "id_number": good_number,
        "nationality": "CN", "mobile": "13812345678", "entry_dates": ["2022-11-05"]})
    assert response.status_code == 302
    person = db.session.scalars(sa.select(m.Person).where(m.Person.name == "测试")).one()
    assert person.mobile == "+8613812345678"
    again = client.post("/unit/persons/add", data={
        "name": "重复", "gender": "male", "id_type": "mainland_id", "id_number": good_number,
        "nationality": "CN", "entry_dates": ["2022-11-05"]})
    assert "已在本届报名" in text_of(again)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Person)
                             .where(m.Person.name == "重复")) == 0


def test_sixth_address_is_refused_and_default_moves_on_delete(login, world):
    client = login(UNIT_A)
    for i in range(4):
        client.post("/unit/addresses/add", data={
            "recipient": f"r{i}", "phone": "1", "province": "p", "city": "c", "detail": "d"})
    response = client.post("/unit/addresses/add", data={
        "recipient": "r6", "phone": "1", "province": "p", "city": "c", "detail": "d"})
    assert "最多保存五个常用地址" in text_of(response)
    unit = world.unit("浦东医疗")
    rows = list(db.session.scalars(sa.select(m.Address).where(m.Address.unit_id == unit.id)
                                   .order_by(m.Address.slot)))
    assert len(rows) == 5 and [a.is_default for a in rows] == [True] + [False] * 4
    client.post(f"/unit/addresses/delete/{rows[0].id}")
    db.session.expire_all()
    defaults = db.session.scalars(sa.select(m.Address.slot).where(
        m.Address.unit_id == unit.id, m.Address.is_default)).all()
    assert defaults == [2]


def test_admin_grants_an_audited_extension_in_beijing_time(login, world):
    xuhui = world.registration("徐汇贸易")
    shanghai = db.session.scalars(sa.select(m.Delegation).where(m.Delegation.code == "SH")).one()
    clock.set_now(datetime.fromisoformat("2022-10-03T09:00:00+08:00"))
    admin = login("admin")
    refused = admin.post("/admin/extensions/add", data={
        "edition": str(xuhui.edition_id), "delegation": str(shanghai.id),
        "until": "2022-10-08 23:59:59", "reason": " "})
    assert refused.status_code == 400 and "请填写延期原因" in text_of(refused)
    # A field the form itself refuses (no date) is a 400 too, the form shown again.
    undated = admin.post("/admin/extensions/add", data={
        "edition": str(xuhui.edition_id), "delegation": str(shanghai.id), "until": "",
        "reason": "疫情延期"})
    assert undated.status_code == 400 and 'name="until"' in undated.get_data(as_text=True)
    response = admin.post("/admin/extensions/add", data={
        "edition": str(xuhui.edition_id), "delegation": str(shanghai.id),
        "until": "2022-10-08 23:59:59", "reason": "疫情延期"})
    assert response.status_code == 302
    extension = db.session.scalars(sa.select(m.DelegationExtension)).one()
    assert extension.until == datetime.fromisoformat("2022-10-08T23:59:59+08:00")
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "delegation_extension")).one()
    assert audit.actor_name == "admin" and audit.action == "create"
    # A second extension for Shanghai is refused naming it and what to do (it said "与已有记录
    # 冲突"); the admin changes the existing one instead (issue 13).
    second = admin.post("/admin/extensions/add", data={
        "edition": str(xuhui.edition_id), "delegation": str(shanghai.id),
        "until": "2022-10-10 23:59:59", "reason": "再次延期"})
    assert second.status_code == 400
    assert "上海交易团" in text_of(second) and "2022-10-08 23:59" in text_of(second)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.DelegationExtension)) == 1
    changed = admin.post(f"/admin/extensions/edit/{extension.id}", data={
        "edition": str(xuhui.edition_id), "delegation": str(shanghai.id),
        "until": "2022-10-10 23:59:59", "reason": "再次延期"})
    assert changed.status_code == 302, text_of(changed)
    db.session.expire_all()
    assert db.session.get(m.DelegationExtension, extension.id).until == datetime.fromisoformat(
        "2022-10-10T23:59:59+08:00")
    login("sh-delegation").action("/delegation/units", "approve_units", [xuhui.id])
    db.session.expire_all()
    assert xuhui.status is US.approved
    # The extension is Shanghai's: Zhejiang is still past its deadline.
    client = login("zj-delegation")
    response = client.action("/delegation/units", "approve_units",
                             [world.registration("杭州进出口").id])
    assert "截止" in text_of(client.get(response.headers["Location"]))
