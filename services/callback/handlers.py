"""The callback service's handlers (issue 11): plain async functions
`handle_x(message, uow: CallbackUnitOfWork, ctx: HandlerContext)`.

Event handlers (`HANDLERS`, keyed by event type) learn about tickets only from the
lifecycle's events (accepted, validity_judged, assigned, completed, progress_updated,
clock_settled). Events of one ticket reach independent consumers in any order and, within
a fetched batch, concurrently: every handler first locks the ticket's row (creating it on
the first news of the ticket), so a ticket's events apply one at a time, and each copes
with facts that have not arrived yet. A consumer's batch of the events that feed the
recurrence rule is readied first by `prepare_batch` (its locks and tickets in one
statement, issue 12); every handler works the same without it. Command handlers (what
routes call) record the owner's answers (RULES §3 Questions, Not satisfied) and
walk-around visits (RULES §3).

Events raised: callback_scheduled, callback_done, callback_overdue, closed, reopened,
attitude_complaint_raised. Errors: RuleViolation (404 unknown, 409 refused move, 422).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.callback import rules
from services.callback.domain import Callback, Round, Ticket, Watch
from services.callback.rules import CallbackAnswers, OpinionFact
from services.callback.store import CallbackUnitOfWork
from shared.errors import RuleViolation
from shared.events import (
    PROGRESS_UPDATE_CLOCK,
    Accepted,
    Assigned,
    CallbackDone,
    CallbackOverdue,
    CallbackScheduled,
    Channel,
    ClockOutcome,
    ClockSettled,
    Closed,
    CloudEvent,
    Completed,
    Kind,
    ProgressUpdated,
    Reopened,
    ReplyMethod,
    ValidityJudged,
)
from shared.lifecycle import TicketState
from shared.uow import HandlerContext

SYSTEM = "system"
# The department whose head is the "engineering supervisor" of 004 篇2 六.3 (directory code).
ENGINEERING = "engineering"
Handler = Callable[[CloudEvent, CallbackUnitOfWork, HandlerContext], Awaitable[None]]


def repair_supervisor(ctx: HandlerContext, estate: str) -> str | None:
    found = ctx.estate(estate)
    for department in found.departments if found else []:
        if department.code == ENGINEERING:
            return department.head
    return None


# --- what the rules decided, written down ------------------------------------------------------


async def schedule(uow: CallbackUnitOfWork, ctx: HandlerContext, planned: rules.PlannedCallback, *, estate: str,
                   kind: str, category: str, departments: list[str], completed_at: dt.datetime | None,
                   first_contact: str | None) -> None:
    """Store a planned callback and announce it, once (ids are deterministic)."""
    now = ctx.now()
    assignee = rules.callback_assignee(planned.purpose, first_contact, repair_supervisor(ctx, estate))
    callback = Callback.plan(planned, estate=estate, kind=kind, category=category, departments=departments,
                             completed_at=completed_at, assignee=assignee, now=now)
    if not await uow.callbacks.add(callback):
        return
    await uow.emit(
        CallbackScheduled(ticket_id=planned.ticket_id, callback_id=planned.callback_id, round=planned.round,
                          due_at=planned.due_at, method=planned.method, assigned_to=assignee,
                          rule=callback.rule, provisional=planned.provisional),
        estate=estate, actor=SYSTEM, time=now,
    )
    if callback.counts_in_rate:
        uow.count("required", estate, kind, list(departments))


async def cancel_pending(uow: CallbackUnitOfWork, ctx: HandlerContext, ticket_id: str, reason: str,
                         which: Callable[[Callback], bool]) -> None:
    for callback in await uow.callbacks.pending_of(ticket_id):
        if which(callback):
            callback.cancel(reason, ctx.now())
            await uow.callbacks.save(callback)


async def close_ticket(uow: CallbackUnitOfWork, ctx: HandlerContext, ticket: Ticket, round_: int, reason: str,
                       satisfied: bool | None, actor: str) -> None:
    now = ctx.now()
    ticket.close(round_, reason, satisfied, now)
    await uow.tickets.save(ticket)
    settled = await uow.rounds.get(ticket.ticket_id, round_)
    if settled and settled.settle("closed", reason, now, actor):
        await uow.rounds.save(settled)
    await uow.emit(Closed(ticket_id=ticket.ticket_id, round=round_, closed_by=actor, reason=reason, satisfied=satisfied),
                   estate=ticket.estate, actor=actor, time=now)


async def reopen_ticket(uow: CallbackUnitOfWork, ctx: HandlerContext, ticket: Ticket, outcome: rules.Outcome,
                        departments: list[str], actor: str) -> None:
    now = ctx.now()
    ticket.reopen(outcome.round, now)
    await uow.tickets.save(ticket)
    finished = await uow.rounds.get(ticket.ticket_id, outcome.round - 1)
    if finished and finished.settle("reopened", outcome.reason, now, actor):
        await uow.rounds.save(finished)
    await uow.emit(Reopened(ticket_id=ticket.ticket_id, round=outcome.round, reason=outcome.reason, reopened_by=actor,
                            departments=departments), estate=ticket.estate, actor=actor, time=now)


async def plan_midway(uow: CallbackUnitOfWork, ctx: HandlerContext, ticket: Ticket, round_: int,
                      starts_at: dt.datetime) -> None:
    """A running special service is called mid-way (001 第9篇 一.3), planned when it starts."""
    if ticket.kind != Kind.special_service or ticket.closed or not ticket.reply_method:
        return
    if await uow.rounds.get(ticket.ticket_id, round_):  # the service already ended: its end callback covers it
        return
    planned = rules.plan_midway_callback(ticket.ticket_id, starts_at, None, ReplyMethod(ticket.reply_method),
                                         ctx.policy(ticket.estate), round=round_)
    if planned:
        await schedule(uow, ctx, planned, estate=ticket.estate, kind=ticket.kind, category=ticket.category or "general",
                       departments=list(ticket.departments), completed_at=None, first_contact=ticket.first_contact)


async def decide_recurrence(uow: CallbackUnitOfWork, ctx: HandlerContext, estate: str, category_key: str | None) -> None:
    """Apply the recurrence rule (RULES §3 No callback path) to every undecided watch of this
    estate and category. The caller holds `uow.watches.lock_estate(estate)`."""
    if not category_key:
        return
    watches = await uow.watches.undecided(estate, category_key)
    if not watches:
        return
    # A later opinion counts only if raised within a window, and every window starts when
    # its watch's round was completed: one raised before the earliest of them counts for none.
    since = min(watch.completed_at for watch in watches)
    later = [
        OpinionFact(ticket_id=t.ticket_id, category=t.category or "", department=department, estate=estate,
                    raised_at=t.raised_at, kind=Kind(t.kind) if t.kind else None)
        for t in await uow.tickets.opinions(estate, category_key, since) for department in t.departments
    ]
    policy = ctx.policy(estate)
    now = ctx.now()
    days = policy.callback.recurrence_window_days
    for watch in watches:
        verdict, recurring = rules.recurrence_verdict(watch.first_opinions(), later, now, policy)
        if verdict is None:
            continue
        recurring_id = recurring[0].ticket_id if recurring else None
        watch.decide(verdict, now, recurring_id)
        await uow.watches.save(watch)
        ticket = await uow.tickets.get(estate, watch.ticket_id, lock=True)
        if ticket is None or ticket.closed:
            continue
        if verdict == "not_satisfied":
            reason = (f"recurrence rule: a same-category opinion ({recurring_id}) in the same department within "
                      f"{days} days counts as not satisfied")
        else:
            reason = f"recurrence rule: no same-category opinion in the same department within {days} days counts as satisfied"
        await close_ticket(uow, ctx, ticket, watch.round, reason, verdict == "satisfied", SYSTEM)


async def decide_if_new_opinion(uow: CallbackUnitOfWork, ctx: HandlerContext, estate: str, ticket: Ticket,
                                before: tuple | None) -> None:
    """A ticket that has just become a later opinion, or whose facts as one changed (its
    `opinion_facts` were `before`), may decide an earlier opinion's recurrence at once.
    Otherwise the opinions the rule reads are as they were: only elapsed windows could be
    decided, and the recurrence scan does that (a ticket accepted before it is assigned
    reads no watch). The caller holds `uow.watches.lock_estate(estate)`."""
    after = ticket.opinion_facts()
    if after is not None and after != before:
        await decide_recurrence(uow, ctx, estate, ticket.category_key)


# --- event handlers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketNews:
    """What an event that feeds the recurrence rule says before its handler runs: its
    ticket, when callback first heard of that ticket should this be the first news, and
    the category as the rule compares it (None when the event does not say)."""

    ticket_id: str
    seen_at: dt.datetime
    category_key: str | None = None


def accepted_news(event: CloudEvent, accepted: Accepted) -> TicketNews:
    return TicketNews(accepted.ticket_id, accepted.received_at, rules.recurrence_key(accepted.category))


def assigned_news(event: CloudEvent, assigned: Assigned) -> TicketNews:
    return TicketNews(assigned.ticket_id, event.time)


def completed_news(event: CloudEvent, completed: Completed) -> TicketNews:
    return TicketNews(completed.ticket_id, completed.completed_at, rules.recurrence_key(completed.category))


# The events whose handlers take their estate's recurrence lock and their ticket's row lock
# first, and may ask for a category's undecided watches: what `prepare_batch` readies.
RECURRENCE_NEWS: dict[str, Callable[[CloudEvent, object], TicketNews]] = {
    "accepted": accepted_news,
    "assigned": assigned_news,
    "completed": completed_news,
}


async def prepare_batch(events: list[CloudEvent], uow: CallbackUnitOfWork, ctx: HandlerContext) -> None:
    """Ready a consumer's batch of `RECURRENCE_NEWS` events (fresh, in stream order) before its
    handlers run (issue 12): in one statement, the estates' recurrence locks (all of them,
    in one order, before any row lock: batches never deadlock on them) and every ticket
    created-or-locked, held by the unit of work until its flush; and the (estate, category)
    pairs whose undecided watches the handlers may ask for, loaded in one statement at the
    first ask. The handlers then find all of it in the unit of work; an event handled alone
    (after a failure) loads what it needs itself, to the same effect."""
    news = [(event.estate, RECURRENCE_NEWS[event.event_name](event, event.payload())) for event in events]
    tickets = await uow.hold({estate for estate, _ in news}, [(n.ticket_id, estate, n.seen_at) for estate, n in news],
                             ctx.now())
    # The key each handler will decide with: the stored one, else the event's (learn_*).
    keys = {(estate, tickets[n.ticket_id].category_key or n.category_key) for estate, n in news}
    uow.watches.expect((estate, key) for estate, key in keys if key)


async def handle_accepted(event: CloudEvent, uow: CallbackUnitOfWork, ctx: HandlerContext) -> None:
    """Learn the ticket's kind, category, reply method and first-contact owner; a later
    opinion may decide an earlier one's recurrence."""
    accepted: Accepted = event.payload()
    news = accepted_news(event, accepted)
    await uow.watches.lock_estate(event.estate)
    ticket = await uow.tickets.lock(news.ticket_id, event.estate, news.seen_at, ctx.now())
    opinion = ticket.opinion_facts()
    ticket.learn_accepted(accepted, news.category_key, ctx.now())
    await uow.tickets.save(ticket)
    if ticket.first_assigned_at:  # `assigned` came first: the service has started
        await plan_midway(uow, ctx, ticket, ticket.current_round, accepted.appointment_at or ticket.first_assigned_at)
    await decide_if_new_opinion(uow, ctx, event.estate, ticket, opinion)


