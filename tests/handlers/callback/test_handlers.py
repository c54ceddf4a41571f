"""Callback's handlers over fake repositories (issue 11): every event handler, every move
of the callback and of callback's view of the ticket, refused ones included, and the
events each raises. RULES §3; 002 §4.4.2."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest

from services.callback import handlers, jobs, rules, views
from services.callback.domain import Ticket, Watch
from shared.attitude import attitude_complaint_request
from shared.directory import Company
from shared.errors import RuleViolation
from shared.events import (
    Accepted, Assigned, ClockOutcome, ClockSettled, Completed, ProgressUpdated, ReplyMethod, ValidityJudged, make_event,
)
from shared.lifecycle import CallbackState, TicketState
from shared.schedule import ScanSchedule
from shared.uow import HandlerContext, RecordedEvents
from tests.handlers.callback.fakes import FakeCallbackUnitOfWork
from tests.handlers.conftest import ESTATE, START, directory_of

CS = f"{ESTATE}-cs01"


@pytest.fixture
def uow(sink) -> FakeCallbackUnitOfWork:
    return FakeCallbackUnitOfWork(sink)


def event(payload, at: dt.datetime = START, actor: str = CS):
    return make_event(payload, estate=ESTATE, actor=actor, source="test", time=at)


def accepted(ticket_id="t1", kind="complaint", reply_method="phone", category="漏水", unit="1-1-101", **more):
    return Accepted(ticket_id=ticket_id, form_number=f"F-{ticket_id}", kind=kind, channel="phone", category=category,
                    description="楼上漏水", first_contact=CS, received_at=START - dt.timedelta(days=1),
                    reply_method=reply_method, unit=unit, **more)


def completed(ticket_id="t1", kind="complaint", round_=1, reply_method="phone", category="漏水",
              departments=("engineering",), at=START):
    return Completed(ticket_id=ticket_id, round=round_, kind=kind, category=category, departments=list(departments),
                     reply_method=reply_method, first_contact=CS, completed_at=at)


async def run(uow, ctx, payload, at=START):
    await handlers.HANDLERS[payload.event_name](event(payload, at), uow, ctx)


async def complaint_awaiting_callback(uow, ctx, ticket_id="t1", reply_method="phone"):
    await run(uow, ctx, accepted(ticket_id, reply_method=reply_method))
    await run(uow, ctx, completed(ticket_id, reply_method=reply_method))
    [callback] = [c for c in uow.callbacks.rows.values() if c.ticket_id == ticket_id]
    return callback


def answers(result=True, attitude=True, method=ReplyMethod.phone, suggestions=""):
    return rules.CallbackAnswers(handled_in_time=True, result_satisfied=result, attitude_satisfied=attitude,
                                 suggestions=suggestions, owner_confirmed=True, method=method)


def record(callback_id, given, actor=CS, owner_unit=None):
    return handlers.RecordCommand(ESTATE, callback_id, given, actor, answered_by_owner=owner_unit is not None,
                                  owner_unit=owner_unit)


# --- event handlers ---------------------------------------------------------------------------


async def test_accepted_teaches_the_ticket_and_a_late_accepted_keeps_what_completed_said(uow, ctx):
    await run(uow, ctx, completed(category="Leak "))
    await run(uow, ctx, accepted(category="other"))
    ticket = uow.tickets.rows["t1"]
    assert (ticket.form_number, ticket.unit, ticket.accepted_seen) == ("F-t1", "1-1-101", True)
    assert ticket.category == "Leak " and ticket.category_key == rules.recurrence_key("Leak ")
    assert uow.watches.locked == [ESTATE, ESTATE]  # the recurrence rule's lock, before the row


async def test_completed_schedules_the_complaint_callback_once(uow, ctx, sink):
    callback = await complaint_awaiting_callback(uow, ctx)
    assert uow.tickets.rows["t1"].status is TicketState.awaiting_callback
    assert (callback.purpose, callback.method, callback.assigned_to) == ("satisfaction", "phone", CS)
    assert sink.names() == ["callback_scheduled"]
    assert uow.counted == [("required", ESTATE, "complaint", ("engineering",))]
    await run(uow, ctx, completed())  # a re-emitted completion (new event id) changes nothing
    assert sink.names() == ["callback_scheduled"] and len(uow.rounds.rows) == 1


async def test_a_repair_is_checked_by_the_engineering_supervisor(uow, ctx):
    await run(uow, ctx, accepted(kind="repair", repair_class="general"))
    await run(uow, ctx, completed(kind="repair"))
    assignees = {c.purpose: c.assigned_to for c in uow.callbacks.rows.values()}
    assert assignees.get("repair_check") == f"{ESTATE}-eng-head"


async def test_invalid_complaint_in_handling_closes_without_a_judgement(uow, ctx, sink):
    await run(uow, ctx, accepted())
    await run(uow, ctx, ValidityJudged(ticket_id="t1", valid=False, reason="第三方责任", judged_by=CS,
                                       confirmed_by=f"{ESTATE}-head"))
    ticket = uow.tickets.rows["t1"]
    assert ticket.status is TicketState.closed and ticket.closed_satisfied is None
    [closed] = sink.payloads("closed")
    assert closed.closed_by == f"{ESTATE}-head" and "invalid complaint" in closed.reason


async def test_invalid_after_completion_cancels_the_complaint_callback_and_closes(uow, ctx, sink):
    callback = await complaint_awaiting_callback(uow, ctx)
    await run(uow, ctx, ValidityJudged(ticket_id="t1", valid=False, reason="无效", judged_by=CS))
    assert uow.callbacks.rows[callback.callback_id].status is CallbackState.cancelled
    assert uow.tickets.rows["t1"].status is TicketState.closed
    assert uow.rounds.rows[("t1", 1)].outcome == "closed"
    assert sink.names()[-1] == "closed"


async def test_valid_judgement_only_records(uow, ctx, sink):
    await run(uow, ctx, ValidityJudged(ticket_id="t1", valid=True, reason="服务态度", judged_by=CS))
    assert uow.tickets.rows["t1"].valid is True and sink.names() == []


async def test_special_service_is_called_midway_and_the_end_cancels_what_was_not_made(uow, ctx, sink):
    await run(uow, ctx, accepted(kind="special_service"))
    await run(uow, ctx, Assigned(ticket_id="t1", departments=["engineering"], assigned_by=CS))
    [midway] = uow.callbacks.rows.values()
    assert midway.rule == rules.CallbackRule.special_service_midway.value and midway.pending
    await run(uow, ctx, completed(kind="special_service"))
    assert uow.callbacks.rows[midway.callback_id].status is CallbackState.cancelled
    assert uow.tickets.rows["t1"].departments == ["engineering"]


async def test_one_way_online_reply_waits_for_the_recurrence_verdict(uow, ctx, sink, clock):
    await run(uow, ctx, accepted(reply_method="online"))
    await run(uow, ctx, completed(reply_method="online"))
    assert uow.tickets.rows["t1"].status is TicketState.awaiting_verdict
    watch = uow.watches.rows[("t1", 1)]
    clock.advance(seconds=(watch.window_ends_at - clock.now()).total_seconds() + 60)
    await handlers.decide_recurrence(uow, ctx, ESTATE, watch.category_key)
    assert uow.watches.rows[("t1", 1)].verdict == "satisfied"
    assert uow.tickets.rows["t1"].closed_satisfied is True and sink.names()[-1] == "closed"


async def test_a_recurring_opinion_counts_as_not_satisfied(uow, ctx, sink, clock):
    await run(uow, ctx, accepted(reply_method="online"))
    await run(uow, ctx, Assigned(ticket_id="t1", departments=["engineering"], assigned_by=CS))
    await run(uow, ctx, completed(reply_method="online"))
    clock.advance(days=3)
    later = accepted("t2", reply_method="online")
    later = later.model_copy(update={"received_at": clock.now()})
    await run(uow, ctx, later, at=clock.now())
    await run(uow, ctx, Assigned(ticket_id="t2", departments=["engineering"], assigned_by=CS), at=clock.now())
    assert uow.watches.rows[("t1", 1)].verdict == "not_satisfied"
    assert uow.watches.rows[("t1", 1)].recurring_ticket_id == "t2"
    assert uow.tickets.rows["t1"].closed_satisfied is False


async def test_the_rule_reads_no_opinion_raised_before_every_open_window(uow, ctx, sink, clock):
    """A window starts when its watch's round was completed: the rule reads the opinions
    raised since the earliest undecided watch's completion, not the estate's whole history."""
    old = accepted("t0").model_copy(update={"received_at": START - dt.timedelta(days=40)})
    await run(uow, ctx, old, at=old.received_at)
    await run(uow, ctx, Assigned(ticket_id="t0", departments=["engineering"], assigned_by=CS), at=old.received_at)
    await run(uow, ctx, accepted(reply_method="online"))
    await run(uow, ctx, Assigned(ticket_id="t1", departments=["engineering"], assigned_by=CS))
    await run(uow, ctx, completed(reply_method="online"))
    clock.advance(days=1)
    await run(uow, ctx, accepted("t3", reply_method="online").model_copy(update={"received_at": clock.now()}),
              at=clock.now())
    await run(uow, ctx, completed("t3", reply_method="online", departments=("security",), at=clock.now()),
              at=clock.now())
    clock.advance(days=2)
    await run(uow, ctx, accepted("t2").model_copy(update={"received_at": clock.now()}), at=clock.now())
    await run(uow, ctx, Assigned(ticket_id="t2", departments=["engineering"], assigned_by=CS), at=clock.now())
    assert uow.tickets.opinions_since and set(uow.tickets.opinions_since) == {START}  # t1's completion
    assert uow.tickets.rows["t0"].raised_at < START
    assert [(w.ticket_id, w.verdict, w.recurring_ticket_id) for w in uow.watches.rows.values()] == [
        ("t1", "not_satisfied", "t2"), ("t3", None, None)]  # t2 is no recurrence in security


async def test_a_later_opinion_assigned_before_it_is_accepted_decides_when_accepted(uow, ctx, sink, clock):
    await run(uow, ctx, accepted(reply_method="online"))
    await run(uow, ctx, Assigned(ticket_id="t1", departments=["engineering"], assigned_by=CS))
    await run(uow, ctx, completed(reply_method="online"))
    clock.advance(days=3)
    await run(uow, ctx, Assigned(ticket_id="t2", departments=["engineering"], assigned_by=CS), at=clock.now())
    assert uow.watches.rows[("t1", 1)].verdict is None  # no category known yet: no opinion
    later = accepted("t2").model_copy(update={"received_at": clock.now()})
    await run(uow, ctx, later, at=clock.now())
    assert uow.watches.rows[("t1", 1)].verdict == "not_satisfied" and sink.names()[-1] == "closed"


async def test_a_ticket_that_is_no_new_opinion_leaves_elapsed_windows_to_the_scan(uow, ctx, sink, clock):
    """Only a later opinion, new or changed, can decide an earlier one's recurrence at once;
    a ticket accepted before it is assigned, or assigned again to the same department, asks
    nothing (an elapsed window is the recurrence scan's)."""
    await run(uow, ctx, accepted(reply_method="online"))
    await run(uow, ctx, Assigned(ticket_id="t1", departments=["engineering"], assigned_by=CS))
    await run(uow, ctx, completed(reply_method="online"))
    watch = uow.watches.rows[("t1", 1)]
    clock.advance(seconds=(watch.window_ends_at - clock.now()).total_seconds() + 60)
    await run(uow, ctx, Assigned(ticket_id="t2", departments=["security"], assigned_by=CS), at=clock.now())
    await run(uow, ctx, accepted("t2").model_copy(update={"received_at": clock.now()}), at=clock.now())
    assert uow.watches.rows[("t1", 1)].verdict == "satisfied"  # t2 became an opinion: it asked
    await run(uow, ctx, accepted("t3", reply_method="online"))
    await run(uow, ctx, Assigned(ticket_id="t3", departments=["engineering"], assigned_by=CS))
    await run(uow, ctx, completed("t3", reply_method="online", at=clock.now()), at=clock.now())
    watch = uow.watches.rows[("t3", 1)]
    clock.advance(seconds=(watch.window_ends_at - clock.now()).total_seconds() + 60)
    await run(uow, ctx, accepted("t4").model_copy(update={"received_at": clock.now()}), at=clock.now())
    await run(uow, ctx, Assigned(ticket_id="t2", departments=["security"], assigned_by=CS), at=clock.now())
    assert uow.watches.rows[("t3", 1)].verdict is None
    await handlers.decide_recurrence(uow, ctx, ESTATE, watch.category_key)
    assert uow.watches.rows[("t3", 1)].verdict == "satisfied"


async def test_a_prepared_batch_leaves_what_its_events_one_by_one_leave(sink, clock, directory):
    """`prepare_batch` only readies what the handlers would load themselves."""
    def story():
        return [event(accepted("t1", reply_method="online")),
                event(Assigned(ticket_id="t1", departments=["engineering"], assigned_by=CS)),
                event(completed(reply_method="online")),
                event(accepted("t2").model_copy(update={"received_at": START + dt.timedelta(days=2)}),
                      START + dt.timedelta(days=2)),
                event(Assigned(ticket_id="t2", departments=["engineering"], assigned_by=CS), START + dt.timedelta(days=2))]

    results = []
    for batched in (False, True):
        recorded = RecordedEvents(clock)
        uow, ctx = FakeCallbackUnitOfWork(recorded), HandlerContext(clock, directory)
        for one in story():
            if batched:
                await handlers.prepare_batch([one], uow, ctx)
            await handlers.HANDLERS[one.event_name](one, uow, ctx)
            await uow.flush()
        results.append((uow.tickets.rows, uow.watches.rows, [e.event_name for e in recorded.events]))
    assert results[0] == results[1] and results[1][1][("t1", 1)].verdict == "not_satisfied"


async def test_progress_updates_are_kept_once(uow, ctx):
    update = event(ProgressUpdated(ticket_id="t1", note="已联系厂家", updated_by=CS))
    await handlers.handle_progress_updated(update, uow, ctx)
    await handlers.handle_progress_updated(update, uow, ctx)
    assert [r.note for r in (await uow.progress.of_tickets(["t1"]))["t1"]] == ["已联系厂家"]


@pytest.mark.parametrize("clock_name, outcome, missed", [
    ("progress_update", ClockOutcome.breached, 1), ("progress_update", ClockOutcome.met, 0),
    ("reply", ClockOutcome.breached, 0)])
async def test_only_a_breached_progress_week_is_counted(uow, ctx, clock_name, outcome, missed):
    await run(uow, ctx, accepted())
    await run(uow, ctx, ClockSettled(ticket_id="t1", clock_id=1, clock=clock_name, due_at=START, settled_at=START,
                                     outcome=outcome))
    assert uow.tickets.rows["t1"].progress_weeks_missed == missed


# --- recording a callback -----------------------------------------------------------------------


async def test_satisfied_closes_the_ticket(uow, ctx, sink):
    callback = await complaint_awaiting_callback(uow, ctx)
    done = await handlers.handle_record(record(callback.callback_id, answers()), uow, ctx)
    assert not done.duplicate and done.callback.status is CallbackState.done and done.callback.on_time
    assert sink.names() == ["callback_scheduled", "callback_done", "closed"]
    assert uow.tickets.rows["t1"].status is TicketState.closed
    assert uow.rounds.rows[("t1", 1)].outcome == "closed"
    assert [m for m, *_ in uow.counted] == ["required", "done", "satisfied"]


async def test_not_satisfied_sends_the_form_round_again(uow, ctx, sink):
    callback = await complaint_awaiting_callback(uow, ctx)
    await handlers.handle_record(record(callback.callback_id, answers(result=False)), uow, ctx)
    [reopened] = sink.payloads("reopened")
    assert (reopened.round, reopened.departments) == (2, ["engineering"])
    ticket = uow.tickets.rows["t1"]
    assert (ticket.status, ticket.current_round) == (TicketState.in_handling, 2)
    await run(uow, ctx, completed(round_=2))
    assert uow.tickets.rows["t1"].status is TicketState.awaiting_callback
    assert sorted(c.round for c in uow.callbacks.rows.values()) == [1, 2]


async def test_unhappy_with_the_attitude_closes_and_raises_an_attitude_complaint(uow, ctx, sink):
    callback = await complaint_awaiting_callback(uow, ctx)
    done = await handlers.handle_record(record(callback.callback_id, answers(attitude=False, suggestions="态度差")),
                                        uow, ctx)
    assert sink.names() == ["callback_scheduled", "callback_done", "attitude_complaint_raised", "closed"]
    [raised] = sink.payloads("attitude_complaint_raised")
    assert (raised.ticket_id, raised.callback_id, raised.unit, raised.first_contact) == (
        "t1", callback.callback_id, "1-1-101", CS)
    assert (raised.suggestions, raised.answered_by_owner, raised.recorded_by) == ("态度差", False, CS)
    assert raised.client_request_id == f"attitude-{callback.callback_id}" == done.callback.attitude_client_request_id()
    assert done.callback.attitude_complaint
    # The record route hands the client the very request intake registers from the event.
    view = views.record_view(done.callback, done.ticket, False, ctx.timezone(ESTATE), ctx.now())
    assert view["attitude_complaint_request"] == attitude_complaint_request(raised)
    assert view["attitude_complaint_request"]["client_request_id"] == raised.client_request_id


async def test_an_estate_that_reopens_on_attitude_raises_no_complaint(uow, sink, clock):
    ctx = HandlerContext(clock, directory_of(company=Company(policy={"callback": {"attitude_dissatisfied": "reopen"}})))
    callback = await complaint_awaiting_callback(uow, ctx)
    await handlers.handle_record(record(callback.callback_id, answers(attitude=False)), uow, ctx)
    assert "attitude_complaint_raised" not in sink.names() and sink.names()[-1] == "reopened"


async def test_the_same_answers_again_are_a_duplicate_and_different_ones_are_refused(uow, ctx, sink):
    callback = await complaint_awaiting_callback(uow, ctx)
    await handlers.handle_record(record(callback.callback_id, answers()), uow, ctx)
    again = await handlers.handle_record(record(callback.callback_id, answers()), uow, ctx)
    assert again.duplicate and sink.names().count("callback_done") == 1
    with pytest.raises(RuleViolation) as refused:
        await handlers.handle_record(record(callback.callback_id, answers(result=False)), uow, ctx)
    assert refused.value.status == 409


async def test_a_cancelled_callback_cannot_be_recorded(uow, ctx):
    callback = await complaint_awaiting_callback(uow, ctx)
    await run(uow, ctx, ValidityJudged(ticket_id="t1", valid=False, reason="无效", judged_by=CS))
    with pytest.raises(RuleViolation) as refused:
        await handlers.handle_record(record(callback.callback_id, answers()), uow, ctx)
    assert refused.value.status == 409 and "cancelled" in refused.value.reason


async def test_unknown_callback_and_none_method_are_refused(uow, ctx):
    with pytest.raises(RuleViolation) as unknown:
        await handlers.handle_record(record("nope", answers()), uow, ctx)
    assert unknown.value.status == 404
    callback = await complaint_awaiting_callback(uow, ctx)
    with pytest.raises(RuleViolation) as none:
        await handlers.handle_record(record(callback.callback_id, answers(method=ReplyMethod.none)), uow, ctx)
    assert none.value.status == 422


async def test_the_owner_answers_online_and_decides_like_the_desk(uow, ctx, sink):
    callback = await complaint_awaiting_callback(uow, ctx, reply_method="online")
    assert callback.answerable_online()
    await handlers.handle_record(record(callback.callback_id, answers(attitude=False, method=ReplyMethod.online),
                                        actor="owner:o1", owner_unit="1-1-101"), uow, ctx)
    assert uow.watches.rows[("t1", 1)].verdict == "answered"
    [raised] = sink.payloads("attitude_complaint_raised")
    assert raised.answered_by_owner and raised.answered_by is ReplyMethod.online
    assert uow.tickets.rows["t1"].status is TicketState.closed


async def test_an_owner_of_another_unit_or_a_phone_callback_is_refused(uow, ctx):
    online = await complaint_awaiting_callback(uow, ctx, "t1", reply_method="online")
    with pytest.raises(RuleViolation) as other_unit:
        await handlers.handle_record(record(online.callback_id, answers(method=ReplyMethod.online),
                                            owner_unit="9-9-909"), uow, ctx)
    assert other_unit.value.status == 404
    phone = await complaint_awaiting_callback(uow, ctx, "t2")
    with pytest.raises(RuleViolation) as by_phone:
        await handlers.handle_record(record(phone.callback_id, answers(method=ReplyMethod.online),
                                            owner_unit="1-1-101"), uow, ctx)
    assert by_phone.value.status == 409


async def test_overdue_callbacks_are_reported_once(uow, ctx, sink, clock):
    callback = await complaint_awaiting_callback(uow, ctx)
    assert await handlers.report_overdue(uow, ctx, 10) == 0
    clock.advance(seconds=(callback.due_at - clock.now()).total_seconds() + 60)
    assert await handlers.report_overdue(uow, ctx, 10) == 1
    assert await handlers.report_overdue(uow, ctx, 10) == 0
    assert sink.names().count("callback_overdue") == 1


async def test_a_visit_is_recorded_once_per_client_id_and_never_in_the_future(uow, ctx):
    command = handlers.VisitCommand(estate=ESTATE, staff_id=CS, visited_on=START.date(), notes="走访", owner_id="o1",
                                    unit="1-1-101", raised_request={"kind": "repair", "description": "门坏了"},
                                    client_visit_id="v1")
    row, created = await handlers.handle_record_visit(command, uow, ctx)
    assert created and row.raised_request["channel"] == "walk_around_visit" and row.raised_request["unit"] == "1-1-101"
    again, created_again = await handlers.handle_record_visit(command, uow, ctx)
    assert again is row and not created_again
    with pytest.raises(RuleViolation) as future:
        await handlers.handle_record_visit(
            handlers.VisitCommand(ESTATE, CS, START.date() + dt.timedelta(days=3), "x", None, None, None, None), uow, ctx)
    assert future.value.status == 422


# --- the aggregates' refused moves -----------------------------------------------------------------


def test_the_ticket_refuses_moves_its_machine_does_not_allow():
    ticket = Ticket.first_news("t1", ESTATE, START, START)
    ticket.await_verdict(START)
    with pytest.raises(RuleViolation) as refused:
        ticket.await_callback(START)
    assert refused.value.status == 409
    ticket.close(1, "satisfied", True, START)
    with pytest.raises(RuleViolation):
        ticket.close(1, "again", True, START)
    ticket.reopen(2, START)
    assert (ticket.status, ticket.current_round) == (TicketState.in_handling, 2)


async def test_a_done_callback_cannot_be_cancelled(uow, ctx):
    callback = await complaint_awaiting_callback(uow, ctx)
    await handlers.handle_record(record(callback.callback_id, answers()), uow, ctx)
    done = uow.callbacks.rows[callback.callback_id]
    with pytest.raises(RuleViolation) as refused:
        done.cancel("late", START)
    assert refused.value.status == 409
    assert not done.report_overdue(done.due_at + dt.timedelta(days=9))


async def test_a_calendar_change_moves_a_pending_complaint_window_once(uow, ctx, clock):
    callback = await complaint_awaiting_callback(uow, ctx)
    assert await handlers.recompute_complaint_windows(uow, ctx) == 0  # the same calendar: nothing moves
    # The company declares Thursday a day off (a typhoon): two working days end later.
    typhoon = HandlerContext(clock, directory_of(company=Company(calendar={"days_off": ["2026-12-03"]})))
    assert await handlers.recompute_complaint_windows(uow, typhoon) == 1
    assert uow.callbacks.rows[callback.callback_id].due_at > callback.due_at
    assert await handlers.recompute_complaint_windows(uow, typhoon) == 0


def test_a_recurrence_verdict_is_given_once():
    watch = Watch(ticket_id="t1", round=1, estate=ESTATE, category="漏水", category_key="漏水", departments=[],
                  kind="complaint", completed_at=START, window_ends_at=START)
    watch.decide("satisfied", START, None)
    with pytest.raises(RuleViolation) as twice:
        watch.decide("not_satisfied", START, "t2")
    assert twice.value.status == 409
    watch.answered_by_owner(START)  # already judged: the owner's answers leave the verdict alone
    assert watch.verdict == "satisfied"


class _Database:
    """`jobs`' database: each transaction hands the same fake unit of work's session."""

    def __init__(self, uow):
        self.uow = uow

    @contextlib.asynccontextmanager
    async def transaction(self):
        yield self.uow


async def test_the_overdue_scan_sleeps_until_the_next_callback_falls_due(uow, ctx, clock):
    schedule = ScanSchedule(clock.now)
    db = _Database(uow)
    assert schedule.has_work()  # nothing read yet: look
    assert await jobs.overdue_scan(db, lambda session: session, ctx, schedule) == 0
    assert not schedule.has_work() and schedule.next_at is None  # nothing pending: silence
    callback = await complaint_awaiting_callback(uow, ctx)
    schedule.noted(callback.due_at)  # what the store's after-commit hook tells it
    assert schedule.next_at == callback.due_at and not schedule.has_work()
    clock.advance(seconds=(callback.due_at - clock.now()).total_seconds() + 1)
    assert schedule.has_work()
    assert await jobs.overdue_scan(db, lambda session: session, ctx, schedule) == 1
    assert schedule.next_at is None and not schedule.has_work()  # reported: nothing else is due


async def test_the_recurrence_scan_sleeps_until_the_next_window_ends(uow, ctx, clock):
    schedule = ScanSchedule(clock.now)
    db = _Database(uow)
    await jobs.recurrence_scan(db, lambda session: session, ctx, schedule)
    assert schedule.next_at is None and not schedule.has_work()
    await run(uow, ctx, accepted(reply_method="online"))
    await run(uow, ctx, completed(reply_method="online"))
    (watch,) = uow.watches.rows.values()
    await jobs.recurrence_scan(db, lambda session: session, ctx, schedule)
    assert schedule.next_at == watch.window_ends_at and not schedule.has_work()
    clock.advance(seconds=(watch.window_ends_at - clock.now()).total_seconds() + 1)
    assert schedule.has_work()
    assert await jobs.recurrence_scan(db, lambda session: session, ctx, schedule) == 1
    assert uow.watches.rows[(watch.ticket_id, watch.round)].verdict is not None
    await jobs.recurrence_scan(db, lambda session: session, ctx, schedule)
    assert schedule.next_at is None
