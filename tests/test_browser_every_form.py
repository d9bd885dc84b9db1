"""In Chromium, every add and edit form of every role, filled as a person would (typing into
the boxes, choosing in the searching selects, ticking) and saved; then the row is read back.

The list of forms comes from the app: each registered view's add, edit and form-post
permissions that a role holds in the database. Each (role, form) has a recipe here or names
the browser test elsewhere that fills it, so a new form without a test fails
`test_every_form_of_every_role_has_a_browser_test`. The admin holds every permission
(app/cli.py sync_roles): a form another role also holds is tested as that role.

Date-time boxes (issue 13): FAB's picker replaced a typed `2022-10-08 23:59` with a bare date
and the save was refused; here the deadlines are typed, and picked with the calendar, in
Beijing time, and the calendar speaks the page's language."""
from __future__ import annotations

import importlib
from datetime import date, datetime
from typing import Callable

import pytest
import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import Role
from werkzeug.security import check_password_hash

from app import models as m
from app.clock import SHANGHAI
from app.demo import DEMO_PASSWORD
from app.extensions import db
from tests.conftest import UNIT_A, UNIT_B
from tests.test_browser_smoke import log_in

# The demo account each role's forms are filled in as.
USERS = {"admin": "admin", "unit": UNIT_A, "delegation": "sh-delegation",
         "sub_delegation": "sh-pudong", "finance": "finance", "reviewer": "reviewer",
         "organiser": "organiser", "gate": "gate", "person": "person-demo"}
FORM_PERMISSIONS = {"can_add": "add", "can_edit": "edit", "can_this_form_post": "form"}


def forms_by_role(app) -> dict[str, set[tuple[str, str]]]:
    """Role name → {(view class, "add" | "edit" | "form")} it may open and save."""
    views: dict[str, list[tuple[str, str, str]]] = {}
    for view in app.appbuilder.baseviews:
        for permission, kind in FORM_PERMISSIONS.items():
            if permission in (view.base_permissions or ()):
                views.setdefault(view.class_permission_name, []).append(
                    (permission, kind, type(view).__name__))
    forms = {}
    for role in db.session.scalars(sa.select(Role)):
        granted = {(pv.permission.name, pv.view_menu.name) for pv in role.permissions}
        held = {(cls, kind) for name, entries in views.items()
                for permission, kind, cls in entries if (permission, name) in granted}
        if held:
            forms[role.name] = held
    return forms


def held_forms(app) -> set[tuple[str, str, str]]:
    """(role, view class, kind) that need a browser test."""
    forms = forms_by_role(app)
    others = set().union(*(held for role, held in forms.items() if role != "admin"))
    return {(role, cls, kind) for role, held in forms.items() for cls, kind in held
            if role != "admin" or (cls, kind) not in others}


# ---- helpers: what a person does ------------------------------------------------------------

def save(page) -> None:
    page.click("form#model_form button[type=submit], form#model_form input[type=submit]")
    page.wait_for_selector(".alert-success")