async def handle_validity_judged(event: CloudEvent, uow: CallbackUnitOfWork, ctx: HandlerContext) -> None:
    """Invalid complaints need no callback (RULES §3 Who)."""
    judged: ValidityJudged = event.payload()
    ticket = await uow.tickets.lock(judged.ticket_id, event.estate, event.time, ctx.now())
    ticket.learn_validity(judged.valid, judged.reason, ctx.now())
    await uow.tickets.save(ticket)
    if judged.valid:
        return
    closer = judged.confirmed_by or judged.judged_by
    if ticket.status is TicketState.in_handling:
        # Dispatch ends the handling of a complaint judged invalid: no `completed` will
        # follow, so its life ends here, in `closed` (archive assembles the form on it).
        await close_ticket(uow, ctx, ticket, ticket.current_round,
                           f"invalid complaint: handling ended without a callback (RULES §3 Who): {judged.reason}",
                           None, closer)
        return
    # Judged invalid after a round was completed: plan that round again without the
    # complaint callback, cancel what is no longer owed, close if nothing judges it now.
    policy, calendar = ctx.policy(event.estate), ctx.calendar(event.estate)
    for round_ in await uow.rounds.unsettled(judged.ticket_id):
        plan = rules.plan_completion(round_.facts(ticket.repair_class_enum(), False), policy, calendar)
        still_owed = {p.callback_id for p in plan.callbacks}
        await cancel_pending(uow, ctx, judged.ticket_id, f"complaint judged invalid: {judged.reason}",
                             lambda c, r=round_.round: c.round == r and c.callback_id not in still_owed)
        if plan.close_now and not ticket.closed and round_.round == ticket.current_round:
            await close_ticket(uow, ctx, ticket, round_.round, plan.close_reason, None, closer)


