"""Supporting events end to end: organisers publish them in Beijing time, units apply for their
persons and withdraw, organisers accept or decline. Seats never exceed the capacity, even under
concurrent requests; refusals name the reason and change nothing; each side sees only its own."""
from __future__ import annotations

import html
import re
import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from app import models as m
from app.clock import SHANGHAI
from app.extensions import db
from tests.conftest import UNIT_A, UNIT_B, Client, recorded_statements, text_of

AS = m.ApplicationStatus
PS = m.PersonStatus
APPLY = "/unit/events/apply/{}"


# ------------------------------------------------------------------------- helpers --------

def demo_event() -> m.Event:
    return db.session.scalars(sa.select(m.Event)
                              .where(m.Event.title_zh == "进口医疗器械采购对接会")).one()


def make_event(capacity: int = 10, status: m.EventStatus = m.EventStatus.published,
               open_to_visitors: bool = True, title: str = "测试活动",
               organiser_id: int | None = None) -> m.Event:
    model = demo_event()
    event = m.Event(edition_id=model.edition_id, organiser_id=organiser_id or model.organiser_id,
                    title_zh=title, title_en=f"{title} (en)", starts_at=model.starts_at,
                    ends_at=model.ends_at, place="国家会展中心", capacity=capacity,
                    seats_taken=0, open_to_visitors=open_to_visitors, status=status)
    db.session.add(event)
    db.session.commit()
    return event


def add_persons(world, count: int, unit_login: str = UNIT_A,
                status: m.PersonStatus = PS.submitted) -> list[int]:
    """`count` persons of a unit's current registration, in `status`."""
    registration = db.session.scalars(
        sa.select(m.UnitRegistration).join(m.Unit).join(m.Edition)
        .where(m.Unit.login == unit_login, m.Edition.is_current)).one()
    ids = []
    for i in range(count):
        number = f"EV{registration.unit_id:02d}{i:05d}"
        person = m.Person(unit_id=registration.unit_id, name=f"参会人{i:02d}",
                          gender=m.Gender.female, id_type=m.IdType.passport, id_number=number)
        pr = m.PersonRegistration(edition_id=registration.edition_id, person=person,
                                  unit_registration_id=registration.id,
                                  id_key=f"passport:{number}", status=status, entry_days=1)
        db.session.add(pr)
        db.session.flush()
        ids.append(pr.id)
    db.session.commit()
    return ids


def apply(client: Client, event_id: int, person_ids: list[int]):
    return client.post(APPLY.format(event_id), data={"persons": [str(i) for i in person_ids]})


def seats_taken(event_id: int) -> int:
    db.session.expire_all()
    return db.session.get(m.Event, event_id).seats_taken


def applications(event_id: int, *statuses: m.ApplicationStatus) -> list[m.EventApplication]:
    db.session.expire_all()
    stmt = sa.select(m.EventApplication).where(m.EventApplication.event_id == event_id)
    if statuses:
        stmt = stmt.where(m.EventApplication.status.in_(statuses))
    return list(db.session.scalars(stmt.order_by(m.EventApplication.id)))


def active_count(event_id: int) -> int:
    return len(applications(event_id, AS.applied, AS.accepted))


def audit(action: str) -> list[m.AuditEvent]:
    return list(db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "event_application", m.AuditEvent.action == action)))


def english(client: Client) -> Client:
    client.set_language("en")
    return client


def flashed(client: Client, response) -> str:
    """The page a refused request lands on (after its redirect, if any), as text."""
    if response.status_code == 302:
        response = client.get(response.headers["Location"])
    return html.unescape(text_of(response))


@pytest.fixture
def second_organiser(world) -> m.Event:
    """Another organiser (login organiser2) with one published event of its own."""
    sm = world.app.appbuilder.sm
    other = m.Organiser(name_zh="另一主办方", name_en="Other Organiser")
    db.session.add(other)
    db.session.flush()
    user = sm.add_user(username="organiser2", first_name="o", last_name="2",
                       email="o2@demo.ciie.local", role=sm.find_role("organiser"),
                       password="Demo@2022")
    user.organiser_id = other.id
    db.session.commit()
    return make_event(title="别人的活动", organiser_id=other.id)


# ----------------------------------------------------------- organiser's event form --------

