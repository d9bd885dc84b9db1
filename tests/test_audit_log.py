"""The audit log reads as a person reads it (issue 13): translated record types, actions and
states, the record's name linking to its page, the actor's name; filters by record, actor,
action and Beijing time; one query per record type for a page, not one per row. And every
code the code base writes has its label: collected here from the source."""
from __future__ import annotations

import ast
import importlib
import pathlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import current_app

from app import clock
from app import models as m
from app.extensions import db
from app.scoping.actor import SYSTEM
from app.workflow import audit
from tests.conftest import DEMO_NOW, UNIT_B, recorded_statements, text_of

LOG = "/admin/audit/list/"

# ---- the codes the code base writes ----------------------------------------------------------

APP_DIR = pathlib.Path(__file__).resolve().parents[1] / "app"
# app/workflow/audit.py's functions that write (or build) audit rows: (actor, record_type,
# record_id, action, ...) each.
AUDIT_WRITERS = ("record", "record_many", "audit_values")


class Unresolved(Exception):
    """An audit argument the collector cannot follow: make it a literal (or teach this test)."""


@dataclass
class Source:
    path: pathlib.Path
    module: Any
    tree: ast.Module
    parents: dict[ast.AST, ast.AST]


def _sources() -> list[Source]:
    sources = []
    for path in sorted(APP_DIR.rglob("*.py")):
        parts = list(path.relative_to(APP_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        sources.append(Source(path, importlib.import_module(".".join(parts)), tree, parents))
    return sources


def _function_of(src: Source, node: ast.AST) -> ast.FunctionDef | None:
    while node in src.parents:
        node = src.parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node
    return None


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _argument(call: ast.Call, position: int, name: str) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    positional = call.args[:position + 1]
    if len(call.args) > position and not any(isinstance(a, ast.Starred) for a in positional):
        return call.args[position]
    return None


class Collector:
    """Follows each argument back to literals: constants, module constants, both arms of a
    conditional, and a function's parameter through every call of that function."""

    def __init__(self, sources: list[Source], special: dict[tuple[str, str], set[str]]):
        self.sources = sources
        # (function name, expression) whose values come from elsewhere (tables, views).
        self.special = special

    def values(self, src: Source, expr: ast.expr, depth: int = 0) -> set[str]:
        where = f"{src.path.relative_to(APP_DIR.parent)}:{expr.lineno}"
        function = _function_of(src, expr)
        text = ast.unparse(expr)
        if function is not None and (function.name, text) in self.special:
            return self.special[function.name, text]
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.IfExp):
            return self.values(src, expr.body, depth) | self.values(src, expr.orelse, depth)
        if isinstance(expr, ast.BoolOp):
            return set().union(*(self.values(src, v, depth) for v in expr.values))
        if isinstance(expr, ast.Name) and function is not None and depth < 4:
            params = [a.arg for a in function.args.args + function.args.kwonlyargs]
            if expr.id in params:
                return self._through_callers(function, params, expr.id, depth, where)
        try:
            value = eval(text, vars(src.module))  # noqa: S307 - our own source, read-only
        except Exception:
            raise Unresolved(f"{where}: {text}") from None
        if not isinstance(value, str):
            raise Unresolved(f"{where}: {text}")
        return {value}

    def _through_callers(self, function: ast.FunctionDef, params: list[str], name: str,
                         depth: int, where: str) -> set[str]:
        positional = [a.arg for a in function.args.args]
        offset = 1 if positional[:1] in (["self"], ["cls"]) else 0
        position = positional.index(name) - offset if name in positional else 10 ** 6
        found: set[str] = set()
        calls = 0
        for src in self.sources:
            for call in ast.walk(src.tree):
                if isinstance(call, ast.Call) and _called(call) == function.name:
                    calls += 1
                    arg = _argument(call, position, name)
                    if arg is not None:
                        found |= self.values(src, arg, depth + 1)
        if not calls:
            raise Unresolved(f"{where}: {name} (no call of {function.name} found)")
        return found


def written_codes() -> tuple[set[str], set[str]]:
    """(record types, actions) every audit write of app/ can produce."""
    from app import models as m
    from app.views.base import ScopedModelView
    from app.workflow import audit
    from app.workflow.transitions import Move

    sources = _sources()
    tables = [value for src in sources for value in vars(src.module).values()
              if isinstance(value, dict) and value
              and all(isinstance(v, Move) for v in value.values())]
    moves = [step for t in tables for step in t.values()]
    status_models = {}
    for mapper in m.Model.registry.mappers:
        column = mapper.columns.get("status")
        enum_class = getattr(getattr(column, "type", None), "enum_class", None)
        if enum_class is not None:
            status_models[enum_class] = mapper.class_.__tablename__
    views = {view.record_type for view in current_app.appbuilder.baseviews
             if isinstance(view, ScopedModelView)}
    collector = Collector(sources, {
        # transitions.move audits `step.action` of a table's entry, on the moved model.
        ("move", "step.action"): {step.action for step in moves},
        ("move", "model.__tablename__"): {status_models[type(step.to)] for step in moves},
        # ScopedModelView's audited saves and deletes name the view's record type.
        ("_save", "self.record_type"): views,
        ("_delete", "self.record_type"): views,
    })
    types: set[str] = set()
    actions: set[str] = set()
    for src in sources:
        if src.module is audit:
            continue
        for call in ast.walk(src.tree):
            if not (isinstance(call, ast.Call) and _called(call) in AUDIT_WRITERS
                    and "app.workflow.audit import" in src.path.read_text(encoding="utf-8")):
                continue
            types |= collector.values(src, _argument(call, 1, "record_type"))
            actions |= collector.values(src, _argument(call, 3, "action"))
    return types, actions


def test_every_audit_code_the_code_writes_has_a_label(app):
    with app.app_context():
        types, actions = written_codes()
    # The collector found what it must (or it would pass by finding nothing).
    assert {"person_registration", "unit_registration", "user", "role", "badge_order"} <= types
    assert {"login_failed", "create", "approve", "review_passed", "permissions_change",
            "password_change", "export", "pii_view"} <= actions
    assert sorted(types - set(audit.RECORD_KINDS)) == []
    assert sorted(actions - set(audit.ACTION_LABELS)) == []


def test_audit_rows_are_built_only_by_the_audit_module():
    """The collector reads the audit module's functions: a row made another way would escape
    it (and its label)."""
    writers = []
    for path in APP_DIR.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"AuditEvent\((?!Model)|insert\((m\.)?AuditEvent\)", text):
            writers.append(path.relative_to(APP_DIR).as_posix())
    # security_manager inserts inside a flush, rows built by audit.audit_values.
    assert sorted(writers) == ["security_manager.py", "workflow/audit.py"]


