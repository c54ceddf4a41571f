"""Callback 回访: every valid complaint and every repair called back; unsatisfied owners
sent round again; opinions without a callback path judged by the recurrence rule;
walk-around visits tallied (RULES §3).

The shell parses events and requests, asks services/callback/rules.py what they mean,
stores the answer and emits events through the outbox. It learns about tickets only from
the lifecycle's events (accepted, validity_judged, assigned, completed, progress_updated)
and never reads another service's tables.

Events of one ticket reach independent consumers in any order and, within a fetched
batch, concurrently: every handler first locks the ticket's row (creating it when the
event is the first news of the ticket), so events of one ticket are applied one at a
time, and each handler copes with facts that have not arrived yet.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import Depends, Query, Response
from prometheus_client import Counter
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import rules, store
from services.callback.rules import CallbackPurpose, CompletionFacts, OpinionFact, PendingCallback
from shared.auth import Principal
from shared.errors import RuleViolation
from shared.limits import Contract, Day
from shared.events import (
    Accepted, Assigned, CallbackDone, CallbackOverdue, CallbackScheduled, Channel, CloudEvent, Closed,
    Completed, Kind, ProgressUpdated, RepairClass, ReplyMethod, Reopened, Severity, Urgency, ValidityJudged,
)
from shared.service import Service, create_http_app, known_estate, require_estate

service = Service(
    "callback", store.metadata, title="Callback 回访",
    description="Callback schedule, records, walk-around visits and recurrence decisions.",
)

T = store.tickets
R = store.rounds
C = store.callbacks
W = store.recurrence_watches
P = store.progress_updates
V = store.visits

SYSTEM = "system"
# The department whose head is the "engineering supervisor" of 004 篇2 六.3 (directory code).
ENGINEERING = "engineering"
# Roles that make callbacks: customer service, and department heads for the repair check.
RECORDING_ROLES = ("customer_service", "customer_service_supervisor", "department_head", "estate_director")
VISITING_ROLES = ("customer_service", "customer_service_supervisor")
# Staff under the walk-around visit obligation (002 §4.5.1: the customer-service centre).
VISIT_OBLIGED_ROLE = "customer_service"
OVERDUE_SCAN_SECONDS = 1.0
RECURRENCE_SCAN_SECONDS = 2.0
SCAN_BATCH = 500

CALLBACKS_REQUIRED = Counter(
    "estatedesk_callbacks_required", "Owner callbacks that RULES §3 requires (scheduled)",
    ["estate", "kind", "department"], registry=service.registry,
)
CALLBACKS_DONE = Counter(
    "estatedesk_callbacks_done", "Required owner callbacks made and recorded",
    ["estate", "kind", "department"], registry=service.registry,
)
CALLBACKS_SATISFIED = Counter(
    "estatedesk_callbacks_satisfied", "Recorded owner callbacks whose owner was satisfied with the result",
    ["estate", "kind", "department"], registry=service.registry,
)


# --- small helpers -------------------------------------------------------------------------


def after_commit(session: AsyncSession, action) -> None:
    """Run `action` only once the transaction commits (a retried handler counts once)."""
    sa.event.listen(session.sync_session, "after_commit", lambda _session: action(), once=True)


def count(counter: Counter, estate: str, kind: str, departments: list[str]) -> None:
    for department in departments or [""]:
        counter.labels(estate, kind, department).inc()


def value(item):
    """Plain strings for the database (enums arrive as StrEnum members)."""
    return getattr(item, "value", item)


def iso(moment: dt.datetime | None, tz: ZoneInfo) -> str | None:
    return moment.astimezone(tz).isoformat() if moment else None


def policy_and_calendar(estate: str):
    return service.directory.policy_for(estate), service.directory.calendar_for(estate)


async def lock_ticket(session: AsyncSession, ticket_id: str, estate: str, seen_at: dt.datetime):
    """The ticket's row, locked for this transaction; created on the first news of it."""
    now = service.clock.now()
    await session.execute(
        pg_insert(T).values(ticket_id=ticket_id, estate=estate, raised_at=seen_at, status="in_handling",
                            current_round=1, departments=[], updated_at=now)
        .on_conflict_do_nothing()
    )
    return (await session.execute(sa.select(T).where(T.c.ticket_id == ticket_id).with_for_update())).one()


async def recurrence_lock(session: AsyncSession, estate: str, wait: bool = True) -> bool:
    """Serialise, per estate, the handlers that feed the recurrence rule (accepted,
    assigned, completed) and its scan: a first opinion's watch and a later opinion's
    facts committed concurrently would otherwise each miss the other. Taken before any
    row lock, so it never deadlocks; it costs one estate's events a few ms each."""
    key = sa.func.hashtext(f"callback-recurrence/{estate}")
    if wait:
        await session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        return True
    return bool((await session.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key)))).scalar())


async def set_ticket(session: AsyncSession, ticket_id: str, **values) -> None:
    await session.execute(sa.update(T).where(T.c.ticket_id == ticket_id).values(updated_at=service.clock.now(), **values))


def repair_supervisor(estate: str) -> str | None:
    found = service.directory.estate(estate)
    for department in found.departments if found else []:
        if department.code == ENGINEERING:
            return department.head
    return None


# --- what the rules decided, written down ------------------------------------------------------


async def schedule(session: AsyncSession, planned: rules.PlannedCallback, *, estate: str, kind: str, category: str,
                   departments: list[str], completed_at: dt.datetime | None, first_contact: str | None) -> None:
    """Store a planned callback and announce it, once (ids are deterministic)."""
    now = service.clock.now()
    assignee = rules.callback_assignee(planned.purpose, first_contact, repair_supervisor(estate))
    in_rate = rules.counts_in_rate(planned.purpose)
    inserted = (
        await session.execute(
            pg_insert(C).values(
                callback_id=planned.callback_id, ticket_id=planned.ticket_id, estate=estate, round=planned.round,
                rule=value(planned.rule), purpose=value(planned.purpose), kind=kind, category=category,
                departments=departments, method=value(planned.method), counts_in_rate=in_rate,
                completed_at=completed_at, due_at=planned.due_at, provisional=planned.provisional,
                assigned_to=assignee, status="pending", scheduled_at=now,
            )
            .on_conflict_do_nothing()
            .returning(C.c.callback_id)
        )
    ).first()
    if inserted is None:
        return
    await service.emit(
        session,
        CallbackScheduled(ticket_id=planned.ticket_id, callback_id=planned.callback_id, round=planned.round,
                          due_at=planned.due_at, method=planned.method, assigned_to=assignee,
                          rule=value(planned.rule), provisional=planned.provisional),
        estate=estate, actor=SYSTEM, time=now,
    )
    if in_rate:
        after_commit(session, lambda: count(CALLBACKS_REQUIRED, estate, kind, departments))


