"""Dispatch: routes each accepted form to its departments, keeps the handover ledger and
the clocks, escalates breaches, and collects the departments' sign-backs.

The shell only parses, loads, calls `rules`, stores and emits. Deadlines are rows: a
periodic scan claims the due ones with FOR UPDATE SKIP LOCKED, so a restart or a second
replica never loses one and never fires one twice.

Decisions the issue left open:
- A complaint judged invalid (with the manager's confirmation) ends its handling: every
  open clock of the ticket is cancelled, open escalations are resolved, the form's status
  becomes `invalid` and further acknowledge/arrive/sign-back are refused (409). Its round
  is not `completed`: customer service tells the owner why (intake tracks that notice).
- A transfer closes the giving department's ledger line (its clocks are superseded) and
  opens a new line with fresh department clocks started at the transfer, announced as
  `assigned` with `transferred_from`.
- The reply clock is met by the first update given to the owner (intake's
  `progress_updated`) or by completion; tracking runs to the callback, which ends in
  `closed` (satisfied) or `reopened` (not satisfied, a new round).
- A complaint about staff (policy.escalation.subject_roles) is escalated to the subject
  rung at acceptance, and an owner's loss above the threshold opens a nonconformity record
  and is escalated to its approver at acceptance.
- Sign-back is two steps (RULES §2 Sign-back; seeds 000 §四): the department signs back
  (its line `awaiting_verify`, acknowledge/arrival clocks met), its head verifies (the
  line is `signed_back`, the repair-slip clock met) or returns it with a reason (back to
  `arrived`/`acknowledged`). `signed_back` is emitted at verification, so callback,
  archive and analytics see only verified sign-backs, with the same fields as before. A
  head signing back their own department's line verifies it at once (the old one-step
  call of integrations, `verified_by` = the caller).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from decimal import Decimal
from typing import Literal

import sqlalchemy as sa
from fastapi import Depends, Query
from prometheus_client import Counter
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import rules, store
from services.dispatch.rules import Clock, Step, TicketFacts
from shared.auth import Principal
from shared.calendar_watch import on_calendar_change
from shared.directory import Estate
from shared.errors import RuleViolation
from shared.lifecycle import LineState, require_transition
from shared.lifecycle import TicketState as S
from shared.limits import Contract, Instant, Money, Quantity
from shared.events import (
    Accepted, Acknowledged, Arrived, Assigned, ClockOutcome, ClockSettled, CloudEvent, Completed, Deadline, Escalated,
    Kind, RepairClass, Reopened, SignedBack, SlaBreached, ValidityJudged,
)
from shared.policy import Policy
from shared.service import LocalTime, Service, create_http_app, known_estate, local_iso, require_estate

log = logging.getLogger("estatedesk.dispatch")

service = Service(
    "dispatch", store.metadata, title="Dispatch 派工与会签",
    description="Routing, handover ledger, SLA clocks, escalation, nonconformity, department sign-back "
    "and paid household-service bills.",
)

F, A, D, E = store.forms, store.assignments, store.deadlines, store.escalations
SYSTEM = "system"
SCAN_BATCH = 200

breaches_total = Counter(
    "estatedesk_sla_breaches", "Clocks that ran out", ["estate", "clock"], registry=service.registry
)
escalations_total = Counter(
    "estatedesk_escalations", "Rungs of the escalation ladder reached", ["estate", "rung"], registry=service.registry
)


# --- small helpers ------------------------------------------------------------------------


def _facts(form) -> TicketFacts:
    return TicketFacts.from_accepted(Accepted.model_validate(form.facts))


def _policy(estate: str) -> Policy:
    return service.directory.policy_for(estate)


def _estate(code: str) -> Estate:
    estate = service.directory.estate(code)
    if estate is None:
        raise RuleViolation(f"unknown estate {code!r}", status=404)
    return estate


def _dept(value: str) -> str | None:
    return value or None


def _met_by(step: Step) -> list[str]:
    return [clock.value for clock in rules.clocks_met_by(step)]


def _first_rung(facts: TicketFacts, policy: Policy) -> str:
    """Where a breach starts climbing; a policy whose ladder the rules refuse must not
    stop the scan, so it starts at the ladder's foot (or the department head)."""
    try:
        return rules.first_rung(facts, policy)
    except rules.RuleViolation as error:
        log.warning("escalation policy refused (%s); starting at the first rung", error)
        return policy.escalation.ladder[0] if policy.escalation.ladder else "department_head"


def _safe_round_clocks(facts: TicketFacts, departments, start: dt.datetime, estate: str, round: int) -> list[Deadline]:
    """The round's clocks; facts the rules refuse (an appointment or agreed reply time
    that has passed by the time the form arrives) fall back to the policy's defaults
    instead of blocking the form."""
    policy = _policy(estate)
    calendar = service.directory.calendar_for(estate)
    try:
        return rules.start_round_clocks(facts, departments, start, policy, calendar, round)
    except rules.RuleViolation as error:
        log.warning("clock facts refused (%s); using the policy's defaults", error)
        fallback = replace(facts, reply_agreed_by=None)
        if facts.repair_class is RepairClass.appointment:
            fallback = replace(fallback, repair_class=RepairClass.general, appointment_at=None)
        return rules.start_round_clocks(fallback, departments, start, policy, calendar, round)


async def _open_lines(session: AsyncSession, ticket_id: str, departments, round: int, at: dt.datetime,
                      by: str, arrival_required: set[str], estate: str, transferred_from: str | None = None) -> dict[str, int]:
    ids = {}
    for department in departments:
        ids[department] = (
            await session.execute(
                sa.insert(A).values(
                    ticket_id=ticket_id, round=round, department=department, estate=estate, assigned_at=at,
                    assigned_by=by, arrival_required=department in arrival_required, transferred_from=transferred_from,
                    notes=[],
                ).returning(A.c.id)
            )
        ).scalar_one()
    return ids


async def _store_clocks(session: AsyncSession, ticket_id: str, estate: str, round: int, deadlines: list[Deadline],
                        line_ids: dict[str, int], facts: TicketFacts, policy: Policy, started_at: dt.datetime) -> None:
    rows = []
    for d in deadlines:
        rows.append(dict(
            ticket_id=ticket_id, estate=estate, round=round, clock=d.clock, department=d.department or "",
            assignment_id=line_ids.get(d.department) if d.department else None, due_at=d.due_at,
            provisional=d.provisional, started_at=started_at,
            working_days=None if d.department else rules.working_days_of(d.clock, facts, policy, round),
        ))
    if rows:
        await session.execute(sa.insert(D), rows)


async def _settled(session: AsyncSession, row, settled_at: dt.datetime, outcome: ClockOutcome) -> None:
    """Publish dispatch's verdict on one clock (RULES §1, §2 clocks): the one fact the
    on-time figures of analytics count, emitted once per clock."""
    await service.emit(
        session,
        ClockSettled(ticket_id=row.ticket_id, clock_id=row.id, round=row.round, clock=row.clock,
                     department=_dept(row.department), due_at=row.due_at, settled_at=settled_at, outcome=outcome),
        estate=row.estate, actor=SYSTEM, time=settled_at,
    )


async def _close_clocks(session: AsyncSession, now: dt.datetime, outcome: str, *where) -> list[int]:
    """Close open clocks (met, superseded or cancelled) and resolve their escalations; a
    clock not breached yet is settled now (`rules.clock_verdict`: late is breached)."""
    rows = (
        await session.execute(
            sa.update(D).where(D.c.met_at.is_(None), *where).values(met_at=now, outcome=outcome)
            .returning(D.c.id, D.c.ticket_id, D.c.estate, D.c.round, D.c.clock, D.c.department, D.c.due_at,
                       D.c.breached_at)
        )
    ).all()
    for row in rows:
        if row.breached_at is None:  # a breached clock was settled when it ran out
            await _settled(session, row, now, rules.clock_verdict(row.due_at, None, now, outcome))
    ids = [row.id for row in rows]
    if ids:
        await session.execute(
            sa.update(E).where(E.c.deadline_id.in_(ids), E.c.resolved_at.is_(None)).values(resolved_at=now, next_at=None)
        )
    return ids


async def _open_progress_week(session: AsyncSession, ticket_id: str, estate: str, round: int, kind: str,
                              opened_at: dt.datetime, at: dt.datetime) -> Deadline | None:
    """Start the progress-update clock of the week holding `at` (complaints only)."""
    week = rules.progress_clock(kind, opened_at, at, _policy(estate))
    if week is None:
        return None
    start, deadline = week
    await session.execute(sa.insert(D).values(
        ticket_id=ticket_id, estate=estate, round=round, clock=deadline.clock, department="", assignment_id=None,
        due_at=deadline.due_at, provisional=False, started_at=start, working_days=None,
    ))
    return deadline


