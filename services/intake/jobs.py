"""Intake's periodic jobs: later-signature reminders, the escalation of shift-handover
items nobody claimed, and the recount of invalid-complaint notice deadlines whenever the
company calendar changes. Each opens its transaction and calls its handler."""

from __future__ import annotations

import logging

from prometheus_client import Counter

from services.intake import handlers
from services.intake.app import service
from services.intake.uow import IntakeUnitOfWork
from shared.calendar_watch import on_calendar_change

log = logging.getLogger("estatedesk.intake")

signature_reminders_total = Counter(
    "estatedesk_signature_reminders", "Reminders to get a phone/letter owner's later signature (补签)",
    ["estate"], registry=service.registry,
)


@service.periodic("signature-reminders", every_seconds=5.0)
async def remind_signatures() -> int:
    """Remind the desk of every phone/letter request whose owner has not signed yet."""
    async with service.db.transaction() as session:
        reminded = await handlers.handle_signature_reminders(IntakeUnitOfWork(session, service.emit), service.context)
    for ticket in reminded:
        signature_reminders_total.labels(ticket.estate).inc()
        log.info("owner's signature still owed", extra={"estate": ticket.estate, "ticket": ticket.id})
    return len(reminded)


@on_calendar_change(service, "calendar-recompute")
async def recompute_notices_on_calendar_change() -> int:
    """On every change of the company's calendar, count every owed invalid-complaint
    notice deadline again from its judgement (issue 10: every running deadline follows
    every change)."""
    async with service.db.transaction() as session:
        return await handlers.handle_calendar_change(IntakeUnitOfWork(session, service.emit), service.context)


@service.periodic("shift-handover-escalation", every_seconds=5.0)
async def escalate_unclaimed_items() -> int:
    """An item unclaimed past the incoming shift's start escalates (once) to the estate's
    policy.intake.handover_escalation_role (the customer-service supervisor)."""
    async with service.db.transaction() as session:
        escalated = await handlers.handle_escalations(IntakeUnitOfWork(session, service.emit), service.context)
    for row, role in escalated:
        log.warning("handover item unclaimed past the incoming shift's start; escalated to the %s", role,
                    extra={"estate": row.estate, "item": row.id})
    return len(escalated)
