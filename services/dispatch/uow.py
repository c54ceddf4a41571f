"""Dispatch's unit of work: the repositories of one transaction, the outbox (`emit`) and
the service's counters (breaches, escalation rungs), for the handlers (`shared.uow`)."""

from __future__ import annotations

import datetime as dt
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from services.dispatch import store
from shared.events import CloudEvent
from shared.uow import SqlUnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.service import Service


@dataclass(frozen=True)
class Metrics:
    """What the service counts for Prometheus: `breach(estate, clock)`, `escalation(estate, rung)`."""

    breaches: Counter
    escalations: Counter

    @classmethod
    def on(cls, registry: CollectorRegistry) -> "Metrics":
        return cls(
            Counter("estatedesk_sla_breaches", "Clocks that ran out", ["estate", "clock"], registry=registry),
            Counter("estatedesk_escalations", "Rungs of the escalation ladder reached", ["estate", "rung"],
                    registry=registry),
        )

    def breach(self, estate: str, clock: str) -> None:
        self.breaches.labels(estate, clock).inc()

    def escalation(self, estate: str, rung: str) -> None:
        self.escalations.labels(estate, rung).inc()


class DispatchUnitOfWork(SqlUnitOfWork):
    """uow.forms, .clocks, .escalations, .nonconformities, .progress, .bills over one session.

    `held`: the new forms, lines and clocks of a batch, kept until the batch's flush (the
    `accepted` consumer's, `store.NewRows` with `hold`); without it they are written at once."""

    def __init__(self, session: "AsyncSession", emit: Callable[..., Awaitable[CloudEvent]], metrics: Metrics,
                 on_clock_written: Callable[[dt.datetime], None] | None = None, held: store.NewRows | None = None):
        super().__init__(session, emit)
        self.metrics = metrics
        rows = held if held is not None else store.NewRows(session, on_clock_written)
        self.forms = store.FormRepository(session, rows)
        self.clocks = store.ClockRepository(session, rows, on_clock_written)
        self.escalations = store.EscalationRepository(session)
        self.nonconformities = store.NonconformityRepository(session)
        self.progress = store.ProgressLogRepository(session)
        self.bills = store.BillRepository(session)


def unit_of_work_factory(service: "Service", metrics: Metrics,
                         on_clock_written: Callable[[dt.datetime], None] | None = None):
    """`async with open_uow() as uow:` one transaction of `service`'s database, committed
    on success (the routes' and the jobs' transactions)."""

    @asynccontextmanager
    async def open_uow() -> AsyncIterator[DispatchUnitOfWork]:
        async with service.db.transaction() as session:
            yield DispatchUnitOfWork(session, service.emit, metrics, on_clock_written)

    return open_uow
