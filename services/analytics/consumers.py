"""Analytics' bus consumer: every ticket event, in stream order, through `handlers.HANDLERS`.

A batch's events share one unit of work (kept in the session's `info` for the batch):
its tickets' facts (locked) and its repeat searches are read up front in one statement
(`prepare_batch`; when the batch goes event by event, each ticket once as it comes), and
what the batch changes is summed in memory and written by `flush_batch` with one
statement for all its tables before the batch commits, in the transaction that claims
the batch's event ids (exactly once). When the batch goes event by event (a handler
failed), the bus flushes after each event inside its savepoint.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.app import service
from services.analytics.dashboard import announce_after_commit
from services.analytics.handlers import HANDLERS, prepare
from services.analytics.store import AnalyticsUnitOfWork
from shared.events import CloudEvent
from shared.uow import of_batch

_UOW = "analytics.uow"
# The read model is on no request's path: its batch keeps gathering this long after its
# first event, so its six statements (bus and read model) are shared by more events
# (bench/statements.py at 32 in flight: 1.65–2.09 statements per registration without,
# 0.69–0.79 with 0.1 s). The dashboard's news comes that much later (it promises a second).
GATHER_SECONDS = 0.1


def _unit_of_work(session: AsyncSession) -> AnalyticsUnitOfWork:
    return of_batch(session, _UOW, lambda s: AnalyticsUnitOfWork(s, service.emit))


async def prepare_batch(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Read what the batch's events touch, in one statement (`handlers.prepare`)."""
    await prepare(events, _unit_of_work(session), service.context)


async def flush_batch(session: AsyncSession) -> None:
    """Write what the batch's handlers folded (the next batch starts a fresh unit of work)."""
    uow = session.info.pop(_UOW, None)
    if uow is not None:
        await uow.flush(service.clock.now())


# Exclusive: every event adds to the same running totals; replicas folding batches at once
# would lock those rows in different orders and deadlock (seen in the cluster fault test).
# It also serialises repeat detection (handlers.suggest_corrective_action takes no lock).
@service.consumer(description="Fold every ticket event into the read model; suggest corrective action for repeats.",
                  exclusive=True, prepare=prepare_batch, flush=flush_batch,
                  gather_seconds=GATHER_SECONDS)
async def on_ticket_event(session: AsyncSession, event: CloudEvent) -> None:
    try:
        applied = await HANDLERS[event.event_name](event, _unit_of_work(session), service.context)
    except BaseException:
        # Its savepoint is rolled back: the next event reads the stored facts again.
        session.info.pop(_UOW, None)
        raise
    if applied is not None:
        announce_after_commit(session, event)