# ---- the page --------------------------------------------------------------------------------


def approve_unit_b(login) -> m.UnitRegistration:
    """The Shanghai delegation approves unit B through its list's batch action."""
    client = login("sh-delegation")
    registration = db.session.scalars(sa.select(m.UnitRegistration).join(m.Unit).where(
        m.Unit.uscc == UNIT_B)).one()
    response = client.action("/delegation/units", "approve_units", [registration.id])
    assert response.status_code == 302
    return registration


def rows_of(html: str) -> list[str]:
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
            for row in re.findall(r'<tr data-id="\d+">(.*?)</tr>', html, flags=re.S)]


def test_the_log_names_records_actions_states_and_actors_in_the_readers_language(
        app, login, world):
    registration = approve_unit_b(login)
    wrong = login(None).post("/login/", data={"username": "finance", "password": "wrong"})
    assert wrong.status_code == 401
    admin = login("admin")
    html = admin.get(LOG).data.decode()
    rows = rows_of(html)
    approval = next(r for r in rows if "审核通过" in r and "上海徐汇贸易有限公司" in r)
    # Record type, name, action, from and to states, and the delegation acting by its name.
    assert "单位报名 上海徐汇贸易有限公司" in approval
    assert "已提交 审核通过" in approval
    assert "上海交易团" in approval and "sh-delegation" in approval
    failed = next(r for r in rows if "登录失败" in r)
    assert "匿名" in failed and "用户 finance" in failed
    # No raw codes left in what the admin reads.
    visible = " ".join(rows)
    for code in ("unit_registration", "approve", "login_failed", "submitted", "anonymous"):
        assert code not in visible.split(), code
    # The record's name links to its page, which opens for the admin.
    link = re.search(r'<a class="record-link" href="([^"]+)">上海徐汇贸易有限公司</a>', html)
    assert link, html
    assert admin.get(link.group(1)).status_code == 200
    assert str(registration.id) in link.group(1)
    # Each entry's own page (with its detail) names it in words too.
    entry = next(int(i) for i, row in re.findall(r'<tr data-id="(\d+)">(.*?)</tr>', html,
                                                 flags=re.S) if "record-link" in row
                 and "上海徐汇贸易有限公司" in row)
    shown = admin.get(f"/admin/audit/show/{entry}")
    assert shown.status_code == 200 and "审核通过" in text_of(shown)

    admin.set_language("en")
    english = rows_of(admin.get(LOG).data.decode())
    approval = next(r for r in english if "Approved" in r and "Unit registration" in r)
    assert "Submitted Approved" in approval and "Shanghai Delegation" in approval
    assert any("Login failed" in r and "Anonymous" in r for r in english)


