"""The callback service's routes and their schemas (RULES §3): the worklist, one callback,
recording a callback, a ticket's rounds, walk-around visits and the callback metrics.
A route parses, authorises (`require_estate` and the role table in app.py), opens the
transaction, builds the unit of work, calls a handler or a named query, maps the result.
Datetimes in these answers are already strings in the estate's zone (`views.iso`)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import Depends, Query, Response
from pydantic import BaseModel, Field

from services.callback import handlers, rules, views
from services.callback.app import service, unit_of_work
from shared.auth import Principal
from shared.errors import RuleViolation
from shared.events import Kind, RepairClass, ReplyMethod, Severity, Urgency
from shared.limits import Contract, Day
from shared.service import known_estate, require_estate

# Staff under the walk-around visit obligation (002 §4.5.1: the customer-service centre).
VISIT_OBLIGED_ROLE = "customer_service"


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
    callbacks: list[CallbackOut] = Field(
        description="pending / overdue: earliest due first; done: most recently done first (at most 1,000)")
    long_running_complaints: list[ProgressStatusOut]


class RecordResultOut(BaseModel):
    duplicate: bool = Field(description="True when the same answers were submitted again (nothing changed)")
    callback: CallbackOut
    outcome: OutcomeOut | None
    attitude_complaint_request: dict | None = Field(
        description="A ready-to-submit intake request for an attitude complaint, when the owner was unhappy "
        "with the handler's attitude only (intake also registers it from attitude_complaint_raised)")


class RecordIn(Contract):
    """The owner's answers (002 §4.4.2 d) and, when it differs from the planned one, how the call was made."""

    handled_in_time: bool
    result_satisfied: bool
    attitude_satisfied: bool
    suggestions: str = Field("", max_length=5000)
    owner_confirmed: bool = False
    method: ReplyMethod | None = None


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


async def record_answers(estate: str, callback_id: str, body: RecordIn, actor: str, *,
                         answered_by_owner: bool = False, owner_unit: str | None = None) -> dict:
    """Record a callback's answers (desk, or the owner on the owners' page): one path."""
    known_estate(service, estate)
    ctx = service.context
    async with service.db.transaction() as session:
        uow = unit_of_work(session)
        planned = (await handlers.find_callback(uow, estate, callback_id)).method
        answers = rules.CallbackAnswers(
            handled_in_time=body.handled_in_time, result_satisfied=body.result_satisfied,
            attitude_satisfied=body.attitude_satisfied, suggestions=body.suggestions.strip(),
            owner_confirmed=body.owner_confirmed, method=ReplyMethod(body.method or planned),
        )
        recorded = await handlers.handle_record(
            handlers.RecordCommand(estate, callback_id, answers, actor, answered_by_owner, owner_unit), uow, ctx)
    return views.record_view(recorded.callback, recorded.ticket, recorded.duplicate, ctx.timezone(estate), ctx.now())


@service.http.get("/estates/{estate}/callbacks", response_model=WorklistOut, tags=["callbacks"])
async def worklist(
    estate: str,
    assigned_to: str | None = Query(None, max_length=64, description="staff id; all staff when omitted"),
    status: Literal["pending", "overdue", "done"] = Query(
        "pending", description="pending includes overdue ones (both most urgent first); done: most recently done first"),
    who: Principal = Depends(require_estate),
) -> dict:
    """The callback worklist, at most 1,000: pending (or only overdue) callbacks most urgent
    first, overdue items marked, with the method the owner chose, plus long-running
    complaints and where their progress updates stand; done callbacks most recently done
    first (`record.done_at` descending), with their records."""
    known_estate(service, estate)
    ctx = service.context
    now, tz, policy = ctx.now(), ctx.timezone(estate), ctx.policy(estate)
    long_running = []
    async with service.db.transaction() as session:
        uow = unit_of_work(session)
        rows = await uow.callbacks.worklist(estate, status, assigned_to, now)
        if status != "done":
            started_before = now - dt.timedelta(days=policy.clocks.progress_updates_after_days)
            complaints = await uow.tickets.long_running_complaints(estate, assigned_to, started_before)
            updates = await uow.progress.of_tickets([t.ticket_id for t in complaints])
            long_running = [view for view in (
                views.progress_view(t, [u.updated_at for u in updates.get(t.ticket_id, [])], now, tz, policy)
                for t in complaints) if view]
    if status != "done":
        by_id = {callback.callback_id: (callback, form_number) for callback, form_number in rows}
        ordered = rules.order_worklist([views.pending_item(callback) for callback, _ in rows], now)
        rows = [by_id[entry.item.callback_id] for entry in ordered]
    items = [views.callback_view(callback, tz, now, form_number) for callback, form_number in rows]
    return {
        "estate": estate, "as_of": views.iso(now, tz), "status": status, "assigned_to": assigned_to,
        "overdue_count": sum(1 for item in items if item["overdue"]),
        "callbacks": items, "long_running_complaints": long_running,
    }


