"""Fill a PostgreSQL database with an expo-sized 5th edition on top of the demo world.

At scale 1.0: 45 delegations, 1,000 sub-delegations, 60,000 units and 450,000 persons spread
over every status, with orders, payments, invoices, refunds, review decisions and badges in
proportion. Rows go in by COPY (no ORM), ids are assigned here and the sequences moved past
them, the human-readable counters too, so the app's own workflow carries on from the data.
The numbers are sealed and keyed as the app does (app/pii.py): run it in the app's context.

The demo accounts keep working: `sh-delegation` manages the Shanghai delegation (22% of the
units, about 100,000 persons at full size), `finance` and `reviewer` see everyone.
"""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg
from stdnum.cn import ric, uscc

from app.pii import ID_NUMBER, MOBILE, seal
from app.search_keys import id_number_key, mobile_key, name_tokens
from app.workflow.persons import id_key

SEED = 20221105
FULL = {"delegations": 45, "sub_delegations": 1000, "units": 60_000, "persons": 450_000}
# The Shanghai delegation's share of the units (the demo user sh-delegation manages it).
SHANGHAI_SHARE = 0.22
# Units of the lock batch whose payment notices the benchmark enqueues, at full size.
NOTICE_UNITS = 10_000

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁"
            "谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏")
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国文斌宇浩凯"
UNIT_WORDS = ["贸易", "进出口", "医疗器械", "食品", "科技", "汽车零部件", "化工", "电子",
              "服装", "机械", "生物医药", "供应链", "农产品", "能源", "物流"]
CITIES = ["上海", "杭州", "南京", "苏州", "宁波", "合肥", "北京", "广州", "深圳", "成都",
          "武汉", "西安", "天津", "重庆", "青岛"]

# Persons of an approved unit, by status (weights in per mille).
PERSON_STATUSES = [("draft", 20), ("submitted", 110), ("awaiting_payment", 150),
                   ("in_order", 80), ("awaiting_review", 220), ("approved", 80),
                   ("badge_issued", 290), ("rejected", 20), ("cancelled", 10),
                   ("refunded", 20)]
UNIT_STATUSES = [("approved", 880), ("submitted", 60), ("returned", 20), ("rejected", 10),
                 ("draft", 30)]
TAGS = [("visitor", 80), ("staff", 15), ("vip", 5)]
CHANNELS = [("alipay", 30), ("wechat", 30), ("unionpay", 10), ("b2b", 10), ("transfer", 20)]
PAID_STATUSES = {"awaiting_review", "approved", "badge_issued", "rejected", "refunded"}
REVIEW_REASONS = ["identity_mismatch", "invalid_document", "invalid_photo", "duplicate"]


def _choices(rng: random.Random, table: list[tuple[str, int]], count: int) -> list[str]:
    values, weights = zip(*table, strict=True)
    return rng.choices(values, weights=weights, k=count)


@dataclass
class Ids:
    """The next free id of each table (read from the database, bumped as rows are made)."""

    next: dict[str, int] = field(default_factory=dict)

    def take(self, table: str) -> int:
        value = self.next[table]
        self.next[table] = value + 1
        return value


TABLES = ["delegation", "unit", "unit_registration", "person", "person_registration",
          "badge_order", "order_item", "payment", "invoice", "refund", "refund_item",
          "review_decision", "badge", "lock_batch"]


def _copy(cur: psycopg.Cursor, table: str, columns: list[str], rows: list[tuple]) -> int:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    return len(rows)