async def handle_assigned(event: CloudEvent, uow: CallbackUnitOfWork, ctx: HandlerContext) -> None:
    """Learn which departments handle the ticket (recurrence rule) and plan a special
    service's mid-way callback."""
    assigned: Assigned = event.payload()
    news = assigned_news(event, assigned)
    await uow.watches.lock_estate(event.estate)
    ticket = await uow.tickets.lock(news.ticket_id, event.estate, news.seen_at, ctx.now())
    opinion = ticket.opinion_facts()
    ticket.learn_assigned(assigned.departments, event.time, ctx.now())
    await uow.tickets.save(ticket)
    if assigned.round >= ticket.current_round:
        starts_at = ticket.appointment_at if assigned.round == 1 and ticket.appointment_at else event.time
        await plan_midway(uow, ctx, ticket, assigned.round, starts_at)
    await decide_if_new_opinion(uow, ctx, event.estate, ticket, opinion)


async def handle_completed(event: CloudEvent, uow: CallbackUnitOfWork, ctx: HandlerContext) -> None:
    """Schedule the callbacks the estate's policy asks for, watch an opinion without a
    callback path, or close what needs no callback (RULES §3 When, No callback path)."""
    completed: Completed = event.payload()
    estate = event.estate
    news = completed_news(event, completed)
    key = news.category_key
    await uow.watches.lock_estate(estate)
    ticket = await uow.tickets.lock(news.ticket_id, estate, news.seen_at, ctx.now())
    if ticket.round_already_judged(completed.round):
        return  # a late copy of a round already judged
    round_ = Round(
        ticket_id=completed.ticket_id, round=completed.round, estate=estate, kind=completed.kind.value,
        category=completed.category, departments=list(completed.departments),
        reply_method=(ticket.reply_method if ticket.accepted_seen else completed.reply_method.value),
        completed_at=completed.completed_at, completed_event_id=event.id,
    )
    if not await uow.rounds.add(round_):
        return  # this round was already completed (a re-emitted event): nothing twice
    ticket.learn_completed(completed, key, ctx.now())
    await uow.tickets.save(ticket)
    policy, calendar = ctx.policy(estate), ctx.calendar(estate)
    plan = rules.plan_completion(round_.facts(ticket.repair_class_enum(), ticket.valid), policy, calendar)
    # The service ended: a mid-way call not made yet has nothing left to ask about.
    await cancel_pending(uow, ctx, completed.ticket_id, "the service ended before its mid-way call was made",
                         lambda c: c.rule == rules.CallbackRule.special_service_midway.value)
    for planned in plan.callbacks:
        await schedule(uow, ctx, planned, estate=estate, kind=round_.kind, category=round_.category,
                       departments=list(completed.departments), completed_at=completed.completed_at,
                       first_contact=completed.first_contact or ticket.first_contact)
    if plan.judged_by_recurrence:
        first = OpinionFact(ticket_id=completed.ticket_id, category=round_.category, department="",
                            estate=estate, completed_at=completed.completed_at)
        await uow.watches.add(Watch(
            ticket_id=completed.ticket_id, round=completed.round, estate=estate, category=round_.category,
            category_key=ticket.category_key or key, departments=list(completed.departments), kind=round_.kind,
            completed_at=completed.completed_at, window_ends_at=rules.window_end(first, policy)))
        ticket.await_verdict(ctx.now())
        await uow.tickets.save(ticket)
        await decide_recurrence(uow, ctx, estate, ticket.category_key or key)
    elif plan.close_now:
        await close_ticket(uow, ctx, ticket, completed.round, plan.close_reason, None, SYSTEM)
    else:
        ticket.await_callback(ctx.now())
        await uow.tickets.save(ticket)