@service.http.get("/estates/{estate}/callbacks/{callback_id}", response_model=CallbackOut, tags=["callbacks"])
async def get_callback(estate: str, callback_id: str, who: Principal = Depends(require_estate)) -> dict:
    known_estate(service, estate)
    ctx = service.context
    async with service.db.transaction() as session:
        uow = unit_of_work(session)
        callback = await handlers.find_callback(uow, estate, callback_id)
        ticket = await uow.tickets.get(estate, callback.ticket_id)
    return views.callback_view(callback, ctx.timezone(estate), ctx.now(), ticket.form_number if ticket else None)


@service.http.post("/estates/{estate}/callbacks/{callback_id}/record", response_model=RecordResultOut,
                   tags=["callbacks"])
async def record_callback(estate: str, callback_id: str, body: RecordIn, who: Principal = Depends(require_estate)) -> dict:
    """Record a callback. Satisfied closes the ticket (`closed`); not satisfied sends it back
    to the handling departments (`reopened`, round + 1). Submitting the same answers again
    returns the first record (200, "duplicate": true) and changes nothing; different
    answers for a recorded callback are refused with 409."""
    return await record_answers(estate, callback_id, body, who.staff_id)


@service.http.get("/estates/{estate}/tickets/{ticket_id}/callbacks", tags=["callbacks"])
async def ticket_callbacks(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> dict:
    """Every round of a ticket: its completion, its callbacks and records, and its outcome."""
    known_estate(service, estate)
    ctx = service.context
    async with service.db.transaction() as session:
        uow = unit_of_work(session)
        ticket = await uow.tickets.get(estate, ticket_id)
        if ticket is None:
            raise RuleViolation(f"no ticket {ticket_id!r} known to callback in estate {estate!r}", status=404)
        rounds = await uow.rounds.of_ticket(ticket_id)
        callbacks = await uow.callbacks.of_ticket(ticket_id)
        watches = await uow.watches.of_ticket(ticket_id)
        updates = (await uow.progress.of_tickets([ticket_id])).get(ticket_id, [])
    return views.ticket_history(ticket, rounds, callbacks, watches, updates, ctx.timezone(estate), ctx.now())


@service.http.post("/estates/{estate}/visits", status_code=201, tags=["visits"])
async def record_visit(estate: str, body: VisitIn, response: Response, who: Principal = Depends(require_estate)) -> dict:
    """Record a walk-around visit 走访 (002 §4.5). What the owner raised is returned as a
    ready-to-submit intake request (channel walk_around_visit): requests are registered only
    by intake, and services talk to each other only through events."""
    known_estate(service, estate)
    command = handlers.VisitCommand(
        estate=estate, staff_id=who.staff_id, visited_on=body.visited_on, notes=body.notes, owner_id=body.owner_id,
        unit=body.unit, client_visit_id=body.client_visit_id,
        raised_request=body.raised_request.model_dump(mode="json", exclude_none=True) if body.raised_request else None)
    async with service.db.transaction() as session:
        row, created = await handlers.handle_record_visit(command, unit_of_work(session), service.context)
    if not created:
        response.status_code = 200
    return views.visit_view(row, service.context.timezone(estate), estate)


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
    policy = service.context.policy(estate)
    staff = [s for s in service.directory.estate(estate).staff if VISIT_OBLIGED_ROLE in s.roles]
    first_day = dt.date(year, month_number, 1)
    next_month = dt.date(year + (month_number == 12), month_number % 12 + 1, 1)
    async with service.db.transaction() as session:
        by_staff = await unit_of_work(session).visits.days_by_staff(estate, first_day, next_month)
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


@service.http.get("/estates/{estate}/callback-metrics", tags=["metrics"])
async def callback_metrics(estate: str, month: str | None = Query(None, description="YYYY-MM of completion; all time when omitted"),
                           who: Principal = Depends(require_estate)) -> dict:
    """Callback rate (required owner callbacks made) and satisfaction (owners satisfied with
    the result, by callback or by the recurrence rule), for the estate, by kind and by
    department, over the work completed in the month."""
    known_estate(service, estate)
    tz = service.context.timezone(estate)
    start = end = None
    if month is not None:
        year, number = rules.parse_month(month)
        start = dt.datetime(year, number, 1, tzinfo=tz)
        end = dt.datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=tz)
    async with service.db.transaction() as session:
        uow = unit_of_work(session)
        callbacks = await uow.callbacks.counted(estate, start, end)
        verdicts = await uow.watches.decided(estate, start, end)
    return views.callback_metrics(estate, month, callbacks, verdicts)
