"""A delegation's numbers for an edition: what it manages, and apart, what is counted under it."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from flask import url_for
from flask_babel import lazy_gettext as _l

from app import models as m
from app.extensions import db
from app.scoping.actor import Actor
from app.scoping.rules import scoped

MANAGED = "managed"
ROLLUP = "rollup"
UNITS = "DelegationUnitView"
PERSONS = "DelegationPersonView"
# The list filters (`_flt_<index>_<column>`) the links use, per list: FAB numbers each
# column's filters in the order of its converter (app.scoping.interface.ScopedFilterConverter).
FILTERS = {
    UNITS: {"status": "_flt_0_status", "category": "_flt_0_unit_category",
            "region": "_flt_0_unit_region", "sub": "_flt_0_sub_delegation",
            "delegation": "_flt_0_delegation", "not_delegation": "_flt_1_delegation"},
    PERSONS: {"status": "_flt_0_status", "tag": "_flt_0_tag", "untagged": "_flt_2_tag",
              "sub": "_flt_0_unit_sub_delegation_id", "delegation": "_flt_0_unit_delegation_id",
              "not_delegation": "_flt_1_unit_delegation_id"},
}


@dataclass
class Bar:
    """One bar: a label, its count and the list that shows exactly those rows."""

    label: Any
    count: int
    link: str | None
    percent: float = 0.0


@dataclass
class Chart:
    key: str
    title: Any
    bars: list[Bar]


@dataclass
class Section:
    """Managed units (and their persons), or the units counted under the delegation."""

    key: str
    title: Any
    note: Any
    units: Bar
    persons: Bar
    unit_charts: list[Chart] = field(default_factory=list)
    person_charts: list[Chart] = field(default_factory=list)


@dataclass
class Statistics:
    sections: list[Section]
    total_units: Bar
    total_persons: Bar
    counted_under: Any = None


def _unit_groups(actor: Actor, edition_id: int) -> list[sa.Row]:
    """One scoped GROUP BY over the unit registrations the unit list shows."""
    UR, U = m.UnitRegistration, m.Unit
    keys = (UR.delegation_id, UR.sub_delegation_id, UR.status, U.region, U.category)
    stmt = (sa.select(*keys, sa.func.count().label("n")).select_from(UR)
            .join(U, U.id == UR.unit_id).where(UR.edition_id == edition_id).group_by(*keys))
    return db.session.execute(scoped(stmt, UR, actor)).all()


def _person_groups(actor: Actor, edition_id: int) -> list[sa.Row]:
    """One scoped GROUP BY over the person registrations the person list shows, on the
    delegations each carries (an index-only scan, no join to the units)."""
    PR = m.PersonRegistration
    keys = (PR.delegation_id, PR.sub_delegation_id, PR.status, PR.tag)
    stmt = (sa.select(*keys, sa.func.count().label("n")).select_from(PR)
            .where(PR.edition_id == edition_id).group_by(*keys))
    return db.session.execute(scoped(stmt, PR, actor)).all()


def _tally(rows: Iterable[sa.Row], key: Callable[[sa.Row], Any]) -> Counter:
    counts: Counter = Counter()
    for row in rows:
        counts[key(row)] += row.n
    return counts


class _Links:
    """Links to the lists. The lists show managed and rolled-up units together, so a section
    adds a filter on the delegation; without a filter that picks it exactly, no links."""

    def __init__(self, actor: Actor) -> None:
        own = actor.top_delegation_ids[0] if len(actor.top_delegation_ids) == 1 else None
        self.sections: dict[str, dict[str, Any] | None] = {MANAGED: {}, ROLLUP: None}
        if actor.rollup_delegation_ids:
            self.sections = {MANAGED: None, ROLLUP: None} if own is None else {
                MANAGED: {"delegation": own}, ROLLUP: {"not_delegation": own}}

    def __call__(self, view: str, section: str | None, **filters: Any) -> str | None:
        base = {} if section is None else self.sections[section]
        if base is None:
            return None
        names = FILTERS[view]
        args = {names[k]: v for k, v in {**base, **filters}.items()}
        return url_for(f"{view}.list", **args)


def _chart(key: str, title: Any, counts: Counter, keys: Iterable[Any],
           label: Callable[[Any], Any], link: Callable[[Any], str | None], total: int) -> Chart:
    bars = [Bar(label(k), counts.get(k, 0), link(k),
                round(counts.get(k, 0) * 100 / total, 1) if total else 0.0) for k in keys]
    return Chart(key, title, bars)


def _present(counts: Counter, members: Iterable[Any]) -> list[Any]:
    """The enum members that occur, in the enum's order."""
    return [k for k in members if counts.get(k)]


def _by_name(ids: Iterable[int | None], names: dict[int, Any]) -> list[int | None]:
    return sorted(ids, key=lambda i: (i is None, str(names.get(i, ""))))