def test_organiser_enters_and_sees_beijing_time_in_both_languages(login, world):
    client = login("organiser")
    for lang, title in (("en", "Buyers' forum"), ("zh", "采购商论坛")):
        client.set_language(lang)
        assert client.get("/organiser/events/add").status_code == 200
        response = client.post("/organiser/events/add", data={
            "title_zh": title, "title_en": f"{title} en", "description_zh": "说明",
            "description_en": "About", "starts_at": "2022-11-07 09:30:00",
            "ends_at": "2022-11-07 11:00:00", "place": "4.1馆", "capacity": "3",
            "open_to_visitors": "y"})
        assert response.status_code == 302, text_of(response)
        event = db.session.scalars(sa.select(m.Event).where(m.Event.title_zh == title)).one()
        # Typed as Beijing time, stored as the same moment (01:30 UTC).
        assert event.starts_at == datetime(2022, 11, 7, 9, 30, tzinfo=SHANGHAI)
        assert event.starts_at.astimezone(SHANGHAI).hour == 9
        assert (event.status, event.seats_taken) == (m.EventStatus.draft, 0)
        form = client.get(f"/organiser/events/edit/{event.id}").data.decode()
        assert 'value="2022-11-07 09:30:00"' in form
        assert "2022-11-07 09:30" in text_of(client.get("/organiser/events/list/"))

    # Editing keeps the time as typed; an end before the start is refused, nothing saved.
    client.set_language("en")
    event = db.session.scalars(sa.select(m.Event).where(m.Event.title_zh == "采购商论坛")).one()
    fields = {"title_zh": "采购商论坛", "title_en": "Forum", "place": "4.1馆", "capacity": "3",
              "open_to_visitors": "y", "starts_at": "2022-11-08 14:00:00"}
    refused = client.post(f"/organiser/events/edit/{event.id}",
                          data={**fields, "ends_at": "2022-11-08 13:00:00"})
    assert "The event must end after it starts." in text_of(refused)
    assert 'value="2022-11-08 13:00:00"' in refused.data.decode()  # the typed text stays
    db.session.expire_all()
    assert event.starts_at == datetime(2022, 11, 7, 9, 30, tzinfo=SHANGHAI)
    assert client.post(f"/organiser/events/edit/{event.id}",
                       data={**fields, "ends_at": "2022-11-08 16:00:00"}).status_code == 302
    db.session.expire_all()
    assert event.starts_at == datetime(2022, 11, 8, 14, 0, tzinfo=SHANGHAI)


def test_searching_by_a_time_reads_it_as_beijing_time(login, world):
    def listed(client: Client, url: str, after: str) -> str:
        return text_of(client.get(f"{url}?_flt_1_{after}"))  # filter 1: greater than

    # The demo event starts 2022-11-06 14:00 Beijing time (06:00 UTC).
    unit = login(UNIT_A)
    title = "进口医疗器械采购对接会"
    assert title in listed(unit, "/unit/events/list/", "starts_at=2022-11-06 13:59:00")
    assert title not in listed(unit, "/unit/events/list/", "starts_at=2022-11-06 14:01:00")
    # The demo units were submitted on the demo clock: 2022-09-15 10:00 Beijing time.
    delegation = login("sh-delegation")
    url = "/delegation/units/list/"
    assert "上海徐汇贸易" in listed(delegation, url, "submitted_at=2022-09-15 09:59:00")
    assert "上海徐汇贸易" not in listed(delegation, url, "submitted_at=2022-09-15 10:30:00")


# --------------------------------------------------------------------- unit's view --------

def test_unit_sees_published_open_events_in_its_language(login, world):
    event = demo_event()
    hidden = [make_event(status=m.EventStatus.draft, title="草稿活动"),
              make_event(status=m.EventStatus.closed, title="已关闭活动"),
              make_event(open_to_visitors=False, title="内部活动")]
    client = login(UNIT_A)
    page = text_of(client.get("/unit/events/list/"))
    assert "进口医疗器械采购对接会" in page and "2022-11-06 14:00" in page
    assert "国家会展中心 4.1馆 会议室A" in page
    for other in hidden:
        assert other.title_zh not in page
        assert client.get(f"/unit/events/show/{other.id}").status_code == 404
        assert client.get(APPLY.format(other.id)).status_code == 404
    english(client)
    page = text_of(client.get("/unit/events/list/"))
    assert "Imported Medical Devices Matchmaking" in page and "Seats left" in page
    assert "Buyers meet exhibitors." in text_of(client.get(f"/unit/events/show/{event.id}"))
    form = text_of(client.get(APPLY.format(event.id)))
    # Persons who may attend are offered (awaiting payment, review, in an order); drafts not.
    assert "王伟" in form and "张强" in form and "陈静" in form and "刘洋" not in form
    assert "赵敏" not in form  # another unit's person