def type_into(page, selector: str, text: str) -> None:
    """Click into the box, select what is there and type over it, key by key."""
    page.click(selector)
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def choose(page, field: str, text: str) -> None:
    """Open the searching select (select2) of `field`, type part of `text`, click the match."""
    page.locator(f"#{field} + .select2 .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill(text)
    page.locator(".select2-container--open .select2-results__option",
                 has_text=text).first.click()


def pick(page, field: str, day: int, hour: str, minute: str) -> None:
    """Open the calendar beside the date-time box `field`, click a day of the month it shows,
    choose the hour and minute below it, and click away to close it."""
    page.click(f"#{field} >> xpath=../span[contains(@class, 'ciie-datetime-open')]")
    calendar = page.locator(".datepicker-dropdown:visible")
    calendar.locator(".datepicker-days td.day:not(.old):not(.new)").get_by_text(
        str(day), exact=True).click()
    calendar.locator("select.ciie-hour").select_option(hour)
    calendar.locator("select.ciie-minute").select_option(minute)
    close_calendar(page)


def close_calendar(page) -> None:
    page.locator("form#model_form label").first.click()
    page.wait_for_selector(".datepicker-dropdown", state="hidden")


def beijing(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


def fresh(model: type, **where) -> object:
    db.session.expire_all()
    return db.session.scalars(sa.select(model).filter_by(**where)).one()


def switch_language(page, language: str) -> None:
    page.goto("/")
    page.click(f"#lang-{language}")
    page.wait_for_selector("#home")


# ---- admin ----------------------------------------------------------------------------------

def admin_adds_an_edition(page, world) -> None:
    page.goto("/admin/editions/add")
    type_into(page, "#number", "6")
    type_into(page, "#start_date", "2023-11-05")
    page.keyboard.press("Escape")
    type_into(page, "#end_date", "2023-11-10")
    page.keyboard.press("Escape")
    type_into(page, "#badge_fee_fen", "20000")
    type_into(page, "#delegation_deadline", "2023-09-30 23:59")
    type_into(page, "#transfer_deadline", "2023-10-12 17:00")
    type_into(page, "#online_pay_deadline", "2023-10-15 08:30")
    save(page)
    edition = fresh(m.Edition, number=6)
    assert (edition.start_date, edition.end_date) == (date(2023, 11, 5), date(2023, 11, 10))
    assert edition.delegation_deadline == beijing(2023, 9, 30, 23, 59)
    assert edition.transfer_deadline == beijing(2023, 10, 12, 17, 0)
    assert edition.online_pay_deadline == beijing(2023, 10, 15, 8, 30)
    assert edition.badge_fee_fen == 20000 and edition.is_current is False


def admin_picks_an_editions_deadline(page, world) -> None:
    fifth = fresh(m.Edition, number=5)
    # The calendar names its month and days in the page's language.
    for language, month, weekday in (("en", "September 2022", "Su"), ("zh", "2022年9月", "日")):
        switch_language(page, language)
        page.goto(f"/admin/editions/edit/{fifth.id}")
        # Shown in Beijing time, seconds kept: saving unchanged must not move the deadline.
        assert page.input_value("#delegation_deadline") == "2022-09-30 23:59:59"
        page.click("#delegation_deadline >> xpath=../span")
        calendar = page.locator(".datepicker-dropdown:visible")
        assert calendar.locator(".datepicker-days .datepicker-switch").inner_text() == month
        assert weekday in calendar.locator(".datepicker-days thead").inner_text()
        close_calendar(page)
        # FAB's date-only calendar on the same form too.
        page.click("#start_date")
        first_day = page.locator(".datepicker-dropdown:visible .datepicker-days")
        assert first_day.locator(".datepicker-switch").inner_text() == \
            month.replace("September", "November").replace("9月", "11月")
        page.keyboard.press("Escape")
    pick(page, "transfer_deadline", 20, "18", "30")
    assert page.input_value("#transfer_deadline") == "2022-10-20 18:30"
    save(page)
    fifth = fresh(m.Edition, number=5)
    assert fifth.transfer_deadline == beijing(2022, 10, 20, 18, 30)
    assert fifth.delegation_deadline == beijing(2022, 9, 30, 23, 59, 59)


def admin_grants_an_extension(page, world) -> None:
    page.goto("/admin/extensions/add")
    choose(page, "edition", "5")
    choose(page, "delegation", "浙江交易团")
    type_into(page, "#until", "2022-10-08 23:59")
    type_into(page, "#reason", "展品运输延误")
    save(page)
    extension = fresh(m.DelegationExtension)
    assert extension.until == beijing(2022, 10, 8, 23, 59)
    assert extension.delegation.code == "ZJ" and extension.reason == "展品运输延误"
    assert extension.granted_by_id == world.user("admin").id


def admin_changes_an_extension_with_the_calendar(page, world) -> None:
    extension = fresh(m.DelegationExtension)
    page.goto(f"/admin/extensions/edit/{extension.id}")
    pick(page, "until", 12, "20", "00")
    assert page.input_value("#until") == "2022-10-12 20:00"
    save(page)
    assert fresh(m.DelegationExtension).until == beijing(2022, 10, 12, 20, 0)


def admin_adds_and_renames_a_delegation(page, world) -> None:
    page.goto("/admin/delegations/add")
    type_into(page, "#code", "SH-JA")
    type_into(page, "#name_zh", "静安区交易分团")
    type_into(page, "#name_en", "Jing'an Sub-delegation")
    choose(page, "kind", "地方")
    choose(page, "parent", "上海交易团")
    save(page)
    jingan = fresh(m.Delegation, code="SH-JA")
    assert jingan.parent.code == "SH" and jingan.kind is m.DelegationKind.local
    assert jingan.active is True
    page.goto(f"/admin/delegations/edit/{jingan.id}")
    type_into(page, "#name_en", "Jingan Sub-delegation")
    page.uncheck("#active")
    save(page)
    jingan = fresh(m.Delegation, code="SH-JA")
    assert jingan.name_en == "Jingan Sub-delegation" and jingan.active is False


def admin_renames_an_exhibition_area(page, world) -> None:
    area = db.session.scalars(sa.select(m.Zone).where(m.Zone.parent_id.is_(None))
                              .order_by(m.Zone.sort)).first()
    page.goto(f"/admin/exhibition-areas/edit/{area.id}")
    type_into(page, "#name_en", "Food and Agriculture Exhibition Area")
    type_into(page, "#sort", "7")
    save(page)
    area = fresh(m.Zone, id=area.id)
    assert (area.name_en, area.sort) == ("Food and Agriculture Exhibition Area", 7)


def admin_adds_and_changes_a_referral_code(page, world) -> None:
    page.goto("/admin/referral-codes/add")
    type_into(page, "#code", " partner02 ")
    type_into(page, "#partner_name_zh", "大湾区合作伙伴")
    type_into(page, "#partner_name_en", "Greater Bay Area Partner")
    page.check("#regional")
    page.check("#active")
    save(page)
    code = fresh(m.ReferralCode, code="PARTNER02")
    assert code.regional is True and code.active is True
    page.goto(f"/admin/referral-codes/edit/{code.id}")
    page.uncheck("#active")
    save(page)
    assert fresh(m.ReferralCode, code="PARTNER02").active is False


def admin_adds_and_renames_an_organiser(page, world) -> None:
    page.goto("/admin/organisers/add")
    type_into(page, "#name_zh", "上海市商务委员会")
    type_into(page, "#name_en", "Shanghai Commission of Commerce")
    save(page)
    organiser = fresh(m.Organiser, name_zh="上海市商务委员会")
    page.goto(f"/admin/organisers/edit/{organiser.id}")
    type_into(page, "#name_en", "Shanghai Municipal Commission of Commerce")
    save(page)
    assert fresh(m.Organiser, id=organiser.id).name_en == \
        "Shanghai Municipal Commission of Commerce"


def admin_adds_a_bank_statement_layout(page, world) -> None:
    page.goto("/admin/bank-profiles/add")
    type_into(page, "#code", "NBCB")
    type_into(page, "#name_zh", "宁波银行")
    type_into(page, "#name_en", "Bank of Ningbo")
    type_into(page, "#date_headers", "交易日期|记账日期")
    type_into(page, "#credit_headers", "贷方金额|收入金额")
    type_into(page, "#payer_name_headers", "对方户名")
    type_into(page, "#memo_headers", "摘要|附言")
    save(page)
    profile = fresh(m.BankStatementProfile, code="NBCB")
    assert profile.date_headers == "交易日期|记账日期" and profile.memo_headers == "摘要|附言"


def admin_adds_and_renames_a_role(page, world) -> None:
    page.goto("/roles/add")
    type_into(page, "#name", "statistics_reader")
    page.locator("#permissions + .select2 .select2-selection").click()
    page.keyboard.type("DelegationStats")
    page.locator(".select2-container--open .select2-results__option",
                 has_text="DelegationStats").first.click()
    page.keyboard.press("Escape")
    save(page)
    role = fresh(Role, name="statistics_reader")
    assert [pv.view_menu.name for pv in role.permissions] == ["DelegationStats"]
    page.goto(f"/roles/edit/{role.id}")
    type_into(page, "#name", "stats_reader")
    save(page)
    assert fresh(Role, id=role.id).name == "stats_reader"


def admin_adds_and_relabels_a_group(page, world) -> None:
    from flask_appbuilder.security.sqla.models import Group

    page.goto("/groups/add")
    type_into(page, "#name", "expo_staff")
    type_into(page, "#label", "展会工作人员")
    type_into(page, "#description", "现场工作人员")
    save(page)
    group = fresh(Group, name="expo_staff")
    page.goto(f"/groups/edit/{group.id}")
    type_into(page, "#label", "进博会工作人员")
    save(page)
    assert fresh(Group, id=group.id).label == "进博会工作人员"


def admin_resets_a_users_password(page, world) -> None:
    finance = world.user("finance")
    page.goto(f"/resetpassword/form?pk={finance.id}")
    type_into(page, "#password", "Fin-Passw0rd!")
    type_into(page, "#conf_password", "Fin-Passw0rd!")
    page.click("form#model_form button[type=submit]")
    page.wait_for_selector(".alert-info, .alert-success")
    assert check_password_hash(fresh(m.User, id=finance.id).password, "Fin-Passw0rd!")


# ---- the unit -------------------------------------------------------------------------------

def unit_adds_and_changes_an_address(page, world) -> None:
    page.goto("/unit/addresses/add")
    type_into(page, "#recipient", "王小明")
    type_into(page, "#phone", "13800138000")
    type_into(page, "#province", "上海市")
    type_into(page, "#city", "上海市")
    type_into(page, "#detail", "浦东新区张江路 100 号")
    type_into(page, "#postcode", "201203")
    page.check("#is_default")
    save(page)
    address = fresh(m.Address, recipient="王小明")
    assert address.unit_id == world.unit("浦东医疗").id and address.is_default is True
    page.goto(f"/unit/addresses/edit/{address.id}")
    type_into(page, "#detail", "浦东新区张江路 200 号")
    save(page)
    assert fresh(m.Address, id=address.id).detail == "浦东新区张江路 200 号"


def unit_changes_a_persons_job_title(page, world) -> None:
    registration = world.person("刘洋")
    page.goto(f"/unit/persons/edit/{registration.id}")
    type_into(page, "#job_title", "注册事务主管")
    page.check("input[name=entry_dates][value='2022-11-08']")
    save(page)
    registration = fresh(m.PersonRegistration, id=registration.id)
    assert registration.person.job_title == "注册事务主管"
    assert date(2022, 11, 8) in registration.edition.mask_to_days(registration.entry_days)


# ---- the organiser --------------------------------------------------------------------------

def organiser_adds_an_event(page, world) -> None:
    page.goto("/organiser/events/add")
    type_into(page, "#title_zh", "进口食品品鉴会")
    type_into(page, "#title_en", "Imported Food Tasting")
    type_into(page, "#description_zh", "现场品鉴进口食品。")
    type_into(page, "#description_en", "Taste imported food.")
    type_into(page, "#starts_at", "2022-11-07 09:30")
    type_into(page, "#ends_at", "2022-11-07 11:00")
    type_into(page, "#place", "国家会展中心 5.1馆 会议室B")
    type_into(page, "#capacity", "80")
    save(page)
    event = fresh(m.Event, title_zh="进口食品品鉴会")
    assert (event.starts_at, event.ends_at) == (beijing(2022, 11, 7, 9, 30),
                                                beijing(2022, 11, 7, 11, 0))
    assert event.organiser_id == world.user("organiser").organiser_id
    assert event.capacity == 80 and event.status is m.EventStatus.draft


def organiser_moves_an_event_with_the_calendar(page, world) -> None:
    event = fresh(m.Event, title_zh="进口食品品鉴会")
    page.goto(f"/organiser/events/edit/{event.id}")
    pick(page, "starts_at", 8, "14", "00")
    pick(page, "ends_at", 8, "16", "30")
    save(page)
    event = fresh(m.Event, id=event.id)
    assert (event.starts_at, event.ends_at) == (beijing(2022, 11, 8, 14, 0),
                                                beijing(2022, 11, 8, 16, 30))


# ---- every role: its own account ------------------------------------------------------------

def edits_own_name(page, world, username: str) -> None:
    page.goto("/userinfoeditview/form")
    type_into(page, "#first_name", "新名")
    type_into(page, "#last_name", "字")
    page.click("form#model_form button[type=submit]")
    page.wait_for_selector(".alert-info, .alert-success")
    user = fresh(m.User, username=username)
    assert (user.first_name, user.last_name) == ("新名", "字")


def changes_own_password(page, world, username: str) -> None:
    page.goto("/resetmypassword/form")
    type_into(page, "#password", "N3w-Passw0rd!")
    type_into(page, "#conf_password", "N3w-Passw0rd!")
    page.click("form#model_form button[type=submit]")
    page.wait_for_selector(".alert-info, .alert-success")
    user = fresh(m.User, username=username)
    assert check_password_hash(user.password, "N3w-Passw0rd!")
    assert not check_password_hash(user.password, DEMO_PASSWORD)


Recipe = Callable[..., None]
# (role, view class, kind) → the recipe that fills the form, or the browser test elsewhere
# ("module::test") that does. Recipes run in this order, one browser session per role.
RECIPES: dict[tuple[str, str, str], Recipe | str] = {
    ("admin", "EditionView", "add"): admin_adds_an_edition,
    ("admin", "EditionView", "edit"): admin_picks_an_editions_deadline,
    ("admin", "DelegationExtensionView", "add"): admin_grants_an_extension,
    ("admin", "DelegationExtensionView", "edit"): admin_changes_an_extension_with_the_calendar,
    ("admin", "DelegationView", "add"): admin_adds_and_renames_a_delegation,
    ("admin", "DelegationView", "edit"): admin_adds_and_renames_a_delegation,
    ("admin", "ExhibitionAreaView", "add"):
        "tests.test_browser_admin_forms::test_admin_adds_an_area_and_a_zone_then_switches_the_"
        "zone_off",
    ("admin", "ExhibitionAreaView", "edit"): admin_renames_an_exhibition_area,
    ("admin", "ZoneView", "add"):
        "tests.test_browser_admin_forms::test_admin_adds_an_area_and_a_zone_then_switches_the_"
        "zone_off",
    ("admin", "ZoneView", "edit"):
        "tests.test_browser_admin_forms::test_admin_adds_an_area_and_a_zone_then_switches_the_"
        "zone_off",
    ("admin", "ReferralCodeView", "add"): admin_adds_and_changes_a_referral_code,
    ("admin", "ReferralCodeView", "edit"): admin_adds_and_changes_a_referral_code,
    ("admin", "OrganiserView", "add"): admin_adds_and_renames_an_organiser,
    ("admin", "OrganiserView", "edit"): admin_adds_and_renames_an_organiser,
    ("admin", "BankStatementProfileView", "add"): admin_adds_a_bank_statement_layout,
    ("admin", "BankStatementProfileView", "edit"):
        "tests.test_browser_admin_forms::test_admin_changes_a_banks_statement_layout",
    ("admin", "CiieUserDBModelView", "add"):
        "tests.test_user_form_select::test_admin_adds_and_edits_a_user_in_chromium",
    ("admin", "CiieUserDBModelView", "edit"):
        "tests.test_user_form_select::test_admin_adds_and_edits_a_user_in_chromium",
    ("admin", "CiieRoleModelView", "add"): admin_adds_and_renames_a_role,
    ("admin", "CiieRoleModelView", "edit"): admin_adds_and_renames_a_role,
    ("admin", "ResetPasswordView", "form"): admin_resets_a_users_password,
    ("admin", "CiieGroupModelView", "add"): admin_adds_and_relabels_a_group,
    ("admin", "CiieGroupModelView", "edit"): admin_adds_and_relabels_a_group,
    ("unit", "UnitInfoView", "edit"):
        "tests.test_browser_unit_information::test_a_refused_save_keeps_every_tick_and_typed_"
        "value",
    ("unit", "UnitPersonView", "add"):
        "tests.test_browser_person_form::test_person_form_full_width_permit_and_gender_mismatch",
    ("unit", "UnitPersonView", "edit"): unit_changes_a_persons_job_title,
    ("unit", "UnitDocumentView", "add"): "tests.test_browser_journeys::test_new_unit_journey",
    ("unit", "AddressView", "add"): unit_adds_and_changes_an_address,
    ("unit", "AddressView", "edit"): unit_adds_and_changes_an_address,
    ("organiser", "OrganiserEventView", "add"): organiser_adds_an_event,
    ("organiser", "OrganiserEventView", "edit"): organiser_moves_an_event_with_the_calendar,
}
# The admin's own account forms are the same forms, filled as every other role.
for _role in set(USERS) - {"admin"}:
    RECIPES[(_role, "UserInfoEditView", "form")] = edits_own_name
    RECIPES[(_role, "ResetMyPasswordView", "form")] = changes_own_password


def test_a_date_time_is_read_as_typed_in_beijing_time_or_refused_at_its_field(login, world):
    admin = login("admin")
    admin.set_language("zh")
    fifth = fresh(m.Edition, number=5)
    zhejiang = fresh(m.Delegation, code="ZJ")
    form = {"edition": str(fifth.id), "delegation": str(zhejiang.id), "reason": "展品运输延误"}
    for typed in ("2022-10-08 25:00", "2022-10-08", "10/08/2022 23:59"):
        refused = admin.post("/admin/extensions/add", data={**form, "until": typed})
        assert refused.status_code == 400
        assert "请按“年-月-日 时:分”（北京时间）填写日期与时间" in refused.data.decode()
        assert f'value="{typed}"' in refused.data.decode()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.DelegationExtension)) == 0
    # A Chinese input method's full-width digits, colon and space.
    assert admin.post("/admin/extensions/add", data={
        **form, "until": "２０２２－１０－０８　２３：５９"}).status_code == 302
    assert fresh(m.DelegationExtension).until == beijing(2022, 10, 8, 23, 59)


