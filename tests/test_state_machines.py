"""The transition tables of app/workflow/ are the state machines of docs/design.md: every
documented transition is a move in the code, every move of the code is documented, and no
status changes outside a table."""
from __future__ import annotations

import importlib
import pkgutil
import re
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

import app.workflow
from app import models as m
from app.workflow.transitions import Move

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "design.md"

# The records of docs/design.md and the enum of each one's status.
RECORDS = {
    "Person": m.PersonStatus,
    "Unit registration": m.UnitStatus,
    "Order": m.OrderStatus,
    "Payment": m.PaymentStatus,
    "Invoice": m.InvoiceStatus,
    "Refund": m.RefundStatus,
    "Badge": m.BadgeStatus,
    "Event application": m.ApplicationStatus,
    "Event": m.EventStatus,
    "Parcel": m.ShipmentStatus,
    "Statement line": m.StatementLineStatus,
    "Account claim": m.ClaimStatus,
    "Notification": m.NotificationStatus,
    "Overpayment": m.OverpaymentStatus,
}
FORWARD = re.compile(r"──(?:(?!──).)*──▶|──▶")
BACKWARD = re.compile(r"◀──(?:(?!──).)*──")
NOTE = re.compile(r"^- (added|not built): (.+?) — ", re.M)

Edge = tuple[str, str]


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def _states(enum: type, text: str) -> list[str]:
    """The states a piece of the design names, in the order it names them."""
    values = {s.value for s in enum}
    text = re.sub(r"\([^)]*\)", " ", text)
    return [word for word in re.findall(r"[a-z_]+", text) if word in values]


def _diagram(enum: type, block: str) -> set[Edge]:
    """The edges of an arrow diagram: `a ──label──▶ b ◀──label── c`, `x | y` for either
    state, "as above" for the targets of the line before, "any state before s" for every
    state from which s is reached."""
    edges: set[Edge] = set()
    before: list[tuple[str, str]] = []
    targets: list[str] = []
    for line in block.splitlines():
        parts = re.split(f"({FORWARD.pattern}|{BACKWARD.pattern})", line)
        if len(parts) < 3:
            continue
        line_targets: list[str] = []
        for i in range(1, len(parts), 2):
            left, arrow, right = parts[i - 1], parts[i], parts[i + 1]
            if "as above" in right:
                to = targets
            else:
                to = _states(enum, right)
            anyone = re.search(r"any state before (\w+)", left)
            if anyone:
                before.extend((anyone.group(1), t) for t in to)
                continue
            sources = _states(enum, left)
            if arrow.startswith("◀"):
                sources, to = to, sources
            edges |= {(a, b) for a in sources for b in to}
            line_targets = to
        targets = line_targets
    for goal, to in before:
        edges |= {(s, to) for s in _reaching(edges, goal)}
    return edges


def _reaching(edges: set[Edge], goal: str) -> set[str]:
    found: set[str] = set()
    frontier = {goal}
    while frontier:
        frontier = {a for a, b in edges if b in frontier} - found - {goal}
        found |= frontier
    return found


def _chains(enum: type, cell: str) -> set[Edge]:
    """The edges of a table cell: `a → b → c; x or y → z`, sentences after the chains
    ignored."""
    edges: set[Edge] = set()
    for clause in re.sub(r"\([^)]*\)", " ", cell).split(";"):
        steps = [_states(enum, part) for part in clause.split(".")[0].split("→")]
        for sources, targets in pairwise(steps):
            edges |= {(a, b) for a in sources for b in targets}
    return edges


def _record_of(text: str) -> tuple[str, str]:
    for name in sorted(RECORDS, key=len, reverse=True):
        if text.startswith(name + " "):
            return name, text[len(name) + 1:]
    raise AssertionError(f"docs/design.md names no known record: {text!r}")