def statements(client: Client, url: str) -> int:
    """How many SQL statements one page costs."""
    with recorded_statements() as seen:
        assert client.get(url).status_code == 200
    return len(seen)


def test_unit_lists_cost_the_same_for_one_row_or_many(login, world):
    client = login(UNIT_A)
    apply(client, demo_event().id, [world.person("王伟").id])
    few = (statements(client, "/unit/events/list/"),
           statements(client, "/unit/applications/list/"))
    persons = add_persons(world, 12)
    for i in range(12):
        event = make_event(title=f"活动{i}")
        apply(client, event.id, [persons[i]])
    assert (statements(client, "/unit/events/list/"),
            statements(client, "/unit/applications/list/")) == few


# ------------------------------------------------------------- apply, decide, withdraw --------

def test_unit_applies_and_the_organiser_decides_many_at_once(login, world, smtp_server):
    event = demo_event()
    wang, li, zhang = (world.person(n).id for n in ("王伟", "李娜", "张强"))
    unit = login(UNIT_A)
    response = apply(unit, event.id, [wang, li, zhang])
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/unit/applications/list/")
    assert seats_taken(event.id) == 3
    rows = applications(event.id)
    assert [a.status for a in rows] == [AS.applied] * 3
    assert {a.person_registration_id for a in rows} == {wang, li, zhang}
    assert len(audit("apply")) == 3
    assert {a.to_state for a in audit("apply")} == {"applied"}
    assert 'id="seats-left">47<' in unit.get(APPLY.format(event.id)).data.decode()
    page = text_of(english(unit).get("/unit/applications/list/"))
    assert "Imported Medical Devices Matchmaking" in page and "王伟" in page

    by_person = {a.person_registration_id: a.id for a in rows}
    organiser = login("organiser")
    organiser.action("/organiser/applications", "accept_applications",
                     [by_person[wang], by_person[li]])
    assert seats_taken(event.id) == 3
    organiser.action("/organiser/applications", "decline_applications", [by_person[zhang]],
                     reason="名额已满")
    assert seats_taken(event.id) == 2
    # Declining again frees nothing: the row is refused with its reason.
    again = english(organiser).action("/organiser/applications", "decline_applications",
                                      [by_person[zhang]], reason="x")
    assert 'not possible while the status is "Declined"' in flashed(organiser, again)
    assert seats_taken(event.id) == 2
    statuses = {a.person_registration_id: a.status for a in applications(event.id)}
    assert statuses == {wang: AS.accepted, li: AS.accepted, zhang: AS.declined}
    assert applications(event.id, AS.declined)[0].decision_reason == "名额已满"
    assert len(audit("accept")) == 2 and len(audit("decline")) == 1
    # The unit hears of each decision by e-mail, in its language, naming its persons.
    mails = {msg["Subject"]: msg.get_content() for msg in smtp_server.wait_for(2)}
    accepted, declined = mails["配套活动报名已接受"], mails["配套活动报名未获接受"]
    assert "王伟" in accepted and "李娜" in accepted and "进口医疗器械采购对接会" in accepted
    assert "张强" not in accepted
    assert "张强" in declined and "名额已满" in declined

    # The unit withdraws an accepted and a declined one at once: one done, one refused.
    response = unit.action("/unit/applications", "withdraw_applications",
                           [by_person[wang], by_person[zhang]])
    page = flashed(unit, response)
    assert "Done for 1 record(s)." in page and "Not done for 1 record(s):" in page
    assert seats_taken(event.id) == 1
    unit.action("/unit/applications", "withdraw_applications", [by_person[wang]])
    assert seats_taken(event.id) == 1
    [withdrawn] = audit("withdraw")
    assert (withdrawn.from_state, withdrawn.to_state, withdrawn.actor_name) == (
        "accepted", "withdrawn", UNIT_A)
    assert seats_taken(event.id) == active_count(event.id)
    # A withdrawn person can be applied for again.
    assert apply(unit, event.id, [wang]).status_code == 302
    assert seats_taken(event.id) == active_count(event.id) == 2


# ------------------------------------------------------------------------ refusals --------

@pytest.mark.parametrize("kind, message", [
    ("closed", "The event is closed and takes no more applications."),
    ("draft", "The event is not published yet."),
    ("internal", "The event is not open to professional visitors."),
])
def test_events_that_take_no_applications_are_refused(login, world, kind, message):
    event = make_event(status={"closed": m.EventStatus.closed, "draft": m.EventStatus.draft}
                       .get(kind, m.EventStatus.published), open_to_visitors=kind != "internal")
    client = english(login(UNIT_A))
    response = apply(client, event.id, [world.person("王伟").id])
    assert message in flashed(client, response)
    assert applications(event.id) == [] and seats_taken(event.id) == 0
    assert audit("apply") == []


