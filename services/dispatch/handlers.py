"""Dispatch's handlers (issue 11): plain async functions `handle_x(message, uow, ctx)`.

Event handlers are registered in `HANDLERS` (event type → handler; consumers.py subscribes
them), command handlers are what the routes call. Each loads the form through the unit of
work's repositories, asks the aggregate (`domain.Form`) for the transition, saves it and
carries out the effects the aggregate recorded (`apply_effects`): clocks closed (each
settled once, `clock_settled`) or started, escalations resolved, events raised.
No SQL, no wall clock, no module-global service here.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Awaitable, Callable, Protocol, Sequence

from services.dispatch import domain, rules
from services.dispatch.domain import SYSTEM, Form
from services.dispatch.effects import ClockScope, CloseClocks, Raise, ResolveEscalations, StartClocks, met_by
from services.dispatch.rules import Clock, Step, TicketFacts
from shared.directory import Estate
from shared.errors import RuleViolation
from shared.events import Accepted, ClockOutcome, ClockSettled, CloudEvent, Escalated, Kind, Reopened, ValidityJudged
from shared.uow import HandlerContext

log = logging.getLogger("estatedesk.dispatch")


class Handler(Protocol):
    def __call__(self, event: CloudEvent, uow, ctx: HandlerContext) -> Awaitable[None]: ...


# --- carrying out a transition's effects -------------------------------------------------------


async def settle(uow, row, at: dt.datetime, outcome: ClockOutcome) -> None:
    """Publish dispatch's verdict on one clock (RULES §1, §2 clocks): the one fact the
    on-time figures of analytics count, emitted once per clock."""
    await uow.emit(
        ClockSettled(ticket_id=row.ticket_id, clock_id=row.id, round=row.round, clock=row.clock,
                     department=row.department or None, due_at=row.due_at, settled_at=at, outcome=outcome),
        estate=row.estate, actor=SYSTEM, time=at,
    )


async def close_clocks(uow, scope: ClockScope, at: dt.datetime, outcome: str) -> None:
    """Close open clocks and resolve their escalations; a clock not breached yet is
    settled now (`rules.clock_verdict`: late is breached)."""
    rows = await uow.clocks.close(scope, at, outcome)
    for row in rows:
        if row.breached_at is None:  # a breached clock was settled when it ran out
            await settle(uow, row, at, rules.clock_verdict(row.due_at, None, at, outcome))
    await uow.escalations.resolve_for_clocks([row.id for row in rows], at)


async def apply_effects(form: Form, uow) -> None:
    """Save the form and its lines, then do what its transitions asked, in order."""
    await uow.forms.save(form)
    effects, form.effects = form.effects, []
    for effect in effects:
        if isinstance(effect, CloseClocks):
            await close_clocks(uow, effect.scope, effect.at, effect.outcome)
        elif isinstance(effect, StartClocks):
            lines = {line.department: line for line in form.active_lines}
            await uow.clocks.add(form.ticket_id, form.estate, effect.clocks, lines)
        elif isinstance(effect, ResolveEscalations):
            await uow.escalations.resolve(effect.scope, effect.at)
        elif isinstance(effect, Raise):
            await uow.emit(effect.payload, estate=form.estate, actor=effect.actor, time=effect.at)
        else:  # pragma: no cover - a new effect type without its executor
            raise TypeError(f"unknown effect {effect!r}")


async def escalate(uow, ctx: HandlerContext, *, ticket_id: str, estate: str, round: int, rung: str, reason: str,
                   now: dt.datetime, deadline_id: int | None = None, clock: str | None = None,
                   department: str | None = None, nonconformity: bool = False, actor: str = SYSTEM) -> None:
    """A rung of the escalation ladder reached (RULES §2 Escalation): kept, announced
    (`escalated`) and, for a breach, climbing again after the policy's minutes per rung."""
    climbs = deadline_id is not None
    await uow.escalations.add(ticket_id=ticket_id, estate=estate, round=round, rung=rung, reason=reason, at=now,
                              next_at=rules.next_escalation_at(now, ctx.policy(estate)) if climbs else None,
                              deadline_id=deadline_id, clock=clock, department=department, nonconformity=nonconformity)
    await uow.emit(Escalated(ticket_id=ticket_id, round=round, rung=rung, reason=reason, clock=clock,
                             nonconformity=nonconformity, department=department),
                   estate=estate, actor=actor, time=now)
    uow.metrics.escalation(estate, rung)


# --- event handlers -------------------------------------------------------------------------


