"""Dispatch's bus consumers: one durable consumer per event of `handlers.HANDLERS`, each
running its handler on the consumer's transaction (`DispatchUnitOfWork`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.app import metrics, schedule, service
from services.dispatch.handlers import HANDLERS
from services.dispatch.uow import DispatchUnitOfWork
from shared.events import CloudEvent

DESCRIPTIONS = {
    "accepted": "Route the accepted form, open its ledger lines and start its clocks.",
    "validity_judged": "An invalid complaint (confirmed by a manager) ends its handling: its clocks are cancelled "
                       "and no breach follows.",
    "reopened": "The owner was not satisfied: a new round with fresh clocks.",
    "progress_updated": "The owner heard from us: the reply clock is met; the update is logged for the "
                        "twice-a-week rule.",
    "closed": "The ticket is closed (the callback found the owner satisfied): tracking is met, nothing else is owed.",
}


def _consumer(name: str):
    handler = HANDLERS[name]

    async def consume(session: AsyncSession, event: CloudEvent) -> None:
        await handler(event, DispatchUnitOfWork(session, service.emit, metrics, schedule.noted), service.context)

    consume.__name__ = consume.__qualname__ = f"on_{name}"
    return consume


for _name in HANDLERS:
    service.consumer(_name, description=DESCRIPTIONS[_name])(_consumer(_name))
