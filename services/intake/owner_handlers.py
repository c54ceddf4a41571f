"""The owners' projection as a handler (issue 15): every ticket event of an owner's online
request moves the stage the owner sees (owner_rules.next_stage) and sends the owner a
message in plain words; a progress update is passed on as it was given.

`handle_ticket_event_for_owner(event, uow, ctx)` over a unit of work carrying `owners`
(owner_store.SelfService, or a fake) and `notify(**message)` (the notifier, in the same
transaction). Most events are of desk requests, which no owner follows (issue 12): the
consumer acks those `concerns_no_owner` names without a transaction, and reads the rest
of a batch's tickets in one query (`prepare_ticket_events_for_owner`). No SQL, no clock
reads: times are the event's or `ctx.now()`.
"""

from __future__ import annotations

import datetime as dt
from typing import Mapping

from services.intake import owner_rules as orules
from shared.events import Channel, CloudEvent
from shared.uow import HandlerContext

ONLINE_PREFIX = "online-"  # client_request_id of the request an online submission became


async def record_stage(uow, ctx: HandlerContext, row, stage: orules.Stage, round_: int, event_id: str, *,
                       promised_at: dt.datetime | None = None, note: str | None = None,
                       at: dt.datetime | None = None, form_number: str | None = None) -> bool:
    """Record a stage the owner sees and tell the owner; False when this event was seen."""
    at = at or ctx.now()
    if not await uow.owners.add_stage(row, stage.value, round_, event_id, at, promised_at, note):
        return False
    await uow.notify(estate=row.estate, unit=row.unit, recipient=f"业主（{row.unit}）", purpose="progress",
                     ticket_id=row.ticket_id, binding_id=row.binding_id,
                     text=orules.stage_message(stage, form_number, round_, promised_at, ctx.timezone(row.estate),
                                               note))
    return True


def _ticket_to_read(event: CloudEvent) -> str | None:
    """The ticket whose key must be read to tell whether `event` concerns an owner's online
    request, or None when the event says so itself: no ticket, or an `accepted` of a
    request not registered from the online channel (an online request always is, and
    `accepted` is the event of every registration: at most every other event)."""
    data = event.data
    if event.event_name == "accepted" and data.get("channel") != Channel.online:
        return None
    return data.get("ticket_id") or None


def concerns_no_owner(event: CloudEvent, known_keys: Mapping[str, str | None]) -> bool:
    """True when the projection has nothing to do with the event, told without a query:
    from the event alone, or from its ticket's idempotency key in `known_keys` (ticket id
    -> key, or None: the desk's latest registrations). The consumer then acks it without
    a transaction."""
    ticket_id = _ticket_to_read(event)
    if ticket_id is None:
        return True
    return ticket_id in known_keys and not (known_keys[ticket_id] or "").startswith(ONLINE_PREFIX)


async def prepare_ticket_events_for_owner(events: list[CloudEvent], uow) -> None:
    """A consumer batch's read-ahead: the tickets its events name, read in one query, so
    each event's handling finds its ticket without one."""
    ids = sorted({ticket_id for event in events if (ticket_id := _ticket_to_read(event))})
    if ids:
        await uow.owners.load_tickets(ids)


async def handle_ticket_event_for_owner(event: CloudEvent, uow, ctx: HandlerContext) -> None:
    """Any ticket event: when the ticket was an owner's online request, the owner's stage
    follows (each event once: its id is the stage's key) and the owner is told."""
    data = event.data
    ticket_id = _ticket_to_read(event)
    if ticket_id is None:
        return
    # Found by the registration's idempotency key, committed with the ticket before any
    # event of it exists: an event never outruns the link (the opening clerk's transaction
    # holds the row until it has written the link).
    ticket = await uow.owners.ticket_of(ticket_id)
    if ticket is None or not (ticket.client_request_id or "").startswith(ONLINE_PREFIX):
        return  # not an owner's online request
    row = await uow.owners.submission(ticket.client_request_id.removeprefix(ONLINE_PREFIX), lock=True)
    if row is None:
        return
    if event.event_name == "progress_updated":
        await uow.notify(estate=row.estate, unit=row.unit, recipient=f"业主（{row.unit}）", purpose="progress",
                         ticket_id=ticket_id, binding_id=row.binding_id,
                         text=f"您的报事（{ticket.form_number}）进展：{data.get('note', '')}")
        return
    stage = orules.next_stage(orules.Stage(row.stage), row.round, event.event_name, data.get("round"))
    if stage is None:
        return
    note = None
    if event.event_name == "assigned":
        found = ctx.estate(row.estate)
        names = {d.code: d.name for d in ((found.departments if found else None) or [])}
        note = "、".join(names.get(d, d) for d in data.get("departments", []))
    await record_stage(uow, ctx, row, stage, data.get("round") or row.round, event.id, at=event.time,
                       promised_at=orules.promised_time(event.event_name, data), note=note,
                       form_number=ticket.form_number)
