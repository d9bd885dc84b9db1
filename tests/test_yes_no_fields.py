"""A yes/no field of an add or edit form can be unticked: an unticked checkbox sends nothing,
and FAB's converter made every NOT NULL boolean column required, so "active" of a delegation
or a referral code could never be switched off (400 "该字段是必填字段"). Found while building
the exhibition-area pages (issue 12); a sibling of "every form usable" (issue 13)."""
from __future__ import annotations

import sqlalchemy as sa
from flask_appbuilder.baseviews import BaseCRUDView
from wtforms import BooleanField
from wtforms.validators import DataRequired, InputRequired

from app import models as m
from app.extensions import db
from tests.conftest import text_of


def test_no_yes_no_field_of_any_form_is_required(app):
    required = []
    for view in app.appbuilder.baseviews:
        if not isinstance(view, BaseCRUDView):
            continue
        for kind in ("add_form", "edit_form"):
            form = getattr(view, kind, None)
            for name, unbound in vars(form).items() if form else ():
                if getattr(unbound, "field_class", None) is not BooleanField:
                    continue
                checks = unbound.kwargs.get("validators") or []
                if any(isinstance(v, (DataRequired, InputRequired)) for v in checks):
                    required.append(f"{type(view).__name__}.{kind}.{name}")
    assert required == []


def test_admin_switches_a_referral_code_off_and_on(login, world):
    code = m.ReferralCode(code="PARTNER9", partner_name_zh="某合作伙伴",
                          partner_name_en="A partner", regional=True, active=True)
    db.session.add(code)
    db.session.commit()
    admin = login("admin")
    form = {"code": "PARTNER9", "partner_name_zh": "某合作伙伴", "partner_name_en": "A partner"}
    response = admin.post(f"/admin/referral-codes/edit/{code.id}", data=form)
    assert response.status_code == 302, text_of(response)
    db.session.expire_all()
    code = db.session.get(m.ReferralCode, code.id)
    assert (code.active, code.regional) == (False, False)
    response = admin.post(f"/admin/referral-codes/edit/{code.id}",
                          data={**form, "active": "y"})
    assert response.status_code == 302, text_of(response)
    db.session.expire_all()
    assert db.session.get(m.ReferralCode, code.id).active is True
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent).where(
        m.AuditEvent.record_type == "referral_code")) >= 2


def test_editing_a_record_with_a_unique_code_keeps_its_own_code(login, world):
    """The edit form compared the URL's key ("7") with the record's (7): a delegation could
    not be renamed without "代码 已经存在"."""
    delegation = db.session.scalars(sa.select(m.Delegation).where(
        m.Delegation.parent_id.is_(None)).order_by(m.Delegation.id)).first()
    admin = login("admin")
    response = admin.post(f"/admin/delegations/edit/{delegation.id}", data={
        "code": delegation.code, "name_zh": delegation.name_zh + "（新）",
        "name_en": delegation.name_en, "kind": delegation.kind.value,
        "region": delegation.region.value, "active": "y"})
    assert response.status_code == 302, text_of(response)
    db.session.expire_all()
    assert db.session.get(m.Delegation, delegation.id).name_zh.endswith("（新）")
    # Another record's code is still refused.
    other = db.session.scalars(sa.select(m.Delegation).where(
        m.Delegation.id != delegation.id)).first()
    response = admin.post(f"/admin/delegations/edit/{delegation.id}", data={
        "code": other.code, "name_zh": "x", "name_en": "x", "kind": delegation.kind.value,
        "region": delegation.region.value, "active": "y"})
    assert response.status_code == 400 and "已经存在" in text_of(response)
