"""The archive's bus consumers: the catch-all consumer of every ticket event and the
access-log consumer of `access_refused`, each running its handler of `HANDLERS` in the
batch's transaction with the archive's unit of work.

The catch-all consumer's batch shares one unit of work (kept in the session's `info` for
the batch): `prepare_batch` reads whether the batch's tickets are archived with one
statement, and the collected events are written by `flush_batch` with one statement
before the batch commits, in the transaction that claims the batch's event ids (exactly
once). When the batch goes event by event (a handler failed), nothing is prepared: each
event reads its own ticket, and the bus flushes after it inside its savepoint.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.archive.app import late_events, seal_watch, service, unit_of_work
from services.archive.handlers import HANDLERS, prepare_ticket_events
from services.archive.uow import ArchiveUnitOfWork
from shared.events import CloudEvent
from shared.uow import of_batch

log = logging.getLogger("estatedesk.archive")

_UOW = "archive.uow"
# A batch of ticket events keeps gathering this long after its first event: it costs the
# same five statements at any size (BEGIN, claims, record numbers, collected events,
# COMMIT), and nobody waits on the archive's collecting (the timeline lags by at most this;
# sealing waits for the ack floor anyway). 50 ms left archive at 1.0–1.3 statements per
# registration at 32 in flight, 100 ms at 0.7–0.9 (docs/performance.md).
GATHER_SECONDS = 0.1


def _batch_unit_of_work(session: AsyncSession) -> ArchiveUnitOfWork:
    return of_batch(session, _UOW, unit_of_work)


async def prepare_batch(session: AsyncSession, events: list[CloudEvent]) -> None:
    await prepare_ticket_events(events, _batch_unit_of_work(session))


async def flush_batch(session: AsyncSession) -> None:
    """Write what the batch's handlers collected (the next batch starts a fresh unit of work)."""
    uow = session.info.pop(_UOW, None)
    if uow is not None:
        await uow.flush()


@service.consumer(description="Collect every ticket event; a `closed` ticket is queued for sealing into the chain.",
                  prepare=prepare_batch, flush=flush_batch, gather_seconds=GATHER_SECONDS)
async def on_ticket_event(session: AsyncSession, event: CloudEvent) -> None:
    try:
        collected = await HANDLERS["*"](event, _batch_unit_of_work(session), service.context)
    except BaseException:
        # Its savepoint is rolled back: what it held must not be written with the next event.
        session.info.pop(_UOW, None)
        raise
    if collected.outcome == "closed":
        # The seal job looks once this batch's pending row is committed (not before: a look
        # that found nothing would wait for the idle look).
        sa.event.listen(session.sync_session, "after_commit", lambda _: seal_watch.seen(), once=True)
    elif collected.outcome == "addendum":
        late_events.labels(event.estate, event.event_name).inc()
        log.warning("event %s arrived after its ticket was archived: appended as addendum %s to %s",
                    event.event_name, collected.number, collected.record_number,
                    extra={"estate": event.estate, "ticket": event.subject, "event_id": event.id})


@service.consumer("access_refused", description="Keep every refusal at the door to owners' data or archived "
                  "records, from any service, in the access log.")
async def on_access_refused(session: AsyncSession, event: CloudEvent) -> None:
    await HANDLERS["access_refused"](event, unit_of_work(session), service.context)
