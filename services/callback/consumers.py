"""The callback service's bus consumers: one durable consumer per event of `HANDLERS`,
each running its handler in the batch's transaction with the service's unit of work.

A batch's events share one unit of work (kept in the session's `info` for the batch). For
the events that feed the recurrence rule (`handlers.RECURRENCE_NEWS`), `prepare` readies it
(the estates' recurrence locks and the tickets created-or-locked in one statement, the
categories whose watches the handlers may ask for named, to be read in one statement) and
`flush` writes the tickets the batch changed in one statement before the batch commits
(issue 12). When a batch goes event by event (a handler failed), nothing is prepared and
the bus flushes after each event inside its savepoint; a failed event's unit of work is
dropped with its savepoint.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import handlers
from services.callback.app import service, unit_of_work
from services.callback.handlers import HANDLERS
from services.callback.store import CallbackUnitOfWork
from shared.events import CloudEvent
from shared.uow import of_batch

DESCRIPTIONS = {
    "accepted": "Learn the ticket's kind, category, reply method and first-contact owner; a later opinion may "
                "decide an earlier one's recurrence.",
    "validity_judged": "Invalid complaints need no callback (RULES §3 Who).",
    "assigned": "Learn which departments handle the ticket (recurrence rule) and plan a special service's "
                "mid-way callback.",
    "completed": "Schedule the callbacks the estate's policy asks for, watch an opinion without a callback path, "
                 "or close what needs no callback.",
    "progress_updated": "Keep the twice-weekly progress updates of long-running complaints visible on the worklist.",
    "clock_settled": "Count the weeks of owner updates dispatch settled as missed (dispatch decides the "
                     "progress-update duty).",
}

_UOW = "callback.uow"


def _unit_of_work(session: AsyncSession) -> CallbackUnitOfWork:
    return of_batch(session, _UOW, unit_of_work)


async def prepare_batch(session: AsyncSession, events: list[CloudEvent]) -> None:
    await handlers.prepare_batch(events, _unit_of_work(session), service.context)


async def flush_batch(session: AsyncSession) -> None:
    """Write what the batch's unit of work held (the next batch, or event, starts afresh)."""
    uow = session.info.pop(_UOW, None)
    if uow is not None:
        await uow.flush()


def register(name: str) -> None:
    handler = HANDLERS[name]

    async def consume(session: AsyncSession, event: CloudEvent) -> None:
        try:
            await handler(event, _unit_of_work(session), service.context)
        except BaseException:
            # Its savepoint (or the batch's transaction) is rolled back: nothing it held stands.
            session.info.pop(_UOW, None)
            raise

    consume.__name__ = f"on_{name}"
    service.consumer(name, description=DESCRIPTIONS[name], flush=flush_batch,
                     prepare=prepare_batch if name in handlers.RECURRENCE_NEWS else None)(consume)


for _name in HANDLERS:
    register(_name)
