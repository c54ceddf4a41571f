"""Dispatch's handlers over fake repositories (issue 11): every event handler, every
transition of a form's line and round, the refused ones with their status, and the
events each raises. No servers, no wall clock."""

from __future__ import annotations

import datetime as dt

import pytest

from services.dispatch import handlers
from services.dispatch.handlers import FormCommand, handle_form_command
from services.dispatch.rules import Clock
from shared.errors import RuleViolation
from shared.events import ClockOutcome, Closed, Kind, ProgressUpdated, Reopened, ValidityJudged
from shared.lifecycle import LineState as L
from shared.lifecycle import TicketState as S
from tests.handlers.conftest import ESTATE
from tests.handlers.dispatch.conftest import accepted, event

ENG, SEC = "engineering", "security"
STAFF, HEAD = f"{ESTATE}-eng01", f"{ESTATE}-eng-head"


async def routed(uow, ctx, clock, ticket_id="T1", **facts):
    await handlers.handle_accepted(event(accepted(clock, ticket_id, **facts), clock, "intake"), uow, ctx)
    return await uow.forms.get(ticket_id)


async def step(uow, ctx, act, ticket_id="T1"):
    return await handle_form_command(FormCommand(ESTATE, ticket_id, act), uow, ctx)


def refused(status: int):
    return pytest.raises(RuleViolation, check=lambda error: error.status == status)


def settled(sink, clock_name: str) -> list:
    return [p for p in sink.payloads("clock_settled") if p.clock == clock_name]


# --- accepted --------------------------------------------------------------------------------


async def test_accepted_routes_the_form_opens_lines_and_starts_clocks(uow, ctx, clock, sink):
    form = await routed(uow, ctx, clock)
    assert form.status is S.in_handling and form.round == 1
    assert [l.department for l in form.active_lines] == [ENG]
    assert form.active_lines[0].status is L.assigned and form.active_lines[0].id is not None
    (assigned,) = sink.payloads("assigned")
    assert assigned.departments == [ENG] and assigned.assigned_by == "system"
    stored = {(c.clock, c.department) for c in uow.clocks.rows}
    assert {(d.clock, d.department or "") for d in assigned.deadlines} == stored
    line_clocks = [c for c in uow.clocks.rows if c.department == ENG]
    assert line_clocks and all(c.assignment_id == form.active_lines[0].id for c in line_clocks)