async def _count_progress_update(session: AsyncSession, form, at: dt.datetime) -> None:
    """An update given to the owner counts towards its week; the week is met once it has
    them all, and the next week's clock starts (RULES §2 Progress updates)."""
    week = (await session.execute(
        sa.select(D).where(D.c.ticket_id == form.ticket_id, D.c.clock == Clock.progress_update.value,
                           D.c.met_at.is_(None), D.c.breached_at.is_(None), D.c.started_at <= at, D.c.due_at > at)
        .with_for_update()
    )).first()
    if week is None:
        return
    updates = (await session.execute(
        sa.select(store.progress_log.c.updated_at).where(store.progress_log.c.ticket_id == form.ticket_id)
    )).scalars().all()
    if rules.progress_week_met(week.started_at, week.due_at, updates, _policy(form.estate)):
        await _close_clocks(session, at, "met", D.c.id == week.id)
        await _open_progress_week(session, form.ticket_id, form.estate, week.round, form.kind, form.accepted_at,
                                  week.due_at)


async def _resolve_ticket_escalations(session: AsyncSession, ticket_id: str, now: dt.datetime) -> None:
    await session.execute(
        sa.update(E).where(E.c.ticket_id == ticket_id, E.c.resolved_at.is_(None)).values(resolved_at=now, next_at=None)
    )


async def _escalate(session: AsyncSession, *, ticket_id: str, estate: str, round: int, rung: str, reason: str,
                    now: dt.datetime, policy: Policy, deadline_id: int | None = None, clock: str | None = None,
                    department: str | None = None, nonconformity: bool = False, climbs: bool = True,
                    actor: str = SYSTEM) -> None:
    await session.execute(
        sa.insert(E).values(
            ticket_id=ticket_id, estate=estate, round=round, deadline_id=deadline_id, clock=clock,
            department=department, rung=rung, reason=reason, nonconformity=nonconformity, escalated_at=now,
            next_at=rules.next_escalation_at(now, policy) if climbs and deadline_id is not None else None,
        )
    )
    await service.emit(
        session,
        Escalated(ticket_id=ticket_id, round=round, rung=rung, reason=reason, clock=clock,
                  nonconformity=nonconformity, department=department),
        estate=estate, actor=actor, time=now,
    )
    escalations_total.labels(estate, rung).inc()


async def _form(session: AsyncSession, estate: str, ticket_id: str, lock: bool = False):
    query = sa.select(F).where(F.c.ticket_id == ticket_id, F.c.estate == estate)
    if lock:
        query = query.with_for_update()
    form = (await session.execute(query)).first()
    if form is None:
        raise RuleViolation(f"no countersign form for ticket {ticket_id!r} in estate {estate!r}", status=404)
    return form


async def _active_lines(session: AsyncSession, ticket_id: str, round: int):
    return (
        await session.execute(
            sa.select(A).where(A.c.ticket_id == ticket_id, A.c.round == round, A.c.transferred_at.is_(None))
            .order_by(A.c.id)
        )
    ).all()


def _progress(line) -> rules.DepartmentProgress:
    return rules.DepartmentProgress(
        department=line.department, status=LineState(line.status), arrival_required=line.arrival_required,
        acknowledged_by=line.acknowledged_by, acknowledged_at=line.acknowledged_at, arrived_by=line.arrived_by,
        arrived_at=line.arrived_at, opinion=line.opinion, result=line.result, signed_by=line.signed_by,
        verified_by=line.verified_by, signed_at=line.signed_at, verified_at=line.signed_back_at,
    )


def _round_state(lines, round: int, acting: str | None = None) -> rules.FormRound:
    """The round as the rules see it; `assigned_at` is the acting department's line's."""
    assigned = [l.assigned_at for l in lines if acting is None or l.department == acting] or [l.assigned_at for l in lines]
    return rules.FormRound(round=round, assigned_at=min(assigned), departments=tuple(_progress(l) for l in lines))


def _line(lines, department: str):
    for line in lines:
        if line.department == department:
            return line
    raise RuleViolation(f"department {department} holds no open line of this form's current round", status=409)


def _expect_in_handling(form) -> None:
    if form.status == S.invalid:
        raise RuleViolation("handling ended: the complaint was judged invalid", status=409)
    if form.status == S.awaiting_approval:
        raise RuleViolation(f"round {form.round} is signed back and waits for the nonconformity record's approval",
                            status=409)
    if form.status in (S.completed, S.closed):
        raise RuleViolation(f"round {form.round} of this form is already {form.status}", status=409)


def _acts_for(who: Principal, estate: Estate, department: str) -> None:
    """Department staff act for their own department (token claim or directory entry);
    its head too; customer service acts for customer service."""
    if who.has_role("company_admin") or department in who.departments:
        return
    member = next((s for s in estate.staff if s.id == who.staff_id), None)
    if member is not None and member.department == department:
        return
    if any(d.code == department and d.head == who.staff_id for d in estate.departments):
        return
    if department == "customer_service" and who.has_role("customer_service", "customer_service_supervisor"):
        return
    raise RuleViolation(f"{who.staff_id} does not act for department {department}", status=403)


def _heads(estate: Estate, department: str) -> set[str]:
    """Who heads `department`: the head the directory names, and any staff member of that
    department holding the department_head role."""
    heads = {d.head for d in estate.departments if d.code == department and d.head}
    return heads | {s.id for s in estate.staff if s.department == department and "department_head" in s.roles}


def _is_head(who: Principal, estate: Estate, department: str) -> bool:
    heads = _heads(estate, department)
    # The directory names no head: a department head acting for the department will do.
    return who.staff_id in heads or (not heads and who.has_role("department_head"))


def _check_head(who: Principal, estate: Estate, department: str) -> None:
    """The department head verifies a sign-back in person (RULES §2 Sign-back): 403 otherwise."""
    if not _is_head(who, estate, department):
        raise RuleViolation(
            f"{who.staff_id} is not the head of department {department}; the department head verifies the sign-back",
            status=403,
        )


def _check_named_head(estate: Estate, department: str, verified_by: str) -> None:
    """An integration's sign-back naming a `verified_by` who does not head the department: 403."""
    if verified_by not in _heads(estate, department):
        raise RuleViolation(
            f"{verified_by!r} is not the head of department {department}; the department head verifies the sign-back",
            status=403,
        )


def _check_department(estate: Estate, department: str) -> None:
    codes = estate.department_codes()
    if codes and department not in codes:
        raise RuleViolation(f"estate {estate.code} has no department {department!r} (it has: {', '.join(codes)})", status=422)


# --- consumers ------------------------------------------------------------------------------


def _route(facts: TicketFacts, estate: Estate | None) -> list[str]:
    """The estate's own routing table first; the defaults when none of its lines matches
    (an estate need only write down where it differs)."""
    if estate and estate.routing_rules:
        try:
            return rules.route(facts, rules.routing_rules_from_data(estate.routing_rules), default_departments=())
        except rules.RuleViolation as error:
            log.info("estate %s routing: %s; using the default table", estate.code, error)
    return rules.route(facts)


@service.consumer("accepted", description="Route the accepted form, open its ledger lines and start its clocks.")
async def on_accepted(session: AsyncSession, event: CloudEvent) -> None:
    accepted: Accepted = event.payload()
    if (await session.execute(sa.select(F.c.ticket_id).where(F.c.ticket_id == accepted.ticket_id))).first():
        return  # already routed (a re-publish under a new event id)
    estate = service.directory.estate(event.estate)
    policy = _policy(event.estate)
    now = service.clock.now()
    facts = TicketFacts.from_accepted(accepted)
    departments = rules.departments_in_estate(_route(facts, estate), estate.department_codes() if estate else [])
    start = accepted.received_at
    deadlines = _safe_round_clocks(facts, departments, start, event.estate, 1)
    arrival_required = {d.department for d in deadlines if d.clock == Clock.arrival}

    await session.execute(
        sa.insert(F).values(
            ticket_id=accepted.ticket_id, estate=event.estate, form_number=accepted.form_number,
            kind=accepted.kind, category=accepted.category, repair_class=accepted.repair_class,
            reply_method=accepted.reply_method, first_contact=accepted.first_contact,
            facts=accepted.model_dump(mode="json"), round=1, status=S.in_handling,
            accepted_at=accepted.received_at, updated_at=now,
        )
    )
    line_ids = await _open_lines(session, accepted.ticket_id, departments, 1, now, SYSTEM, arrival_required, event.estate)
    await _store_clocks(session, accepted.ticket_id, event.estate, 1, deadlines, line_ids, facts, policy, start)
    week = await _open_progress_week(session, accepted.ticket_id, event.estate, 1, accepted.kind, start, start)
    deadlines = deadlines + ([week] if week else [])
    await service.emit(
        session,
        Assigned(ticket_id=accepted.ticket_id, round=1, departments=departments, assigned_by=SYSTEM, deadlines=deadlines),
        estate=event.estate, actor=SYSTEM, time=now,
    )
    # RULES §2 Escalation by subject: straight to the estate director, not on a breach.
    rung = _first_rung(facts, policy)
    if facts.kind is Kind.complaint and facts.about_role in policy.escalation.subject_roles:
        await _escalate(session, ticket_id=accepted.ticket_id, estate=event.estate, round=1, rung=rung, now=now,
                        policy=policy, reason=f"complaint about {facts.about_role} goes to the {rung}")
    # RULES §2 Economic loss: a nonconformity record for the management representative.
    if rules.needs_nonconformity(accepted.owner_loss_cny, policy):
        record = rules.open_nonconformity(
            accepted.ticket_id, f"owner's loss of {accepted.owner_loss_cny} CNY: {accepted.description}",
            accepted.first_contact, now, accepted.owner_loss_cny,
        )
        await _insert_nonconformity(session, record, event.estate)
        approver = policy.escalation.nonconformity_approver_role
        await _escalate(
            session, ticket_id=accepted.ticket_id, estate=event.estate, round=1, rung=approver, now=now, policy=policy,
            nonconformity=True,
            reason=f"owner's loss {accepted.owner_loss_cny} CNY exceeds {policy.escalation.nonconformity_loss_cny} CNY: "
                   f"nonconformity record awaits the {approver}'s approval",
        )


