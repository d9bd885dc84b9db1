"""Demo data: the 5th CIIE (and the 4th, for returning visitors), delegations, units in several
states and one login per role. Safe to run twice: it does nothing if the demo is loaded."""
from __future__ import annotations

import io
import secrets
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from stdnum.cn import ric, uscc

from app import models as m
from app.clock import SHANGHAI, end_of_day_shanghai, now
from app.extensions import db
from app.search_keys import person_keys
from app.workflow.persons import id_key

DEMO_PASSWORD = "Demo@2022"
PS = m.PersonStatus


def make_uscc(body17: str) -> str:
    return body17 + uscc.calc_check_digit(body17)


def _demo_photo(shade: int) -> dict[str, str]:
    """An ID photo and its thumbnail for a demo person (a plain portrait-sized picture): every
    person but a draft needs one."""
    from PIL import Image

    from app.storage import store
    from app.workflow.persons import THUMBNAIL_SIZE

    image = Image.new("RGB", (300, 400), (90 + 10 * shade % 160, 120, 180))
    keys = {}
    for field, size in (("photo_key", None), ("thumb_key", THUMBNAIL_SIZE)):
        if size:
            image.thumbnail(size)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        keys[field] = store(buffer.getvalue(), "jpg")
    return keys


def make_ric(body17: str) -> str:
    # stdnum's calc_check_digit takes the number with a (placeholder) check digit.
    return body17 + ric.calc_check_digit(body17 + "0")


# The 5th edition's exhibition areas (展区) and their zones (专区), as the organisers published
# them, each area with a general choice for products outside any zone. Sources:
# tests/data/unitinfo-SOURCES.md (the fixture beside it holds the same list).
EXHIBITION_AREAS = [
    ("食品及农产品展区", "Food and Agricultural Products Exhibition Area", [
        ("食品及农产品（综合）", "Food and agricultural products (general)"),
        ("农作物种业专区", "Crop Seed Zone"),
    ]),
    ("汽车展区", "Automobile Exhibition Area", [
        ("汽车（综合）", "Automobile (general)"),
        ("智慧出行专区", "Smart Mobility Zone"),
    ]),
    ("技术装备展区", "Intelligent Industry and Information Technology Exhibition Area", [
        ("技术装备（综合）", "Intelligent industry and information technology (general)"),
        ("集成电路专区", "Integrated Circuits Zone"),
        ("能源低碳及环保技术专区",
         "Energy, Low-carbon and Environmental Protection Technology Zone"),
        ("人工智能专区", "Artificial Intelligence Zone"),
        ("创新孵化专区", "Innovation Incubation Zone"),
    ]),
    ("消费品展区", "Consumer Goods Exhibition Area", [
        ("消费品（综合）", "Consumer goods (general)"),
        ("体育用品及赛事专区", "Sporting Goods and Events Zone"),
    ]),
    ("医疗器械及医药保健展区", "Medical Equipment and Healthcare Products Exhibition Area", [
        ("医疗器械及医药保健（综合）", "Medical equipment and healthcare products (general)"),
        ("公共卫生防疫专区", "Public Health and Epidemic Prevention Zone"),
        ("生物医药专区", "Biomedicine Zone"),
        ("健康养老专区", "Elderly Care Zone"),
    ]),
    ("服务贸易展区", "Trade in Services Exhibition Area", [
        ("服务贸易（综合）", "Trade in services (general)"),
    ]),
]


def _exhibition_areas() -> dict[str, m.Zone]:
    """The areas and their zones; returns every row by its Chinese name."""
    rows = {}
    for i, (zh, en, zones) in enumerate(EXHIBITION_AREAS):
        area = rows[zh] = m.Zone(name_zh=zh, name_en=en, sort=i)
        for j, (zone_zh, zone_en) in enumerate(zones):
            rows[zone_zh] = m.Zone(name_zh=zone_zh, name_en=zone_en, sort=j, parent=area)
    db.session.add_all(rows.values())
    return rows


def _edition(number: int, year: int, current: bool, fee_fen: int) -> m.Edition:
    return m.Edition(
        number=number, start_date=date(year, 11, 5), end_date=date(year, 11, 10),
        badge_fee_fen=fee_fen,
        delegation_deadline=end_of_day_shanghai(date(year, 9, 30)),
        transfer_deadline=end_of_day_shanghai(date(year, 10, 12)),
        online_pay_deadline=end_of_day_shanghai(date(year, 10, 15)),
        is_current=current,
    )


def _delegation(code: str, zh: str, en: str, kind: m.DelegationKind, parent=None,
                rollup=None) -> m.Delegation:
    d = m.Delegation(code=code, name_zh=zh, name_en=en, kind=kind, parent=parent,
                     rollup_delegation=rollup, region=m.Region.domestic, active=True)
    db.session.add(d)
    return d