async def cancel_callbacks(session: AsyncSession, where, reason: str) -> None:
    await session.execute(
        sa.update(C).where(where, C.c.status == "pending")
        .values(status="cancelled", cancelled_at=service.clock.now(), cancel_reason=reason)
    )


async def close_ticket(session: AsyncSession, ticket, round_: int, reason: str, satisfied: bool | None, actor: str) -> None:
    now = service.clock.now()
    await set_ticket(session, ticket.ticket_id, status="closed", closed_at=now, closed_round=round_,
                     closed_reason=reason, closed_satisfied=satisfied)
    await session.execute(
        sa.update(R).where(R.c.ticket_id == ticket.ticket_id, R.c.round == round_, R.c.outcome.is_(None))
        .values(outcome="closed", outcome_reason=reason, outcome_at=now, outcome_by=actor)
    )
    await service.emit(
        session, Closed(ticket_id=ticket.ticket_id, round=round_, closed_by=actor, reason=reason, satisfied=satisfied),
        estate=ticket.estate, actor=actor, time=now,
    )


async def reopen_ticket(session: AsyncSession, ticket, outcome: rules.Outcome, departments: list[str], actor: str) -> None:
    now = service.clock.now()
    finished_round = outcome.round - 1
    await set_ticket(session, ticket.ticket_id, status="in_handling", current_round=outcome.round)
    await session.execute(
        sa.update(R).where(R.c.ticket_id == ticket.ticket_id, R.c.round == finished_round, R.c.outcome.is_(None))
        .values(outcome="reopened", outcome_reason=outcome.reason, outcome_at=now, outcome_by=actor)
    )
    await service.emit(
        session,
        Reopened(ticket_id=ticket.ticket_id, round=outcome.round, reason=outcome.reason, reopened_by=actor,
                 departments=departments),
        estate=ticket.estate, actor=actor, time=now,
    )


def facts_of_round(round_row, ticket, complaint_valid: bool | None) -> CompletionFacts:
    return CompletionFacts(
        ticket_id=round_row.ticket_id, kind=Kind(round_row.kind), completed_at=round_row.completed_at,
        round=round_row.round, repair_class=RepairClass(ticket.repair_class) if ticket.repair_class else None,
        reply_method=ReplyMethod(round_row.reply_method), complaint_valid=complaint_valid,
    )


async def plan_midway(session: AsyncSession, ticket, round_: int, starts_at: dt.datetime) -> None:
    """A running special service is called mid-way (001 第9篇 一.3), planned when it starts."""
    if ticket.kind != Kind.special_service or ticket.status == "closed" or not ticket.reply_method:
        return
    completed = (await session.execute(
        sa.select(R.c.round).where(R.c.ticket_id == ticket.ticket_id, R.c.round == round_))).first()
    if completed:  # the service already ended: its end callback covers it
        return
    policy, _ = policy_and_calendar(ticket.estate)
    planned = rules.plan_midway_callback(ticket.ticket_id, starts_at, None, ReplyMethod(ticket.reply_method),
                                         policy, round=round_)
    if planned:
        await schedule(session, planned, estate=ticket.estate, kind=ticket.kind, category=ticket.category or "general",
                       departments=list(ticket.departments), completed_at=None, first_contact=ticket.first_contact)


async def decide_recurrence(session: AsyncSession, estate: str, category_key: str | None) -> None:
    """Apply the recurrence rule to every undecided watch of this estate and category.
    The caller holds recurrence_lock(estate)."""
    if not category_key:
        return
    watches = (await session.execute(
        sa.select(W).where(W.c.estate == estate, W.c.category_key == category_key, W.c.verdict.is_(None))
        .order_by(W.c.completed_at).with_for_update()
    )).all()
    if not watches:
        return
    candidates = (await session.execute(
        sa.select(T.c.ticket_id, T.c.category, T.c.kind, T.c.departments, T.c.raised_at)
        .where(T.c.estate == estate, T.c.category_key == category_key, sa.func.cardinality(T.c.departments) > 0)
    )).all()
    later = [
        OpinionFact(ticket_id=c.ticket_id, category=c.category or "", department=department, estate=estate,
                    raised_at=c.raised_at, kind=Kind(c.kind) if c.kind else None)
        for c in candidates for department in c.departments
    ]
    policy, _ = policy_and_calendar(estate)
    now = service.clock.now()
    for watch in watches:
        firsts = [
            OpinionFact(ticket_id=watch.ticket_id, category=watch.category, department=department, estate=estate,
                        completed_at=watch.completed_at, kind=Kind(watch.kind))
            for department in (watch.departments or [""])
        ]
        verdict, recurring = rules.recurrence_verdict(firsts, later, now, policy)
        if verdict is None:
            continue
        recurring_id = recurring[0].ticket_id if recurring else None
        await session.execute(
            sa.update(W).where(W.c.ticket_id == watch.ticket_id, W.c.round == watch.round)
            .values(verdict=verdict, decided_at=now, recurring_ticket_id=recurring_id)
        )
        ticket = (await session.execute(sa.select(T).where(T.c.ticket_id == watch.ticket_id).with_for_update())).one()
        if ticket.status == "closed":
            continue
        if verdict == "not_satisfied":
            reason = (f"recurrence rule: a same-category opinion ({recurring_id}) in the same department within "
                      f"{policy.callback.recurrence_window_days} days counts as not satisfied")
        else:
            reason = (f"recurrence rule: no same-category opinion in the same department within "
                      f"{policy.callback.recurrence_window_days} days counts as satisfied")
        await close_ticket(session, ticket, watch.round, reason, verdict == "satisfied", SYSTEM)


# --- consumers ---------------------------------------------------------------------------------


@service.consumer("accepted", description="Learn the ticket's kind, category, reply method and first-contact "
                                          "owner; a later opinion may decide an earlier one's recurrence.")
