"""Intake's bus consumers: one durable consumer per event type of `handlers.HANDLERS`,
each handed the consumer's transaction as an `IntakeUnitOfWork` (the owners' projection
of every ticket event is registered by owners.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.app import service
from services.intake.handlers import DESCRIPTIONS, HANDLERS, Handler
from services.intake.uow import IntakeUnitOfWork
from shared.events import CloudEvent


def _consumer(handler: Handler):
    async def consume(session: AsyncSession, event: CloudEvent) -> None:
        await handler(event, IntakeUnitOfWork(session, service.emit), service.context)

    consume.__name__ = consume.__qualname__ = handler.__name__
    consume.__doc__ = handler.__doc__
    return consume


for _name, _handler in HANDLERS.items():
    service.consumer(_name, description=DESCRIPTIONS[_name])(_consumer(_handler))