def _user(username: str, role: str, first: str, last: str, **links) -> m.User:
    sm = current_app.appbuilder.sm
    user = sm.add_user(username=username, first_name=first, last_name=last,
                       email=f"{username}@demo.ciie.local", role=sm.find_role(role),
                       password=DEMO_PASSWORD)
    for key, value in links.items():
        setattr(user, key, value)
    return user


def load_demo() -> list[tuple[str, str]]:
    """Load the demo once; returns the (role, username) logins."""
    if db.session.scalar(sa.select(m.Edition.id).where(m.Edition.number == 5)):
        return _logins()
    fourth = _edition(4, 2021, False, 20000)
    fifth = _edition(5, 2022, True, 20000)
    db.session.add_all([fourth, fifth])

    K = m.DelegationKind
    shanghai = _delegation("SH", "上海交易团", "Shanghai Delegation", K.local)
    pudong = _delegation("SH-PD", "浦东新区交易分团", "Pudong Sub-delegation", K.local, shanghai)
    xuhui = _delegation("SH-XH", "徐汇区交易分团", "Xuhui Sub-delegation", K.local, shanghai)
    medical = _delegation("IND-MED", "医药行业交易团", "Pharmaceutical Industry Delegation",
                          K.industry, rollup=shanghai)
    soe = _delegation("SOE", "中央企业交易团", "Central SOE Delegation", K.central_soe)
    zhejiang = _delegation("ZJ", "浙江交易团", "Zhejiang Delegation", K.local)
    _delegation("NHC", "国家卫生健康委交易团", "National Health Commission Delegation",
                K.health_commission)

    zone = _exhibition_areas()
    # What the demo units are interested in (their purchase intentions say the same).
    domestic_zones = [zone["医疗器械及医药保健（综合）"], zone["生物医药专区"],
                      zone["食品及农产品（综合）"]]
    overseas_zones = [zone["技术装备（综合）"], zone["人工智能专区"]]
    referral = m.ReferralCode(code="PARTNER01", partner_name_zh="长三角区域合作伙伴",
                              partner_name_en="Yangtze River Delta Regional Partner",
                              regional=True)
    organiser = m.Organiser(name_zh="进口博览局", name_en="CIIE Bureau")
    db.session.add_all([referral, organiser])
    db.session.flush()

    def unit(name, name_en, body17, delegation, sub, status, category=m.UnitCategory.enterprise,
             region=m.Region.domestic, login=None, reason=None):
        code = make_uscc(body17) if body17 else None
        u = m.Unit(login=login or code, uscc=code, name=name, name_en=name_en, region=region,
                   category=category, mobile="+8613800138000", email=f"{(login or code).lower()}"
                   "@demo.ciie.local", language="en" if region is m.Region.overseas else "zh")
        reg = m.UnitRegistration(
            edition=fifth, unit=u, status=status, delegation=delegation, sub_delegation=sub,
            contact_name="张经理" if region is m.Region.domestic else "John Smith",
            contact_mobile="+8613800138000", contact_email=u.email,
            purchase_intentions="进口医疗设备、食品" if region is m.Region.domestic
            else "Industrial equipment",
            reason="采购洽谈" if region is m.Region.domestic else "Sourcing",
            submitted_at=now() if status is not m.UnitStatus.draft else None,
            review_reason=reason,
        )
        reg.zones = domestic_zones if region is m.Region.domestic else overseas_zones
        db.session.add_all([u, reg])
        return u, reg

    US = m.UnitStatus
    unit_a, reg_a = unit("上海浦东医疗器械有限公司", "Shanghai Pudong Medical Devices Co.",
                         "91310115MA1K4AB30", shanghai, pudong, US.approved)
    unit_b, reg_b = unit("上海徐汇贸易有限公司", "Shanghai Xuhui Trading Co.",
                         "91310104MA1FR0C12", shanghai, xuhui, US.submitted)
    unit_c, reg_c = unit("上海生物制药股份有限公司", "Shanghai Biopharma Co.",
                         "91310000MA1FL1D23", medical, None, US.submitted)
    unit_d, reg_d = unit("中国示范能源集团有限公司", "China Demo Energy Group",
                         "91110000100001E34", soe, None, US.draft)
    unit_e, reg_e = unit("浙江杭州进出口有限公司", "Hangzhou Import & Export Co.",
                         "91330100MA27F4F56", zhejiang, None, US.returned,
                         reason="请补充单位资质证明。")
    unit_f, reg_f = unit("Global Sourcing Ltd.", "Global Sourcing Ltd.", None, None, None,
                         US.draft, category=m.UnitCategory.enterprise,
                         region=m.Region.overseas, login="OS2022000001")
    reg_a.unit_number = "T05000001"
    reg_a.reviewed_at = now()
    db.session.add(m.Counter(name=f"unit_number:{fifth.id}", value=0))
    db.session.flush()
    db.session.execute(sa.update(m.Counter).where(m.Counter.name == f"unit_number:{fifth.id}")
                       .values(value=1))
    db.session.add(m.Address(unit=unit_a, slot=1, recipient="张经理", phone="021-50000000",
                             province="上海市", city="上海市", detail="浦东新区张江路100号",
                             postcode="201203", is_default=True))

    days = fifth.days
    people = [
        # unit, name, gender, birth body, status, tag
        (unit_a, reg_a, "王伟", m.Gender.male, "31010419800101001", PS.awaiting_payment,
         m.Tag.visitor),
        (unit_a, reg_a, "李娜", m.Gender.female, "31010419850202002", PS.awaiting_payment,
         m.Tag.visitor),
        (unit_a, reg_a, "张强", m.Gender.male, "31010419900303003", PS.awaiting_review,
         m.Tag.staff),
        (unit_a, reg_a, "刘洋", m.Gender.male, "31011519920404005", PS.draft, None),
        (unit_a, reg_a, "陈静", m.Gender.female, "31011519930505006", PS.in_order,
         m.Tag.visitor),
        (unit_b, reg_b, "赵敏", m.Gender.female, "31010419880606006", PS.submitted, None),
        (unit_b, reg_b, "孙磊", m.Gender.male, "31010419870707007", PS.submitted, None),
        (unit_c, reg_c, "周杰", m.Gender.male, "31010119860808009", PS.submitted, None),
        (unit_d, reg_d, "吴芳", m.Gender.female, "11010119890909008", PS.draft, None),
        (unit_e, reg_e, "郑浩", m.Gender.male, "33010619911010011", PS.submitted, None),
    ]
    registrations = []
    for i, (u, reg, name, gender, body, status, tag) in enumerate(people):
        number = make_ric(body)
        mobile = f"+86139{i:08d}"
        person = m.Person(unit=u, name=name, gender=gender, id_type=m.IdType.mainland_id,
                          id_number=number, nationality="CN", mobile=mobile,
                          job_title="采购经理", **person_keys(number, mobile), **_demo_photo(i))
        pr = m.PersonRegistration(
            edition=fifth, person=person, unit_registration=reg,
            id_key=id_key(m.IdType.mainland_id, number), status=status, tag=tag,
            entry_days=fifth.days_to_mask(days[:2 + i % 3]),
            submitted_at=None if status is PS.draft else now(), status_changed_at=now())
        db.session.add_all([person, pr])
        registrations.append(pr)
    overseas = m.Person(unit=unit_f, name="John Smith", gender=m.Gender.male,
                        id_type=m.IdType.passport, id_number="E12345678", nationality="GB",
                        **person_keys("E12345678", None))
    db.session.add_all([overseas, m.PersonRegistration(
        edition=fifth, person=overseas, unit_registration=reg_f,
        id_key=id_key(m.IdType.passport, "E12345678"), status=PS.draft,
        entry_days=fifth.days_to_mask(days[:3]))])
    db.session.flush()

    # A pending order for 陈静 (in_order) at the 5th edition fee.
    order = m.Order(number="O2022000001", edition=fifth, unit=unit_a,
                    status=m.OrderStatus.pending, fee_fen=fifth.badge_fee_fen,
                    amount_fen=fifth.badge_fee_fen)
    db.session.add(order)
    db.session.flush()
    db.session.add(m.OrderItem(order=order, person_registration=registrations[4],
                               amount_fen=fifth.badge_fee_fen, active=True))
    db.session.add(m.Counter(name="order", value=1))
    db.session.add(m.Counter(name="overseas_login", value=1))

    starts = datetime(2022, 11, 6, 14, 0, tzinfo=SHANGHAI)
    db.session.add(m.Event(
        edition=fifth, organiser=organiser, title_zh="进口医疗器械采购对接会",
        title_en="Imported Medical Devices Matchmaking", description_zh="供需对接。",
        description_en="Buyers meet exhibitors.", starts_at=starts,
        ends_at=starts + timedelta(hours=2), place="国家会展中心 4.1馆 会议室A", capacity=50,
        seats_taken=0, open_to_visitors=True, status=m.EventStatus.published))

    unit_g = _history(fourth, unit_a, reg_a, shanghai, pudong, zone)

    _user("admin", "admin", "系统", "管理员")
    _user(unit_a.login, "unit", "浦东医疗", "单位", unit_id=unit_a.id)
    _user(unit_b.login, "unit", "徐汇贸易", "单位", unit_id=unit_b.id)
    _user(unit_e.login, "unit", "杭州进出口", "单位", unit_id=unit_e.id)
    _user(unit_f.login, "unit", "Global", "Sourcing", unit_id=unit_f.id)
    _user("sh-delegation", "delegation", "上海", "交易团", delegation_id=shanghai.id)
    _user("sh-pudong", "sub_delegation", "浦东", "分团", delegation_id=pudong.id)
    _user("med-delegation", "delegation", "医药行业", "交易团", delegation_id=medical.id)
    _user("zj-delegation", "delegation", "浙江", "交易团", delegation_id=zhejiang.id)
    _user("finance", "finance", "财务", "专员")
    _user("reviewer", "reviewer", "背审", "专员")
    _user("organiser", "organiser", "活动", "主办方", organiser_id=organiser.id)
    _user("gate", "gate", "入口", "安检")
    _user(unit_g.login, "unit", "进口食品", "单位", unit_id=unit_g.id)
    person_user = _user("person-demo", "person", "刘", "洋")
    registrations[3].person.user_id = person_user.id
    # The major banks' statement layouts (the migration seeds them on a fresh database too).
    from app.workflow.statements import ensure_profiles

    ensure_profiles()
    db.session.commit()
    return _logins()