async def test_accepted_twice_routes_once(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    await routed(uow, ctx, clock)
    assert sink.names().count("assigned") == 1 and len(uow.forms.all_lines("T1")) == 1


async def test_complaint_about_staff_and_owner_loss_escalate_at_acceptance(uow, ctx, clock, sink):
    await routed(uow, ctx, clock, kind=Kind.complaint, repair_class=None, category="attitude",
                 about_role="customer_service_staff", owner_loss_cny="900.00")
    rungs = [p.rung for p in sink.payloads("escalated")]
    policy = ctx.policy(ESTATE)
    assert rungs == [policy.escalation.subject_rung, policy.escalation.nonconformity_approver_role]
    assert [p.nonconformity for p in sink.payloads("escalated")] == [False, True]
    assert (await uow.nonconformities.get_for_update("T1")).state.value == "opened"
    # a complaint owes the owner weekly updates: its first week's clock runs
    assert uow.clocks.of("T1", clock=Clock.progress_update.value)


# --- the line's steps ----------------------------------------------------------------------------


async def test_acknowledge_meets_its_clock_and_is_announced(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    clock.advance(minutes=5)
    form = await step(uow, ctx, handlers.acknowledge(ENG, STAFF))
    assert form.line(ENG).status is L.acknowledged and form.line(ENG).acknowledged_by == STAFF
    (ack,) = sink.payloads("acknowledged")
    assert (ack.department, ack.acknowledged_by) == (ENG, STAFF)
    assert [p.outcome for p in settled(sink, Clock.acknowledge.value)] == [ClockOutcome.met]
    with refused(409):
        await step(uow, ctx, handlers.acknowledge(ENG, STAFF))


async def test_steps_out_of_order_are_refused(uow, ctx, clock):
    await routed(uow, ctx, clock)
    with refused(409):
        await step(uow, ctx, handlers.arrive(ENG, STAFF))
    with refused(409):
        await step(uow, ctx, handlers.sign_back(ENG, "o", "r", STAFF, head=False))
    with refused(409):
        await step(uow, ctx, handlers.verify(ENG, HEAD))
    with refused(409):
        await step(uow, ctx, handlers.return_sign_back(ENG, "redo", HEAD))
    with refused(409):  # no line of that department
        await step(uow, ctx, handlers.acknowledge(SEC, STAFF))
    with refused(404):
        await step(uow, ctx, handlers.acknowledge(ENG, STAFF), ticket_id="nope")


async def test_sign_back_waits_for_the_head_then_verify_completes_the_round(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    await step(uow, ctx, handlers.acknowledge(ENG, STAFF))
    clock.advance(minutes=30)
    await step(uow, ctx, handlers.arrive(ENG, STAFF))
    assert sink.payloads("arrived")[0].arrived_by == STAFF
    clock.advance(minutes=30)
    form = await step(uow, ctx, handlers.sign_back(ENG, "pipe replaced", "fixed", STAFF, head=False))
    assert form.line(ENG).status is L.awaiting_verification and form.status is S.in_handling
    assert "signed_back" not in sink.names()
    with refused(409):
        await step(uow, ctx, handlers.sign_back(ENG, "again", "again", STAFF, head=False))
    clock.advance(minutes=10)
    form = await step(uow, ctx, handlers.verify(ENG, HEAD))
    assert form.status is S.completed and form.completed_at == clock.now()
    (signed,) = sink.payloads("signed_back")
    assert (signed.signed_by, signed.verified_by, signed.opinion) == (STAFF, HEAD, "pipe replaced")
    (completed,) = sink.payloads("completed")
    assert completed.departments == [ENG]
    # every clock of the round but tracking is settled; tracking runs to the callback
    open_clocks = {c.clock for c in uow.clocks.of("T1", met_at=None)}
    assert open_clocks == {Clock.tracking.value}
    with refused(409):
        await step(uow, ctx, handlers.acknowledge(ENG, STAFF))


async def test_a_head_signing_back_verifies_at_once(uow, ctx, clock, sink):
    await routed(uow, ctx, clock, category="noise at night", kind=Kind.situation_report, repair_class=None)
    department = (await uow.forms.get("T1")).active_lines[0].department
    await step(uow, ctx, handlers.acknowledge(department, "h"))
    form = await step(uow, ctx, handlers.sign_back(department, "o", "r", "h", head=True))
    assert form.line(department).status is L.signed_back and form.status is S.completed
    names = sink.names()
    assert names[-1] == "completed" and names.index("signed_back") < names.index("completed")


async def test_return_puts_the_line_back_to_work_with_the_reason_noted(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    await step(uow, ctx, handlers.acknowledge(ENG, STAFF))
    await step(uow, ctx, handlers.arrive(ENG, STAFF))
    await step(uow, ctx, handlers.sign_back(ENG, "o", "r", STAFF, head=False))
    form = await step(uow, ctx, handlers.return_sign_back(ENG, " photos missing ", HEAD))
    line = form.line(ENG)
    assert line.status is L.arrived and line.opinion is None and line.signed_by is None
    assert line.notes[-1]["note"] == "photos missing" and line.notes[-1]["returned"] is True
    await step(uow, ctx, handlers.sign_back(ENG, "o2", "r2", STAFF, head=False))
    with refused(422):
        await step(uow, ctx, handlers.return_sign_back(ENG, "  ", HEAD))


async def test_transfer_closes_the_giving_line_and_opens_a_new_one(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    checked = []
    clock.advance(minutes=3)
    form = await step(uow, ctx, handlers.transfer(None, SEC, "not ours", STAFF, [ENG], checked.append))
    assert checked == [ENG]
    assert [l.department for l in form.active_lines] == [SEC]
    old = uow.forms.all_lines("T1")[0]
    assert old.status is L.transferred and old.transferred_to == SEC and old.notes[0]["note"] == "not ours"
    assert {c.outcome for c in uow.clocks.rows if c.assignment_id == old.id} == {"superseded"}
    new_clocks = [c for c in uow.clocks.rows if c.assignment_id == form.line(SEC).id]
    assert new_clocks and all(c.started_at == clock.now() for c in new_clocks)
    assigned = sink.payloads("assigned")[-1]
    assert (assigned.departments, assigned.transferred_from) == ([SEC], ENG)
    with refused(409):
        await step(uow, ctx, handlers.transfer(SEC, SEC, None, STAFF, [], checked.append))
    with refused(409):  # the giving department holds no line any more
        await step(uow, ctx, handlers.transfer(ENG, "cleaning", None, STAFF, [], checked.append))


async def test_transfer_needs_a_source_when_it_cannot_be_told(uow, ctx, clock):
    await routed(uow, ctx, clock)
    await step(uow, ctx, handlers.transfer(ENG, SEC, None, STAFF, [], lambda d: None))
    form = await uow.forms.get("T1")
    assert form.source_line(None, []) == SEC
    form.lines.append(form.lines[-1].__class__(**{**vars(form.lines[-1]), "department": "cleaning", "id": 99}))
    with refused(422):
        form.source_line(None, [])


async def test_reschedule_moves_the_line_clocks_to_the_new_appointment(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    await step(uow, ctx, handlers.acknowledge(ENG, STAFF))
    new = clock.now() + dt.timedelta(days=1)
    form = await handlers.handle_reschedule(ESTATE, "T1", ENG, new, "owner away", STAFF, uow, ctx)
    assert form.line(ENG).appointment_at == new and form.line(ENG).notes[-1]["note"] == "owner away"
    line_id = form.line(ENG).id
    assert {c.outcome for c in uow.clocks.rows if c.assignment_id == line_id and c.outcome} >= {"rescheduled"}
    arrival = [c for c in uow.clocks.of("T1", assignment_id=line_id, met_at=None) if c.clock == Clock.arrival.value]
    assert len(arrival) == 1 and arrival[0].due_at >= new
    with refused(422):
        await handlers.handle_reschedule(ESTATE, "T1", ENG, clock.now(), "past", STAFF, uow, ctx)
    await step(uow, ctx, handlers.arrive(ENG, STAFF))
    with refused(409):
        await handlers.handle_reschedule(ESTATE, "T1", ENG, new, "again", STAFF, uow, ctx)


# --- the ticket's life: validity, reopening, updates, closing ---------------------------------------


async def test_invalid_complaint_cancels_its_clocks_and_ends_handling(uow, ctx, clock, sink):
    await routed(uow, ctx, clock, kind=Kind.complaint, repair_class=None, category="attitude",
                 about_role="company_staff")
    judged = ValidityJudged(ticket_id="T1", valid=False, reason="not ours", judged_by="x", confirmed_by="m")
    await handlers.handle_validity_judged(event(judged, clock), uow, ctx)
    form = await uow.forms.get("T1")
    assert form.status is S.invalid and form.validity == "invalid"
    assert not uow.clocks.of("T1", met_at=None)
    assert {p.outcome for p in sink.payloads("clock_settled")} == {ClockOutcome.cancelled}
    assert all(e.resolved_at is not None for e in uow.escalations.rows)
    with refused(409):
        await step(uow, ctx, handlers.acknowledge(form.active_lines[0].department, STAFF))


async def test_valid_judgement_only_records_validity(uow, ctx, clock, sink):
    await routed(uow, ctx, clock, kind=Kind.complaint, repair_class=None, category="attitude")
    judged = ValidityJudged(ticket_id="T1", valid=True, reason="ok", judged_by="x")
    await handlers.handle_validity_judged(event(judged, clock), uow, ctx)
    form = await uow.forms.get("T1")
    assert (form.status, form.validity) == (S.in_handling, "valid")


async def test_events_about_a_form_not_routed_yet_are_retried(uow, ctx, clock):
    judged = ValidityJudged(ticket_id="T9", valid=False, reason="r", judged_by="x")
    with pytest.raises(LookupError):
        await handlers.handle_validity_judged(event(judged, clock), uow, ctx)
    await handlers.handle_closed(event(Closed(ticket_id="T9", closed_by="x", reason="r"), clock), uow, ctx)


async def test_reopened_starts_a_new_round_once(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    await step(uow, ctx, handlers.acknowledge(ENG, STAFF))
    await step(uow, ctx, handlers.arrive(ENG, STAFF))
    await step(uow, ctx, handlers.sign_back(ENG, "o", "r", HEAD, head=True))
    clock.advance(hours=2)
    reopened = Reopened(ticket_id="T1", round=2, reason="still leaks", reopened_by=f"{ESTATE}-cs01")
    await handlers.handle_reopened(event(reopened, clock), uow, ctx)
    form = await uow.forms.get("T1")
    assert (form.round, form.status, form.completed_at) == (2, S.in_handling, None)
    assert [(l.department, l.round, l.status) for l in form.active_lines] == [(ENG, 2, L.assigned)]
    assert {c.round for c in uow.clocks.of("T1", met_at=None)} == {2}
    tracking = uow.clocks.of("T1", round=1, clock=Clock.tracking.value)
    assert tracking[0].outcome == "met"
    assert sink.payloads("assigned")[-1].round == 2
    before = len(sink.events)
    await handlers.handle_reopened(event(reopened, clock), uow, ctx)
    assert len(sink.events) == before


async def test_progress_update_meets_the_reply_clock_and_counts_for_its_week(uow, ctx, clock, sink):
    await routed(uow, ctx, clock, kind=Kind.complaint, repair_class=None, category="attitude")
    (week,) = uow.clocks.of("T1", clock=Clock.progress_update.value)
    clock.advance(seconds=(week.started_at - clock.now()).total_seconds() + 60)  # inside the first week
    for n in range(ctx.policy(ESTATE).clocks.progress_updates_per_week):
        clock.advance(minutes=1)
        update = ProgressUpdated(ticket_id="T1", note=f"update {n}", updated_by=f"{ESTATE}-cs01")
        await handlers.handle_progress_updated(event(update, clock), uow, ctx)
    assert uow.clocks.of("T1", clock=Clock.reply.value)[0].outcome == "met"
    assert len(uow.progress.rows) == ctx.policy(ESTATE).clocks.progress_updates_per_week
    first, second = uow.clocks.of("T1", clock=Clock.progress_update.value)
    assert first.outcome == "met" and second.met_at is None and second.started_at == first.due_at


async def test_a_week_short_of_updates_is_breached_and_the_next_starts(uow, ctx, clock, sink):
    from services.dispatch import jobs

    await routed(uow, ctx, clock, kind=Kind.complaint, repair_class=None, category="attitude")
    (week,) = uow.clocks.of("T1", clock=Clock.progress_update.value)
    clock.advance(seconds=(week.due_at - clock.now()).total_seconds() + 1)
    await jobs.breach_batch(uow, ctx)
    weeks = uow.clocks.of("T1", clock=Clock.progress_update.value)
    assert weeks[0].breached_at == clock.now() and weeks[1].started_at == weeks[0].due_at
    assert Clock.progress_update.value in [p.clock for p in sink.payloads("sla_breached")]
    assert all(e.clock != Clock.progress_update.value for e in uow.escalations.rows)


async def test_closed_meets_tracking_and_cancels_the_rest(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    clock.advance(hours=1)
    await handlers.handle_closed(event(Closed(ticket_id="T1", closed_by="x", reason="ok", satisfied=True), clock),
                                 uow, ctx)
    form = await uow.forms.get("T1")
    assert form.status is S.closed and not uow.clocks.of("T1", met_at=None)
    assert uow.clocks.of("T1", clock=Clock.tracking.value)[0].outcome == "met"