def generate(dsn: str, scale: float) -> dict[str, int]:
    """Add the generated rows to the demo database at `dsn`; returns rows per table."""
    rng = random.Random(SEED)
    counts: dict[str, int] = {}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        ids = Ids({t: cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {t}").fetchone()[0]
                   for t in TABLES})
        edition_id, fee = cur.execute(
            "SELECT id, badge_fee_fen FROM edition WHERE is_current").fetchone()
        moment = datetime(2022, 9, 15, 2, 0, tzinfo=timezone.utc)   # 10:00 in Beijing
        shanghai = cur.execute("SELECT id FROM delegation WHERE code = 'SH'").fetchone()[0]
        tops = [r[0] for r in cur.execute(
            "SELECT id FROM delegation WHERE parent_id IS NULL ORDER BY id")]
        subs_of: dict[int, list[int]] = {}
        for sub, parent in cur.execute("SELECT id, parent_id FROM delegation "
                                       "WHERE parent_id IS NOT NULL"):
            subs_of.setdefault(parent, []).append(sub)

        # ---- delegations: up to 45 top-level, the sub-delegations under the local ones -----
        rows = []
        for i in range(FULL["delegations"] - len(tops)):
            did = ids.take("delegation")
            city = CITIES[i % len(CITIES)]
            rows.append((did, f"B{i:03d}", f"{city}交易团{i:03d}", f"{city} Delegation {i:03d}",
                         "local", None, None, "domestic", True))
            tops.append(did)
        sub_total = max(10, round(FULL["sub_delegations"] * scale))
        existing_subs = sum(len(v) for v in subs_of.values())
        local_tops = [d for d in tops if d != shanghai]
        for i in range(sub_total - existing_subs):
            # Shanghai gets one in twenty sub-delegations, the others share the rest.
            parent = shanghai if i % 20 == 0 else local_tops[i % len(local_tops)]
            did = ids.take("delegation")
            rows.append((did, f"B-S{i:04d}", f"分团{i:04d}", f"Sub-delegation {i:04d}",
                         "local", parent, None, "domestic", True))
            subs_of.setdefault(parent, []).append(did)
        counts["delegation"] = _copy(cur, "delegation", [
            "id", "code", "name_zh", "name_en", "kind", "parent_id", "rollup_delegation_id",
            "region", "active"], rows)
        kinds = dict(cur.execute("SELECT id, kind FROM delegation"))
        others = [d for d in tops if d != shanghai]

        # ---- units and their registrations --------------------------------------------------
        n_units = round(FULL["units"] * scale)
        unit_rows, reg_rows = [], []
        unit_number = cur.execute(
            "SELECT value FROM counter WHERE name = %s",
            (f"unit_number:{edition_id}",)).fetchone()[0]
        units = []   # (unit id, registration id, status, delegation, sub-delegation, name)
        for i, status in enumerate(_choices(rng, UNIT_STATUSES, n_units)):
            uid, rid = ids.take("unit"), ids.take("unit_registration")
            code = _uscc(i)
            name = f"{rng.choice(CITIES)}{rng.choice(UNIT_WORDS)}{i:05d}有限公司"
            delegation = shanghai if rng.random() < SHANGHAI_SHARE else rng.choice(others)
            subs = subs_of.get(delegation, [])
            sub = rng.choice(subs) if subs and kinds[delegation] == "local" \
                and rng.random() < 0.8 else None
            unit_rows.append((uid, code, code, name, f"Bench Trading {i:05d} Co.", "domestic",
                              "enterprise", seal(f"+86138{i:08d}", MOBILE),
                              f"u{i:05d}@bench.ciie.local",
                              "zh", moment, moment))
            number = None
            if status == "approved":
                unit_number += 1
                number = f"T05{unit_number:06d}"
            submitted = None if status == "draft" else moment - timedelta(days=rng.randint(5, 40))
            reg_rows.append((rid, edition_id, uid, status, number, delegation, sub, False, False,
                             "联系人", seal(f"+86138{i:08d}", MOBILE),
                             f"u{i:05d}@bench.ciie.local",
                             "进口设备", "采购洽谈", submitted, moment, moment))
            units.append((uid, rid, status, delegation, sub, name))
        counts["unit"] = _copy(cur, "unit", [
            "id", "login", "uscc", "name", "name_en", "region", "category", "mobile", "email",
            "language", "created_at", "updated_at"], unit_rows)
        counts["unit_registration"] = _copy(cur, "unit_registration", [
            "id", "edition_id", "unit_id", "status", "unit_number", "delegation_id",
            "sub_delegation_id", "is_returning", "history_hidden", "contact_name",
            "contact_mobile", "contact_email", "purchase_intentions", "reason", "submitted_at",
            "created_at", "updated_at"], reg_rows)
        cur.execute("UPDATE counter SET value = %s WHERE name = %s",
                    (unit_number, f"unit_number:{edition_id}"))
        del unit_rows, reg_rows

        # ---- persons and their registrations ------------------------------------------------
        n_persons = round(FULL["persons"] * scale)
        # The demo's approved unit gets a page of persons of its own.
        demo_unit = cur.execute(
            "SELECT u.id, r.id, r.delegation_id, r.sub_delegation_id, u.name FROM unit u "
            "JOIN unit_registration r ON r.unit_id = u.id AND r.edition_id = %s "
            "WHERE u.login = '91310115MA1K4AB30U'", (edition_id,)).fetchone()
        demo_unit = (demo_unit[0], demo_unit[1], "approved", *demo_unit[2:])
        person_rows, pr_rows = [], []
        persons = []   # (registration id, unit tuple, status, tag, person id, name)
        for i in range(n_persons):
            unit = demo_unit if i < max(5, round(60 * scale)) else rng.choice(units)
            if unit[2] == "approved":
                status = _choices(rng, PERSON_STATUSES, 1)[0]
            elif unit[2] == "draft":
                status = "draft"
            else:
                status = "submitted" if rng.random() < 0.7 else "draft"
            tag = None
            if status not in ("draft", "submitted") or (unit[2] == "approved"
                                                       and rng.random() < 0.7):
                tag = _choices(rng, TAGS, 1)[0]
                if status in ("in_order", "awaiting_payment", "refunded"):
                    tag = "visitor"
            pid, prid = ids.take("person"), ids.take("person_registration")
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN)
                                                              if rng.random() < 0.6 else "")
            if rng.random() < 0.03:
                id_type, id_number, nationality = "passport", f"E{i:08d}", "GB"
            else:
                body = f"3101{i:013d}"
                id_type, id_number = "mainland_id", body + ric.calc_check_digit(body + "0")
                nationality = "CN"
            changed = moment - timedelta(days=rng.randint(0, 20), hours=rng.randint(0, 23))
            first_day = rng.randint(0, 3)
            days = sum(1 << d for d in range(first_day, first_day + rng.randint(1, 3)))
            mobile = f"+86139{i:08d}"
            person_rows.append((pid, unit[0], name, "male" if rng.random() < 0.55 else "female",
                                id_type, seal(id_number, ID_NUMBER), nationality,
                                seal(mobile, MOBILE), "采购经理",
                                id_number_key(id_number), mobile_key(mobile), name_tokens(name),
                                moment, moment))
            pr_rows.append((prid, edition_id, pid, unit[1], unit[3], unit[4],
                            id_key(id_type, id_number), status, tag, days, False,
                            None if status == "draft" else changed, changed, moment, moment))
            persons.append((prid, unit, status, tag, pid, name))
        counts["person"] = _copy(cur, "person", [
            "id", "unit_id", "name", "gender", "id_type", "id_number", "nationality", "mobile",
            "job_title", "id_search_key", "mobile_search_key", "name_search", "created_at",
            "updated_at"], person_rows)
        counts["person_registration"] = _copy(cur, "person_registration", [
            "id", "edition_id", "person_id", "unit_registration_id", "delegation_id",
            "sub_delegation_id", "id_key", "status", "tag", "entry_days", "is_reuse",
            "submitted_at", "status_changed_at", "created_at", "updated_at"], pr_rows)
        del person_rows, pr_rows

        counts.update(_money(cur, rng, ids, persons, edition_id, fee, moment))
        counts.update(_review_and_badges(cur, rng, ids, persons, edition_id, moment))
        counts["lock_batch"] = _notice_batch(cur, ids, persons, edition_id, shanghai, scale,
                                             moment)

        for table in TABLES:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))")
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return counts