async def handle_progress_updated(event: CloudEvent, uow: CallbackUnitOfWork, ctx: HandlerContext) -> None:
    """Keep the twice-weekly progress updates of long-running complaints visible on the worklist."""
    update: ProgressUpdated = event.payload()
    await uow.tickets.lock(update.ticket_id, event.estate, event.time, ctx.now())
    await uow.progress.add(event.id, ticket_id=update.ticket_id, estate=event.estate, updated_at=event.time,
                           method=update.method.value, note=update.note, updated_by=update.updated_by)


async def handle_clock_settled(event: CloudEvent, uow: CallbackUnitOfWork, ctx: HandlerContext) -> None:
    """Count the weeks of owner updates dispatch settled as missed (dispatch decides the
    progress-update duty, RULES §2 Progress updates)."""
    settled: ClockSettled = event.payload()
    if settled.clock != PROGRESS_UPDATE_CLOCK or settled.outcome is not ClockOutcome.breached:
        return
    ticket = await uow.tickets.lock(settled.ticket_id, event.estate, event.time, ctx.now())
    ticket.count_missed_progress_week(ctx.now())
    await uow.tickets.save(ticket)


HANDLERS: dict[str, Handler] = {
    "accepted": handle_accepted,
    "validity_judged": handle_validity_judged,
    "assigned": handle_assigned,
    "completed": handle_completed,
    "progress_updated": handle_progress_updated,
    "clock_settled": handle_clock_settled,
}