@service.consumer("validity_judged", description="An invalid complaint (confirmed by a manager) ends its handling: "
                  "its clocks are cancelled and no breach follows.")
async def on_validity_judged(session: AsyncSession, event: CloudEvent) -> None:
    judged: ValidityJudged = event.payload()
    form = await _form_or_retry(session, event.estate, judged.ticket_id)
    now = service.clock.now()
    if judged.valid:
        await session.execute(sa.update(F).where(F.c.ticket_id == form.ticket_id).values(validity="valid", updated_at=now))
        return
    await session.execute(
        sa.update(F).where(F.c.ticket_id == form.ticket_id).values(validity="invalid", status=S.invalid, updated_at=now)
    )
    await _close_clocks(session, now, "cancelled", D.c.ticket_id == form.ticket_id)
    await _resolve_ticket_escalations(session, form.ticket_id, now)


@service.consumer("reopened", description="The owner was not satisfied: a new round with fresh clocks.")
async def on_reopened(session: AsyncSession, event: CloudEvent) -> None:
    reopened: Reopened = event.payload()
    form = await _form_or_retry(session, event.estate, reopened.ticket_id)
    if reopened.round <= form.round:
        log.info("round %s of %s already started", reopened.round, reopened.ticket_id)
        return
    now = service.clock.now()
    start = event.time
    policy = _policy(event.estate)
    facts = _facts(form)
    departments = list(dict.fromkeys(reopened.departments)) or [
        line.department for line in await _active_lines(session, form.ticket_id, form.round)
    ]
    if not departments:
        estate = service.directory.estate(event.estate)
        departments = rules.departments_in_estate(_route(facts, estate), estate.department_codes() if estate else [])
    # The callback that found the owner unsatisfied ends the old round's tracking; every
    # other clock of it gives way to the new round's.
    await _close_clocks(session, start, "met", D.c.ticket_id == form.ticket_id, D.c.clock.in_(_met_by(Step.called_back)))
    await _close_clocks(session, now, "superseded", D.c.ticket_id == form.ticket_id)
    await _resolve_ticket_escalations(session, form.ticket_id, now)
    deadlines = _safe_round_clocks(facts, departments, start, event.estate, reopened.round)
    arrival_required = {d.department for d in deadlines if d.clock == Clock.arrival}
    line_ids = await _open_lines(session, form.ticket_id, departments, reopened.round, now, reopened.reopened_by,
                                 arrival_required, event.estate)
    await _store_clocks(session, form.ticket_id, event.estate, reopened.round, deadlines, line_ids, facts, policy, start)
    week = await _open_progress_week(session, form.ticket_id, event.estate, reopened.round, form.kind,
                                     form.accepted_at, start)
    deadlines = deadlines + ([week] if week else [])
    await session.execute(
        sa.update(F).where(F.c.ticket_id == form.ticket_id)
        .values(round=reopened.round, status=S.in_handling, completed_at=None, updated_at=now)
    )
    await service.emit(
        session,
        Assigned(ticket_id=form.ticket_id, round=reopened.round, departments=departments,
                 assigned_by=reopened.reopened_by, deadlines=deadlines),
        estate=event.estate, actor=reopened.reopened_by, time=now,
    )


@service.consumer("progress_updated", description="The owner heard from us: the reply clock is met; the update is "
                  "logged for the twice-a-week rule.")
async def on_progress_updated(session: AsyncSession, event: CloudEvent) -> None:
    update = event.payload()
    form = await _form_or_retry(session, event.estate, update.ticket_id)
    await session.execute(
        sa.insert(store.progress_log).values(
            ticket_id=form.ticket_id, estate=event.estate, updated_at=event.time, method=update.method,
            updated_by=update.updated_by,
        )
    )
    await _close_clocks(session, event.time, "met", D.c.ticket_id == form.ticket_id, D.c.round == form.round,
                        D.c.clock.in_(_met_by(Step.owner_updated)))
    await _count_progress_update(session, form, event.time)


@service.consumer("closed", description="The ticket is closed (the callback found the owner satisfied): tracking is "
                  "met, nothing else is owed.")
async def on_closed(session: AsyncSession, event: CloudEvent) -> None:
    closed = event.payload()
    now = service.clock.now()
    await _close_clocks(session, event.time, "met", D.c.ticket_id == closed.ticket_id,
                        D.c.clock.in_(_met_by(Step.called_back)))
    await _close_clocks(session, now, "cancelled", D.c.ticket_id == closed.ticket_id)
    await _resolve_ticket_escalations(session, closed.ticket_id, now)
    await session.execute(
        sa.update(F).where(F.c.ticket_id == closed.ticket_id, F.c.status != S.invalid).values(status=S.closed, updated_at=now)
    )


async def _form_or_retry(session: AsyncSession, estate: str, ticket_id: str):
    """Each event has its own consumer, so one about a form whose `accepted` is still on
    its way is retried (the bus backs off and redelivers); an event about a ticket this
    service never routed ends as a dead letter."""
    form = (await session.execute(sa.select(F).where(F.c.ticket_id == ticket_id).with_for_update())).first()
    if form is None:
        raise LookupError(f"form {ticket_id} of estate {estate} not routed yet; retrying")
    return form


# --- the clocks: breaches, escalation ladder, provisional recompute ----------------------------


@service.periodic("sla-scan", every_seconds=1.0)
async def scan_clocks() -> int:
    """Fire every due clock once, then climb the ladder for breaches still unresolved."""
    fired = 0
    while True:
        batch = await _breach_batch()
        fired += batch
        if batch < SCAN_BATCH:
            break
    while await _climb_batch() >= SCAN_BATCH:
        pass
    return fired


async def _breach_batch() -> int:
    now = service.clock.now()
    async with service.db.transaction() as session:
        due = (
            await session.execute(
                sa.select(D, F.c.facts, F.c.kind, F.c.accepted_at, F.c.status)
                .join(F, F.c.ticket_id == D.c.ticket_id)
                .where(D.c.met_at.is_(None), D.c.breached_at.is_(None), D.c.due_at < now,
                       F.c.status.in_((S.in_handling, S.awaiting_approval, S.completed)))
                .order_by(D.c.due_at)
                .limit(SCAN_BATCH)
                .with_for_update(of=D, skip_locked=True)
            )
        ).all()
        for row in due:
            policy = _policy(row.estate)
            facts = TicketFacts.from_accepted(Accepted.model_validate(row.facts))
            department = _dept(row.department)
            await session.execute(sa.update(D).where(D.c.id == row.id).values(breached_at=now))
            await _settled(session, row, now, ClockOutcome.breached)
            await service.emit(
                session,
                SlaBreached(ticket_id=row.ticket_id, round=row.round, clock=row.clock, due_at=row.due_at,
                            department=department, provisional=row.provisional),
                estate=row.estate, actor=SYSTEM, time=now,
            )
            breaches_total.labels(row.estate, row.clock).inc()
            if row.clock == Clock.progress_update.value:
                # A week that ended short is missed (counted, shown on the form); the duty
                # goes on with the next week. It does not climb the escalation ladder.
                if row.status == S.in_handling:
                    await _open_progress_week(session, row.ticket_id, row.estate, row.round, row.kind,
                                              row.accepted_at, row.due_at)
                continue
            due_local = row.due_at.astimezone(service.directory.timezone_for(row.estate))
            await _escalate(
                session, ticket_id=row.ticket_id, estate=row.estate, round=row.round,
                rung=_first_rung(facts, policy), now=now, policy=policy, deadline_id=row.id, clock=row.clock,
                department=department,
                reason=f"{row.clock} clock{' of ' + department if department else ''} ran out at "
                       f"{due_local:%Y-%m-%d %H:%M}",
            )
    return len(due)


async def _climb_batch() -> int:
    now = service.clock.now()
    async with service.db.transaction() as session:
        waiting = (
            await session.execute(
                sa.select(E, D.c.met_at.label("deadline_met_at"))
                .join(D, D.c.id == E.c.deadline_id)
                .where(E.c.next_at.is_not(None), E.c.next_at <= now, E.c.resolved_at.is_(None))
                .order_by(E.c.next_at)
                .limit(SCAN_BATCH)
                .with_for_update(of=E, skip_locked=True)
            )
        ).all()
        for row in waiting:
            if row.deadline_met_at is not None:
                await session.execute(sa.update(E).where(E.c.id == row.id).values(resolved_at=now, next_at=None))
                continue
            policy = _policy(row.estate)
            await session.execute(sa.update(E).where(E.c.id == row.id).values(next_at=None))
            try:
                rung = rules.next_rung(row.rung, policy)
            except rules.RuleViolation:  # the ladder changed under it: it stays where it is
                rung = None
            if rung is None:
                continue
            await _escalate(
                session, ticket_id=row.ticket_id, estate=row.estate, round=row.round, rung=rung, now=now,
                policy=policy, deadline_id=row.deadline_id, clock=row.clock, department=row.department,
                reason=f"{row.clock} breach still unresolved after {policy.escalation.minutes_per_rung} min "
                       f"with the {row.rung}",
            )
    return len(waiting)