def test_an_event_that_has_started_takes_no_applications(login, world):
    from app import clock

    event = demo_event()
    clock.set_now(event.starts_at + timedelta(minutes=1))
    client = english(login(UNIT_A))
    response = apply(client, event.id, [world.person("王伟").id])
    assert "The event has already started." in flashed(client, response)
    assert applications(event.id) == []


def test_duplicate_and_ineligible_persons_are_refused_with_reasons(login, world):
    event = demo_event()
    wang, li, liu = (world.person(n).id for n in ("王伟", "李娜", "刘洋"))
    client = english(login(UNIT_A))
    apply(client, event.id, [wang])
    response = apply(client, event.id, [wang, li, liu])
    page = flashed(client, response)
    assert "Done for 1 record(s)." in page
    assert "王伟: already applied for this event" in page
    assert '刘洋: not possible while the status is "Draft"' in page
    assert seats_taken(event.id) == 2 == active_count(event.id)
    response = apply(client, event.id, [wang])
    assert "already applied for this event" in flashed(client, response)
    assert seats_taken(event.id) == 2
    assert "Choose at least one person." in flashed(client, apply(client, event.id, []))


@pytest.mark.parametrize("status, label", [
    (PS.cancelled, "Cancelled"), (PS.refunded, "Refunded"), (PS.rejected, "Review failed"),
    (PS.awaiting_unit, "Awaiting unit approval"),
])
def test_persons_who_cannot_attend_are_refused(login, world, status, label):
    event = demo_event()
    [person] = add_persons(world, 1, status=status)
    client = english(login(UNIT_A))
    page = flashed(client, apply(client, event.id, [person]))
    assert f'not possible while the status is "{label}"' in page
    assert applications(event.id) == [] and seats_taken(event.id) == 0


def test_over_capacity_is_refused_whole(login, world):
    event = make_event(capacity=2)
    wang, li, zhang = (world.person(n).id for n in ("王伟", "李娜", "张强"))
    client = english(login(UNIT_A))
    page = flashed(client, apply(client, event.id, [wang, li, zhang]))
    assert "Only 2 seat(s) left, but 3 person(s) were chosen. Nothing was applied for." in page
    assert applications(event.id) == [] and seats_taken(event.id) == 0
    # The refused page keeps the persons the unit ticked (issue 12: nothing chosen is lost).
    refused = apply(client, event.id, [wang, li, zhang])
    assert refused.status_code == 200
    ticked = re.findall(r'<input type="checkbox" name="persons" value="(\d+)"[^>]*checked',
                        refused.get_data(as_text=True))
    assert sorted(map(int, ticked)) == sorted([wang, li, zhang])
    assert apply(client, event.id, [wang, li]).status_code == 302
    assert seats_taken(event.id) == 2
    page = flashed(client, apply(client, event.id, [zhang]))
    assert "Only 0 seat(s) left" in page
    assert seats_taken(event.id) == 2 == active_count(event.id)


def test_another_units_person_is_refused_whole_with_404(login, world):
    event = demo_event()
    mine, theirs = world.person("王伟").id, world.person("赵敏").id  # 赵敏 is unit B's
    client = login(UNIT_A)
    assert apply(client, event.id, [mine, theirs]).status_code == 404
    assert apply(client, event.id, [theirs]).status_code == 404
    assert apply(client, event.id, [999999]).status_code == 404
    assert applications(event.id) == [] and seats_taken(event.id) == 0
    assert client.post(APPLY.format(event.id), data={"persons": ["x"]}).status_code == 400


def test_only_units_apply(login, world):
    event = demo_event()
    wang = world.person("王伟").id
    for username in ("organiser", "sh-delegation"):
        assert apply(login(username), event.id, [wang]).status_code == 403
    assert applications(event.id) == []


# ------------------------------------------------------------------------- scoping --------

def test_another_unit_cannot_see_or_withdraw_the_applications(login, world):
    event = demo_event()
    apply(login(UNIT_A), event.id, [world.person("王伟").id])
    [application] = applications(event.id)
    other = login(UNIT_B)
    assert "王伟" not in text_of(other.get("/unit/applications/list/"))
    assert other.get(f"/unit/applications/show/{application.id}").status_code == 404
    assert other.action("/unit/applications", "withdraw_applications",
                        [application.id]).status_code == 404
    # Nor through the organiser's pages (no permission).
    assert other.action("/organiser/applications", "decline_applications",
                        [application.id]).status_code == 403
    assert applications(event.id)[0].status is AS.applied and seats_taken(event.id) == 1
    # Unit B's own person applies to the same event; unit A still sees only its own row.
    apply(other, event.id, [world.person("赵敏").id])
    page = text_of(login(UNIT_A).get("/unit/applications/list/"))
    assert "王伟" in page and "赵敏" not in page