def _uscc(i: int) -> str:
    body = f"913100{i:011d}"
    return body + uscc.calc_check_digit(body)


def _money(cur: psycopg.Cursor, rng: random.Random, ids: Ids, persons: list, edition_id: int,
           fee: int, moment: datetime) -> dict[str, int]:
    """Orders per unit: a pending one for its persons in an order, a paid one for its paid
    visitors; payments (pending transfers wait for finance), e-invoices for half the paid
    orders without refunds, refunds for refunded persons."""
    pending: dict[int, list] = {}
    paid: dict[int, list] = {}
    for person in persons:
        _prid, unit, status, tag, _pid, _name = person
        if status == "in_order":
            pending.setdefault(unit[0], []).append(person)
        elif status in PAID_STATUSES and tag == "visitor":
            paid.setdefault(unit[0], []).append(person)
    order_number = cur.execute("SELECT value FROM counter WHERE name = 'order'").fetchone()[0]
    payment_number = (cur.execute("SELECT value FROM counter WHERE name = 'payment'").fetchone()
                      or (0,))[0]
    orders, items, payments, invoices, refunds, refund_items = [], [], [], [], [], []
    invoice_number = refund_number = 0
    for group, is_paid in ((pending, False), (paid, True)):
        for unit_id, members in group.items():
            oid = ids.take("badge_order")
            order_number += 1
            amount = fee * len(members)
            orders.append((oid, f"O2022{order_number:06d}", edition_id, unit_id,
                           "paid" if is_paid else "pending", fee, amount,
                           moment if is_paid else None, moment, moment))
            order_items = []
            for person in members:
                item = ids.take("order_item")
                items.append((item, oid, person[0], fee, True))
                order_items.append((item, person))
            channel = _choices(rng, CHANNELS, 1)[0]
            if not is_paid and rng.random() < 0.5:
                channel = "transfer"
            elif not is_paid:
                continue   # a QR payment not started yet
            payid = ids.take("payment")
            payment_number += 1
            refunded = [(item, p) for item, p in order_items if p[2] == "refunded"]
            refunded_fen = fee * len(refunded)
            is_transfer = channel == "transfer"
            payments.append((
                payid, f"P2022{payment_number:07d}", oid, channel,
                "confirmed" if is_paid else "pending", amount, refunded_fen,
                None if is_transfer else f"T{payid:012d}",
                f"付款单位{unit_id}" if is_transfer or channel == "b2b" else None,
                f"6222{payid:012d}" if is_transfer else None,
                "中国银行上海分行" if is_transfer else None,
                (moment - timedelta(days=3)).date() if is_transfer else None,
                f"bench/voucher-{payid}.pdf" if is_transfer else None,
                moment if is_paid else None, moment, moment))
            if refunded:
                rid = ids.take("refund")
                refund_number += 1
                refunds.append((rid, f"R2022{refund_number:07d}", payid, unit_id, "done",
                                refunded_fen, "original", 1, "人员未通过审核", moment, moment,
                                moment))
                for item, _p in refunded:
                    refund_items.append((ids.take("refund_item"), rid, item, fee, True))
            elif is_paid and rng.random() < 0.5:
                invoice_number += 1
                invoices.append((ids.take("invoice"), oid, unit_id, "e_normal", "issued",
                                 f"2022{invoice_number:08d}", amount, members[0][1][5],
                                 False, moment, moment, moment))
    counts = {
        "badge_order": _copy(cur, "badge_order", [
            "id", "number", "edition_id", "unit_id", "status", "fee_fen", "amount_fen",
            "paid_at", "created_at", "updated_at"], orders),
        "order_item": _copy(cur, "order_item", [
            "id", "order_id", "person_registration_id", "amount_fen", "active"], items),
        "payment": _copy(cur, "payment", [
            "id", "number", "order_id", "channel", "status", "amount_fen", "refunded_fen",
            "provider_trade_no", "payer_name", "payer_account", "payer_bank", "remitted_on",
            "voucher_key", "confirmed_at", "created_at", "updated_at"], payments),
        "invoice": _copy(cur, "invoice", [
            "id", "order_id", "unit_id", "kind", "status", "number", "amount_fen",
            "buyer_name", "buyer_locked", "issued_at", "created_at", "updated_at"], invoices),
        "refund": _copy(cur, "refund", [
            "id", "number", "payment_id", "unit_id", "status", "amount_fen", "route",
            "attempts", "reason", "done_at", "created_at", "updated_at"], refunds),
        "refund_item": _copy(cur, "refund_item", [
            "id", "refund_id", "order_item_id", "amount_fen", "active"], refund_items),
    }
    # Generated numbers use their own ranges; the app's counters carry on after them.
    for name, value in (("order", order_number), ("payment", payment_number),
                        ("invoice", invoice_number + 10_000_000),
                        ("refund", refund_number + 1_000_000)):
        cur.execute("INSERT INTO counter (name, value) VALUES (%s, %s) ON CONFLICT (name) "
                    "DO UPDATE SET value = EXCLUDED.value", (name, value))
    return counts