# --- commands --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordCommand:
    """The owner's answers (002 §4.4.2 d), who recorded them, and how."""

    estate: str
    callback_id: str
    answers: CallbackAnswers
    actor: str
    answered_by_owner: bool = False
    # The owner's page: the callback must be of the owner's unit (None: the desk).
    owner_unit: str | None = None


@dataclass(frozen=True)
class Recorded:
    callback: Callback
    ticket: Ticket | None
    duplicate: bool


async def find_callback(uow: CallbackUnitOfWork, estate: str, callback_id: str, *, lock: bool = False) -> Callback:
    callback = await uow.callbacks.get(estate, callback_id, lock=lock)
    if callback is None:
        raise RuleViolation(f"no callback {callback_id!r} in estate {estate!r}", status=404, zh="未找到该回访")
    return callback


async def handle_record(command: RecordCommand, uow: CallbackUnitOfWork, ctx: HandlerContext) -> Recorded:
    """Record a callback, by the desk or by the owner on the owners' page: one path, so both
    count the same. Satisfied closes the ticket; not satisfied reopens it (round + 1); an
    owner unhappy with the attitude raises `attitude_complaint_raised` under the default
    policy. The same answers again are a duplicate (nothing changes); different answers
    for a recorded callback are refused (409); a cancelled one too."""
    estate, callback_id = command.estate, command.callback_id
    # Lock order everywhere: the ticket's row first, then its callbacks.
    ticket_id = (await find_callback(uow, estate, callback_id)).ticket_id
    ticket = await uow.tickets.get(estate, ticket_id, lock=True)
    callback = await find_callback(uow, estate, callback_id, lock=True)
    if command.owner_unit is not None:
        if ticket is None or ticket.unit != command.owner_unit:
            raise RuleViolation(f"no callback {callback_id!r} of your unit", status=404, zh="未找到本户的该回访")
        rules.check_owner_may_answer(rules.CallbackPurpose(callback.purpose), ReplyMethod(callback.method),
                                     callback.status.value)
    answers = command.answers
    rules.check_call_method(answers.method)
    recorded = callback.recorded_answers()
    if recorded is not None:
        rules.check_resubmission(recorded, answers)
        return Recorded(callback, ticket, duplicate=True)
    now = ctx.now()
    outcome = callback.record(answers, ticket, actor=command.actor, now=now, policy=ctx.policy(estate),
                              answered_by_owner=command.answered_by_owner)
    await uow.callbacks.save(callback)
    await uow.emit(
        CallbackDone(ticket_id=callback.ticket_id, callback_id=callback_id, round=callback.round, method=answers.method,
                     handled_in_time=answers.handled_in_time, result_satisfied=answers.result_satisfied,
                     attitude_satisfied=answers.attitude_satisfied, suggestions=answers.suggestions,
                     owner_confirmed=answers.owner_confirmed, done_by=command.actor, on_time=callback.on_time),
        estate=estate, actor=command.actor, time=now,
    )
    if outcome and command.answered_by_owner:
        # The owner's own answers judged the round: the recurrence rule has nothing left to judge.
        watch = await uow.watches.get(callback.ticket_id, callback.round)
        if watch and watch.verdict is None:
            watch.answered_by_owner(now)
            await uow.watches.save(watch)
    if outcome and outcome.open_attitude_complaint:
        await raise_attitude_complaint(uow, ctx, ticket, callback, command)
    if outcome and outcome.event == "closed":
        await close_ticket(uow, ctx, ticket, outcome.round, outcome.reason, True, command.actor)
    elif outcome and outcome.event == "reopened":
        handled = await uow.rounds.get(callback.ticket_id, callback.round)
        await reopen_ticket(uow, ctx, ticket, outcome, list(handled.departments if handled else callback.departments),
                            command.actor)
    if callback.counts_in_rate:
        uow.count("done", estate, callback.kind, list(callback.departments))
        if answers.result_satisfied:
            uow.count("satisfied", estate, callback.kind, list(callback.departments))
    return Recorded(callback, ticket, duplicate=False)