def test_no_role_opens_or_saves_a_form_of_a_row_it_does_not_hold(login, world):
    other = m.Organiser(name_zh="其他主办方", name_en="Another organiser")
    db.session.add(other)
    db.session.flush()
    theirs = m.Event(edition=fresh(m.Edition, number=5), organiser=other, title_zh="他人活动",
                     title_en="Theirs", starts_at=beijing(2022, 11, 7, 9, 0),
                     ends_at=beijing(2022, 11, 7, 10, 0), place="5.1馆", capacity=10,
                     seats_taken=0, status=m.EventStatus.draft)
    db.session.add(theirs)
    db.session.commit()
    organiser = login("organiser")
    assert organiser.get(f"/organiser/events/edit/{theirs.id}").status_code in (403, 404)
    organiser.post(f"/organiser/events/edit/{theirs.id}", data={
        "title_zh": "改掉", "title_en": "Changed", "starts_at": "2022-11-07 09:00",
        "ends_at": "2022-11-07 10:00", "place": "5.1馆", "capacity": "10"})
    assert fresh(m.Event, id=theirs.id).title_zh == "他人活动"
    liu = world.person("刘洋")                      # unit A's person
    unit_b = login(UNIT_B)
    assert unit_b.get(f"/unit/persons/edit/{liu.id}").status_code in (403, 404)
    for username in ("sh-delegation", "finance", "organiser", UNIT_A):
        client = login(username)
        for url in ("/admin/extensions/add", "/admin/editions/add", "/users/add"):
            assert client.get(url).status_code == 403, (username, url)