def _review_and_badges(cur: psycopg.Cursor, rng: random.Random, ids: Ids, persons: list,
                       edition_id: int, moment: datetime) -> dict[str, int]:
    decisions, badges, badge_of = [], [], []
    sequence = 0
    for prid, unit, status, tag, pid, name in persons:
        if status in ("approved", "badge_issued"):
            decisions.append((ids.take("review_decision"), prid, "passed", None, moment))
        elif status == "rejected":
            decisions.append((ids.take("review_decision"), prid, "failed",
                              rng.choice(REVIEW_REASONS), moment))
        if status == "badge_issued":
            bid = ids.take("badge")
            sequence += 1
            badges.append((bid, f"B05{sequence + 100_000:06d}", pid, edition_id, tag,
                           "produced", True, secrets.token_hex(16), name, unit[5], None,
                           moment))
            badge_of.append((prid, bid))
    counts = {
        "review_decision": _copy(cur, "review_decision", [
            "id", "person_registration_id", "outcome", "reason", "decided_at"], decisions),
        "badge": _copy(cur, "badge", [
            "id", "number", "person_id", "edition_id", "tag", "status", "active",
            "token_nonce", "printed_name", "printed_unit", "printed_delegation",
            "produced_at"], badges),
    }
    cur.execute("CREATE TEMP TABLE bench_badge_of (prid int, bid int) ON COMMIT DROP")
    _copy(cur, "bench_badge_of", ["prid", "bid"], badge_of)
    cur.execute("UPDATE person_registration p SET badge_id = b.bid FROM bench_badge_of b "
                "WHERE p.id = b.prid")
    cur.execute("INSERT INTO counter (name, value) VALUES (%s, %s) ON CONFLICT (name) "
                "DO UPDATE SET value = EXCLUDED.value",
                (f"badge:{edition_id}", sequence + 100_000))
    return counts


def _notice_batch(cur: psycopg.Cursor, ids: Ids, persons: list, edition_id: int,
                  delegation_id: int, scale: float, moment: datetime) -> int:
    """One lock batch over the persons awaiting payment of NOTICE_UNITS units (scaled): the
    benchmark writes and enqueues its payment notices."""
    wanted = max(10, round(NOTICE_UNITS * scale))
    units: dict[int, list[int]] = {}
    for prid, unit, status, _tag, _pid, _name in persons:
        if status == "awaiting_payment" and (unit[0] in units or len(units) < wanted):
            units.setdefault(unit[0], []).append(prid)
    batch = ids.take("lock_batch")
    members = [prid for group in units.values() for prid in group]
    _copy(cur, "lock_batch", ["id", "edition_id", "delegation_id", "locked_at",
                              "person_count"],
          [(batch, edition_id, delegation_id, moment, len(members))])
    cur.execute("UPDATE person_registration SET lock_batch_id = %s WHERE id = ANY(%s)",
                (batch, members))
    return 1