def test_an_organiser_sees_only_applications_to_its_own_events(login, world, second_organiser):
    theirs = second_organiser
    mine = demo_event()
    unit = login(UNIT_A)
    apply(unit, theirs.id, [world.person("李娜").id])
    apply(unit, mine.id, [world.person("王伟").id])
    [their_application] = applications(theirs.id)
    organiser = login("organiser")
    page = text_of(organiser.get("/organiser/applications/list/"))
    assert "王伟" in page and "李娜" not in page
    assert organiser.get(f"/organiser/applications/show/{their_application.id}"
                         ).status_code == 404
    assert organiser.action("/organiser/applications", "accept_applications",
                            [their_application.id]).status_code == 404
    assert applications(theirs.id)[0].status is AS.applied
    assert "李娜" in text_of(login("organiser2").get("/organiser/applications/list/"))


# --------------------------------------------------------------------- concurrency --------

def run_together(clients: list[Client], request) -> list:
    """Each client sends `request(client, i)` at the same moment, on its own thread."""
    barrier = threading.Barrier(len(clients))
    responses: list = [None] * len(clients)
    errors: list = []

    def work(i: int, client: Client) -> None:
        try:
            barrier.wait(timeout=30)
            responses[i] = request(client, i)
        except Exception as exc:  # noqa: BLE001 (reported by the test below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    return responses


def test_parallel_applications_never_exceed_the_capacity(app, login, world):
    capacity, requests = 5, 24
    event_id = make_event(capacity=capacity).id
    persons = add_persons(world, requests)
    clients = [login(UNIT_A) for _ in range(requests)]
    responses = run_together(clients, lambda c, i: apply(c, event_id, [persons[i]]))

    accepted = [r for r in responses if r.status_code == 302
                and r.headers["Location"].endswith("/unit/applications/list/")]
    assert len(accepted) == capacity
    assert all(r.status_code in (200, 302) for r in responses)
    assert seats_taken(event_id) == capacity == active_count(event_id)
    assert len(audit("apply")) == capacity


def test_parallel_applications_for_the_same_person_make_one(app, login, world):
    event_id = make_event(capacity=50).id
    wang = world.person("王伟").id
    clients = [login(UNIT_A) for _ in range(12)]
    run_together(clients, lambda c, i: apply(c, event_id, [wang]))
    assert seats_taken(event_id) == 1 == active_count(event_id)


def test_parallel_decline_and_withdraw_free_each_seat_once(app, login, world):
    event_id = make_event(capacity=20).id
    persons = add_persons(world, 10)
    unit = login(UNIT_A)
    assert apply(unit, event_id, persons).status_code == 302
    ids = [a.id for a in applications(event_id)]
    clients = [login("organiser"), login(UNIT_A)] * 3

    def act(client: Client, i: int):
        if client.username == "organiser":
            return client.action("/organiser/applications", "decline_applications", ids,
                                 reason="取消")
        return client.action("/unit/applications", "withdraw_applications", ids)

    run_together(clients, act)
    assert seats_taken(event_id) == 0 == active_count(event_id)
    assert len(audit("decline")) + len(audit("withdraw")) == len(ids)


# ------------------------------------------------------------------------- browser --------

def test_in_the_browser_a_unit_applies_and_the_organiser_accepts(page, world):
    from tests.test_browser_smoke import log_in, log_out

    event = demo_event()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, UNIT_A)
    page.goto("/unit/events/list/")
    page.click("a.ciie-apply")
    page.wait_for_selector("#apply-form")
    page.check("label:has-text('王伟') >> xpath=../../td[1]/input")
    page.click("#apply-submit")
    page.wait_for_url("**/unit/applications/list/**")
    assert "王伟" in page.inner_text("table.ciie-list")
    assert seats_taken(event.id) == 1

    log_out(page)
    log_in(page, "organiser")
    page.goto("/organiser/applications/list/")
    page.check("input.action_check")
    page.click(".well button.dropdown-toggle")
    page.click("a.accept_applications_menu_item")
    page.wait_for_selector(".alert-success")
    [application] = applications(event.id)
    assert application.status is AS.accepted
    assert seats_taken(event.id) == 1