@on_calendar_change(service, "provisional-recompute")
async def recompute_provisional() -> int:
    """On every change of the company's calendar (a year loaded, a correction, a typhoon
    day off), count every running day clock again from its start — not only the
    provisional ones: a day off added for tomorrow moves today's open reply and tracking
    deadlines too (issue 10). On start-up the same recount picks up a year the `holidays`
    package has learned since."""
    calendar = service.directory.calendar_for("")  # the company's calendar: one for every estate
    changed = 0
    async with service.db.transaction() as session:
        rows = (
            await session.execute(
                sa.select(D).where(D.c.met_at.is_(None), D.c.breached_at.is_(None),
                                   D.c.working_days.is_not(None), D.c.started_at.is_not(None))
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            update = rules.recompute_day_clock(row.started_at, row.working_days, row.due_at, row.provisional,
                                               _policy(row.estate), calendar)
            if update is not None:
                due_at, provisional = update
                await session.execute(sa.update(D).where(D.c.id == row.id).values(due_at=due_at, provisional=provisional))
                changed += 1
    if changed:
        log.info("recomputed %d running day deadlines on the company's calendar", changed)
    return changed


# --- HTTP: the form -------------------------------------------------------------------------------


class DepartmentIn(Contract):
    department: str = Field(min_length=1, max_length=32)


class SignBackIn(DepartmentIn):
    opinion: str = Field(min_length=1, max_length=20000, description="The department's handling opinion")
    result: str = Field(min_length=1, max_length=20000, description="The handling result")
    verified_by: str | None = Field(
        None, min_length=1, max_length=64,
        description="Kept for integrations: when it names the caller, the department's head, the sign-back is "
                    "verified at once; naming another head, the line waits for that head's verification "
                    "(POST .../sign-back/verify)")


class VerifyIn(DepartmentIn):
    pass


class ReturnSignBackIn(DepartmentIn):
    reason: str = Field(min_length=1, max_length=2000, description="Why the head returns the sign-back to the department")


class RescheduleIn(DepartmentIn):
    appointment_at: Instant = Field(description="The new appointment (timezone-aware)")
    note: str = Field(min_length=1, max_length=2000, description="The note left for the owner, and why")


class TransferIn(DepartmentIn):
    from_department: str | None = Field(
        None, max_length=32, description="The department handing it on (default: the caller's own active line)"
    )
    note: str | None = Field(None, max_length=2000)


class LedgerLineOut(BaseModel):
    id: int
    round: int
    department: str
    assigned_at: LocalTime
    assigned_by: str
    transferred_from: str | None
    arrival_required: bool
    status: str
    acknowledged_at: LocalTime | None
    acknowledged_by: str | None
    arrived_at: LocalTime | None
    arrived_by: str | None
    signed_at: LocalTime | None  # the department signed back
    signed_back_at: LocalTime | None  # its head verified: the line counts as signed back
    opinion: str | None
    result: str | None
    signed_by: str | None
    verified_by: str | None
    appointment_at: LocalTime | None
    notes: list[dict]
    transferred_at: LocalTime | None
    transferred_to: str | None
    transferred_by: str | None


class DeadlineOut(BaseModel):
    round: int
    clock: str
    department: str | None
    due_at: LocalTime
    provisional: bool
    met_at: LocalTime | None
    outcome: str | None
    breached_at: LocalTime | None
    verdict: ClockOutcome | None = Field(
        description="Dispatch's verdict (published as clock_settled): met, breached, superseded, cancelled, "
        "rescheduled; null while running")
    overdue: bool
    grace_minutes: int = Field(0, description="Arrival only: the policy's grace included in due_at (emergency 立即)")


class EscalationOut(BaseModel):
    round: int
    rung: str
    reason: str
    clock: str | None
    department: str | None
    nonconformity: bool
    escalated_at: LocalTime
    next_at: LocalTime | None
    resolved_at: LocalTime | None


class NonconformityOut(BaseModel):
    ticket_id: str
    content: str
    owner_loss_cny: Decimal | None
    state: str
    opened_by: str
    opened_at: LocalTime
    approved_by: str | None
    approved_at: LocalTime | None
    corrective_action: str | None
    responsible: str | None
    action_started_at: LocalTime | None
    closed_by: str | None
    closed_at: LocalTime | None
    result: str | None
    capa_report: str | None
    capa_reported_at: LocalTime | None


class ProgressWindowOut(BaseModel):
    start: LocalTime
    end: LocalTime
    updates: int
    required: int


class FormOut(BaseModel):
    ticket_id: str
    estate: str
    form_number: str
    kind: str
    category: str
    repair_class: str | None
    first_contact: str
    round: int
    status: str
    validity: str | None
    accepted_at: LocalTime
    completed_at: LocalTime | None
    departments: list[str] = Field(description="Departments holding an active line in the current round")
    ledger: list[LedgerLineOut]
    deadlines: list[DeadlineOut]
    escalations: list[EscalationOut]
    nonconformity: NonconformityOut | None
    progress_updates: list[LocalTime]
    progress_updates_missing: list[ProgressWindowOut]
    clocks_met: int = Field(description="Clocks met (the on-time figures count the same verdicts)")
    clocks_breached: int = Field(description="Clocks breached: ran out, or stopped after their due time")
    overdue: bool


class FormSummaryOut(BaseModel):
    ticket_id: str
    form_number: str
    kind: str
    category: str
    round: int
    status: str
    departments: list[str]
    accepted_at: LocalTime
    overdue: bool
    next_due_at: LocalTime | None


def _line_status(line) -> str:
    return LineState(line.status).value


def _line_out(line) -> LedgerLineOut:
    data = dict(line._mapping)
    data["status"] = _line_status(line)
    data["notes"] = [_local_note(note) for note in line.notes or []]
    return LedgerLineOut.model_validate(data)


NOTE_TIMES = ("at", "appointment_at", "previous_appointment_at")


def _local_note(note: dict) -> dict:
    """A stored ledger note with its times in the answer's zone, like every other time."""
    return {key: local_iso(dt.datetime.fromisoformat(value)) if key in NOTE_TIMES and value else value
            for key, value in note.items()}


def _deadline_out(row, now: dt.datetime, grace_minutes: int = 0) -> DeadlineOut:
    overdue = row.met_at is None and (row.breached_at is not None or row.due_at < now)
    return DeadlineOut(round=row.round, clock=row.clock, department=_dept(row.department), due_at=row.due_at,
                       provisional=row.provisional, met_at=row.met_at, outcome=row.outcome,
                       breached_at=row.breached_at, overdue=overdue,
                       verdict=rules.clock_verdict(row.due_at, row.breached_at, row.met_at, row.outcome),
                       grace_minutes=grace_minutes if row.clock == Clock.arrival.value else 0)


def _missed_weeks(form, deadlines, update_times: list[dt.datetime]) -> list[ProgressWindowOut]:
    """RULES §2 Progress updates: the weeks dispatch settled as breached (ended short)."""
    required = _policy(form.estate).clocks.progress_updates_per_week
    return [
        ProgressWindowOut(start=d.started_at, end=d.due_at, required=required,
                          updates=sum(d.started_at <= t < d.due_at for t in update_times))
        for d in deadlines if d.clock == Clock.progress_update.value and d.breached_at is not None
    ]


async def _form_out(session: AsyncSession, form) -> FormOut:
    now = service.clock.now()
    lines = (await session.execute(sa.select(A).where(A.c.ticket_id == form.ticket_id).order_by(A.c.id))).all()
    deadlines = (
        await session.execute(sa.select(D).where(D.c.ticket_id == form.ticket_id).order_by(D.c.round, D.c.due_at, D.c.id))
    ).all()
    escalations = (
        await session.execute(sa.select(E).where(E.c.ticket_id == form.ticket_id).order_by(E.c.id))
    ).all()
    nonconformity = (
        await session.execute(sa.select(store.nonconformities).where(store.nonconformities.c.ticket_id == form.ticket_id))
    ).first()
    updates = (
        await session.execute(
            sa.select(store.progress_log.c.updated_at).where(store.progress_log.c.ticket_id == form.ticket_id)
            .order_by(store.progress_log.c.updated_at)
        )
    ).scalars().all()
    grace = rules.arrival_grace_minutes(
        TicketFacts(kind=form.kind, repair_class=form.repair_class), _policy(form.estate))
    deadlines_out = [_deadline_out(d, now, grace) for d in deadlines]
    missing = _missed_weeks(form, deadlines, list(updates))
    return FormOut(
        ticket_id=form.ticket_id, estate=form.estate, form_number=form.form_number, kind=form.kind,
        category=form.category, repair_class=form.repair_class, first_contact=form.first_contact, round=form.round,
        status=form.status, validity=form.validity, accepted_at=form.accepted_at, completed_at=form.completed_at,
        departments=[l.department for l in lines if l.round == form.round and l.transferred_at is None],
        ledger=[_line_out(l) for l in lines],
        deadlines=deadlines_out,
        escalations=[EscalationOut.model_validate(dict(e._mapping)) for e in escalations],
        nonconformity=NonconformityOut.model_validate(dict(nonconformity._mapping)) if nonconformity else None,
        progress_updates=list(updates),
        progress_updates_missing=missing,
        clocks_met=sum(d.verdict is ClockOutcome.met for d in deadlines_out),
        clocks_breached=sum(d.verdict is ClockOutcome.breached for d in deadlines_out),
        overdue=any(d.overdue for d in deadlines_out),
    )


@service.http.get("/estates/{estate}/forms/{ticket_id}", response_model=FormOut, tags=["forms"])
async def get_form(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> FormOut:
    """The countersign form: its ledger lines per department, every deadline (with its
    provisional flag), escalations, nonconformity record and updates given to the owner."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        return await _form_out(session, await _form(session, estate, ticket_id))


@service.http.get("/estates/{estate}/forms", response_model=list[FormSummaryOut], tags=["forms"])
async def list_forms(
    estate: str,
    department: str | None = Query(None, max_length=32, description="Only forms with an active line of this department"),
    status: Literal["open", "overdue", "completed", "closed", "invalid", "all"] = Query(
        "open", description="open: in handling (for `department`: its line not yet signed back); overdue: an open "
        "clock has run out, or a long-running complaint lacks owner updates"),
    limit: int = Query(200, ge=1, le=1000),
    who: Principal = Depends(require_estate),
) -> list[FormSummaryOut]:
    """A department's (or the estate's) work list."""
    known_estate(service, estate)
    now = service.clock.now()
    query = sa.select(F).where(F.c.estate == estate).order_by(F.c.accepted_at.desc()).limit(limit)
    if status == "open":
        query = query.where(F.c.status == S.in_handling)
    elif status in (S.completed, S.closed, S.invalid):
        query = query.where(F.c.status == status)
    elif status == "overdue":
        late = sa.select(D.c.ticket_id).where(D.c.estate == estate, D.c.met_at.is_(None), D.c.due_at < now)
        # A week of owner updates that ended short is a breached clock like any other.
        query = query.where(F.c.status.in_((S.in_handling, S.completed)), F.c.ticket_id.in_(late))
    if department is not None:
        active = sa.select(A.c.ticket_id).where(
            A.c.estate == estate, A.c.department == department, A.c.transferred_at.is_(None), A.c.round == F.c.round,
            *( [A.c.signed_back_at.is_(None)] if status in ("open", "overdue") else [] ),
        )
        query = query.where(F.c.ticket_id.in_(active))
    out = []
    async with service.db.transaction() as session:
        forms = (await session.execute(query)).all()
        ids = [f.ticket_id for f in forms]
        if not ids:
            return []
        lines = (await session.execute(
            sa.select(A.c.ticket_id, A.c.round, A.c.department).where(A.c.ticket_id.in_(ids), A.c.transferred_at.is_(None))
        )).all()
        open_clocks = (await session.execute(
            sa.select(D.c.ticket_id, D.c.due_at, D.c.breached_at, D.c.department)
            .where(D.c.ticket_id.in_(ids), D.c.met_at.is_(None))
        )).all()
    for form in forms:
        clocks = [c for c in open_clocks if c.ticket_id == form.ticket_id
                  and (department is None or c.department in (department, ""))]
        overdue = any(c.breached_at is not None or c.due_at < now for c in clocks)
        if status == "overdue" and not overdue:
            continue
        out.append(FormSummaryOut(
            ticket_id=form.ticket_id, form_number=form.form_number, kind=form.kind, category=form.category,
            round=form.round, status=form.status, accepted_at=form.accepted_at, overdue=overdue,
            departments=[l.department for l in lines if l.ticket_id == form.ticket_id and l.round == form.round],
            next_due_at=min((c.due_at for c in clocks if c.breached_at is None), default=None),
        ))
    return out


@service.http.post("/estates/{estate}/forms/{ticket_id}/acknowledge", response_model=FormOut, tags=["forms"])
async def acknowledge(estate: str, ticket_id: str, body: DepartmentIn, who: Principal = Depends(require_estate)) -> FormOut:
    """The receiving department signs for the form in the handover ledger (签字确认)."""
    directory_estate = _estate(estate)
    _acts_for(who, directory_estate, body.department)
    now = service.clock.now()
    async with service.db.transaction() as session:
        form = await _form(session, estate, ticket_id, lock=True)
        _expect_in_handling(form)
        lines = await _active_lines(session, ticket_id, form.round)
        line = _line(lines, body.department)
        state = rules.apply_acknowledge(_round_state(lines, form.round, body.department), body.department,
                                        who.staff_id, now)
        await session.execute(sa.update(A).where(A.c.id == line.id).values(
            status=state.progress(body.department).status, acknowledged_at=now, acknowledged_by=who.staff_id))
        await _close_clocks(session, now, "met", D.c.assignment_id == line.id,
                            D.c.clock.in_(_met_by(Step.acknowledged)))
        await service.emit(
            session, Acknowledged(ticket_id=ticket_id, round=form.round, department=body.department,
                                  acknowledged_by=who.staff_id),
            estate=estate, actor=who.staff_id, time=now,
        )
        return await _form_out(session, form)


@service.http.post("/estates/{estate}/forms/{ticket_id}/arrive", response_model=FormOut, tags=["forms"])
async def arrive(estate: str, ticket_id: str, body: DepartmentIn, who: Principal = Depends(require_estate)) -> FormOut:
    """The technician or officer is on site."""
    directory_estate = _estate(estate)
    _acts_for(who, directory_estate, body.department)
    now = service.clock.now()
    async with service.db.transaction() as session:
        form = await _form(session, estate, ticket_id, lock=True)
        _expect_in_handling(form)
        lines = await _active_lines(session, ticket_id, form.round)
        line = _line(lines, body.department)
        state = rules.apply_arrive(_round_state(lines, form.round, body.department), body.department, who.staff_id, now)
        await session.execute(sa.update(A).where(A.c.id == line.id).values(
            status=state.progress(body.department).status, arrived_at=now, arrived_by=who.staff_id))
        await _close_clocks(session, now, "met", D.c.assignment_id == line.id, D.c.clock.in_(_met_by(Step.arrived)))
        await service.emit(
            session, Arrived(ticket_id=ticket_id, round=form.round, department=body.department, arrived_by=who.staff_id,
                             arrived_at=now),
            estate=estate, actor=who.staff_id, time=now,
        )
        return await _form_out(session, form)


@service.http.post("/estates/{estate}/forms/{ticket_id}/sign-back", response_model=FormOut, tags=["forms"])
async def sign_back(estate: str, ticket_id: str, body: SignBackIn, who: Principal = Depends(require_estate)) -> FormOut:
    """The department writes its handling opinion and result (签回); the line waits for its
    head (`awaiting_verify`), who verifies it with POST .../sign-back/verify. A head signing
    back their own department's line verifies it at once. When every assigned department's
    sign-back is verified, the form returns to customer service (`completed`).
    Errors: 403 when the caller does not act for the department or `verified_by` names no
    head of it; 409 out of order. Source: RULES §2 Sign-back; seeds 000 §四, 002 §4.3.1."""
    directory_estate = _estate(estate)
    _acts_for(who, directory_estate, body.department)
    head = _is_head(who, directory_estate, body.department)
    if body.verified_by is not None and not (head and body.verified_by == who.staff_id):
        _check_named_head(directory_estate, body.department, body.verified_by)
    now = service.clock.now()
    async with service.db.transaction() as session:
        form = await _form(session, estate, ticket_id, lock=True)
        _expect_in_handling(form)
        lines = await _active_lines(session, ticket_id, form.round)
        line = _line(lines, body.department)
        state = rules.apply_sign_back(_round_state(lines, form.round, body.department), body.department, body.opinion,
                                      body.result, who.staff_id, who.staff_id if head else None, now)
        entry = state.progress(body.department)
        await session.execute(
            sa.update(A).where(A.c.id == line.id).values(
                status=entry.status, signed_at=now, opinion=entry.opinion, result=entry.result, signed_by=who.staff_id,
                verified_by=entry.verified_by, signed_back_at=entry.verified_at,
            )
        )
        if entry.status is LineState.awaiting_verification:
            await _close_clocks(session, now, "met", D.c.assignment_id == line.id, D.c.clock.in_(_met_by(Step.signed)))
            return await _form_out(session, form)
        await _signed_back(session, form, lines, state, body.department, now, who.staff_id)
        return await _form_out(session, await _form(session, estate, ticket_id))


async def _signed_back(session: AsyncSession, form, lines, state: rules.FormRound, department: str,
                       now: dt.datetime, actor: str) -> None:
    """A verified sign-back: the line's clocks are met, `signed_back` is emitted, and the
    round completes when every department's sign-back is verified."""
    entry = state.progress(department)
    line = _line(lines, department)
    await _close_clocks(session, now, "met", D.c.assignment_id == line.id, D.c.clock.in_(_met_by(Step.signed_back)))
    await service.emit(
        session,
        SignedBack(ticket_id=form.ticket_id, round=form.round, department=department, opinion=entry.opinion,
                   result=entry.result, signed_by=entry.signed_by, verified_by=entry.verified_by),
        estate=form.estate, actor=actor, time=now,
    )
    if rules.round_complete(state):
        nc_state = (await session.execute(sa.select(NC.c.state).where(NC.c.ticket_id == form.ticket_id))).scalar()
        await _complete(session, form, [l.department for l in lines], now, actor,
                        hold=rules.completion_waits_for_approval(nc_state))


@service.http.post("/estates/{estate}/forms/{ticket_id}/sign-back/verify", response_model=FormOut, tags=["forms"])
async def verify_sign_back(estate: str, ticket_id: str, body: VerifyIn,
                           who: Principal = Depends(require_estate)) -> FormOut:
    """The department head verifies the department's sign-back (审核签字): the line is
    signed back (`signed_back` event) and, when every department's is, the form returns to
    customer service. Errors: 403 unless the caller heads the department (the directory's
    head, or a department_head of it); 409 unless the line awaits verification.
    Source: RULES §2 Sign-back; seeds 000 §四, §五.2(2)."""
    directory_estate = _estate(estate)
    _check_head(who, directory_estate, body.department)
    now = service.clock.now()
    async with service.db.transaction() as session:
        form = await _form(session, estate, ticket_id, lock=True)
        _expect_in_handling(form)
        lines = await _active_lines(session, ticket_id, form.round)
        line = _line(lines, body.department)
        state = rules.apply_verify(_round_state(lines, form.round, body.department), body.department, who.staff_id, now)
        await session.execute(sa.update(A).where(A.c.id == line.id).values(
            status=LineState.signed_back, verified_by=who.staff_id, signed_back_at=now))
        await _signed_back(session, form, lines, state, body.department, now, who.staff_id)
        return await _form_out(session, await _form(session, estate, ticket_id))


@service.http.post("/estates/{estate}/forms/{ticket_id}/sign-back/return", response_model=FormOut, tags=["forms"])
async def return_sign_back(estate: str, ticket_id: str, body: ReturnSignBackIn,
                           who: Principal = Depends(require_estate)) -> FormOut:
    """The department head returns the sign-back to the department with a reason (退回):
    opinion and result are cleared, the line is back in work (`arrived`, or `acknowledged`
    when no one was on site) and the reason is kept in the line's notes. Errors: 403 unless
    the caller heads the department; 409 unless the line awaits verification.
    Source: RULES §2 Sign-back; seeds 002 §4.3.1 e."""
    directory_estate = _estate(estate)
    _check_head(who, directory_estate, body.department)
    now = service.clock.now()
    async with service.db.transaction() as session:
        form = await _form(session, estate, ticket_id, lock=True)
        _expect_in_handling(form)
        lines = await _active_lines(session, ticket_id, form.round)
        line = _line(lines, body.department)
        state = rules.apply_return(_round_state(lines, form.round, body.department), body.department, body.reason, now)
        notes = list(line.notes or []) + [{"at": now.isoformat(), "by": who.staff_id, "note": body.reason.strip(),
                                           "returned": True}]
        await session.execute(sa.update(A).where(A.c.id == line.id).values(
            status=state.progress(body.department).status, signed_at=None, opinion=None, result=None, signed_by=None,
            notes=notes))
        return await _form_out(session, form)


# Every department signed back, but the nonconformity record is not approved yet: the
# form is not `completed` (no callback, so the ticket cannot close) until it is.


async def _complete(session: AsyncSession, form, departments: list[str], now: dt.datetime, actor: str,
                    hold: bool = False) -> None:
    await session.execute(
        sa.update(F).where(F.c.ticket_id == form.ticket_id)
        .values(status=S.awaiting_approval if hold else S.completed, completed_at=None if hold else now, updated_at=now)
    )
    # The form is back with customer service: every clock of the round but tracking
    # (which runs to the callback) is settled.
    await _close_clocks(session, now, "met", D.c.ticket_id == form.ticket_id, D.c.round == form.round,
                        D.c.clock.in_(_met_by(Step.completed)))
    await _close_clocks(session, now, "superseded", D.c.ticket_id == form.ticket_id, D.c.round == form.round,
                        D.c.clock != Clock.tracking.value)
    # A nonconformity's escalation to the management representative is resolved only by
    # the approval (approve_nonconformity), not by the departments signing back.
    await session.execute(
        sa.update(E).where(E.c.ticket_id == form.ticket_id, E.c.round == form.round, E.c.resolved_at.is_(None),
                           sa.or_(E.c.clock.is_(None), E.c.clock != Clock.tracking.value), E.c.nonconformity.is_(False))
        .values(resolved_at=now, next_at=None)
    )
    if hold:
        return
    facts = _facts(form)
    await service.emit(
        session,
        Completed(ticket_id=form.ticket_id, round=form.round, kind=facts.kind, repair_class=facts.repair_class,
                  category=facts.category, departments=departments, reply_method=facts.reply_method,
                  first_contact=form.first_contact, completed_at=now),
        estate=form.estate, actor=actor, time=now,
    )


@service.http.post("/estates/{estate}/forms/{ticket_id}/reschedule", response_model=FormOut, tags=["forms"])
async def reschedule(estate: str, ticket_id: str, body: RescheduleIn, who: Principal = Depends(require_estate)) -> FormOut:
    """Owner not at home: a note was left and a new appointment agreed; the arrival clock
    follows the new appointment and the repair slip is due that many hours after it."""
    directory_estate = _estate(estate)
    if not who.has_role("customer_service", "customer_service_supervisor"):
        _acts_for(who, directory_estate, body.department)
    if body.appointment_at.tzinfo is None:
        raise RuleViolation("appointment_at must carry its timezone (e.g. +08:00)", status=422)
    now = service.clock.now()
    if body.appointment_at <= now:
        raise RuleViolation(f"the new appointment {body.appointment_at.isoformat()} is not in the future", status=422)
    policy = _policy(estate)
    async with service.db.transaction() as session:
        form = await _form(session, estate, ticket_id, lock=True)
        _expect_in_handling(form)
        lines = await _active_lines(session, ticket_id, form.round)
        line = _line(lines, body.department)
        if line.arrived_at is not None:
            raise RuleViolation(f"department {body.department} already arrived on site; nothing to reschedule", status=409)
        rows = (await session.execute(
            sa.select(D).where(D.c.assignment_id == line.id, D.c.met_at.is_(None),
                               D.c.clock.in_((Clock.arrival.value, Clock.repair_slip_return.value)))
        )).all()
        moved = rules.reschedule_appointment(
            [Deadline(clock=r.clock, due_at=r.due_at, department=body.department, provisional=r.provisional) for r in rows],
            body.appointment_at, policy, department=body.department,
        )
        # The old clocks end "rescheduled" (a breached one climbs no further rung); the new
        # appointment gets fresh clocks that breach and escalate afresh if it is missed.
        await _close_clocks(session, now, rules.RESCHEDULED, D.c.id.in_([r.id for r in rows]))
        await session.execute(sa.insert(D), [dict(
            ticket_id=row.ticket_id, estate=row.estate, round=row.round, clock=row.clock, department=row.department,
            assignment_id=row.assignment_id, due_at=deadline.due_at, provisional=False, started_at=now,
            working_days=None,
        ) for row, deadline in zip(rows, moved)])
        notes = list(line.notes or []) + [{
            "at": now.isoformat(), "by": who.staff_id, "note": body.note,
            "appointment_at": body.appointment_at.isoformat(), "previous_appointment_at":
                line.appointment_at.isoformat() if line.appointment_at else None,
        }]
        await session.execute(sa.update(A).where(A.c.id == line.id).values(appointment_at=body.appointment_at, notes=notes))
        return await _form_out(session, form)


@service.http.post("/estates/{estate}/forms/{ticket_id}/transfer", response_model=FormOut, tags=["forms"])
async def transfer(estate: str, ticket_id: str, body: TransferIn, who: Principal = Depends(require_estate)) -> FormOut:
    """Hand the form on to another department: a new line in the handover ledger, which
    the receiver must acknowledge in its turn."""
    directory_estate = _estate(estate)
    _check_department(directory_estate, body.department)
    now = service.clock.now()
    policy = _policy(estate)
    async with service.db.transaction() as session:
        form = await _form(session, estate, ticket_id, lock=True)
        _expect_in_handling(form)
        lines = await _active_lines(session, ticket_id, form.round)
        source = body.from_department
        if source is None:
            mine = [l.department for l in lines if l.department in who.departments]
            if len(mine) == 1:
                source = mine[0]
            elif len(lines) == 1:
                source = lines[0].department
            else:
                raise RuleViolation("say which department hands the form on (from_department)", status=422)
        line = _line(lines, source)
        if not who.has_role("customer_service", "customer_service_supervisor"):
            _acts_for(who, directory_estate, source)
        if line.signed_back_at is not None:
            raise RuleViolation(f"department {source} already signed back; it cannot hand the form on", status=409)
        if source == body.department:
            raise RuleViolation(f"department {source} cannot hand the form on to itself", status=409)
        if any(l.department == body.department for l in lines):
            raise RuleViolation(f"department {body.department} already holds this form in round {form.round}", status=409)
        note = [{"at": now.isoformat(), "by": who.staff_id, "note": body.note}] if body.note else []
        require_transition(LineState(line.status), LineState.transferred, f"department {source}'s line")
        await session.execute(
            sa.update(A).where(A.c.id == line.id).values(
                status=LineState.transferred, transferred_at=now, transferred_to=body.department,
                transferred_by=who.staff_id,
                notes=list(line.notes or []) + note,
            )
        )
        await _close_clocks(session, now, "superseded", D.c.assignment_id == line.id)
        facts = _facts(form)
        deadlines = [d for d in _safe_round_clocks(facts, [body.department], now, estate, form.round) if d.department]
        arrival_required = {d.department for d in deadlines if d.clock == Clock.arrival}
        line_ids = await _open_lines(session, ticket_id, [body.department], form.round, now, who.staff_id,
                                     arrival_required, estate, transferred_from=source)
        await _store_clocks(session, ticket_id, estate, form.round, deadlines, line_ids, facts, policy, now)
        await service.emit(
            session,
            Assigned(ticket_id=ticket_id, round=form.round, departments=[body.department], assigned_by=who.staff_id,
                     deadlines=deadlines, transferred_from=source),
            estate=estate, actor=who.staff_id, time=now,
        )
        return await _form_out(session, form)


# --- HTTP: nonconformity record -------------------------------------------------------------------

NC = store.nonconformities


class NonconformityIn(Contract):
    content: str = Field(min_length=1, max_length=20000, description="不合格内容")
    owner_loss_cny: Money | None = Field(None)


class CorrectiveActionIn(Contract):
    action: str = Field(min_length=1, max_length=20000)
    responsible: str = Field(min_length=1, max_length=64)


class CloseNonconformityIn(Contract):
    result: str = Field(min_length=1, max_length=20000)


class CapaReportIn(Contract):
    report: str = Field(min_length=1, max_length=50000, description="纠正/预防措施报告")


def _record(row) -> rules.NonconformityRecord:
    data = dict(row._mapping)
    data.pop("estate")
    data["state"] = rules.NonconformityState(data["state"])
    return rules.NonconformityRecord(**data)


async def _insert_nonconformity(session: AsyncSession, record: rules.NonconformityRecord, estate: str) -> None:
    data = {k: getattr(record, k) for k in NC.c.keys() if k != "estate"}
    data["state"] = record.state.value
    await session.execute(pg_insert(NC).values(estate=estate, **data).on_conflict_do_nothing())


async def _save_nonconformity(session: AsyncSession, record: rules.NonconformityRecord) -> None:
    data = {k: getattr(record, k) for k in NC.c.keys() if k not in ("estate", "ticket_id")}
    data["state"] = record.state.value
    await session.execute(sa.update(NC).where(NC.c.ticket_id == record.ticket_id).values(**data))


async def _nonconformity(session: AsyncSession, estate: str, ticket_id: str):
    await _form(session, estate, ticket_id)
    row = (await session.execute(sa.select(NC).where(NC.c.ticket_id == ticket_id).with_for_update())).first()
    if row is None:
        raise RuleViolation(f"ticket {ticket_id} has no nonconformity record", status=404)
    return row


def _nc_out(record: rules.NonconformityRecord) -> NonconformityOut:
    data = {k: getattr(record, k) for k in NonconformityOut.model_fields}
    data["state"] = record.state.value
    return NonconformityOut.model_validate(data)


MANAGERS = ("estate_director", "customer_service_supervisor", "department_head", "quality_manager")
# Who may ask to approve; whether the caller holds the policy's approver role is checked inside.
NONCONFORMITY_APPROVERS = ("management_representative", "general_manager", *MANAGERS)
DEPARTMENT_ROLES = ("department_staff", "department_head", "duty_staff", "customer_service",
                    "customer_service_supervisor", "estate_director")
# A department's head in the directory may hold any of its department's roles.
HEAD_ROLES = ("department_head", "department_staff", "customer_service", "customer_service_supervisor")


@service.http.get("/estates/{estate}/forms/{ticket_id}/nonconformity", response_model=NonconformityOut, tags=["nonconformity"])
async def get_nonconformity(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> NonconformityOut:
    known_estate(service, estate)
    async with service.db.transaction() as session:
        return _nc_out(_record(await _nonconformity(session, estate, ticket_id)))


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity", status_code=201, response_model=NonconformityOut,
                   tags=["nonconformity"])
async def open_nonconformity(estate: str, ticket_id: str, body: NonconformityIn,
                             who: Principal = Depends(require_estate)) -> NonconformityOut:
    """The estate manager convenes the departments and writes the nonconformity record."""
    known_estate(service, estate)
    now = service.clock.now()
    policy = _policy(estate)
    async with service.db.transaction() as session:
        form = await _form(session, estate, ticket_id, lock=True)
        if (await session.execute(sa.select(NC.c.ticket_id).where(NC.c.ticket_id == ticket_id))).first():
            raise RuleViolation(f"ticket {ticket_id} already has a nonconformity record", status=409)
        record = rules.open_nonconformity(ticket_id, body.content, who.staff_id, now, body.owner_loss_cny)
        await _insert_nonconformity(session, record, estate)
        approver = policy.escalation.nonconformity_approver_role
        await _escalate(session, ticket_id=ticket_id, estate=estate, round=form.round, rung=approver, now=now,
                        policy=policy, nonconformity=True, actor=who.staff_id,
                        reason=f"nonconformity record opened by {who.staff_id}; awaits the {approver}'s approval")
        return _nc_out(record)


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity/approve", response_model=NonconformityOut,
                   tags=["nonconformity"])
async def approve_nonconformity(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> NonconformityOut:
    """Approved by the management representative (管理者代表) only."""
    known_estate(service, estate)
    policy = _policy(estate)
    required = policy.escalation.nonconformity_approver_role
    role = required if who.has_role(required) else (sorted(who.roles)[0] if who.roles else "none")
    now = service.clock.now()
    async with service.db.transaction() as session:
        form = await _form(session, estate, ticket_id, lock=True)
        record = rules.approve_nonconformity(_record(await _nonconformity(session, estate, ticket_id)), who.staff_id,
                                             role, now, policy)
        await _save_nonconformity(session, record)
        # The approval is what the escalation to the management representative waited for.
        await session.execute(
            sa.update(E).where(E.c.ticket_id == ticket_id, E.c.nonconformity.is_(True), E.c.resolved_at.is_(None))
            .values(resolved_at=now, next_at=None)
        )
        if form.status == S.awaiting_approval:  # signed back meanwhile: the form returns to customer service now
            lines = await _active_lines(session, ticket_id, form.round)
            await _complete(session, form, [l.department for l in lines], now, who.staff_id)
        return _nc_out(record)


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity/corrective-action",
                   response_model=NonconformityOut, tags=["nonconformity"])
async def start_corrective_action(estate: str, ticket_id: str, body: CorrectiveActionIn,
                                  who: Principal = Depends(require_estate)) -> NonconformityOut:
    return await _advance_nonconformity(
        estate, ticket_id, who,
        lambda record, now: rules.start_corrective_action(record, body.action, body.responsible, now))


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity/close", response_model=NonconformityOut,
                   tags=["nonconformity"])