def _section(key: str, units: list[sa.Row], persons: list[sa.Row], names: dict[int, Any],
             links: _Links) -> Section:
    n_units = sum(r.n for r in units)
    n_persons = sum(r.n for r in persons)
    rollup = key == ROLLUP

    def unit_link(**f: Any) -> str | None:
        return links(UNITS, key, **f)

    def person_link(**f: Any) -> str | None:
        return links(PERSONS, key, **f)

    def delegation_name(i: int | None) -> Any:
        return _l("Directly under the delegation") if i is None else names.get(i, i)

    section = Section(
        key,
        _l("Rolled up from industry delegations") if rollup else _l("Managed by you"),
        _l("Units of industry delegations rolled up into your delegation: they manage "
           "them, you can view them.") if rollup else None,
        Bar(_l("Units"), n_units, unit_link()),
        Bar(_l("Persons"), n_persons, person_link()))

    status = _tally(units, lambda r: r.status)
    category = _tally(units, lambda r: r.category)
    region = _tally(units, lambda r: r.region)
    unit_charts = []
    if rollup:
        # One delegation picks its rows exactly: that filter alone, not the section's.
        by_delegation = _tally(units, lambda r: r.delegation_id)
        unit_charts.append(_chart(
            "delegation", _l("Units by industry delegation"), by_delegation,
            _by_name(by_delegation, names), delegation_name,
            lambda i: links(UNITS, None, delegation=i), n_units))
    unit_charts += [
        _chart("status", _l("Units by status"), status, list(m.UnitStatus),
               lambda s: s.label, lambda s: unit_link(status=s.value), n_units),
        _chart("category", _l("Units by category"), category,
               _present(category, m.UnitCategory), lambda c: c.label,
               lambda c: unit_link(category=c.value), n_units),
        _chart("region", _l("Units by region"), region, list(m.Region),
               lambda r: r.label, lambda r: unit_link(region=r.value), n_units),
    ]
    if not rollup:
        by_sub = _tally(units, lambda r: r.sub_delegation_id)
        unit_charts.append(_chart(
            "sub", _l("Units by sub-delegation"), by_sub, _by_name(by_sub, names),
            delegation_name, lambda i: unit_link(sub="" if i is None else i), n_units))
    section.unit_charts = unit_charts

    person_status = _tally(persons, lambda r: r.status)
    tag = _tally(persons, lambda r: r.tag)
    person_charts = []
    if rollup:
        by_delegation = _tally(persons, lambda r: r.delegation_id)
        person_charts.append(_chart(
            "delegation", _l("Persons by industry delegation"), by_delegation,
            _by_name(by_delegation, names), delegation_name,
            lambda i: links(PERSONS, None, delegation=i), n_persons))
    person_charts += [
        _chart("status", _l("Persons by status"), person_status,
               _present(person_status, m.PersonStatus), lambda s: s.label,
               lambda s: person_link(status=s.value), n_persons),
        _chart("tag", _l("Persons by tag"), tag, [*m.Tag, None],
               lambda t: _l("Not tagged yet") if t is None else t.label,
               lambda t: person_link(untagged="") if t is None else person_link(tag=t.value),
               n_persons),
    ]
    if not rollup:
        by_sub = _tally(persons, lambda r: r.sub_delegation_id)
        person_charts.append(_chart(
            "sub", _l("Persons by sub-delegation"), by_sub, _by_name(by_sub, names),
            delegation_name, lambda i: person_link(sub="" if i is None else i), n_persons))
    section.person_charts = person_charts
    return section


def delegation_statistics(actor: Actor, edition_id: int) -> Statistics:
    """Every number of the page from two GROUP BY queries (and one for names), whatever the
    number of units: managed rows, and apart the industry delegations' rows counted here."""
    units = _unit_groups(actor, edition_id)
    persons = _person_groups(actor, edition_id)
    rollups = set(actor.rollup_delegation_ids)
    own = actor.delegation_id
    wanted = {r.delegation_id for r in units + persons} | {
        r.sub_delegation_id for r in units + persons}
    wanted.discard(None)
    if own is not None:
        wanted.add(own)
    delegations = {d.id: d for d in db.session.scalars(
        sa.select(m.Delegation).where(m.Delegation.id.in_(wanted)))} if wanted else {}
    names = {i: d.name for i, d in delegations.items()}
    links = _Links(actor)

    sections = [_section(MANAGED, [r for r in units if r.delegation_id not in rollups],
                         [r for r in persons if r.delegation_id not in rollups], names, links)]
    if rollups:
        sections.append(_section(ROLLUP, [r for r in units if r.delegation_id in rollups],
                                 [r for r in persons if r.delegation_id in rollups], names,
                                 links))
    counted_under = None
    mine = delegations.get(own)
    if mine is not None and mine.rollup_delegation_id is not None:
        # An industry delegation's units are counted under another delegation: say which.
        target = db.session.get(m.Delegation, mine.rollup_delegation_id)
        counted_under = target.name if target is not None else None
    return Statistics(
        sections,
        Bar(_l("Units"), sum(s.units.count for s in sections), url_for(f"{UNITS}.list")),
        Bar(_l("Persons"), sum(s.persons.count for s in sections), url_for(f"{PERSONS}.list")),
        counted_under)