def documented() -> dict[str, set[Edge]]:
    """Every record's transitions as docs/design.md states them, its notes applied."""
    text = DESIGN.read_text(encoding="utf-8")
    machines: dict[str, set[Edge]] = defaultdict(set)
    for record, heading in (("Person", "## Person state machine"),
                            ("Unit registration", "## Unit registration states")):
        section = _section(text, heading)
        block = section.split("```")[1]
        machines[record] |= _diagram(RECORDS[record], block)
    states = _section(text, "States (short English words")
    for row in re.findall(r"^\| ([A-Z][a-z ]+) \| (.+) \|$", states, re.M):
        if row[0] in RECORDS:
            machines[row[0]] |= _chains(RECORDS[row[0]], row[1])
    for kind, note in NOTE.findall(text):
        record, edge = _record_of(note)
        found = _chains(RECORDS[record], edge)
        assert found, f"no transition read from the note {note!r}"
        if kind == "added":
            machines[record] |= found
        else:
            assert found <= machines[record], f"{note!r} is not in the machine it amends"
            machines[record] -= found
    return machines


def tables() -> dict[str, dict[str, Move]]:
    """Every transition table of app/workflow/ (module-level `*_MOVES`), by dotted name."""
    found: dict[str, dict[str, Move]] = {}
    seen: set[int] = set()
    for info in pkgutil.iter_modules(app.workflow.__path__, "app.workflow."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            # A table imported by another module is counted once, where it is first found.
            if name.endswith("_MOVES") and isinstance(value, dict) and id(value) not in seen \
                    and all(isinstance(v, Move) for v in value.values()):
                seen.add(id(value))
                found[f"{info.name}.{name}"] = value
    return found


def in_code() -> dict[str, set[Edge]]:
    """Every record's transitions in the code; a move that keeps the status is no
    transition (tagging)."""
    record_of = {enum: name for name, enum in RECORDS.items()}
    machines: dict[str, set[Edge]] = defaultdict(set)
    for where, table in tables().items():
        for key, step in table.items():
            enum = type(step.to)
            assert enum in record_of, f"{where}[{key!r}] moves a record docs/design.md lacks"
            machines[record_of[enum]] |= {(s.value, step.to.value) for s in step.from_
                                          if s is not step.to}
    return machines


def test_the_design_reads_every_documented_machine():
    machines = documented()
    assert set(machines) == set(RECORDS)
    assert ("draft", "submitted") in machines["Person"]
    assert ("in_order", "cancelled") not in machines["Person"]  # a "not built" note
    assert ("awaiting_lock", "awaiting_review") in machines["Person"]  # "as above"
    assert ("returned", "submitted") in machines["Unit registration"]
    assert ("mailed", "void_requested") in machines["Invoice"]


@pytest.mark.parametrize("record", sorted(RECORDS))
def test_the_code_makes_exactly_the_documented_moves(record):
    design, code = documented()[record], in_code()[record]
    assert design - code == set(), f"{record}: documented but not in any *_MOVES table"
    assert code - design == set(), f"{record}: in a *_MOVES table but not in docs/design.md"


def test_every_table_names_its_moves():
    for where, table in tables().items():
        for key, step in table.items():
            assert step.action, f"{where}[{key!r}] has no audit action"
            assert step.from_, f"{where}[{key!r}] leaves no state"
            assert all(type(s) is type(step.to) for s in step.from_), where


def test_no_status_changes_outside_a_table():
    """A status is set only by transitions.move(): no `status=` in an UPDATE's values, no
    `.status =` assignment, no from-states written at a call site."""
    offenders = []
    for path in sorted((ROOT / "app" / "workflow").glob("*.py")):
        if path.name == "transitions.py":
            continue
        source = path.read_text(encoding="utf-8")
        for pattern in (r"\.values\([^)]*\bstatus=", r"from_states=",
                        r"(?m)^\s*[\w.]+\.status\s*(?:,\s*[\w.]+\s*)*=[^=]"):
            offenders += [f"{path.name}: {hit}" for hit in re.findall(pattern, source)]
    assert offenders == []
