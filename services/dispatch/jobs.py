"""Dispatch's periodic jobs, their dependencies as arguments: `open_uow()` opens one
transaction's unit of work, `ctx` gives the time, policies and calendars.

- The SLA scan fires every due clock once (FOR UPDATE SKIP LOCKED: a restart or a second
  replica never loses one and never fires one twice) and climbs the escalation ladder
  for breaches still unresolved (RULES §2 Clocks, Escalation); between runs it sleeps
  until its next due clock (`ScanSchedule`).
- The day-clock recount follows each change of the company's calendar (issue 10).
"""

from __future__ import annotations

import logging
from typing import AsyncContextManager, Callable

from services.dispatch import domain, rules
from services.dispatch.domain import SYSTEM
from services.dispatch.handlers import escalate, settle, start_progress_week
from services.dispatch.rules import Clock, TicketFacts
from services.dispatch.uow import DispatchUnitOfWork
from shared.events import Accepted, ClockOutcome, SlaBreached
from shared.lifecycle import TicketState as S
from shared.schedule import ScanSchedule
from shared.uow import HandlerContext

log = logging.getLogger("estatedesk.dispatch")
SCAN_BATCH = 200
OpenUow = Callable[[], AsyncContextManager[DispatchUnitOfWork]]


async def scan_clocks(open_uow: OpenUow, ctx: HandlerContext, schedule: ScanSchedule | None = None) -> int:
    """Fire every due clock once, then climb the ladder for breaches still unresolved;
    the number of clocks fired. With a `schedule`, tell it when the next work is due."""
    fired = 0
    while True:
        async with open_uow() as uow:
            batch = await breach_batch(uow, ctx)
        fired += batch
        if batch < SCAN_BATCH:
            break
    while True:
        async with open_uow() as uow:
            climbed = await climb_batch(uow, ctx)
            if climbed < SCAN_BATCH and schedule is not None:
                schedule.scanned(await uow.clocks.next_wake())
        if climbed < SCAN_BATCH:
            break
    return fired


async def breach_batch(uow, ctx: HandlerContext, limit: int = SCAN_BATCH) -> int:
    """Breach up to `limit` due clocks: settled `breached`, announced (`sla_breached`),
    escalated to the first rung; a progress-update week that ended short starts the next
    week instead of climbing."""
    now = ctx.now()
    due = await uow.clocks.claim_due(now, limit)
    for row in due:
        policy = ctx.policy(row.estate)
        department = row.department or None
        await uow.clocks.mark_breached(row.id, now)
        await settle(uow, row, now, ClockOutcome.breached)
        await uow.emit(SlaBreached(ticket_id=row.ticket_id, round=row.round, clock=row.clock, due_at=row.due_at,
                                   department=department, provisional=row.provisional),
                       estate=row.estate, actor=SYSTEM, time=now)
        uow.metrics.breach(row.estate, row.clock)
        if row.clock == Clock.progress_update.value:
            # A week that ended short is missed (counted, shown on the form); the duty
            # goes on with the next week. It does not climb the escalation ladder.
            if row.status == S.in_handling:
                await start_progress_week(uow, row.ticket_id, row.estate, row.round, row.kind, row.accepted_at,
                                          row.due_at, policy)
            continue
        facts = TicketFacts.from_accepted(Accepted.model_validate(row.facts))
        due_local = row.due_at.astimezone(ctx.timezone(row.estate))
        await escalate(
            uow, ctx, ticket_id=row.ticket_id, estate=row.estate, round=row.round,
            rung=domain.first_rung(facts, policy), now=now, deadline_id=row.id, clock=row.clock,
            department=department,
            reason=f"{row.clock} clock{' of ' + department if department else ''} ran out at "
                   f"{due_local:%Y-%m-%d %H:%M}",
        )
    return len(due)


async def climb_batch(uow, ctx: HandlerContext, limit: int = SCAN_BATCH) -> int:
    """Up to `limit` escalations whose rung's minutes are up climb to the next rung; one
    whose clock was met meanwhile is resolved instead."""
    now = ctx.now()
    waiting = await uow.escalations.claim_waiting(now, limit)
    for row in waiting:
        if row.deadline_met_at is not None:
            await uow.escalations.stop_climbing(row.id, resolved_at=now)
            continue
        policy = ctx.policy(row.estate)
        await uow.escalations.stop_climbing(row.id)
        try:
            rung = rules.next_rung(row.rung, policy)
        except rules.RuleViolation:  # the ladder changed under it: it stays where it is
            rung = None
        if rung is None:
            continue
        await escalate(
            uow, ctx, ticket_id=row.ticket_id, estate=row.estate, round=row.round, rung=rung, now=now,
            deadline_id=row.deadline_id, clock=row.clock, department=row.department,
            reason=f"{row.clock} breach still unresolved after {policy.escalation.minutes_per_rung} min "
                   f"with the {row.rung}",
        )
    return len(waiting)


async def recompute_day_clocks(uow, ctx: HandlerContext) -> int:
    """On every change of the company's calendar (a year loaded, a correction, a typhoon
    day off), count every running day clock again from its start — not only the
    provisional ones: a day off added for tomorrow moves today's open reply and tracking
    deadlines too (issue 10). On start-up the same recount picks up a year the `holidays`
    package has learned since. The number of clocks moved."""
    calendar = ctx.calendar("")  # the company's calendar: one for every estate
    changed = 0
    for row in await uow.clocks.running_day_clocks():
        update = rules.recompute_day_clock(row.started_at, row.working_days, row.due_at, row.provisional,
                                           ctx.policy(row.estate), calendar)
        if update is not None:
            await uow.clocks.move(row.id, *update)
            changed += 1
    if changed:
        log.info("recomputed %d running day deadlines on the company's calendar", changed)
    return changed