async def on_accepted(session: AsyncSession, event: CloudEvent) -> None:
    accepted: Accepted = event.payload()
    key = rules.recurrence_key(accepted.category)
    await recurrence_lock(session, event.estate)
    ticket = await lock_ticket(session, accepted.ticket_id, event.estate, accepted.received_at)
    # Facts from a `completed` that arrived first are kept; accepted fills in the rest.
    await set_ticket(
        session, accepted.ticket_id,
        form_number=accepted.form_number, channel=value(accepted.channel), owner_id=accepted.owner_id, unit=accepted.unit,
        appointment_at=accepted.appointment_at, raised_at=accepted.received_at, accepted_seen=True,
        kind=sa.func.coalesce(T.c.kind, value(accepted.kind)),
        category=sa.func.coalesce(T.c.category, accepted.category),
        category_key=sa.func.coalesce(T.c.category_key, key),
        repair_class=sa.func.coalesce(T.c.repair_class, value(accepted.repair_class)),
        reply_method=sa.func.coalesce(T.c.reply_method, value(accepted.reply_method)),
        first_contact=sa.func.coalesce(T.c.first_contact, accepted.first_contact),
    )
    ticket = (await session.execute(sa.select(T).where(T.c.ticket_id == accepted.ticket_id))).one()
    if ticket.first_assigned_at:  # `assigned` came first: the service has started
        await plan_midway(session, ticket, ticket.current_round, accepted.appointment_at or ticket.first_assigned_at)
    await decide_recurrence(session, event.estate, ticket.category_key)


@service.consumer("validity_judged", description="Invalid complaints need no callback (RULES §3 Who).")
async def on_validity_judged(session: AsyncSession, event: CloudEvent) -> None:
    judged: ValidityJudged = event.payload()
    ticket = await lock_ticket(session, judged.ticket_id, event.estate, event.time)
    await set_ticket(session, judged.ticket_id, valid=judged.valid, validity_reason=judged.reason)
    if judged.valid:
        return
    closer = judged.confirmed_by or judged.judged_by
    if ticket.status == "in_handling":
        # Dispatch ends the handling of a complaint judged invalid: no `completed` will
        # follow, so its life ends here, in `closed` (archive assembles the form on it).
        await close_ticket(session, ticket, ticket.current_round,
                           f"invalid complaint: handling ended without a callback (RULES §3 Who): {judged.reason}",
                           None, closer)
        return
    # Judged invalid after a round was completed: plan that round again without the
    # complaint callback, cancel what is no longer owed, close if nothing judges it now.
    policy, calendar = policy_and_calendar(event.estate)
    open_rounds = (await session.execute(
        sa.select(R).where(R.c.ticket_id == judged.ticket_id, R.c.outcome.is_(None)))).all()
    for round_row in open_rounds:
        plan = rules.plan_completion(facts_of_round(round_row, ticket, False), policy, calendar)
        still_owed = [p.callback_id for p in plan.callbacks]
        await cancel_callbacks(
            session,
            sa.and_(C.c.ticket_id == judged.ticket_id, C.c.round == round_row.round, C.c.callback_id.not_in(still_owed)),
            f"complaint judged invalid: {judged.reason}",
        )
        if plan.close_now and ticket.status != "closed" and round_row.round == ticket.current_round:
            await close_ticket(session, ticket, round_row.round, plan.close_reason, None, closer)


@service.consumer("assigned", description="Learn which departments handle the ticket (recurrence rule) and plan "
                                          "a special service's mid-way callback.")
async def on_assigned(session: AsyncSession, event: CloudEvent) -> None:
    assigned: Assigned = event.payload()
    await recurrence_lock(session, event.estate)
    ticket = await lock_ticket(session, assigned.ticket_id, event.estate, event.time)
    await set_ticket(
        session, assigned.ticket_id,
        departments=sorted(set(ticket.departments) | set(assigned.departments)),
        first_assigned_at=ticket.first_assigned_at or event.time,
    )
    ticket = (await session.execute(sa.select(T).where(T.c.ticket_id == assigned.ticket_id))).one()
    if assigned.round >= ticket.current_round:
        starts_at = ticket.appointment_at if assigned.round == 1 and ticket.appointment_at else event.time
        await plan_midway(session, ticket, assigned.round, starts_at)
    await decide_recurrence(session, event.estate, ticket.category_key)


@service.consumer("completed", description="Schedule the callbacks the estate's policy asks for, watch an opinion "
                                           "without a callback path, or close what needs no callback.")
async def on_completed(session: AsyncSession, event: CloudEvent) -> None:
    completed: Completed = event.payload()
    estate = event.estate
    key = rules.recurrence_key(completed.category)
    await recurrence_lock(session, estate)
    ticket = await lock_ticket(session, completed.ticket_id, estate, completed.completed_at)
    if ticket.status == "closed" and (ticket.closed_round or 0) >= completed.round:
        return  # a late copy of a round already judged
    fresh = (await session.execute(
        pg_insert(R).values(
            ticket_id=completed.ticket_id, round=completed.round, estate=estate, kind=value(completed.kind),
            category=completed.category, departments=completed.departments,
            reply_method=value(ticket.reply_method if ticket.accepted_seen else completed.reply_method),
            completed_at=completed.completed_at, completed_event_id=event.id,
        ).on_conflict_do_nothing().returning(R.c.round)
    )).first()
    if fresh is None:
        return  # this round was already completed (a re-emitted event): nothing twice
    await set_ticket(
        session, completed.ticket_id,
        kind=sa.func.coalesce(T.c.kind, value(completed.kind)),
        category=sa.func.coalesce(T.c.category, completed.category),
        category_key=sa.func.coalesce(T.c.category_key, key),
        repair_class=sa.func.coalesce(value(completed.repair_class), T.c.repair_class),
        reply_method=sa.func.coalesce(T.c.reply_method, value(completed.reply_method)),
        first_contact=sa.func.coalesce(T.c.first_contact, completed.first_contact),
        departments=sorted(set(ticket.departments) | set(completed.departments)),
        current_round=max(ticket.current_round, completed.round),
    )
    ticket = (await session.execute(sa.select(T).where(T.c.ticket_id == completed.ticket_id))).one()
    round_row = (await session.execute(
        sa.select(R).where(R.c.ticket_id == completed.ticket_id, R.c.round == completed.round))).one()
    policy, calendar = policy_and_calendar(estate)
    plan = rules.plan_completion(facts_of_round(round_row, ticket, ticket.valid), policy, calendar)

    # The service ended: a mid-way call not made yet has nothing left to ask about.
    await cancel_callbacks(
        session, sa.and_(C.c.ticket_id == completed.ticket_id, C.c.rule == rules.CallbackRule.special_service_midway.value),
        "the service ended before its mid-way call was made",
    )
    for planned in plan.callbacks:
        await schedule(session, planned, estate=estate, kind=round_row.kind, category=round_row.category,
                       departments=list(completed.departments), completed_at=completed.completed_at,
                       first_contact=completed.first_contact or ticket.first_contact)
    if plan.judged_by_recurrence:
        first = OpinionFact(ticket_id=completed.ticket_id, category=round_row.category, department="",
                            estate=estate, completed_at=completed.completed_at)
        await session.execute(
            pg_insert(W).values(
                ticket_id=completed.ticket_id, round=completed.round, estate=estate, category=round_row.category,
                category_key=ticket.category_key or key, departments=list(completed.departments), kind=round_row.kind,
                completed_at=completed.completed_at, window_ends_at=rules.window_end(first, policy),
            ).on_conflict_do_nothing()
        )
        await set_ticket(session, completed.ticket_id, status="awaiting_verdict")
        await decide_recurrence(session, estate, ticket.category_key or key)
    elif plan.close_now:
        await close_ticket(session, ticket, completed.round, plan.close_reason, None, SYSTEM)
    else:
        await set_ticket(session, completed.ticket_id, status="awaiting_callback")


