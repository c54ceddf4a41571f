"""The archive's handlers over fake repositories (issue 11): collecting events, addenda,
the access log, sealing into the chain, the lending register, reading, the important-
events file and destruction, refused moves included, and the events each raises.
RULES §5; 001 第5篇 1.7, 第6篇 1.2; 002 §4.8."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from types import SimpleNamespace

import pytest

from services.archive import handlers, rules
from shared.clock import ManualClock
from shared.errors import RuleViolation
from shared.events import AccessRefused, ProgressUpdated, make_event
from shared.uow import HandlerContext, RecordedEvents
from tests.conftest import demo_estate
from tests.handlers.archive.fakes import FakeArchiveUnitOfWork
from tests.handlers.conftest import directory_of
from tests.unit.test_archive_rules import ESTATE, TICKET, complaint_events

CONSUMER = "archive-all"
CS = f"{ESTATE}-cs01"  # customer service: may consult owner files themselves
DIRECTOR = f"{ESTATE}-director"
ENGINEER = f"{ESTATE}-eng01"
# Two weeks after the complaint's history (November 2026) ends.
START = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def ctx(clock) -> HandlerContext:
    return HandlerContext(clock, directory_of(demo_estate(ESTATE)))


@pytest.fixture
def sink(clock) -> RecordedEvents:
    return RecordedEvents(clock)


@pytest.fixture
def uow(sink) -> FakeArchiveUnitOfWork:
    return FakeArchiveUnitOfWork(sink)


def staff(staff_id: str, *roles: str) -> rules.Person:
    return rules.Person(staff_id, frozenset(roles), frozenset({ESTATE}))


async def collect(uow, ctx, events) -> list[handlers.Collected]:
    return [await handlers.HANDLERS["*"](event, uow, ctx) for event in events]


async def sealed(uow, ctx) -> handlers.Sealed:
    events = complaint_events()
    await collect(uow, ctx, events)
    [(estate, ticket)] = uow.pending.rows
    return await handlers.seal_ticket(uow, ctx, estate, ticket, uow.pending.rows[(estate, ticket)].closed_at, CONSUMER)


def consult(record_number: str, by: rules.Person, mode: str = "consult", approver=None, reference=None):
    return handlers.LoanCommand(ESTATE, record_number, by, "复核投诉处理", mode, approver, reference, by.id)


def read(record_number: str, by: rules.Person, what: str = "content"):
    return handlers.ReadCommand(ESTATE, record_number, by.id, by.roles, by, what)


# --- events ---------------------------------------------------------------------------------------


async def test_events_are_collected_and_closed_queues_the_seal(uow, ctx):
    outcomes = await collect(uow, ctx, complaint_events())
    assert outcomes[-1].outcome == "closed" and {o.outcome for o in outcomes[:-1]} == {"collected"}
    assert list(uow.pending.rows) == [(ESTATE, TICKET)]
    assert len(uow.collected.rows) == len(outcomes)


async def test_the_archives_own_events_are_never_collected(uow, ctx, sink):
    record = await sealed(uow, ctx)
    [archived] = sink.events
    assert (await handlers.HANDLERS["*"](archived, uow, ctx)).outcome == "ignored"
    assert record.record_number not in {a.record_number for a in uow.chain.addenda_rows.values()}


async def test_a_late_event_is_appended_as_a_linked_addendum(uow, ctx):
    record = await sealed(uow, ctx)
    late = [make_event(ProgressUpdated(ticket_id=TICKET, note=f"补充 {n}", updated_by=CS), estate=ESTATE, actor=CS,
                       source="test", time=START + dt.timedelta(minutes=n)) for n in (1, 2)]
    outcomes = await collect(uow, ctx, late)
    assert [(o.outcome, o.number) for o in outcomes] == [("addendum", 1), ("addendum", 2)]
    first, second = await uow.chain.addenda(record.record_number)
    stored = uow.chain.rows[record.record_number]
    assert first.previous_hash == stored.record_hash and second.previous_hash == first.addendum_hash
    assert rules.verify_addenda(record.record_number, stored.record_hash, [first.link(), second.link()]) is None
    assert uow.collected.rows == {}  # nothing re-collected for a sealed ticket


async def test_a_prepared_batch_is_handled_as_its_events_one_by_one(uow, ctx):
    """`prepare_ticket_events` (the consumer's batch) reads whether the tickets are archived
    once; the outcomes are those of the events handled without it."""
    record = await sealed(uow, ctx)
    late = make_event(ProgressUpdated(ticket_id=TICKET, note="补充", updated_by=CS), estate=ESTATE, actor=CS,
                      source="test", time=START)
    other = [event.model_copy(update={"subject": "t-other", "id": f"{event.id}-other"})
             for event in complaint_events()[:2]]
    batch = [other[0], late, other[1]]
    await handlers.prepare_ticket_events(batch, uow)
    assert uow.chain.loaded == {(ESTATE, TICKET): record.record_number, (ESTATE, "t-other"): None}
    outcomes = await collect(uow, ctx, batch)
    assert [(o.outcome, o.record_number) for o in outcomes] == [
        ("collected", None), ("addendum", record.record_number), ("collected", None)]
    assert sorted(r.event_id for r in uow.collected.rows.values()) == sorted(e.id for e in other)


async def test_a_refusal_at_the_door_lands_in_the_access_log(uow, ctx):
    refused = AccessRefused(service="intake", method="GET", path=f"/v1/estates/{ESTATE}/owners/o-1",
                            route="/v1/estates/{estate}/owners/{owner_id}", status=403, reason="missing role",
                            roles=["department_staff"])
    await handlers.HANDLERS["access_refused"](make_event(refused, estate=ESTATE, actor=ENGINEER, source="intake",
                                                         time=START), uow, ctx)
    [row] = uow.access.rows
    assert (row.what, row.allowed, row.reason, row.service) == ("door", False, "403: missing role", "intake")


# --- sealing ------------------------------------------------------------------------------------------


async def test_sealing_chains_the_form_once_and_forgets_the_raw_events(uow, ctx, sink):
    done = await sealed(uow, ctx)
    assert done.record_number == "HX01-DA-2026-000001"
    record = uow.chain.rows[done.record_number]
    head = uow.chain.heads[ESTATE]
    assert (head.last_sequence, head.last_hash) == (1, record.record_hash)
    assert record.previous_hash == rules.genesis_hash(ESTATE) and record.content_hash == rules.content_hash(record.content)
    assert uow.collected.rows == {}
    [archived] = sink.payloads("archived")
    assert (archived.record_number, archived.sequence, archived.retention_class) == (done.record_number, 1,
                                                                                      done.retention_class)
    again = await handlers.seal_ticket(uow, ctx, ESTATE, TICKET, START, CONSUMER)
    assert again is None and sink.names() == ["archived"]


async def test_a_form_without_intake_or_with_a_dead_letter_is_not_sealed_yet(uow, ctx):
    events = complaint_events()
    await collect(uow, ctx, events[1:])  # no `accepted`
    with pytest.raises(ValueError, match="no accepted event"):
        await handlers.seal_ticket(uow, ctx, ESTATE, TICKET, events[-1].time, CONSUMER)
    await collect(uow, ctx, events[:1])
    uow.chain.dead_letters.append(SimpleNamespace(consumer=CONSUMER, estate=ESTATE, event_id="e-9", reason="boom",
                                                  body=events[3].model_dump_json().encode()))
    with pytest.raises(ValueError, match="dead letter"):
        await handlers.seal_ticket(uow, ctx, ESTATE, TICKET, events[-1].time, CONSUMER)
    assert uow.chain.rows == {}


# --- lending and reading ---------------------------------------------------------------------------


async def test_customer_service_consults_and_reads_under_the_entry(uow, ctx, sink):
    record = await sealed(uow, ctx)
    cs = staff(CS, "customer_service")
    loan = await handlers.handle_register_loan(consult(record.record_number, cs), uow, ctx)
    assert loan.basis == rules.AccessBasis.custodian.value and sink.names()[-1] == "lent"
    decision = await handlers.handle_read(read(record.record_number, cs), uow, ctx)
    assert decision.allowed and decision.raise_if_refused().record_number == record.record_number
    assert [(r.allowed, r.loan_id) for r in uow.access.rows] == [(True, loan.loan_id)]


async def test_reading_without_an_entry_is_logged_and_refused(uow, ctx):
    record = await sealed(uow, ctx)
    decision = await handlers.handle_read(read(record.record_number, staff(ENGINEER, "department_staff")), uow, ctx)
    assert not decision.allowed and [r.allowed for r in uow.access.rows] == [False]
    with pytest.raises(RuleViolation) as refused:
        decision.raise_if_refused()
    assert refused.value.status == 403


async def test_an_engineer_needs_an_approver_and_may_not_approve_themselves(uow, ctx):
    record = await sealed(uow, ctx)
    engineer = staff(ENGINEER, "department_staff")
    with pytest.raises(RuleViolation) as unapproved:
        await handlers.handle_register_loan(consult(record.record_number, engineer), uow, ctx)
    assert (unapproved.value.status, unapproved.value.code) == (403, "approval_required")
    with pytest.raises(RuleViolation) as own:
        await handlers.handle_register_loan(consult(record.record_number, engineer, approver=engineer), uow, ctx)
    assert own.value.code == "self_approval"
    director = staff(DIRECTOR, "estate_director")
    loan = await handlers.handle_register_loan(consult(record.record_number, engineer, approver=director), uow, ctx)
    assert loan.approved_by == DIRECTOR


async def test_a_loan_comes_back_once_and_only_to_who_may_receive_it(uow, ctx, sink, clock):
    record = await sealed(uow, ctx)
    director = staff(DIRECTOR, "estate_director")
    loan = await handlers.handle_register_loan(
        consult(record.record_number, staff(CS, "customer_service"), mode="loan", approver=director, reference="批-1"),
        uow, ctx)
    clock.advance(days=10)
    assert uow.loans.rows[loan.loan_id].overdue(clock.now())
    with pytest.raises(RuleViolation) as stranger:
        await handlers.handle_return_loan(ESTATE, loan.loan_id, ENGINEER, False, uow, ctx)
    assert stranger.value.status == 403
    back = await handlers.handle_return_loan(ESTATE, loan.loan_id, CS, False, uow, ctx)
    assert back.returned_to == CS and sink.names()[-1] == "returned" and not back.overdue(clock.now())
    with pytest.raises(RuleViolation) as twice:
        await handlers.handle_return_loan(ESTATE, loan.loan_id, CS, False, uow, ctx)
    assert (twice.value.status, twice.value.code) == (409, "already_returned")
    with pytest.raises(RuleViolation) as unknown:
        await handlers.handle_return_loan(ESTATE, "nope", CS, False, uow, ctx)
    assert unknown.value.status == 404


@pytest.mark.parametrize("number", ["bad", "ZZ01-DA-2026-000001", "HX01-DA-2026-000099"])
async def test_unknown_malformed_or_foreign_record_numbers_are_not_found(uow, ctx, number):
    await sealed(uow, ctx)
    with pytest.raises(RuleViolation) as missing:
        await handlers.handle_read(read(number, staff(CS, "customer_service")), uow, ctx)
    assert missing.value.status == 404


# --- important-events file and destruction -------------------------------------------------------------


async def test_marking_important_raises_the_class_once(uow, ctx):
    record = await sealed(uow, ctx)
    with pytest.raises(RuleViolation) as blank:
        await handlers.handle_mark_important(ESTATE, record.record_number, "  ", DIRECTOR, uow, ctx)
    assert blank.value.status == 422
    marked, previous = await handlers.handle_mark_important(ESTATE, record.record_number, "重大投诉", DIRECTOR, uow, ctx)
    assert marked.important and previous == record.retention_class
    assert uow.chain.rows[record.record_number].content_hash == marked.content_hash  # content untouched
    with pytest.raises(RuleViolation) as twice:
        await handlers.handle_mark_important(ESTATE, record.record_number, "again", DIRECTOR, uow, ctx)
    assert twice.value.status == 409


GM = "gm01"  # the general manager (policy archive.destruction_approver_roles)
GM_ROLES = frozenset({"general_manager"})


def ask(numbers, by: str = DIRECTOR, roles=frozenset({"estate_director"}), reason: str = "保管期满,申请销毁"):
    return handlers.DestructionRequestCommand(ESTATE, list(numbers), reason, by, frozenset(roles))


async def refused(call, status: int, code: str | None = None) -> RuleViolation:
    with pytest.raises(RuleViolation) as refusal:
        await call
    assert refusal.value.status == status and (code is None or refusal.value.code == code), refusal.value
    return refusal.value


async def test_a_destruction_request_names_expired_records_only_and_only_a_keeper_asks(uow, ctx, clock):
    record = await sealed(uow, ctx)
    number = record.record_number
    early = await refused(handlers.handle_request_destruction(ask([number]), uow, ctx), 409, "retention_not_expired")
    assert "kept until" in early.reason and "期满前不得销毁" in early.zh
    clock.advance(days=366 * 4)
    await refused(handlers.handle_request_destruction(ask([number], ENGINEER, {"department_staff"}), uow, ctx),
                  403, "requester_not_authorised")
    await refused(handlers.handle_request_destruction(ask([number], reason=" "), uow, ctx), 422, "reason_required")
    await refused(handlers.handle_request_destruction(ask([" "]), uow, ctx), 422, "records_required")
    await refused(handlers.handle_request_destruction(ask(["HX01-DA-2026-999999"]), uow, ctx), 404)
    request = await handlers.handle_request_destruction(ask([number, number], CS, {"customer_service"}), uow, ctx)
    assert (request.status, request.record_numbers, request.requested_by) == ("requested", [number], CS)
    assert [r.request_id for r in await uow.destruction_requests.list_for_estate(ESTATE)] == [request.request_id]
    twice = await refused(handlers.handle_request_destruction(ask([number]), uow, ctx), 409, "already_requested")
    assert twice.zh and not uow.chain.rows[number].destroyed


async def test_the_general_manager_approves_and_the_records_are_destroyed_as_one(uow, ctx, sink, clock):
    record = await sealed(uow, ctx)
    number = record.record_number
    clock.advance(days=366 * 4)
    request = await handlers.handle_request_destruction(ask([number]), uow, ctx)
    rid = request.request_id
    events_before = len(sink.names())
    own = await refused(handlers.handle_approve_destruction(ESTATE, rid, DIRECTOR, GM_ROLES | {"estate_director"},
                                                            uow, ctx), 403, "own_destruction_request")
    assert own.zh
    await refused(handlers.handle_approve_destruction(ESTATE, rid, f"{ESTATE}-mgr", {"estate_director"}, uow, ctx),
                  403, "general_manager_approval_required")
    await refused(handlers.handle_approve_destruction(ESTATE, "DR-unknown", GM, GM_ROLES, uow, ctx), 404)
    assert len(sink.names()) == events_before and not uow.chain.rows[number].destroyed
    clock.advance(minutes=10)
    approved, entries = await handlers.handle_approve_destruction(ESTATE, rid, GM, GM_ROLES, uow, ctx)
    assert (approved.status, approved.decided_by, approved.decided_at) == ("approved", GM, clock.now())
    assert [(e.record_number, e.approved_by, e.approval_reference) for e in entries] == [(number, GM, rid)]
    stored = uow.chain.rows[number]
    assert stored.destroyed and stored.content is None
    assert uow.marks.destroyed[number].approval_reference == rid
    assert sink.names()[events_before:] == ["destroyed"]
    assert (await uow.destruction_requests.get(ESTATE, rid)).status == "approved"
    await refused(handlers.handle_approve_destruction(ESTATE, rid, GM, GM_ROLES, uow, ctx), 409)
    await refused(handlers.handle_refuse_destruction(ESTATE, rid, GM, GM_ROLES, "不同意", uow, ctx), 409)
    gone = await refused(handlers.handle_request_destruction(ask([number]), uow, ctx), 409, "already_destroyed")
    assert "已经销毁" in gone.zh
    decision = await handlers.handle_read(read(number, staff(CS, "customer_service")), uow, ctx)
    with pytest.raises(RuleViolation) as read_gone:
        decision.raise_if_refused()
    assert read_gone.value.status == 410
    await refused(handlers.handle_mark_important(ESTATE, number, "重大", DIRECTOR, uow, ctx), 409)


async def test_a_refused_request_keeps_the_records_and_gives_the_reason(uow, ctx, sink, clock):
    record = await sealed(uow, ctx)
    number = record.record_number
    clock.advance(days=366 * 4)
    request = await handlers.handle_request_destruction(ask([number]), uow, ctx)
    await refused(handlers.handle_refuse_destruction(ESTATE, request.request_id, GM, GM_ROLES, "  ", uow, ctx),
                  422, "reason_required")
    await refused(handlers.handle_refuse_destruction(ESTATE, request.request_id, DIRECTOR, GM_ROLES, "不同意", uow, ctx),
                  403, "own_destruction_request")
    await refused(handlers.handle_refuse_destruction(ESTATE, request.request_id, f"{ESTATE}-mgr", {"estate_director"},
                                                     "不同意", uow, ctx), 403, "general_manager_approval_required")
    done = await handlers.handle_refuse_destruction(ESTATE, request.request_id, GM, GM_ROLES, " 涉诉未结,继续保管 ", uow,
                                                    ctx)
    assert (done.status, done.decided_by, done.refusal_reason) == ("refused", GM, "涉诉未结,继续保管")
    assert not uow.chain.rows[number].destroyed and "destroyed" not in sink.names()
    await refused(handlers.handle_approve_destruction(ESTATE, request.request_id, GM, GM_ROLES, uow, ctx), 409)
    assert [r.status for r in await uow.destruction_requests.list_for_estate(ESTATE, "refused")] == ["refused"]
    # A refusal closes that request only: the records may be asked for again.
    again = await handlers.handle_request_destruction(ask([number]), uow, ctx)
    assert again.status == "requested"


async def test_a_record_lent_out_after_the_request_holds_the_approval_back(uow, ctx, sink, clock):
    record = await sealed(uow, ctx)
    number = record.record_number
    clock.advance(days=366 * 4)
    request = await handlers.handle_request_destruction(ask([number]), uow, ctx)
    cs = staff(CS, "customer_service")
    await handlers.handle_register_loan(consult(number, cs, "loan", staff(DIRECTOR, "estate_director"), "批-1"), uow,
                                        ctx)
    events = len(sink.names())
    on_loan = await refused(handlers.handle_approve_destruction(ESTATE, request.request_id, GM, GM_ROLES, uow, ctx),
                            409, "on_loan")
    assert "外借" in on_loan.zh and len(sink.names()) == events
    assert (await uow.destruction_requests.get(ESTATE, request.request_id)).status == "requested"
    assert not uow.chain.rows[number].destroyed


async def test_tampered_content_fails_its_integrity_check(uow, ctx):
    record = await sealed(uow, ctx)
    cs = staff(CS, "customer_service")
    await handlers.handle_register_loan(consult(record.record_number, cs), uow, ctx)
    uow.chain.rows[record.record_number].content = b"{}"
    decision = await handlers.handle_read(read(record.record_number, cs), uow, ctx)
    with pytest.raises(RuleViolation) as tampered:
        decision.raise_if_refused()
    assert tampered.value.status == 409


# --- the sealing job -------------------------------------------------------------------------------------


async def test_the_seal_job_waits_for_the_ack_floor_then_seals_and_retries_what_cannot_be_made(uow, ctx, clock):
    from services.archive import jobs

    @contextlib.asynccontextmanager
    async def transaction():
        yield uow

    uow.session = SimpleNamespace(begin_nested=lambda: _Savepoint())
    events = complaint_events()
    await collect(uow, ctx, events)
    position = {"value": (100, 50)}  # delivered, ack floor

    async def consumer_position():
        return position["value"]

    sealed: list[tuple[str, str]] = []
    watch = jobs.SealWatch()

    async def run():
        watch.work_seen = True
        return await jobs.seal_closed_tickets(transaction, ctx, watch, consumer_position, CONSUMER,
                                              lambda estate, retention: sealed.append((estate, retention)))

    assert await run() == 0  # the barrier (100) is not under the ack floor (50) yet
    assert uow.pending.rows[(ESTATE, TICKET)].barrier == 100
    position["value"] = (120, 100)
    assert await run() == 1 and uow.pending.rows == {} and sealed == [(ESTATE, uow.chain.rows[
        "HX01-DA-2026-000001"].retention_class)]
    # A closed ticket whose intake never arrived: not sealed, retried later with the reason.
    other = [e.model_copy(update={"subject": "T-2", "id": e.id + "-2",
                                  "data": {**e.data, "ticket_id": "T-2"}}) for e in events[1:]]
    await collect(uow, ctx, other)
    position["value"] = (200, 200)
    assert await run() == 0
    waiting = uow.pending.rows[(ESTATE, "T-2")]
    assert waiting.attempts == 1 and "no accepted event" in waiting.last_error
    assert waiting.next_try_at == clock.now() + jobs.SEAL_RETRY


class _Savepoint:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


async def test_the_seal_job_waits_for_a_closed_or_the_idle_look():
    from services.archive import jobs
    watch = jobs.SealWatch()
    assert watch.should_look(time.monotonic())  # at start: look once
    with pytest.raises(TimeoutError):  # nothing collected: no run before the idle look
        await asyncio.wait_for(watch.wait(0), 0.2)
    waiting = asyncio.create_task(watch.wait(0))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    watch.seen()  # a `closed` committed here
    await asyncio.wait_for(waiting, 1)
    assert watch.should_look(time.monotonic())
    watch.last_look -= jobs.SEAL_IDLE_LOOK_SECONDS  # the idle look is due
    await asyncio.wait_for(watch.wait(0), 1)
