"""Intake's handlers: plain async functions `handle_x(message, uow, ctx)` over an
`IntakeUnitOfWork` (or a fake one in tests/handlers/intake) and a `HandlerContext`.

Event handlers (the status other services decide, shown to the first-contact owner) are
registered in `HANDLERS`, keyed by event type; `consumers.py` subscribes each. Command
handlers (what routes call) register requests, judge complaints, log updates to owners,
record later signatures and hand night-shift items over; `jobs.py` calls the periodic ones.
No SQL, no module-global service, no clock reads here: time is `ctx.now()` or the
message's. Errors: `RuleViolation` (404 unknown ticket; 409/403/422 from the aggregate).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from services.intake import rules
from services.intake.attitude import handle_attitude_complaint_raised
from services.intake.contracts import RequestIn
from services.intake.domain import Registration, Ticket, check_request
from shared.errors import RuleViolation
from shared.events import CloudEvent
from shared.uow import HandlerContext


@dataclass
class TicketView:
    """A ticket with what the API shows beside it: the updates given to the owner (rows
    with note, method, updated_by, updated_at) and its night-shift handover item."""

    ticket: Ticket
    updates: list = field(default_factory=list)
    handover: Any = None


class Item(dict):
    """Attribute access to a dict, for a handover item just written (no need to read it back)."""

    __getattr__ = dict.get


async def _ticket(uow, estate: str, ticket_id: str, *, lock: bool = False) -> Ticket:
    ticket = await (uow.tickets.get_for_update(estate, ticket_id) if lock else uow.tickets.get(estate, ticket_id))
    if ticket is None:
        raise RuleViolation(f"no request {ticket_id!r} in estate {estate!r}", status=404)
    return ticket


async def view(uow, ticket: Ticket) -> TicketView:
    return TicketView(ticket, await uow.progress.for_ticket(ticket.id), await uow.handovers.for_ticket(ticket.id))


async def ticket_view(estate: str, ticket_id: str, uow) -> TicketView:
    """One request with its updates and handover item; 404 when the estate has none such."""
    return await view(uow, await _ticket(uow, estate, ticket_id))


async def view_by_client_request(estate: str, client_request_id: str, uow) -> TicketView | None:
    """The request an idempotency key registered, or None."""
    found = (await uow.tickets.by_client_request_ids(estate, [client_request_id])).get(client_request_id)
    return await view(uow, found) if found else None


# --- registration (RULES §1 Registration, First contact, Opening hours) --------------------------


async def handle_register(batch: list[Registration], uow, ctx: HandlerContext) -> list[TicketView]:
    """Register a batch of one estate's requests received in one year, in the caller's
    transaction, in as few statements as it allows: one lookup of the idempotency keys,
    one counter update for every new form number (gapless: the numbers are taken in
    the same transaction), one insert of the tickets, one outbox statement for their
    `accepted` events.

    A key registered before (or earlier in this batch) answers with that ticket. A duty
    staff member's off-hours registration goes on the night-shift handover list, due at
    the next rostered shift of their post (rules.roster_handover_due). Returns one view
    per registration, in order. Raises RuleViolation (422) for a refused registration;
    the caller then redoes the batch one by one so only that one fails."""
    if not batch:
        return []
    estate = batch[0].estate
    policy, calendar = ctx.policy(estate), ctx.calendar(estate)
    year = registration_year(batch[0].received_at, ctx, estate)
    keys = sorted({c.client_request_id for c in batch if c.client_request_id})
    known = await uow.tickets.by_client_request_ids(estate, keys)
    fresh: list[int] = []  # positions of the registrations that need a number
    first_of_key: dict[str, int] = {}
    for i, command in enumerate(batch):
        key = command.client_request_id
        if key and (key in known or key in first_of_key):
            continue
        if key:
            first_of_key[key] = i
        fresh.append(i)
    first = await uow.form_numbers.take(estate, year, len(fresh)) if fresh else 0
    new = {i: Ticket.register(batch[i], str(uuid.uuid4()), first + n, policy, calendar, year)
           for n, i in enumerate(fresh)}
    await uow.tickets.add_all(list(new.values()))
    views: dict[int, TicketView] = {}
    announcements = []
    for i, ticket in new.items():
        command, handover = batch[i], None
        if ticket.off_hours and command.duty_staff:
            now = command.received_at
            item = dict(estate=estate, ticket_id=ticket.id, registered_by=command.staff_id, registered_at=now,
                        handover_due=rules.roster_handover_due(now, command.staff_id,
                                                               await uow.roster.around(estate, now), policy, calendar))
            handover = Item(item, id=await uow.handovers.add(item), taken_over_by=None, taken_over_at=None)
        announcements.append((ticket.accepted(), estate, command.staff_id, command.received_at))
        views[i] = TicketView(ticket, [], handover)
    await uow.emit_many(announcements)
    for i, command in enumerate(batch):
        if i not in views:
            key = command.client_request_id
            views[i] = views[first_of_key[key]] if key not in known else await view(uow, known[key])
    return [views[i] for i in range(len(batch))]


class TransactionRegistrar:
    """Registers a request another service decided (callback's attitude complaint: the
    `Registrar` of services/intake/attitude.py) in the consumer's own transaction, exactly
    as the desk registers one (handle_register; the counter row's lock keeps the numbers
    gapless beside the desk's batches). `register(estate, request, first_contact)` takes
    RequestIn's fields and returns the ticket id (the first one for a known key)."""

    def __init__(self, uow, ctx: HandlerContext):
        self.uow, self.ctx = uow, ctx

    async def register(self, estate: str, request: dict, first_contact: str) -> str:
        body, now, found = RequestIn.model_validate(request), self.ctx.now(), self.ctx.estate(estate)
        if found is None:
            raise RuleViolation(f"unknown estate {estate!r}", status=404)
        facts = body.model_dump()
        check_request(facts, estate, found.buildings, now)
        staff = next((s for s in found.staff if s.id == first_contact), None)
        command = Registration(estate=estate, facts=facts, staff_id=first_contact,
                               staff_name=staff.name if staff else None,
                               duty_staff=bool(staff and "duty_staff" in staff.roles), received_at=now,
                               client_request_id=body.client_request_id)
        [registered] = await handle_register([command], self.uow, self.ctx)
        return registered.ticket.id


# --- complaint validity, updates, signatures, handover ---------------------------------------------


@dataclass(frozen=True)
class JudgeValidity:
    estate: str
    ticket_id: str
    valid: bool
    reason: str
    confirmed_by: str | None
    staff_id: str


async def _transition(uow, estate: str, ticket_id: str, staff_id: str, now: dt.datetime,
                      act: Callable[[Ticket], Any]) -> TicketView:
    """Load the ticket locked, let `act` make its transition (returning the event to raise,
    or None), save it, raise the event; the ticket as the API shows it."""
    ticket = await _ticket(uow, estate, ticket_id, lock=True)
    event = act(ticket)
    await uow.tickets.save(ticket)
    if event is not None:
        await uow.emit(event, estate=estate, actor=staff_id, time=now)
    return await view(uow, ticket)


async def handle_judge_validity(command: JudgeValidity, uow, ctx: HandlerContext) -> TicketView:
    """Judge a complaint; a valid judgement is announced (`validity_judged`) at once."""
    now, estate = ctx.now(), command.estate
    return await _transition(uow, estate, command.ticket_id, command.staff_id, now, lambda ticket: ticket.judge(
        command.valid, command.reason, command.staff_id, command.confirmed_by, now, ctx.policy(estate),
        ctx.calendar(estate)))


@dataclass(frozen=True)
class DecideValidity:
    estate: str
    ticket_id: str
    confirm: bool
    note: str | None
    staff_id: str
    roles: frozenset[str]


async def handle_decide_validity(command: DecideValidity, uow, ctx: HandlerContext) -> TicketView:
    """A manager confirms or rejects an invalid judgement; announced as `validity_judged`."""
    now = ctx.now()
    return await _transition(uow, command.estate, command.ticket_id, command.staff_id, now,
                             lambda ticket: ticket.decide_validity(command.staff_id, command.roles, command.confirm,
                                                                   command.note, now, ctx.policy(command.estate)))


@dataclass(frozen=True)
class GiveProgress:
    estate: str
    ticket_id: str
    note: str
    method: str
    staff_id: str


async def handle_give_progress(command: GiveProgress, uow, ctx: HandlerContext) -> TicketView:
    """Log an update given to the owner (`progress_updated`); for an invalid complaint the
    first one after the judgement is the owed notice of why."""
    now = ctx.now()
    ticket = await _ticket(uow, command.estate, command.ticket_id, lock=True)
    event = ticket.give_progress(command.note, command.method, command.staff_id, now)
    await uow.progress.add(ticket.id, command.estate, command.note, command.method, command.staff_id, now)
    await uow.tickets.save(ticket)
    await uow.emit(event, estate=command.estate, actor=command.staff_id, time=now)
    return await view(uow, ticket)


async def handle_record_signature(estate: str, ticket_id: str, uow, ctx: HandlerContext) -> TicketView:
    """The owner supplied the later signature (补签); reminders stop."""
    now = ctx.now()
    return await _transition(uow, estate, ticket_id, "", now, lambda ticket: ticket.sign(now))


async def handle_take_over(estate: str, item_id: int, staff_id: str, uow, ctx: HandlerContext):
    """The next shift takes a night-shift item over; the ticket's current handler changes,
    its first-contact owner never. Returns (item, ticket, when). 404 unknown item; 409 taken
    already, or the registrant taking over their own item."""
    now = ctx.now()
    item = await uow.handovers.get_for_update(estate, item_id)
    if item is None:
        raise RuleViolation(f"no handover item {item_id} in estate {estate!r}", status=404)
    if item.taken_over_at is not None:
        raise RuleViolation(f"handover item {item_id} was already taken over by {item.taken_over_by}", status=409)
    if item.registered_by == staff_id:
        raise RuleViolation("the next shift takes the item over, not the one who registered it", status=409)
    await uow.handovers.take_over(item_id, staff_id, now)
    ticket = await _ticket(uow, estate, item.ticket_id)
    ticket.hand_to(staff_id)
    await uow.tickets.save(ticket)
    return item, ticket, now


# --- events: the status the first-contact owner sees --------------------------------------------


async def handle_completed(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """Every department signed back this round: the request shows completed."""
    completed = event.payload()
    ticket = await uow.tickets.by_id_for_update(completed.ticket_id)
    if ticket is not None and ticket.complete(completed.round, completed.completed_at):
        await uow.tickets.save(ticket)


async def handle_reopened(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """The owner was not satisfied: open again in the new round."""
    reopened = event.payload()
    ticket = await uow.tickets.by_id_for_update(reopened.ticket_id)
    if ticket is not None and ticket.reopen(reopened.round):
        await uow.tickets.save(ticket)


async def handle_closed(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """The owner is satisfied (or the window elapsed): the request shows closed."""
    ticket = await uow.tickets.by_id_for_update(event.payload().ticket_id)
    if ticket is not None and ticket.close(event.time):
        await uow.tickets.save(ticket)


Handler = Callable[[CloudEvent, Any, HandlerContext], Awaitable[None]]
async def handle_attitude_complaint(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """Callback decided the owner is unhappy with staff attitude: register the complaint
    (services/intake/attitude.py) in this consumer's transaction, as the desk would."""
    await handle_attitude_complaint_raised(event, TransactionRegistrar(uow, ctx), ctx)


HANDLERS: dict[str, Handler] = {
    "completed": handle_completed,
    "reopened": handle_reopened,
    "closed": handle_closed,
    "attitude_complaint_raised": handle_attitude_complaint,
}
DESCRIPTIONS = {
    "completed": "Every department signed back: the request shows completed.",
    "reopened": "The owner was not satisfied: the request is open again in a new round.",
    "closed": "The owner is satisfied (or the window elapsed): the request shows closed.",
    "attitude_complaint_raised": "An owner unhappy with staff attitude at a callback: a new complaint, "
                                 "registered once (its client request id).",
}


# --- periodic ---------------------------------------------------------------------------------------


async def handle_signature_reminders(uow, ctx: HandlerContext) -> list[Ticket]:
    """Remind the desk of every phone/letter request whose owner has not signed yet;
    returns the tickets reminded."""
    now = ctx.now()
    due = await uow.tickets.signatures_due(now)
    for ticket in due:
        ticket.remind_signature(now, ctx.policy(ticket.estate))
        await uow.tickets.save(ticket)
    return due


async def handle_calendar_change(uow, ctx: HandlerContext) -> int:
    """Count every owed invalid-complaint notice deadline again from its judgement on the
    changed calendar (issue 10); returns how many moved."""
    changed = 0
    for ticket in await uow.tickets.notices_owed():
        if ticket.recount_notice(ctx.policy(ticket.estate), ctx.calendar(ticket.estate)):
            await uow.tickets.save(ticket)
            changed += 1
    return changed


def registration_year(received_at: dt.datetime, ctx: HandlerContext, estate: str) -> int:
    """The form number's year: the estate's local year at registration."""
    return received_at.astimezone(ctx.timezone(estate)).year


# --- duty roster, duty log and shift handover (issue 10; 001 第1、2、7篇) -----------------------------

ROSTER_ROLES = ("customer_service_supervisor", "estate_director", "estate_manager")


async def _shift(uow, estate: str, shift_id: int):
    row = await uow.roster.shift(estate, shift_id)
    if row is None:
        raise RuleViolation(f"no rostered shift {shift_id} in estate {estate!r}", status=404)
    return row


def _on_duty(staff_id: str, roles, shift) -> None:
    if staff_id not in shift.staff and not any(r in ROSTER_ROLES for r in roles):
        raise RuleViolation(f"{staff_id} is not on the {shift.shift} shift of {shift.post} on {shift.day}", status=403)


async def handle_set_roster(estate: str, month: str, entries: list[dict], staff_id: str, uow,
                            ctx: HandlerContext) -> list:
    """Set a month's roster; the month's shifts without a handover are replaced."""
    shifts = rules.roster_for_month(month, entries, ctx.policy(estate))
    await uow.roster.replace_month(estate, month, shifts, staff_id, ctx.now())
    return await uow.roster.month(estate, month)


async def handle_duty_log(estate: str, shift_id: int, entry: str, staff_id: str, roles, uow,
                          ctx: HandlerContext) -> dict:
    """A line of the shift's duty log, by someone on the shift (or a roster manager)."""
    now = ctx.now()
    _on_duty(staff_id, roles, await _shift(uow, estate, shift_id))
    entry_id = await uow.roster.log(shift_id, now, staff_id, entry)
    return {"id": entry_id, "shift_id": shift_id, "at": now, "by": staff_id, "entry": entry}


async def handle_shift_handover(estate: str, shift_id: int, items: list[dict], staff_id: str, roles, uow,
                                ctx: HandlerContext) -> list:
    """The outgoing shift hands over: the given items plus every request its staff
    registered on the shift and not yet handled. 409 when handed over already or while a
    major or emergency incident of the shift is open (001 第1篇 2.4, rules.handover_blockers)."""
    shift = await _shift(uow, estate, shift_id)
    _on_duty(staff_id, roles, shift)
    if await uow.roster.handed_over(shift_id):
        raise RuleViolation(f"the {shift.shift} shift of {shift.post} on {shift.day} was already handed over",
                            status=409)
    tickets = await uow.tickets.registered_by(estate, list(shift.staff), shift.starts_at, shift.ends_at)
    incidents = [rules.ShiftIncident(t.id, t.kind, t.record.get("repair_class"), t.record["severity"],
                                     t.record["urgency"], handled=t.handled) for t in tickets]
    blockers = rules.handover_blockers(incidents)
    if blockers:
        raise RuleViolation(f"no handover while a major or emergency incident of this shift is open: "
                            f"{', '.join(blockers)}", status=409)
    roster = await uow.roster.post_from(estate, shift.post, shift.ends_at)
    claim_due = rules.next_shift_start(roster, shift.post, shift.ends_at) or shift.ends_at
    open_ids = {i.ticket_id for i in incidents if not i.handled}
    by_id = {t.id: t for t in tickets}

    def about(ticket: Ticket | None, note: str, ticket_id: str | None) -> dict:
        return dict(ticket_id=ticket_id, kind=ticket.kind if ticket else None,
                    repair_class=ticket.record.get("repair_class") if ticket else None,
                    urgency=ticket.record.get("urgency") if ticket else None, note=note)

    rows = [about(t, t.record["description"][:500], t.id) for t in tickets if t.id in open_ids]
    rows += [about(by_id.get(i["ticket_id"]) if i.get("ticket_id") else None, i["note"], i.get("ticket_id"))
             for i in items]
    return await uow.roster.hand_over(shift_id, estate, staff_id, ctx.now(), claim_due, rows)


async def handle_claim_item(estate: str, item_id: int, staff_id: str, roles, uow, ctx: HandlerContext):
    """The incoming shift claims one item (签字确认). 404 unknown; 409 claimed already;
    403 for someone not on the incoming shift (roster managers may claim)."""
    item = await uow.roster.item_for_update(estate, item_id)
    if item is None:
        raise RuleViolation(f"no handover item {item_id} in estate {estate!r}", status=404)
    if item.claimed_at is not None:
        raise RuleViolation(f"handover item {item_id} was already claimed by {item.claimed_by}", status=409)
    handover = await uow.roster.handover(item.handover_id)
    outgoing = await _shift(uow, estate, handover.shift_id)
    incoming = await uow.roster.starting_at(estate, outgoing.post, handover.claim_due)
    if not any(r in ROSTER_ROLES for r in roles) and (incoming is None or staff_id not in incoming.staff):
        raise RuleViolation(f"{staff_id} is not on the incoming shift of {outgoing.post}", status=403)
    return await uow.roster.claim(item_id, staff_id, ctx.now())


async def handle_escalations(uow, ctx: HandlerContext) -> list[tuple[Any, str]]:
    """Items unclaimed past the incoming shift's start escalate once to the estate's
    policy.intake.handover_escalation_role (its first holder, else the role's name);
    returns (item, role) per escalation."""
    now, escalated = ctx.now(), []
    for row in await uow.roster.unclaimed_due(now):
        role = ctx.policy(row.estate).intake.handover_escalation_role
        found = ctx.estate(row.estate)
        holders = [s.id for s in (found.staff if found else []) if role in s.roles]
        await uow.roster.escalate(row.id, holders[0] if holders else role, now)
        escalated.append((row, role))
    return escalated
