"""The SLA scan's batches (breach, escalation ladder, day-clock recount) and the
nonconformity record's handlers over fake repositories (issue 11)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.dispatch import handlers, jobs
from services.dispatch.handlers import FormCommand, handle_form_command
from services.dispatch.rules import Clock
from shared.errors import RuleViolation
from shared.events import ClockOutcome
from shared.lifecycle import TicketState as S
from tests.handlers.conftest import ESTATE
from tests.handlers.dispatch.conftest import accepted, event

ENG, STAFF, HEAD = "engineering", f"{ESTATE}-eng01", f"{ESTATE}-eng-head"


async def routed(uow, ctx, clock, **facts):
    await handlers.handle_accepted(event(accepted(clock, **facts), clock, "intake"), uow, ctx)


def refused(status: int):
    return pytest.raises(RuleViolation, check=lambda error: error.status == status)


def past(clock, clock_row) -> None:
    clock.advance(seconds=(clock_row.due_at - clock.now()).total_seconds() + 1)


async def test_a_due_clock_breaches_once_and_climbs_the_ladder(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    (ack,) = uow.clocks.of("T1", clock=Clock.acknowledge.value)
    assert await jobs.breach_batch(uow, ctx) == 0
    past(clock, ack)
    assert await jobs.breach_batch(uow, ctx) >= 1
    assert ack.breached_at == clock.now()
    breached = [p for p in sink.payloads("sla_breached") if p.clock == Clock.acknowledge.value]
    assert len(breached) == 1 and breached[0].department == ENG
    settled = [p for p in sink.payloads("clock_settled") if p.clock == Clock.acknowledge.value]
    assert [p.outcome for p in settled] == [ClockOutcome.breached]
    (first,) = [e for e in uow.escalations.rows if e.deadline_id == ack.id]
    assert first.next_at is not None and (ESTATE, Clock.acknowledge.value) in uow.metrics.breaches
    assert await jobs.breach_batch(uow, ctx) == 0  # fired once
    # the rung's minutes pass without the clock met: the next rung is told
    clock.advance(minutes=ctx.policy(ESTATE).escalation.minutes_per_rung + 1)
    assert await jobs.climb_batch(uow, ctx) >= 1
    rungs = [e.rung for e in uow.escalations.rows if e.deadline_id == ack.id]
    policy = ctx.policy(ESTATE)
    assert len(rungs) == 2 and policy.escalation.ladder.index(rungs[1]) == policy.escalation.ladder.index(rungs[0]) + 1


async def test_a_breach_met_late_stops_climbing(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    (ack,) = uow.clocks.of("T1", clock=Clock.acknowledge.value)
    past(clock, ack)
    await jobs.breach_batch(uow, ctx)
    await handle_form_command(FormCommand(ESTATE, "T1", handlers.acknowledge(ENG, STAFF)), uow, ctx)
    assert all(e.resolved_at is not None for e in uow.escalations.rows if e.deadline_id == ack.id)
    # a breached clock was settled when it ran out: meeting it later settles nothing again
    assert [p.outcome for p in sink.payloads("clock_settled") if p.clock_id == ack.id] == [ClockOutcome.breached]
    clock.advance(minutes=ctx.policy(ESTATE).escalation.minutes_per_rung + 1)
    assert await jobs.climb_batch(uow, ctx) == 0


async def test_clocks_of_a_closed_form_never_breach(uow, ctx, clock, sink):
    await routed(uow, ctx, clock)
    uow.forms.rows["T1"]["status"] = S.closed.value
    clock.advance(days=60)
    assert await jobs.breach_batch(uow, ctx) == 0 and not sink.payloads("sla_breached")


async def test_day_clocks_are_recounted_and_unchanged_ones_left(uow, ctx, clock):
    await routed(uow, ctx, clock)
    assert await jobs.recompute_day_clocks(uow, ctx) == 0  # the same calendar moves nothing
    (tracking,) = uow.clocks.of("T1", clock=Clock.tracking.value)
    tracking.due_at += dt.timedelta(days=3)  # as if counted on another calendar
    assert await jobs.recompute_day_clocks(uow, ctx) == 1
    assert await jobs.recompute_day_clocks(uow, ctx) == 0


async def test_an_owner_loss_holds_completion_until_the_record_is_approved(uow, ctx, clock, sink):
    await routed(uow, ctx, clock, owner_loss_cny="900.00")
    for act in (handlers.acknowledge(ENG, STAFF), handlers.arrive(ENG, STAFF),
                handlers.sign_back(ENG, "o", "r", HEAD, head=True)):
        form = await handle_form_command(FormCommand(ESTATE, "T1", act), uow, ctx)
    assert form.status is S.awaiting_approval and "completed" not in sink.names()
    with refused(409):
        await handle_form_command(FormCommand(ESTATE, "T1", handlers.acknowledge(ENG, STAFF)), uow, ctx)
    with refused(403):
        await handlers.handle_approve_nonconformity(ESTATE, "T1", "x", "estate_director", uow, ctx)
    approver = ctx.policy(ESTATE).escalation.nonconformity_approver_role
    clock.advance(minutes=5)
    record = await handlers.handle_approve_nonconformity(ESTATE, "T1", "mr", approver, uow, ctx)
    assert record.state.value == "approved"
    assert (await uow.forms.get("T1")).status is S.completed and sink.names()[-1] == "completed"
    assert all(e.resolved_at is not None for e in uow.escalations.rows if e.nonconformity)
    with refused(409):
        await handlers.handle_approve_nonconformity(ESTATE, "T1", "mr", approver, uow, ctx)


async def test_the_nonconformity_record_walks_its_states(uow, ctx, clock, sink):
    from services.dispatch import rules

    await routed(uow, ctx, clock)
    with refused(404):
        await handlers.handle_nonconformity_step(ESTATE, "T1", lambda r, now: r, uow, ctx)
    record = await handlers.handle_open_nonconformity(ESTATE, "T1", "leak damaged a sofa", None, "dir", uow, ctx)
    assert record.state.value == "opened" and sink.payloads("escalated")[-1].nonconformity is True
    with refused(409):
        await handlers.handle_open_nonconformity(ESTATE, "T1", "again", None, "dir", uow, ctx)
    with refused(409):  # not approved yet
        await handlers.handle_nonconformity_step(
            ESTATE, "T1", lambda r, now: rules.start_corrective_action(r, "fix", "eng", now), uow, ctx)
    approver = ctx.policy(ESTATE).escalation.nonconformity_approver_role
    await handlers.handle_approve_nonconformity(ESTATE, "T1", "mr", approver, uow, ctx)
    for step in (lambda r, now: rules.start_corrective_action(r, "fix", "eng", now),
                 lambda r, now: rules.close_nonconformity(r, "dir", "done", now),
                 lambda r, now: rules.attach_capa_report(r, "report", now)):
        clock.advance(minutes=1)
        record = await handlers.handle_nonconformity_step(ESTATE, "T1", step, uow, ctx)
    assert record.state.value == "closed" and record.capa_report == "report"
    with refused(404):
        await handlers.handle_open_nonconformity(ESTATE, "T404", "x", None, "dir", uow, ctx)