@service.consumer("progress_updated", description="Keep the twice-weekly progress updates of long-running "
                                                  "complaints visible on the worklist.")
async def on_progress_updated(session: AsyncSession, event: CloudEvent) -> None:
    update: ProgressUpdated = event.payload()
    await lock_ticket(session, update.ticket_id, event.estate, event.time)
    await session.execute(
        pg_insert(P).values(event_id=event.id, ticket_id=update.ticket_id, estate=event.estate, updated_at=event.time,
                            method=value(update.method), note=update.note, updated_by=update.updated_by)
        .on_conflict_do_nothing()
    )


# --- periodic jobs -----------------------------------------------------------------------------


@service.periodic("overdue-scan", OVERDUE_SCAN_SECONDS)
async def overdue_scan() -> int:
    """Report every callback that passed its due time without being made, once. Rows are
    claimed with FOR UPDATE SKIP LOCKED so replicas never report one twice."""
    now = service.clock.now()
    async with service.db.transaction() as session:
        due = (await session.execute(
            sa.select(C.c.callback_id, C.c.ticket_id, C.c.estate, C.c.round, C.c.due_at)
            .where(C.c.status == "pending", C.c.overdue_at.is_(None), C.c.due_at < now)
            .order_by(C.c.due_at).limit(SCAN_BATCH).with_for_update(skip_locked=True)
        )).all()
        for row in due:
            await session.execute(sa.update(C).where(C.c.callback_id == row.callback_id).values(overdue_at=now))
            await service.emit(
                session, CallbackOverdue(ticket_id=row.ticket_id, callback_id=row.callback_id, round=row.round,
                                         due_at=row.due_at),
                estate=row.estate, actor=SYSTEM, time=now,
            )
    return len(due)


_calendar_seen: dict = {"data": None}


@service.periodic("calendar-recompute", every_seconds=5.0)
async def recompute_on_calendar_change() -> int:
    """On every change of the company's calendar, count every pending complaint callback's
    working-day window again (issue 10: every running deadline follows every change)."""
    data = service.directory.company.calendar
    if _calendar_seen["data"] == data:
        return 0
    changed = 0
    async with service.db.transaction() as session:
        rows = (await session.execute(
            sa.select(C.c.callback_id, C.c.estate, C.c.completed_at, C.c.due_at, C.c.provisional)
            .where(C.c.status == "pending", C.c.overdue_at.is_(None), C.c.rule == rules.CallbackRule.complaint.value,
                   C.c.completed_at.is_not(None))
            .with_for_update(skip_locked=True)
        )).all()
        for row in rows:
            policy, calendar = policy_and_calendar(row.estate)
            update = rules.recompute_complaint_due(row.completed_at, row.due_at, row.provisional, policy, calendar)
            if update is not None:
                await session.execute(sa.update(C).where(C.c.callback_id == row.callback_id)
                                      .values(due_at=update[0], provisional=update[1]))
                changed += 1
    _calendar_seen["data"] = data
    return changed


@service.periodic("recurrence-scan", RECURRENCE_SCAN_SECONDS)
async def recurrence_scan() -> int:
    """Decide the opinions whose recurrence window has elapsed (satisfied unless a
    same-category opinion recurred). A replica that finds the estate busy leaves it for
    its next run."""
    now = service.clock.now()
    async with service.db.transaction() as session:
        keys = (await session.execute(
            sa.select(W.c.estate, W.c.category_key).where(W.c.verdict.is_(None), W.c.window_ends_at <= now)
            .distinct().limit(100)
        )).all()
    for estate, key in keys:
        async with service.db.transaction() as session:
            if await recurrence_lock(session, estate, wait=False):
                await decide_recurrence(session, estate, key)
    return len(keys)


# --- HTTP: worklist and records -------------------------------------------------------------------