def _history(fourth: m.Edition, unit_a: m.Unit, reg_a: m.UnitRegistration,
             shanghai: m.Delegation, pudong: m.Delegation, zone: dict[str, m.Zone]
             ) -> m.Unit:
    """The 4th edition (2021): unit A took part (and came back, verified, for the 5th), and a
    food importer that has not registered for the 5th yet: the returning-unit demo. Persons
    who passed review hold 4th-edition badges that may be reused."""
    reg_a4 = m.UnitRegistration(
        edition=fourth, unit=unit_a, status=m.UnitStatus.approved, unit_number="T04000001",
        delegation=shanghai, sub_delegation=pudong, contact_name="张经理",
        contact_mobile="+8613800138000", contact_email=unit_a.email,
        purchase_intentions="进口医疗设备", reason="采购洽谈", submitted_at=now())
    reg_a4.zones = [zone["医疗器械及医药保健（综合）"]]
    code = make_uscc("91310115MA1H7G8K3")
    unit_g = m.Unit(login=code, uscc=code, name="上海进口食品有限公司",
                    name_en="Shanghai Imported Foods Co.", region=m.Region.domestic,
                    category=m.UnitCategory.enterprise, mobile="+8613900139000",
                    email="foods@demo.ciie.local", language="zh")
    reg_g4 = m.UnitRegistration(
        edition=fourth, unit=unit_g, status=m.UnitStatus.approved, unit_number="T04000002",
        delegation=shanghai, sub_delegation=pudong, contact_name="钱经理",
        contact_mobile="+8613900139000", contact_email=unit_g.email,
        purchase_intentions="进口食品、葡萄酒", reason="寻找新供应商", submitted_at=now())
    reg_g4.zones = [zone["食品及农产品（综合）"]]
    db.session.add_all([reg_a4, unit_g, reg_g4])
    db.session.flush()
    reg_a.is_returning = True
    reg_a.previous_registration_id = reg_a4.id
    people = [(unit_a, reg_a4, "黄磊", m.Gender.male, "31010419780808011", m.Tag.staff),
              (unit_a, reg_a4, "何静", m.Gender.female, "31010419810909012", m.Tag.visitor),
              (unit_g, reg_g4, "钱峰", m.Gender.male, "31010419750505013", m.Tag.visitor),
              (unit_g, reg_g4, "孙丽", m.Gender.female, "31010419830303014", m.Tag.vip)]
    for i, (unit, reg, name, gender, body, tag) in enumerate(people, start=1):
        number = make_ric(body)
        mobile = f"+86137{i:08d}"
        person = m.Person(unit=unit, name=name, gender=gender, id_type=m.IdType.mainland_id,
                          id_number=number, nationality="CN", mobile=mobile,
                          job_title="采购总监", **person_keys(number, mobile),
                          **_demo_photo(10 + i))
        badge = m.Badge(number=f"B04{i:06d}", person=person, edition=fourth, tag=tag,
                        status=m.BadgeStatus.delivered, active=True,
                        token_nonce=secrets.token_hex(16), printed_name=name,
                        printed_unit=unit.name, printed_delegation=reg.sub_delegation.name_zh)
        db.session.add_all([person, badge])
        db.session.flush()
        db.session.add(m.PersonRegistration(
            edition=fourth, person=person, unit_registration=reg,
            id_key=id_key(m.IdType.mainland_id, number), status=PS.badge_issued, tag=tag,
            entry_days=fourth.days_to_mask(fourth.days[:3]), badge_id=badge.id,
            submitted_at=now(), status_changed_at=now()))
    return unit_g


def _logins() -> list[tuple[str, str]]:
    """(role, username) of every demo account, in creation order."""
    return [(user.roles[0].name if user.roles else "", user.username)
            for user in db.session.scalars(sa.select(m.User).order_by(m.User.id))]