async def close_nonconformity(estate: str, ticket_id: str, body: CloseNonconformityIn,
                              who: Principal = Depends(require_estate)) -> NonconformityOut:
    return await _advance_nonconformity(
        estate, ticket_id, who, lambda record, now: rules.close_nonconformity(record, who.staff_id, body.result, now))


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity/capa-report", response_model=NonconformityOut,
                   tags=["nonconformity"])
async def attach_capa_report(estate: str, ticket_id: str, body: CapaReportIn,
                             who: Principal = Depends(require_estate)) -> NonconformityOut:
    """After the review meeting, where needed: the corrective/preventive action report."""
    return await _advance_nonconformity(
        estate, ticket_id, who, lambda record, now: rules.attach_capa_report(record, body.report, now))


async def _advance_nonconformity(estate: str, ticket_id: str, who: Principal, step) -> NonconformityOut:
    """One step of the nonconformity record (corrective action, close, CAPA report)."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        record = step(_record(await _nonconformity(session, estate, ticket_id)), service.clock.now())
        await _save_nonconformity(session, record)
        return _nc_out(record)


# --- HTTP: paid household services and bills --------------------------------------------------------

SI, BILLS = store.service_items, store.bills
CATALOGUE_ROLES = ("estate_director", "customer_service_supervisor", "quality_manager")
BILLING_ROLES = ("department_staff", "department_head", "customer_service", "customer_service_supervisor")


class ServiceItemIO(Contract):
    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    paid: bool
    price_cny: Money | None = Field(None, description="None for a paid item charged case by case")


class ServiceLineIn(Contract):
    code: str = Field(min_length=1, max_length=32)
    quantity: Quantity = Decimal(1)
    agreed_price_cny: Money | None = Field(None)
    agreed_by: list[str] | None = Field(
        None, description="(engineering supervisor, customer-service supervisor) who set an unpublished price"
    )


class MaterialLineIn(Contract):
    name: str = Field(min_length=1, max_length=200)
    quantity: Quantity
    unit_price_cny: Money


class BillIn(Contract):
    ticket_id: str = Field(min_length=1, max_length=64)
    services: list[ServiceLineIn] = Field(default_factory=list)
    materials: list[MaterialLineIn] = Field(default_factory=list)


class SettleIn(Contract):
    channel: str = Field(description="finance_counter or bank_collection; technicians take no cash")


class BillLineOut(BaseModel):
    kind: str
    description: str
    code: str | None
    quantity: Decimal
    unit_price_cny: Decimal
    amount_cny: Decimal
    price_agreed_by: list[str]


class BillOut(BaseModel):
    number: str
    ticket_id: str
    lines: list[BillLineOut]
    services_cny: Decimal
    materials_cny: Decimal
    total_cny: Decimal
    copies: list[str] = Field(description="owner (业户联), finance (财务联), stub (存根联): the same lines on each")
    created_by: str
    created_at: LocalTime
    settled_channel: str | None
    settled_by: str | None
    settled_at: LocalTime | None


def _bill_lines(rows: list[dict]) -> tuple[rules.BillLine, ...]:
    return tuple(
        rules.BillLine(rules.LineKind(r["kind"]), r["description"], Decimal(r["quantity"]), Decimal(r["unit_price_cny"]),
                       r.get("code"), tuple(r.get("price_agreed_by") or ()))
        for r in rows
    )


def _bill_out(row) -> BillOut:
    bill = rules.Bill(row.number, row.ticket_id, _bill_lines(row.lines))
    return BillOut(
        number=row.number, ticket_id=row.ticket_id,
        lines=[BillLineOut(kind=l.kind.value, description=l.description, code=l.code, quantity=l.quantity,
                           unit_price_cny=l.unit_price_cny, amount_cny=l.amount_cny,
                           price_agreed_by=list(l.price_agreed_by)) for l in bill.lines],
        services_cny=bill.services_cny, materials_cny=bill.materials_cny, total_cny=bill.total_cny,
        copies=[c.value for c in bill.copies], created_by=row.created_by, created_at=row.created_at,
        settled_channel=row.settled_channel, settled_by=row.settled_by, settled_at=row.settled_at,
    )


@service.http.get("/estates/{estate}/service-items", response_model=list[ServiceItemIO], tags=["bills"])
async def list_service_items(estate: str, who: Principal = Depends(require_estate)) -> list[ServiceItemIO]:
    """The estate's household-service catalogue (free and paid items)."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        rows = (await session.execute(sa.select(SI).where(SI.c.estate == estate).order_by(SI.c.code))).all()
    return [ServiceItemIO(code=r.code, name=r.name, paid=r.paid, price_cny=r.price_cny) for r in rows]