async def raise_attitude_complaint(uow: CallbackUnitOfWork, ctx: HandlerContext, ticket: Ticket, callback: Callback,
                                   command: RecordCommand) -> None:
    """Callback decides, intake registers (issue 15): a valid complaint about the staff's
    attitude (RULES §1 Complaint validity; RULES §3 Not satisfied; shared/attitude.py)."""
    await uow.emit(callback.attitude_complaint_raised(ticket, answered_by_owner=command.answered_by_owner),
                   estate=command.estate, actor=command.actor, time=ctx.now())


# --- periodic work (jobs.py runs these, one transaction each) ---------------------------------------


async def report_overdue(uow: CallbackUnitOfWork, ctx: HandlerContext, batch: int) -> int:
    """Report every callback that passed its due time without being made, once."""
    now = ctx.now()
    due = await uow.callbacks.claim_overdue(now, batch)
    for callback in due:
        if callback.report_overdue(now):
            await uow.callbacks.save(callback)
            await uow.emit(CallbackOverdue(ticket_id=callback.ticket_id, callback_id=callback.callback_id,
                                           round=callback.round, due_at=callback.due_at),
                           estate=callback.estate, actor=SYSTEM, time=now)
    return len(due)


async def recompute_complaint_windows(uow: CallbackUnitOfWork, ctx: HandlerContext) -> int:
    """Count every pending complaint callback's working-day window again (issue 10: every
    running deadline follows every change of the company's calendar)."""
    changed = 0
    for callback in await uow.callbacks.claim_complaint_windows(rules.CallbackRule.complaint.value):
        update = rules.recompute_complaint_due(callback.completed_at, callback.due_at, callback.provisional,
                                               ctx.policy(callback.estate), ctx.calendar(callback.estate))
        if update is not None:
            callback.due_at, callback.provisional = update
            await uow.callbacks.save(callback)
            changed += 1
    return changed


# --- walk-around visits (RULES §3 Walk-around visits 走访) ---------------------------------------


@dataclass(frozen=True)
class VisitCommand:
    estate: str
    staff_id: str
    visited_on: dt.date
    notes: str
    owner_id: str | None
    unit: str | None
    raised_request: dict | None  # the request as the visitor wrote it (json)
    client_visit_id: str | None


async def handle_record_visit(command: VisitCommand, uow: CallbackUnitOfWork, ctx: HandlerContext):
    """Record a visit; returns (row, created). What the owner raised becomes a
    ready-to-submit intake request (channel walk_around_visit)."""
    now = ctx.now()
    rules.check_visit_date(command.visited_on, now.astimezone(ctx.timezone(command.estate)).date())
    if command.client_visit_id:
        existing = await uow.visits.by_client_id(command.estate, command.staff_id, command.client_visit_id)
        if existing:
            return existing, False
    visit_id = str(uuid.uuid4())
    raised = None
    if command.raised_request:
        raised = {**command.raised_request, "channel": Channel.walk_around_visit.value,
                  "client_request_id": f"visit-{visit_id}"}
        if command.owner_id:
            raised["owner_id"] = command.owner_id
        if command.unit:
            raised["unit"] = command.unit
    inserted = await uow.visits.add(
        visit_id=visit_id, estate=command.estate, staff_id=command.staff_id, visited_on=command.visited_on,
        owner_id=command.owner_id, unit=command.unit, notes=command.notes, raised_request=raised,
        client_visit_id=command.client_visit_id, recorded_at=now)
    if inserted is None:  # a concurrent repeat of the same client_visit_id won
        return await uow.visits.by_client_id(command.estate, command.staff_id, command.client_visit_id), False
    return inserted, True
