"""Analytics' handlers (issue 11): every ticket event folded into the read model, and the
repeat-problem check on a newly accepted ticket (RULES §4 statistics, §2 repeated
opinions call for corrective action; seed 002 §4.3.1 b).

    async def handle_x(event: CloudEvent, uow: AnalyticsUnitOfWork, ctx: HandlerContext) -> Applied | None

`HANDLERS` maps every event type the consumer may receive to its handler. A handler
loads the ticket's facts through `uow.facts` (once per batch; `prepare` reads a whole
batch's facts and repeat searches in one statement first), folds the event with the
pure `rules.apply_event` (facts in, facts and counter increments out; the clocks counted
are dispatch's `clock_settled` verdicts, never re-derived), and hands the result to the
batch (`uow.facts.save`); the consumer writes the batch with one statement for all tables
(`uow.flush`). Returns None when the ticket has already counted the event (a redelivery).
Errors: `ValueError` (pydantic's ValidationError included) for an event `apply_event`
refuses: the consumer retries it and keeps it as a dead letter.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Awaitable, Callable
from zoneinfo import ZoneInfo

from services.analytics import reports, rules
from services.analytics.store import AnalyticsUnitOfWork, Applied
from shared import events as ev
from shared.auth import AuthError, Principal
from shared.errors import RuleViolation
from shared.periods import canonical_category
from shared.policy import Policy
from shared.uow import HandlerContext

Handler = Callable[[ev.CloudEvent, AnalyticsUnitOfWork, HandlerContext], Awaitable[Applied | None]]
ACTOR = "analytics"


async def fold(event: ev.CloudEvent, uow: AnalyticsUnitOfWork, policy: Policy,
               payload: ev.Payload | None = None) -> Applied | None:
    """Fold one event into its ticket's facts and the batch's counters (the live consumer
    and `analytics rebuild` alike). None: the ticket has already seen this event id.
    `payload`: the event's payload when already validated."""
    before = await uow.facts.get_for_update(event.estate, event.subject)
    if before is not None and event.id in before.seen_event_ids:
        return None
    after, deltas = rules.apply_event(before, event, policy, payload)
    uow.facts.save(event, after, deltas, policy)
    return Applied(before, after, deltas)


async def handle_ticket_event(event: ev.CloudEvent, uow: AnalyticsUnitOfWork, ctx: HandlerContext) -> Applied | None:
    """Any ticket event: counted by `rules.apply_event` (events it does not count, e.g. the
    archive's, are still remembered as seen)."""
    return await fold(event, uow, ctx.policy(event.estate))


async def handle_accepted(event: ev.CloudEvent, uow: AnalyticsUnitOfWork, ctx: HandlerContext) -> Applied | None:
    """`accepted`: counted, then a ticket of a kind and category that keeps coming back
    raises `corrective_action_suggested` in the same transaction (RULES §2)."""
    policy = ctx.policy(event.estate)
    applied = await fold(event, uow, policy)
    if applied is not None and (applied.before is None or applied.before.kind is None) \
            and applied.after.kind is not None:
        await suggest_corrective_action(event, applied.after, uow, ctx, policy)
    return applied


async def suggest_corrective_action(event: ev.CloudEvent, facts: rules.TicketFacts, uow: AnalyticsUnitOfWork,
                                    ctx: HandlerContext, policy: Policy) -> ev.CorrectiveActionSuggested | None:
    """`rules.repeat_problem` over the estate's recent tickets of the same category (this
    batch's included); the suggestion is emitted to the outbox. Returns it, if any.

    No lock of its own: the only caller is the analytics consumer, which is exclusive (one
    batch at a time across replicas, `consumers.py`), so no two transactions detect repeats
    at once and each sees every ticket committed before it; `analytics rebuild` folds
    without detecting repeats."""
    search = rules.repeat_search(event.estate, facts.ticket_id, facts.kind, facts.category, facts.building,
                                 facts.accepted_at, policy)
    if search is None:
        return None
    recent = await uow.facts.recent_same_category(search)
    suggestion = rules.repeat_problem(recent, search.new, policy)
    if suggestion is not None:
        await uow.emit(suggestion, estate=event.estate, actor=ACTOR, time=ctx.now())
    return suggestion