def test_the_log_filters_by_record_actor_action_and_beijing_time(app, login, world):
    # Two moments: 09:00 and 11:00 Beijing time (01:00 and 03:00 UTC).
    clock.set_now(datetime.fromisoformat("2022-09-15T09:00:00+08:00"))
    registration = approve_unit_b(login)
    clock.set_now(datetime.fromisoformat("2022-09-15T11:00:00+08:00"))
    assert login(None).post("/login/", data={"username": "finance",
                                             "password": "wrong"}).status_code == 401
    clock.set_now(DEMO_NOW)
    admin = login("admin")

    def rows(**args) -> list[str]:
        response = admin.get(LOG, query_string=args)
        assert response.status_code == 200, args
        return rows_of(response.data.decode())

    by_record = rows(type="unit_registration", rid=str(registration.id))
    assert by_record and all("上海徐汇贸易有限公司" in r for r in by_record)
    assert not any("登录失败" in r for r in by_record)
    assert rows(_flt_0_record_id=str(registration.id), _flt_0_record_type="unit_registration"
                ) == by_record
    by_actor = rows(actor="sh-delegation")
    assert by_actor and all("sh-delegation" in r for r in by_actor)
    by_action = rows(action="login_failed")
    assert by_action and all("登录失败" in r for r in by_action)
    # Beijing time: from 10:00 only the 11:00 failure; until 09:00 (that whole minute) only
    # the 09:00 approval. Read as UTC, both would be wrong by eight hours.
    late = rows(**{"from": "2022-09-15T10:00"})
    assert any("登录失败" in r for r in late) and not any("审核通过" in r for r in late)
    early = rows(to="2022-09-15T09:00", actor="sh-delegation")
    assert any("审核通过" in r for r in early)
    assert rows(to="2022-09-15T08:59", actor="sh-delegation") == []
    # A date alone is that whole day.
    assert rows(to="2022-09-14", actor="sh-delegation") == []
    assert rows(**{"from": "2022-09-15", "to": "2022-09-15", "actor": "sh-delegation"})


@pytest.mark.parametrize("args, says", [
    ({"rid": "abc"}, "请检查“记录编号”：请输入整数"),
    ({"rid": "99999999999"}, "请检查“记录编号”：请输入整数"),
    ({"type": "no_such_record"}, "”：请从列表中选择"),
    ({"action": "no_such_action"}, "请检查“操作”：请从列表中选择"),
    ({"from": "2022-13-45"}, "请检查“起始时间（北京时间）”：请输入日期"),
    ({"to": "15/09/2022"}, "请检查“截止时间（北京时间）”：请输入日期"),
    ({"actor": "x" * 200}, "请检查“操作人”"),
    ({"page": "-1"}, "请检查“页码”：请输入整数"),
    # FAB's own filter arguments are read as the same filters.
    ({"_flt_0_record_id": "99999999999999999999"}, "请检查“记录编号”"),
    ({"_flt_0_at": "notadate"}, "请检查“时间”"),
    ({"_flt_0_password": "x"}, "请检查“password”：此列表不能按"),
])
def test_a_wrong_filter_is_refused_naming_the_field(login, world, args, says):
    response = login("admin").get(LOG, query_string=args)
    assert response.status_code == 400
    assert says in text_of(response)
    assert 'id="audit-rows"' in response.data.decode()


def test_only_the_admin_reads_the_log(login, world):
    approve_unit_b(login)
    for username in ("sh-delegation", "finance", "reviewer", "organiser", "gate", UNIT_B):
        response = login(username).get(LOG)
        assert response.status_code in (302, 403), username
        assert "上海徐汇贸易有限公司" not in response.data.decode(), username
        first = db.session.scalar(sa.select(sa.func.min(m.AuditEvent.id)))
        assert login(username).get(f"/admin/audit/show/{first}").status_code in (302, 403)


def test_a_page_costs_the_same_queries_for_ten_rows_or_fifty(app, login, world):
    """Names are read per record type on the page, never per row."""
    persons = db.session.scalars(sa.select(m.PersonRegistration.id)).all()
    units = db.session.scalars(sa.select(m.UnitRegistration.id)).all()
    users = db.session.scalars(sa.select(m.User.id)).all()
    admin = login("admin")

    def write(count: int) -> None:
        db.session.execute(sa.delete(m.AuditEvent))
        for i in range(count):
            kind, ids = [("person_registration", persons), ("unit_registration", units),
                         ("user", users)][i % 3]
            audit.record(SYSTEM, kind, ids[i % len(ids)], "update")
        db.session.commit()

    def queries() -> int:
        with recorded_statements() as seen:
            assert admin.get(LOG).status_code == 200
        return len(seen)

    write(10)
    few = queries()
    write(50)
    many = queries()
    assert len(rows_of(admin.get(LOG).data.decode())) == 50
    assert many == few


def test_the_admin_filters_the_log_in_chromium(page, login, world):
    from app.demo import DEMO_PASSWORD

    approve_unit_b(login)
    page.goto("/login/")
    page.fill("#username", "admin")
    page.fill("#password", DEMO_PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_selector("#home")
    page.goto(LOG)
    page.select_option("#f-type", "unit_registration")
    page.select_option("#f-action", "approve")
    page.fill("#f-from", "2022-09-15T09:30")
    page.click("#audit-filter")
    page.wait_for_selector("#audit-rows")
    rows = page.locator("#audit-rows tbody tr").all_inner_texts()
    assert rows and all("审核通过" in r and "单位报名" in r for r in rows), rows
    assert "type=unit_registration" in page.url and "action=approve" in page.url
    # The form keeps what was chosen.
    assert page.input_value("#f-action") == "approve"
    page.click("a.record-link")
    page.wait_for_load_state()
    assert "上海徐汇贸易有限公司" in page.content()