@service.http.put("/estates/{estate}/service-items", response_model=list[ServiceItemIO], tags=["bills"])
async def put_service_items(estate: str, body: list[ServiceItemIO], who: Principal = Depends(require_estate)) -> list[ServiceItemIO]:
    """Replace the estate's catalogue."""
    known_estate(service, estate)
    codes = [item.code for item in body]
    if len(set(codes)) != len(codes):
        raise RuleViolation("a service item code appears twice", status=422)
    for item in body:
        rules.ServiceItem(item.code, item.name, item.price_cny, item.paid)  # refuses a priced free item
    async with service.db.transaction() as session:
        await session.execute(sa.delete(SI).where(SI.c.estate == estate))
        if body:
            await session.execute(sa.insert(SI), [dict(estate=estate, **item.model_dump()) for item in body])
    return body


@service.http.post("/estates/{estate}/bills", status_code=201, response_model=BillOut, tags=["bills"])
async def create_bill(estate: str, body: BillIn, who: Principal = Depends(require_estate)) -> BillOut:
    """A repair bill for a form: catalogue services and materials bought for the owner,
    in three copies. It is settled through finance, never in cash with the technician."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        await _form(session, estate, body.ticket_id)
        catalogue = {
            r.code: rules.ServiceItem(r.code, r.name, r.price_cny, r.paid)
            for r in (await session.execute(sa.select(SI).where(SI.c.estate == estate))).all()
        }
        lines = []
        for line in body.services:
            item = catalogue.get(line.code)
            if item is None:
                raise RuleViolation(f"no service item {line.code!r} in the estate's catalogue", status=422)
            agreed_by = tuple(line.agreed_by) if line.agreed_by else None
            lines.append(rules.service_line(item, line.quantity, agreed_price_cny=line.agreed_price_cny, agreed_by=agreed_by))
        lines += [rules.material_line(m.name, m.quantity, m.unit_price_cny) for m in body.materials]
        year = now.astimezone(service.directory.timezone_for(estate)).year
        seq = (await session.execute(
            pg_insert(store.bill_sequences).values(estate=estate, year=year, last=1)
            .on_conflict_do_update(index_elements=["estate", "year"], set_={"last": store.bill_sequences.c.last + 1})
            .returning(store.bill_sequences.c.last)
        )).scalar_one()
        bill = rules.make_bill(f"{estate.upper()}-{year}-B{seq:06d}", body.ticket_id, lines)
        stored = [dict(kind=l.kind.value, description=l.description, code=l.code, quantity=str(l.quantity),
                       unit_price_cny=str(l.unit_price_cny), price_agreed_by=list(l.price_agreed_by)) for l in bill.lines]
        await session.execute(sa.insert(BILLS).values(
            number=bill.number, estate=estate, ticket_id=body.ticket_id, lines=stored, total_cny=bill.total_cny,
            created_by=who.staff_id, created_at=now,
        ))
        row = (await session.execute(sa.select(BILLS).where(BILLS.c.number == bill.number))).first()
    return _bill_out(row)


@service.http.get("/estates/{estate}/bills", response_model=list[BillOut], tags=["bills"])
async def list_bills(estate: str, ticket_id: str | None = Query(None, max_length=64),
                     who: Principal = Depends(require_estate)) -> list[BillOut]:
    known_estate(service, estate)
    query = sa.select(BILLS).where(BILLS.c.estate == estate).order_by(BILLS.c.created_at.desc()).limit(500)
    if ticket_id:
        query = query.where(BILLS.c.ticket_id == ticket_id)
    async with service.db.transaction() as session:
        return [_bill_out(r) for r in (await session.execute(query)).all()]


@service.http.get("/estates/{estate}/bills/{number}", response_model=BillOut, tags=["bills"])
async def get_bill(estate: str, number: str, who: Principal = Depends(require_estate)) -> BillOut:
    known_estate(service, estate)
    async with service.db.transaction() as session:
        row = (await session.execute(sa.select(BILLS).where(BILLS.c.estate == estate, BILLS.c.number == number))).first()
    if row is None:
        raise RuleViolation(f"no bill {number!r} in estate {estate!r}", status=404)
    return _bill_out(row)


@service.http.post("/estates/{estate}/bills/{number}/settle", response_model=BillOut, tags=["bills"])
async def settle_bill(estate: str, number: str, body: SettleIn, who: Principal = Depends(require_estate)) -> BillOut:
    """Finance books and collects the bill (finance counter or bank collection)."""
    known_estate(service, estate)
    role = rules.FINANCE_ROLE if rules.FINANCE_ROLE in who.departments else (sorted(who.roles)[0] if who.roles else "none")
    now = service.clock.now()
    async with service.db.transaction() as session:
        row = (await session.execute(
            sa.select(BILLS).where(BILLS.c.estate == estate, BILLS.c.number == number).with_for_update()
        )).first()
        if row is None:
            raise RuleViolation(f"no bill {number!r} in estate {estate!r}", status=404)
        bill = rules.Bill(row.number, row.ticket_id, _bill_lines(row.lines))
        if row.settled_at is not None:
            bill = replace(bill, settlement=rules.Settlement(rules.SettlementChannel(row.settled_channel), row.settled_by,
                                                             row.settled_at))
        settled = rules.settle_bill(bill, body.channel, who.staff_id, role, now)
        await session.execute(sa.update(BILLS).where(BILLS.c.number == number).values(
            settled_channel=settled.settlement.channel.value, settled_by=who.staff_id, settled_at=now,
        ))
        row = (await session.execute(sa.select(BILLS).where(BILLS.c.number == number))).first()
    return _bill_out(row)


# Who may call each write route (RULES §2; printed in the README by `estatedesk roles`).
# Which department a caller acts for, and the policy's approver, are checked inside.
service.write_roles = {
    ("POST", "/estates/{estate}/forms/{ticket_id}/acknowledge"): DEPARTMENT_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/arrive"): DEPARTMENT_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/sign-back"): DEPARTMENT_ROLES,
    # Whether the caller heads that department (the directory's head) is checked inside.
    ("POST", "/estates/{estate}/forms/{ticket_id}/sign-back/verify"): HEAD_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/sign-back/return"): HEAD_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/reschedule"): DEPARTMENT_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/transfer"): DEPARTMENT_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity"): MANAGERS,
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity/approve"): NONCONFORMITY_APPROVERS,
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity/corrective-action"): (*MANAGERS, "management_representative"),
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity/close"): (*MANAGERS, "management_representative"),
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity/capa-report"): (*MANAGERS, "management_representative"),
    ("PUT", "/estates/{estate}/service-items"): CATALOGUE_ROLES,
    ("POST", "/estates/{estate}/bills"): BILLING_ROLES,
    ("POST", "/estates/{estate}/bills/{number}/settle"): ("department_staff", "department_head"),
}


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
from services.dispatch import preview  # noqa: E402,F401  (the console's clock preview, read only)