def accepted_search(event: ev.CloudEvent, policy: Policy) -> rules.RepeatSearch | None:
    """The repeat search `handle_accepted` will make for an `accepted` event of a ticket
    not yet accepted, from the payload as `rules.apply_event` reads it into the facts (a
    search that turns out different is read by itself then: never a wrong answer)."""
    p = event.payload()
    return rules.repeat_search(event.estate, event.subject, p.kind.value, canonical_category(p.category),
                               p.building, p.received_at, policy)


async def prepare(events: list[ev.CloudEvent], uow: AnalyticsUnitOfWork, ctx: HandlerContext) -> None:
    """Before a batch's handlers run (events fresh, in order): its tickets' facts (locked)
    and the repeat searches of its `accepted` events are read together, so the handlers
    read nothing per event. Handlers do not need it (without it they read as they go)."""
    searches = [search for e in events if e.event_name == ev.Accepted.event_name
                and (search := accepted_search(e, ctx.policy(e.estate))) is not None]
    await uow.facts.prepare([(e.estate, e.subject) for e in events], searches)


@dataclass(frozen=True)
class SignOffCommand:
    """A department head's entry on an estate's monthly form (RULES §4: problems, corrective
    actions, signed by the head). `month` "YYYY-MM", already parsed."""

    estate: str
    month: str
    department: str
    problems: str
    corrective_actions: str
    signed_by: str


async def handle_sign_off(command: SignOffCommand, uow: AnalyticsUnitOfWork, ctx: HandlerContext,
                          who: Principal) -> dict:
    """Record (or replace) the department's sign-off of the month; returns the stored row.
    Errors: AuthError 403 when the signer is not the caller or not the department's head
    (an estate director or company admin may sign for any department); RuleViolation 422
    for a department the estate does not have or a month that has not begun."""
    c = command
    if c.signed_by != who.staff_id:
        raise AuthError(403, f"a signature is the signer's own: signed_by {c.signed_by!r} is not the caller {who.staff_id!r}")
    departments = {d.code: d for d in ctx.estate(c.estate).departments}
    if departments and c.department not in departments:
        raise RuleViolation(f"estate {c.estate!r} has no department {c.department!r} "
                            f"(has: {', '.join(sorted(departments))})", status=422)
    if not who.has_role("estate_director", "company_admin"):
        head = departments[c.department].head if c.department in departments else None
        if (head and head != who.staff_id) or (who.departments and c.department not in who.departments):
            raise AuthError(403, f"{who.staff_id} is not the head of {c.department!r}"
                                 + (f" (the head is {head})" if head else ""))
    require_begun(c.month, ctx.now(), ctx.timezone(c.estate))
    row = dict(estate=c.estate, month=c.month, department=c.department, problems=c.problems,
               corrective_actions=c.corrective_actions, signed_by=who.staff_id, signer_name=who.name,
               signed_at=ctx.now())
    await uow.signoffs.save(row)
    return row


def require_begun(month: str, now: dt.datetime, tz: ZoneInfo) -> None:
    """Refuse a month after the current one (RuleViolation 422)."""
    current = reports.local_month(now, tz)
    if month > current:
        raise RuleViolation(f"month {month} has not begun (current month {current})", status=422)


# Every event type the bus accepts: the ticket's events are counted, `accepted` also
# checks for repeats; the archive's and audit events are only remembered as seen.
HANDLERS: dict[str, Handler] = {name: handle_ticket_event for name in ev.PAYLOADS} | {
    ev.Accepted.event_name: handle_accepted,
}