def callback_view(row, tz: ZoneInfo, now: dt.datetime, form_number: str | None = None) -> dict:
    pending = row.status == "pending"
    overdue = pending and rules.is_overdue(
        PendingCallback(callback_id=row.callback_id, ticket_id=row.ticket_id, due_at=row.due_at,
                        method=ReplyMethod(row.method), rule=row.rule), now)
    view = {
        "callback_id": row.callback_id,
        "ticket_id": row.ticket_id,
        "form_number": form_number,
        "round": row.round,
        "rule": row.rule,
        "purpose": row.purpose,
        "kind": row.kind,
        "category": row.category,
        "departments": list(row.departments),
        "method": row.method,
        "counts_in_rate": row.counts_in_rate,
        "due_at": iso(row.due_at, tz),
        "provisional": row.provisional,
        "assigned_to": row.assigned_to,
        "status": row.status,
        "overdue": overdue,
        "overdue_by_minutes": int((now - row.due_at).total_seconds() // 60) if overdue else 0,
        "overdue_reported_at": iso(row.overdue_at, tz),
        "scheduled_at": iso(row.scheduled_at, tz),
        "cancel_reason": row.cancel_reason,
        "record": None,
        "outcome": None,
    }
    if row.status == "done":
        view["record"] = {
            "done_at": iso(row.done_at, tz), "done_by": row.done_by, "method": row.record_method,
            "handled_in_time": row.handled_in_time, "result_satisfied": row.result_satisfied,
            "attitude_satisfied": row.attitude_satisfied, "suggestions": row.suggestions,
            "owner_confirmed": row.owner_confirmed, "on_time": row.on_time,
        }
        if row.outcome:
            view["outcome"] = {"event": row.outcome, "round": row.outcome_round, "reason": row.outcome_reason}
    return view


def progress_view(ticket, updates: list[dt.datetime], now: dt.datetime, tz: ZoneInfo, policy) -> dict | None:
    status = rules.weekly_update_status(ticket.raised_at, updates, now, policy)
    if not status.required:
        return None
    return {
        "ticket_id": ticket.ticket_id, "form_number": ticket.form_number, "first_contact": ticket.first_contact,
        "round": ticket.current_round, "opened_at": iso(ticket.raised_at, tz), "updates_total": len(updates),
        "week_start": iso(status.week_start, tz), "week_end": iso(status.week_end, tz),
        "done_this_week": status.done_this_week, "missing_this_week": status.missing_this_week,
        "next_update_due_at": iso(status.next_update_due_at, tz), "overdue": status.overdue,
        "missed_weeks": status.missed_weeks,
    }


async def long_running_complaints(session, estate: str, first_contact: str | None, now: dt.datetime, tz, policy) -> list[dict]:
    """Complaints still in handling past the point where the weekly update rhythm applies."""
    started_before = now - dt.timedelta(days=policy.clocks.progress_updates_after_days)
    query = sa.select(T).where(T.c.estate == estate, T.c.kind == Kind.complaint.value, T.c.status == "in_handling",
                               T.c.raised_at <= started_before)
    if first_contact:
        query = query.where(T.c.first_contact == first_contact)
    tickets = (await session.execute(query.order_by(T.c.raised_at).limit(200))).all()
    if not tickets:
        return []
    updates: dict[str, list[dt.datetime]] = {}
    for row in (await session.execute(
            sa.select(P.c.ticket_id, P.c.updated_at).where(P.c.ticket_id.in_([t.ticket_id for t in tickets])))).all():
        updates.setdefault(row.ticket_id, []).append(row.updated_at)
    views = [progress_view(t, updates.get(t.ticket_id, []), now, tz, policy) for t in tickets]
    return [v for v in views if v]


# --- HTTP: answers -------------------------------------------------------------------------------
# Datetimes in these answers are already strings in the estate's zone (`iso`).


class CallbackRecordOut(BaseModel):
    done_at: str | None = Field(description="When the owner was called back (estate time, ISO 8601)")
    done_by: str | None
    method: str | None
    handled_in_time: bool | None
    result_satisfied: bool | None
    attitude_satisfied: bool | None
    suggestions: str | None
    owner_confirmed: bool | None
    on_time: bool | None


class OutcomeOut(BaseModel):
    event: str = Field(description="closed or reopened")
    round: int | None
    reason: str | None


class CallbackOut(BaseModel):
    """One callback 回访 of a ticket's round (002 §4.4.2), with its record once made."""

    callback_id: str
    ticket_id: str
    form_number: str | None
    round: int
    rule: str = Field(description="The RULES §3 window that set the due time")
    purpose: str
    kind: str
    category: str
    departments: list[str]
    method: str = Field(description="The owner's chosen method")
    counts_in_rate: bool
    due_at: str | None
    provisional: bool
    assigned_to: str | None
    status: str = Field(description="pending, done or cancelled")
    overdue: bool
    overdue_by_minutes: int
    overdue_reported_at: str | None
    scheduled_at: str | None
    cancel_reason: str | None
    record: CallbackRecordOut | None
    outcome: OutcomeOut | None


class ProgressStatusOut(BaseModel):
    """Where a long-running complaint's owner updates stand (2 a week, 002 §4.4.1 b)."""

    ticket_id: str
    form_number: str | None
    first_contact: str | None
    round: int
    opened_at: str | None
    updates_total: int
    week_start: str | None
    week_end: str | None
    done_this_week: int
    missing_this_week: int
    next_update_due_at: str | None
    overdue: bool
    missed_weeks: int


class WorklistOut(BaseModel):
    estate: str
    as_of: str | None
    status: str
    assigned_to: str | None
    overdue_count: int
    callbacks: list[CallbackOut]
    long_running_complaints: list[ProgressStatusOut]


class RecordResultOut(BaseModel):
    duplicate: bool = Field(description="True when the same answers were submitted again (nothing changed)")
    callback: CallbackOut
    outcome: OutcomeOut | None
    attitude_complaint_request: dict | None = Field(
        description="A ready-to-submit intake request for an attitude complaint, when the owner was unhappy "
        "with the handler's attitude only")


@service.http.get("/estates/{estate}/callbacks", response_model=WorklistOut, tags=["callbacks"])
async def worklist(
    estate: str,
    assigned_to: str | None = Query(None, max_length=64, description="staff id; all staff when omitted"),
    status: Literal["pending", "overdue", "done"] = Query("pending", description="pending includes overdue ones"),
    who: Principal = Depends(require_estate),
) -> dict:
    """The callback worklist, most urgent first, overdue items marked, with the method the
    owner chose; plus long-running complaints and where their progress updates stand."""
    known_estate(service, estate)
    now = service.clock.now()
    tz = service.directory.timezone_for(estate)
    policy, _ = policy_and_calendar(estate)
    query = (sa.select(C, T.c.form_number).join(T, T.c.ticket_id == C.c.ticket_id, isouter=True)
             .where(C.c.estate == estate))
    if status == "done":
        query = query.where(C.c.status == "done")
    else:
        query = query.where(C.c.status == "pending")
        if status == "overdue":
            query = query.where(C.c.due_at < now)
    if assigned_to:
        query = query.where(C.c.assigned_to == assigned_to)
    async with service.db.transaction() as session:
        rows = (await session.execute(query.order_by(C.c.due_at).limit(1000))).all()
        long_running = [] if status == "done" else await long_running_complaints(session, estate, assigned_to, now, tz, policy)
    by_id = {row.callback_id: row for row in rows}
    ordered = rules.order_worklist(
        [PendingCallback(callback_id=r.callback_id, ticket_id=r.ticket_id, due_at=r.due_at, method=ReplyMethod(r.method),
                         rule=r.rule, round=r.round, provisional=r.provisional, assigned_to=r.assigned_to) for r in rows],
        now,
    )
    items = [callback_view(by_id[e.item.callback_id], tz, now, by_id[e.item.callback_id].form_number) for e in ordered]
    return {
        "estate": estate, "as_of": iso(now, tz), "status": status, "assigned_to": assigned_to,
        "overdue_count": sum(1 for item in items if item["overdue"]),
        "callbacks": items, "long_running_complaints": long_running,
    }


async def find_callback(session, estate: str, callback_id: str, lock: bool = False):
    query = (sa.select(C, T.c.form_number).join(T, T.c.ticket_id == C.c.ticket_id, isouter=True)
             .where(C.c.estate == estate, C.c.callback_id == callback_id))
    if lock:
        query = query.with_for_update(of=C)
    row = (await session.execute(query)).first()
    if row is None:
        raise RuleViolation(f"no callback {callback_id!r} in estate {estate!r}", status=404)
    return row


@service.http.get("/estates/{estate}/callbacks/{callback_id}", response_model=CallbackOut, tags=["callbacks"])
async def get_callback(estate: str, callback_id: str, who: Principal = Depends(require_estate)) -> dict:
    known_estate(service, estate)
    async with service.db.transaction() as session:
        row = await find_callback(session, estate, callback_id)
    return callback_view(row, service.directory.timezone_for(estate), service.clock.now(), row.form_number)


class RecordIn(Contract):
    """The owner's answers (002 §4.4.2 d) and, when it differs from the planned one, how the call was made."""

    handled_in_time: bool
    result_satisfied: bool
    attitude_satisfied: bool
    suggestions: str = Field("", max_length=5000)
    owner_confirmed: bool = False
    method: ReplyMethod | None = None


def attitude_complaint_request(row, form_number: str | None) -> dict:
    """A new complaint about the handler's attitude (rules.decide_outcome), for the client
    to register at intake: this service never writes another service's data."""
    return {
        "kind": Kind.complaint.value,
        "channel": Channel.phone.value if row.record_method == ReplyMethod.phone.value else Channel.walk_in.value,
        "category": "staff_attitude",
        "description": f"回访时业主对处理态度不满意 (callback {row.callback_id}, form {form_number or row.ticket_id})"
                       + (f": {row.suggestions}" if row.suggestions else ""),
        "reply_method": row.method,
        "client_request_id": f"attitude-{row.callback_id}",
    }


def record_view(row, duplicate: bool) -> dict:
    tz = service.directory.timezone_for(row.estate)
    return {
        "duplicate": duplicate,
        "callback": callback_view(row, tz, service.clock.now(), row.form_number),
        "outcome": {"event": row.outcome, "round": row.outcome_round, "reason": row.outcome_reason} if row.outcome else None,
        "attitude_complaint_request": attitude_complaint_request(row, row.form_number) if row.attitude_complaint else None,
    }


@service.http.post("/estates/{estate}/callbacks/{callback_id}/record", response_model=RecordResultOut,
                   tags=["callbacks"])
async def record_callback(estate: str, callback_id: str, body: RecordIn, who: Principal = Depends(require_estate)) -> dict:
    """Record a callback. Satisfied closes the ticket (`closed`); not satisfied sends it back
    to the handling departments (`reopened`, round + 1). Submitting the same answers again
    returns the first record (200, "duplicate": true) and changes nothing; different
    answers for a recorded callback are refused with 409."""
    return await record_answers(estate, callback_id, body, who.staff_id)


async def record_answers(estate: str, callback_id: str, body: RecordIn, actor: str, *,
                         answered_by_owner: bool = False, check=None) -> dict:
    """Record a callback's answers, by the desk or (`answered_by_owner`) by the owner on
    the owners' page (services/callback/online.py): one path, so both count the same.
    `check(ticket, callback)` may refuse before anything is written."""
    known_estate(service, estate)
    policy, _ = policy_and_calendar(estate)
    async with service.db.transaction() as session:
        # Lock order everywhere: the ticket's row first, then its callbacks.
        ticket_id = (await find_callback(session, estate, callback_id)).ticket_id
        ticket = (await session.execute(sa.select(T).where(T.c.ticket_id == ticket_id).with_for_update())).one()
        row = await find_callback(session, estate, callback_id, lock=True)
        if check is not None:
            check(ticket, row)
        method = ReplyMethod(body.method or row.method)
        rules.check_call_method(method)
        answers = rules.CallbackAnswers(
            handled_in_time=body.handled_in_time, result_satisfied=body.result_satisfied,
            attitude_satisfied=body.attitude_satisfied, suggestions=body.suggestions.strip(),
            owner_confirmed=body.owner_confirmed, method=method,
        )
        if row.status == "done":
            recorded = rules.CallbackAnswers(
                handled_in_time=row.handled_in_time, result_satisfied=row.result_satisfied,
                attitude_satisfied=row.attitude_satisfied, suggestions=row.suggestions or "",
                owner_confirmed=row.owner_confirmed, method=ReplyMethod(row.record_method),
            )
            rules.check_resubmission(recorded, answers)
            return record_view(row, duplicate=True)
        rules.check_recordable(row.status, row.cancel_reason)
        now = service.clock.now()
        outcome = rules.record_outcome(
            CallbackPurpose(row.purpose), ReplyMethod(row.method), answers, row.round,
            current_round=ticket.current_round, ticket_closed=ticket.status == "closed", policy=policy,
            answered_by_owner=answered_by_owner,
        )
        on_time = now <= row.due_at
        await session.execute(
            sa.update(C).where(C.c.callback_id == callback_id).values(
                status="done", done_at=now, done_by=actor, record_method=method.value,
                handled_in_time=answers.handled_in_time, result_satisfied=answers.result_satisfied,
                attitude_satisfied=answers.attitude_satisfied, suggestions=answers.suggestions,
                owner_confirmed=answers.owner_confirmed, on_time=on_time,
                submission_key=rules.callback_submission_key(row.ticket_id, callback_id, row.round),
                outcome=outcome.event if outcome else None, outcome_round=outcome.round if outcome else None,
                outcome_reason=outcome.reason if outcome else None,
                attitude_complaint=bool(outcome and outcome.open_attitude_complaint),
            )
        )
        await service.emit(
            session,
            CallbackDone(ticket_id=row.ticket_id, callback_id=callback_id, round=row.round, method=method,
                         handled_in_time=answers.handled_in_time, result_satisfied=answers.result_satisfied,
                         attitude_satisfied=answers.attitude_satisfied, suggestions=answers.suggestions,
                         owner_confirmed=answers.owner_confirmed, done_by=actor, on_time=on_time),
            estate=estate, actor=actor, time=now,
        )
        if outcome and answered_by_owner:
            # The owner's own answers judged the round: the recurrence rule has nothing left to judge.
            await session.execute(sa.update(W).where(W.c.ticket_id == row.ticket_id, W.c.round == row.round,
                                                     W.c.verdict.is_(None)).values(verdict="answered", decided_at=now))
        if outcome and outcome.event == "closed":
            await close_ticket(session, ticket, outcome.round, outcome.reason, True, actor)
        elif outcome and outcome.event == "reopened":
            handled_by = (await session.execute(
                sa.select(R.c.departments).where(R.c.ticket_id == row.ticket_id, R.c.round == row.round))).scalar()
            await reopen_ticket(session, ticket, outcome, list(handled_by or row.departments), actor)
        if row.counts_in_rate:
            departments, kind = list(row.departments), row.kind
            after_commit(session, lambda: count(CALLBACKS_DONE, estate, kind, departments))
            if answers.result_satisfied:
                after_commit(session, lambda: count(CALLBACKS_SATISFIED, estate, kind, departments))
        row = await find_callback(session, estate, callback_id)
    return record_view(row, duplicate=False)


@service.http.get("/estates/{estate}/tickets/{ticket_id}/callbacks", tags=["callbacks"])
async def ticket_callbacks(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> dict:
    """Every round of a ticket: its completion, its callbacks and records, and its outcome."""
    known_estate(service, estate)
    now = service.clock.now()
    tz = service.directory.timezone_for(estate)
    async with service.db.transaction() as session:
        ticket = (await session.execute(sa.select(T).where(T.c.estate == estate, T.c.ticket_id == ticket_id))).first()
        if ticket is None:
            raise RuleViolation(f"no ticket {ticket_id!r} known to callback in estate {estate!r}", status=404)
        round_rows = (await session.execute(sa.select(R).where(R.c.ticket_id == ticket_id).order_by(R.c.round))).all()
        callback_rows = (await session.execute(
            sa.select(C).where(C.c.ticket_id == ticket_id).order_by(C.c.round, C.c.due_at, C.c.callback_id))).all()
        watches = (await session.execute(sa.select(W).where(W.c.ticket_id == ticket_id).order_by(W.c.round))).all()
        updates = (await session.execute(
            sa.select(P).where(P.c.ticket_id == ticket_id).order_by(P.c.updated_at))).all()
    rounds_out = {}
    for r in round_rows:
        rounds_out[r.round] = {
            "round": r.round, "completed_at": iso(r.completed_at, tz), "departments": list(r.departments),
            "kind": r.kind, "category": r.category, "reply_method": r.reply_method,
            "outcome": r.outcome, "outcome_reason": r.outcome_reason, "outcome_at": iso(r.outcome_at, tz),
            "outcome_by": r.outcome_by, "callbacks": [],
        }
    for c in callback_rows:
        # A mid-way callback belongs to a round still in handling (no completion yet).
        bucket = rounds_out.setdefault(c.round, {"round": c.round, "completed_at": None, "callbacks": [],
                                                 "outcome": None})
        bucket["callbacks"].append(callback_view(c, tz, now, ticket.form_number))
    return {
        "ticket_id": ticket_id, "estate": estate, "form_number": ticket.form_number, "kind": ticket.kind,
        "category": ticket.category, "reply_method": ticket.reply_method, "first_contact": ticket.first_contact,
        "status": ticket.status, "current_round": ticket.current_round,
        "closed": {"at": iso(ticket.closed_at, tz), "round": ticket.closed_round, "reason": ticket.closed_reason,
                   "satisfied": ticket.closed_satisfied} if ticket.status == "closed" else None,
        "rounds": [rounds_out[k] for k in sorted(rounds_out)],
        "recurrence": [
            {"round": w.round, "window_ends_at": iso(w.window_ends_at, tz), "verdict": w.verdict,
             "decided_at": iso(w.decided_at, tz), "recurring_ticket_id": w.recurring_ticket_id}
            for w in watches
        ],
        "progress_updates": [
            {"at": iso(u.updated_at, tz), "method": u.method, "note": u.note, "by": u.updated_by} for u in updates
        ],
    }


# --- HTTP: walk-around visits ----------------------------------------------------------------------


class RaisedRequest(Contract):
    """What the owner raised during the visit; it becomes a normal request at intake."""

    kind: Kind
    description: str = Field(min_length=1, max_length=20000)
    category: str = Field("general", min_length=1, max_length=64)
    repair_class: RepairClass | None = None
    severity: Severity = Severity.not_serious
    urgency: Urgency = Urgency.not_urgent
    reply_method: ReplyMethod = ReplyMethod.phone
    building: str | None = Field(None, max_length=32)
    location: str | None = Field(None, max_length=500)
    # A visit is face to face: the owner signs the form there (RULES §1 Record content).
    owner_signed: bool = Field(False, description="The owner signed the request form during the visit")


class VisitIn(Contract):
    visited_on: Day
    notes: str = Field(min_length=1, max_length=5000)
    owner_id: str | None = Field(None, max_length=64)
    unit: str | None = Field(None, max_length=64)
    raised_request: RaisedRequest | None = None
    client_visit_id: str | None = Field(
        None, max_length=128, description="Caller's id for this submission; a repeat returns the first visit."
    )


def visit_view(row, estate: str) -> dict:
    tz = service.directory.timezone_for(estate)
    return {
        "visit_id": row.visit_id, "estate": row.estate, "staff_id": row.staff_id,
        "visited_on": row.visited_on.isoformat(), "owner_id": row.owner_id, "unit": row.unit, "notes": row.notes,
        "recorded_at": iso(row.recorded_at, tz), "client_visit_id": row.client_visit_id,
        # Submit this to intake (POST intake_endpoint) to register what the visit raised;
        # its client_request_id makes a repeated submission return the first ticket.
        "intake_request": row.raised_request,
        "intake_endpoint": f"/v1/estates/{estate}/requests" if row.raised_request else None,
    }


@service.http.post("/estates/{estate}/visits", status_code=201, tags=["visits"])
async def record_visit(estate: str, body: VisitIn, response: Response, who: Principal = Depends(require_estate)) -> dict:
    """Record a walk-around visit 走访 (002 §4.5). What the owner raised is returned as a
    ready-to-submit intake request (channel walk_around_visit): requests are registered only
    by intake, and services talk to each other only through events."""
    known_estate(service, estate)
    tz = service.directory.timezone_for(estate)
    now = service.clock.now()
    rules.check_visit_date(body.visited_on, now.astimezone(tz).date())
    async with service.db.transaction() as session:
        if body.client_visit_id:
            existing = (await session.execute(sa.select(V).where(
                V.c.estate == estate, V.c.staff_id == who.staff_id, V.c.client_visit_id == body.client_visit_id))).first()
            if existing:
                response.status_code = 200
                return visit_view(existing, estate)
        visit_id = str(uuid.uuid4())
        raised = None
        if body.raised_request:
            raised = {
                **body.raised_request.model_dump(mode="json", exclude_none=True),
                "channel": Channel.walk_around_visit.value,
                "client_request_id": f"visit-{visit_id}",
            }
            if body.owner_id:
                raised["owner_id"] = body.owner_id
            if body.unit:
                raised["unit"] = body.unit
        inserted = (await session.execute(
            pg_insert(V).values(
                visit_id=visit_id, estate=estate, staff_id=who.staff_id, visited_on=body.visited_on,
                owner_id=body.owner_id, unit=body.unit, notes=body.notes, raised_request=raised,
                client_visit_id=body.client_visit_id, recorded_at=now,
            ).on_conflict_do_nothing().returning(V)
        )).first()
        if inserted is None:  # a concurrent repeat of the same client_visit_id won
            inserted = (await session.execute(sa.select(V).where(
                V.c.estate == estate, V.c.staff_id == who.staff_id, V.c.client_visit_id == body.client_visit_id))).one()
            response.status_code = 200
    return visit_view(inserted, estate)


def month_bounds(year: int, month: int, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(year, month, 1, tzinfo=tz)
    end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start, end


def report_month(month: str | None, estate: str) -> tuple[int, int]:
    if month is None:
        today = service.clock.now().astimezone(service.directory.timezone_for(estate))
        return today.year, today.month
    return rules.parse_month(month)


@service.http.get("/estates/{estate}/visits/shortfall", tags=["visits"])
async def visit_shortfall(estate: str, month: str | None = Query(None, description="YYYY-MM; this month when omitted"),
                          who: Principal = Depends(require_estate)) -> dict:
    """Each customer-service staff member's walk-around visits in the month against the
    2–3 a month the policy asks for; the shortfall is what is still missing."""
    known_estate(service, estate)
    year, month_number = report_month(month, estate)
    policy, _ = policy_and_calendar(estate)
    directory_estate = service.directory.estate(estate)
    staff = [s for s in directory_estate.staff if VISIT_OBLIGED_ROLE in s.roles]
    first_day = dt.date(year, month_number, 1)
    next_month = dt.date(year + (month_number == 12), month_number % 12 + 1, 1)
    async with service.db.transaction() as session:
        rows = (await session.execute(
            sa.select(V.c.staff_id, V.c.visited_on)
            .where(V.c.estate == estate, V.c.visited_on >= first_day, V.c.visited_on < next_month)
        )).all()
    by_staff: dict[str, list[dt.date]] = {}
    for row in rows:
        by_staff.setdefault(row.staff_id, []).append(row.visited_on)
    tallies = rules.visit_shortfall(by_staff, (year, month_number), [s.id for s in staff], policy)
    return {
        "estate": estate, "month": f"{year:04d}-{month_number:02d}",
        "minimum": policy.callback.visits_per_month_min, "maximum": policy.callback.visits_per_month_max,
        "total_missing": sum(t.missing for t in tallies.values()),
        "staff": [
            {"staff_id": s.id, "name": s.name, "visits": tallies[s.id].visits, "missing": tallies[s.id].missing,
             "over_max": tallies[s.id].over_max, "excess": tallies[s.id].excess}
            for s in staff
        ],
    }


# --- HTTP: metrics -----------------------------------------------------------------------------------


def _bucket() -> dict:
    return {"required": 0, "done": 0, "done_on_time": 0, "satisfied": 0, "attitude_satisfied": 0,
            "judged_by_recurrence": 0, "recurrence_satisfied": 0}


def _rates(bucket: dict) -> dict:
    answered = bucket["done"] + bucket["judged_by_recurrence"]
    return {
        **bucket,
        "callback_rate": rules.callback_rate(bucket["required"], bucket["done"]),
        "satisfaction_rate": rules.satisfaction_rate(bucket["satisfied"] + bucket["recurrence_satisfied"], answered),
    }


@service.http.get("/estates/{estate}/callback-metrics", tags=["metrics"])
async def callback_metrics(estate: str, month: str | None = Query(None, description="YYYY-MM of completion; all time when omitted"),
                           who: Principal = Depends(require_estate)) -> dict:
    """Callback rate (required owner callbacks made) and satisfaction (owners satisfied with
    the result, by callback or by the recurrence rule), for the estate, by kind and by
    department, over the work completed in the month."""
    known_estate(service, estate)
    tz = service.directory.timezone_for(estate)
    callback_filter = [C.c.estate == estate, C.c.counts_in_rate.is_(True), C.c.status != "cancelled"]
    watch_filter = [W.c.estate == estate, W.c.verdict.is_not(None)]
    if month is not None:
        start, end = month_bounds(*rules.parse_month(month), tz)
        callback_filter += [C.c.completed_at >= start, C.c.completed_at < end]
        watch_filter += [W.c.completed_at >= start, W.c.completed_at < end]
    async with service.db.transaction() as session:
        callbacks = (await session.execute(
            sa.select(C.c.kind, C.c.departments, C.c.status, C.c.on_time, C.c.result_satisfied, C.c.attitude_satisfied)
            .where(*callback_filter))).all()
        verdicts = (await session.execute(sa.select(W.c.kind, W.c.departments, W.c.verdict).where(*watch_filter))).all()
    overall, by_kind, by_department = _bucket(), {}, {}

    def buckets(kind: str, departments: list[str]):
        yield overall
        yield by_kind.setdefault(kind, _bucket())
        for department in departments or [""]:
            yield by_department.setdefault(department, _bucket())

    for c in callbacks:
        for b in buckets(c.kind, c.departments):
            b["required"] += 1
            if c.status == "done":
                b["done"] += 1
                b["done_on_time"] += bool(c.on_time)
                b["satisfied"] += bool(c.result_satisfied)
                b["attitude_satisfied"] += bool(c.attitude_satisfied)
    for w in verdicts:
        for b in buckets(w.kind, w.departments):
            b["judged_by_recurrence"] += 1
            b["recurrence_satisfied"] += w.verdict == "satisfied"
    return {
        "estate": estate, "month": month,
        "overall": _rates(overall),
        "by_kind": {k: _rates(v) for k, v in sorted(by_kind.items())},
        "by_department": {k: _rates(v) for k, v in sorted(by_department.items())},
    }


# Who may call each write route (RULES §3; printed in the README by `estatedesk roles`).
service.write_roles = {
    ("POST", "/estates/{estate}/callbacks/{callback_id}/record"): RECORDING_ROLES,
    ("POST", "/estates/{estate}/visits"): VISITING_ROLES,
}


from services.callback import online  # noqa: E402,F401  (owners answer their callback online, issue 15)


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