def route(facts: TicketFacts, estate: Estate | None) -> list[str]:
    """The departments a form goes to: the estate's own routing table first, the
    defaults when none of its lines matches; only departments the estate has."""
    routed = None
    if estate and estate.routing_rules:
        try:
            routed = rules.route(facts, rules.routing_rules_from_data(estate.routing_rules), default_departments=())
        except RuleViolation as error:
            log.info("estate %s routing: %s; using the default table", estate.code, error)
    return rules.departments_in_estate(routed or rules.route(facts), estate.department_codes() if estate else [])


async def handle_accepted(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """Route the accepted form, open its ledger lines and start its clocks; a complaint
    about staff and an owner's loss above the threshold are escalated at once."""
    accepted: Accepted = event.payload()
    if await uow.forms.exists(accepted.ticket_id):
        return  # already routed (a re-publish under a new event id)
    now, policy = ctx.now(), ctx.policy(event.estate)
    facts = TicketFacts.from_accepted(accepted)
    departments = route(facts, ctx.estate(event.estate))
    form = Form.route(accepted, event.estate, departments, now, policy, ctx.calendar(event.estate))
    await apply_effects(form, uow)
    # RULES §2 Escalation by subject: straight to the estate director, not on a breach.
    rung = domain.first_rung(facts, policy)
    if facts.kind is Kind.complaint and facts.about_role in policy.escalation.subject_roles:
        await escalate(uow, ctx, ticket_id=form.ticket_id, estate=form.estate, round=1, rung=rung, now=now,
                       reason=f"complaint about {facts.about_role} goes to the {rung}")
    # RULES §2 Economic loss: a nonconformity record for the management representative.
    if rules.needs_nonconformity(accepted.owner_loss_cny, policy):
        record = rules.open_nonconformity(
            accepted.ticket_id, f"owner's loss of {accepted.owner_loss_cny} CNY: {accepted.description}",
            accepted.first_contact, now, accepted.owner_loss_cny,
        )
        await uow.nonconformities.add(record, form.estate)
        approver = policy.escalation.nonconformity_approver_role
        await escalate(
            uow, ctx, ticket_id=form.ticket_id, estate=form.estate, round=1, rung=approver, now=now,
            nonconformity=True,
            reason=f"owner's loss {accepted.owner_loss_cny} CNY exceeds {policy.escalation.nonconformity_loss_cny} "
                   f"CNY: nonconformity record awaits the {approver}'s approval",
        )


async def routed_form(uow, estate: str, ticket_id: str) -> Form:
    """Each event has its own consumer, so one about a form whose `accepted` is still on
    its way is retried (the bus backs off and redelivers); an event about a ticket this
    service never routed ends as a dead letter."""
    form = await uow.forms.get(ticket_id, lock=True)
    if form is None:
        raise LookupError(f"form {ticket_id} of estate {estate} not routed yet; retrying")
    return form


async def handle_validity_judged(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """An invalid complaint (confirmed by a manager) ends its handling: its clocks are
    cancelled and no breach follows."""
    judged: ValidityJudged = event.payload()
    form = await routed_form(uow, event.estate, judged.ticket_id)
    form.judge(judged.valid, ctx.now())
    await apply_effects(form, uow)


async def handle_reopened(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """The owner was not satisfied: a new round with fresh clocks (the departments named,
    else those of the last round, else routed again)."""
    reopened: Reopened = event.payload()
    form = await routed_form(uow, event.estate, reopened.ticket_id)
    departments = list(dict.fromkeys(reopened.departments)) or [l.department for l in form.active_lines]
    if not departments:
        departments = route(form.ticket_facts, ctx.estate(event.estate))
    if not form.reopen(reopened.round, departments, event.time, ctx.now(), reopened.reopened_by,
                       ctx.policy(event.estate), ctx.calendar(event.estate)):
        log.info("round %s of %s already started", reopened.round, reopened.ticket_id)
        return
    await apply_effects(form, uow)


async def handle_progress_updated(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """The owner heard from us: the reply clock is met; the update counts towards its
    week's progress-update clock, met once the week has them all, and the next week's
    clock starts (RULES §1 reply, §2 Progress updates)."""
    update = event.payload()
    form = await routed_form(uow, event.estate, update.ticket_id)
    at = event.time
    await uow.progress.add(form.ticket_id, event.estate, at, update.method, update.updated_by)
    await close_clocks(uow, ClockScope(ticket_id=form.ticket_id, round=form.round, clocks=met_by(Step.owner_updated)),
                       at, "met")
    week = await uow.clocks.progress_week_at(form.ticket_id, at)
    if week is None:
        return
    policy = ctx.policy(form.estate)
    if rules.progress_week_met(week.started_at, week.due_at, await uow.progress.times(form.ticket_id), policy):
        await close_clocks(uow, ClockScope(ids=(week.id,)), at, "met")
        await start_progress_week(uow, form.ticket_id, form.estate, week.round, form.kind, form.accepted_at,
                                  week.due_at, policy)


async def start_progress_week(uow, ticket_id: str, estate: str, round: int, kind: str, opened_at: dt.datetime,
                              at: dt.datetime, policy) -> None:
    week = domain.progress_week(ticket_id, round, kind, opened_at, at, policy)
    if week is not None:
        await uow.clocks.add(ticket_id, estate, [week[0]], {})


async def handle_closed(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """The ticket is closed (the callback found the owner satisfied): tracking is met,
    nothing else is owed."""
    form = await uow.forms.get(event.payload().ticket_id, lock=True)
    if form is None:
        return  # nothing of it was ever routed here
    form.close(event.time, ctx.now())
    await apply_effects(form, uow)


HANDLERS: dict[str, Handler] = {
    "accepted": handle_accepted,
    "validity_judged": handle_validity_judged,
    "reopened": handle_reopened,
    "progress_updated": handle_progress_updated,
    "closed": handle_closed,
}


# --- command handlers (what the routes call) -----------------------------------------------------


@dataclass(frozen=True)
class FormCommand:
    """A step on a form: `act(form, now, ctx)` makes the aggregate's transition."""

    estate: str
    ticket_id: str
    act: Callable[[Form, dt.datetime, HandlerContext], None]


async def handle_form_command(command: FormCommand, uow, ctx: HandlerContext) -> Form:
    """The one shape of every form step (acknowledge, arrive, sign back, verify, return,
    reschedule, transfer): load the form locked (404), let it make the move (409/422
    when refused), save it and carry out its effects."""
    form = await uow.forms.get_for_update(command.estate, command.ticket_id)
    command.act(form, ctx.now(), ctx)
    await apply_effects(form, uow)
    return form


def acknowledge(department: str, by: str):
    return lambda form, now, ctx: form.acknowledge(department, by, now)


def arrive(department: str, by: str):
    return lambda form, now, ctx: form.arrive(department, by, now)


def sign_back(department: str, opinion: str, result: str, by: str, head: bool):
    return lambda form, now, ctx: form.sign_back(department, opinion, result, by, head, now)


def verify(department: str, by: str):
    return lambda form, now, ctx: form.verify(department, by, now)


def return_sign_back(department: str, reason: str, by: str):
    return lambda form, now, ctx: form.return_sign_back(department, reason, by, now)


def transfer(source: str | None, to: str, note: str | None, by: str, caller_departments: Sequence[str],
             acts_for: Callable[[str], None]):
    """`acts_for(source)` checks the caller may hand on for the source department (403)."""
    def act(form: Form, now: dt.datetime, ctx: HandlerContext) -> None:
        form.expect_in_handling()
        giver = form.source_line(source, caller_departments)
        form.line(giver)
        acts_for(giver)
        form.transfer(giver, to, note, by, now, ctx.policy(form.estate), ctx.calendar(form.estate))
    return act


async def handle_reschedule(estate: str, ticket_id: str, department: str, appointment_at: dt.datetime, note: str,
                            by: str, uow, ctx: HandlerContext) -> Form:
    """Owner not at home: the line's arrival and repair-slip clocks follow the new appointment."""
    now = ctx.now()
    if appointment_at <= now:
        raise RuleViolation(f"the new appointment {appointment_at.isoformat()} is not in the future", status=422)
    form = await uow.forms.get_for_update(estate, ticket_id)
    form.expect_in_handling()
    line = form.line(department)
    clocks = await uow.clocks.open_for_line(line.id, (Clock.arrival.value, Clock.repair_slip_return.value))
    form.reschedule(department, appointment_at, note, by, now, clocks, ctx.policy(estate))
    await apply_effects(form, uow)
    return form


async def handle_open_nonconformity(estate: str, ticket_id: str, content: str, owner_loss_cny: Decimal | None,
                                    by: str, uow, ctx: HandlerContext) -> rules.NonconformityRecord:
    """The estate manager writes the nonconformity record; it is escalated to its approver."""
    now, policy = ctx.now(), ctx.policy(estate)
    form = await uow.forms.get_for_update(estate, ticket_id)
    if await uow.nonconformities.exists(ticket_id):
        raise RuleViolation(f"ticket {ticket_id} already has a nonconformity record", status=409)
    record = rules.open_nonconformity(ticket_id, content, by, now, owner_loss_cny)
    await uow.nonconformities.add(record, estate)
    approver = policy.escalation.nonconformity_approver_role
    await escalate(uow, ctx, ticket_id=ticket_id, estate=estate, round=form.round, rung=approver, now=now,
                   nonconformity=True, actor=by,
                   reason=f"nonconformity record opened by {by}; awaits the {approver}'s approval")
    return record


async def handle_approve_nonconformity(estate: str, ticket_id: str, by: str, role: str, uow,
                                       ctx: HandlerContext) -> rules.NonconformityRecord:
    """Approved by the policy's approver (管理者代表); a form held for it completes."""
    now = ctx.now()
    form = await uow.forms.get_for_update(estate, ticket_id)
    record = rules.approve_nonconformity(await uow.nonconformities.get_for_update(ticket_id), by, role, now,
                                         ctx.policy(estate))
    await uow.nonconformities.save(record)
    form.approved(now, by)
    await apply_effects(form, uow)
    return record


async def handle_nonconformity_step(estate: str, ticket_id: str, step, uow,
                                    ctx: HandlerContext) -> rules.NonconformityRecord:
    """One later step of the record (corrective action, close, CAPA report): `step(record, now)`."""
    await uow.forms.get_for_update(estate, ticket_id)
    record = step(await uow.nonconformities.get_for_update(ticket_id), ctx.now())
    await uow.nonconformities.save(record)
    return record


# --- paid household services (RULES §2 Paid services) -------------------------------------------


async def handle_create_bill(estate: str, body, by: str, uow, ctx: HandlerContext) -> str:
    """A repair bill for a form, numbered `<ESTATE>-<year>-B<seq>` per estate and year in
    the estate's zone; 404 without the form, 422 for an item not in the catalogue."""
    now = ctx.now()
    await uow.forms.get_for_update(estate, body.ticket_id)
    catalogue = {r.code: rules.ServiceItem(r.code, r.name, r.price_cny, r.paid) for r in await uow.bills.catalogue(estate)}
    lines = []
    for line in body.services:
        item = catalogue.get(line.code)
        if item is None:
            raise RuleViolation(f"no service item {line.code!r} in the estate's catalogue", status=422)
        agreed_by = tuple(line.agreed_by) if line.agreed_by else None
        lines.append(rules.service_line(item, line.quantity, agreed_price_cny=line.agreed_price_cny, agreed_by=agreed_by))
    lines += [rules.material_line(m.name, m.quantity, m.unit_price_cny) for m in body.materials]
    year = now.astimezone(ctx.timezone(estate)).year
    seq = await uow.bills.next_number(estate, year)
    bill = rules.make_bill(f"{estate.upper()}-{year}-B{seq:06d}", body.ticket_id, lines)
    stored = [dict(kind=l.kind.value, description=l.description, code=l.code, quantity=str(l.quantity),
                   unit_price_cny=str(l.unit_price_cny), price_agreed_by=list(l.price_agreed_by)) for l in bill.lines]
    await uow.bills.add(number=bill.number, estate=estate, ticket_id=body.ticket_id, lines=stored,
                        total_cny=bill.total_cny, created_by=by, created_at=now)
    return bill.number


async def handle_settle_bill(estate: str, number: str, channel: str, by: str, role: str, uow,
                             ctx: HandlerContext) -> None:
    """Finance books and collects the bill (finance counter or bank collection): 404
    unknown, 403 not finance, 409 settled already (`rules.settle_bill`)."""
    now = ctx.now()
    row = await uow.bills.get(estate, number, lock=True)
    if row is None:
        raise RuleViolation(f"no bill {number!r} in estate {estate!r}", status=404)
    bill = rules.Bill(row.number, row.ticket_id, bill_lines(row.lines))
    if row.settled_at is not None:
        bill = replace(bill, settlement=rules.Settlement(rules.SettlementChannel(row.settled_channel), row.settled_by,
                                                         row.settled_at))
    settled = rules.settle_bill(bill, channel, by, role, now)
    await uow.bills.settle(number, settled.settlement.channel.value, by, now)


def bill_lines(rows: list[dict]) -> tuple[rules.BillLine, ...]:
    """A bill's stored lines (the `bills.lines` JSON) as the rules' lines."""
    return tuple(
        rules.BillLine(rules.LineKind(r["kind"]), r["description"], Decimal(r["quantity"]), Decimal(r["unit_price_cny"]),
                       r.get("code"), tuple(r.get("price_agreed_by") or ()))
        for r in rows
    )