def test_every_form_of_every_role_has_a_browser_test(app, world):
    held = held_forms(app)
    assert held - set(RECIPES) == set(), "forms without a browser test: add a recipe"
    assert set(RECIPES) - held == set(), "recipes for forms no role holds any more"
    assert {role for role, _cls, _kind in held} <= set(USERS)
    for recipe in RECIPES.values():
        if isinstance(recipe, str):
            module, test = recipe.split("::")
            assert callable(getattr(importlib.import_module(module), test)), recipe


@pytest.mark.parametrize("role", list(USERS))
def test_every_form_of_the_role_saves_in_chromium(page, world, role):
    username = USERS[role]
    roles_before = set(db.session.scalars(sa.select(Role.id)))
    log_in(page, username)
    done = set()
    try:
        for (holder, _cls, _kind), recipe in RECIPES.items():
            if holder != role or isinstance(recipe, str) or recipe in done:
                continue
            done.add(recipe)
            if recipe in (edits_own_name, changes_own_password):
                recipe(page, world, username)
            else:
                recipe(page, world)
    finally:
        # Roles outlive a test (conftest keeps them): the one the admin added must go.
        db.session.rollback()
        for added in db.session.scalars(sa.select(Role).where(Role.id.not_in(roles_before))):
            added.permissions = []
            db.session.delete(added)
        db.session.commit()

