"""Public registration pages: new units, returning units (three ways to prove it), fresh start."""
from __future__ import annotations

import sqlalchemy as sa
from flask import flash, jsonify, redirect, request, session, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.forms import DynamicForm
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_user
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from app import models as m
from app.extensions import db
from app.i18n import pick
from app.scoping.rules import row_id
from app.views.base import attempt
from app.workflow import claims
from app.workflow import registration as reg
from app.workflow.editions import current_edition


def _choices(enum_cls):
    return [(e.value, e.label) for e in enum_cls]


class NewUnitForm(DynamicForm):
    region = SelectField(_l("Region"), choices=_choices(m.Region), default="domestic",
                         validators=[DataRequired()])
    category = SelectField(_l("Unit category"), choices=_choices(m.UnitCategory),
                           validators=[DataRequired()])
    delegation = SelectField(_l("Trading delegation"), choices=[], validate_choice=False)
    sub_delegation = SelectField(_l("Sub-delegation"), choices=[], validate_choice=False)
    name = StringField(_l("Unit name"), validators=[DataRequired(), Length(max=200)])
    name_en = StringField(_l("Unit name in English"), validators=[Optional(), Length(max=200)])
    uscc = StringField(_l("Unified social credit code"), validators=[Optional(), Length(max=30)])
    mobile = StringField(_l("Mobile"), validators=[DataRequired(), Length(max=32)])
    email = StringField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired()])
    confirm = PasswordField(_l("Confirm the password"),
                            validators=[DataRequired(), EqualTo("password",
                                                                _l("The passwords differ."))])
    referral_code = StringField(_l("Referral code"), validators=[Optional(), Length(max=32)])


class RegistrationView(BaseView):
    """Open to everyone: the forms a unit fills before it has an account."""

    route_base = "/register"
    default_view = "start"

    def _render(self, template: str, **kwargs):
        return self.render_template(template, edition=current_edition(), **kwargs)

    @expose("/")
    def start(self):
        return self._render("ciie/register/start.html")

    @expose("/delegations")
    def delegations(self):
        """Active delegations of a region (top level), or the sub-delegations of one."""
        D = m.Delegation
        stmt = sa.select(D).where(D.active.is_(True)).order_by(D.code)
        parent = row_id(m.Delegation, request.args.get("parent"))
        if parent is not None:
            stmt = stmt.where(D.parent_id == parent)
        else:
            region = request.args.get("region", "domestic")
            stmt = stmt.where(D.parent_id.is_(None), D.region == m.Region(region)
                              if region in m.Region.__members__ else sa.false())
        return jsonify([[d.id, pick(d.name_zh, d.name_en)] for d in db.session.scalars(stmt)])

    @expose("/new", methods=["GET", "POST"])
    def new_unit(self):
        form = NewUnitForm()
        all_delegations = [(str(d.id), d.name) for d in db.session.scalars(
            sa.select(m.Delegation).where(m.Delegation.active.is_(True)))]
        form.delegation.choices = form.sub_delegation.choices = [("", "")] + all_delegations
        afresh = request.args.get("afresh") == "1"
        if request.method == "GET" and request.args.get("uscc"):
            form.uscc.data = request.args["uscc"]
        if request.method == "POST" and form.validate():
            uscc = form.uscc.data
            data = reg.NewUnit(
                region=m.Region(form.region.data), category=m.UnitCategory(form.category.data),
                name=form.name.data, name_en=form.name_en.data, uscc=uscc,
                delegation_id=row_id(m.Delegation, form.delegation.data),
                sub_delegation_id=row_id(m.Delegation, form.sub_delegation.data),
                password=form.password.data, mobile=form.mobile.data, email=form.email.data,
                referral_code=form.referral_code.data)
            created = {}
            if afresh:
                # A claim on a known account: the delegation decides; nobody is logged in.
                if attempt(lambda: created.update(claim=claims.claim_account(
                        data, request.remote_addr))):
                    session["claim_unit"] = created["claim"].name
                    return redirect(url_for("RegistrationView.claimed"))
            elif attempt(lambda: created.update(user=reg.register_unit(data))):
                user = created["user"]
                login_user(user, remember=False)
                session["registered_login"] = user.username
                return redirect(url_for("RegistrationView.done"))
        categories = {region.value: [(c.value, str(c.label)) for c in cats]
                      for region, cats in m.CATEGORIES_BY_REGION.items()}
        return self._render("ciie/register/new.html", form=form, categories=categories,
                            afresh=afresh)

    @expose("/done")
    def done(self):
        login = session.get("registered_login")
        if not login:
            return redirect(url_for("RegistrationView.start"))
        return self._render("ciie/register/done.html", login=login,
                            overseas=login.startswith("OS"))

    @expose("/claimed")
    def claimed(self):
        """After asking to register afresh: what happens next (nothing is logged in)."""
        name = session.get("claim_unit")
        if not name:
            return redirect(url_for("RegistrationView.start"))
        return self._render("ciie/register/claimed.html", name=name)

    @expose("/returning", methods=["GET", "POST"])
    def returning(self):
        login = reg.normalise_login(request.form.get("login") or request.args.get("login"))
        sent = session.setdefault("verification_sent", {})
        if request.method == "POST":
            step = request.form.get("step", "")
            verified = {}
            if step == "password":
                attempt(lambda: verified.update(
                    unit=reg.check_password(login, request.form.get("password", ""))))
            elif step in ("send_sms", "send_email"):
                method = step[5:]
                if attempt(lambda: sent.update({method: reg.send_code(method, login)})):
                    session.modified = True
                    flash(_("A code was sent. It is valid for 5 minutes."), "info")
            elif step in ("check_sms", "check_email"):
                method = step[6:]
                attempt(lambda: verified.update(unit=reg.check_code(
                    method, login, request.form.get(f"code_{method}", ""))))
            if "unit" in verified:
                user = reg.carry_forward(verified["unit"], step.replace("check_", ""))
                login_user(user, remember=False)
                session.pop("verification_sent", None)
                flash(_("Welcome back. Your unit's data was carried forward: check it, then "
                        "pick the persons to carry forward."), "success")
                return redirect(url_for("UnitInfoView.edit"))
        return self._render("ciie/register/returning.html", login=login, sent=sent,
                            all_failed=bool(login) and reg.all_methods_failed(login))
