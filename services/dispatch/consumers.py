"""Dispatch's bus consumers: one durable consumer per event of `handlers.HANDLERS`, each
running its handler on the consumer's transaction (`DispatchUnitOfWork`).

The `accepted` consumer works per batch (issue 12): `prepare_accepted` asks once for the
whole batch which tickets are routed already, its handlers hold the new forms, ledger
lines and clocks in the batch's `store.NewRows` (kept in the session's `info`), and
`flush_accepted` writes them with one statement per table before the batch commits, in
the transaction that claims the batch's event ids. When the batch goes event by event (a
handler failed), nothing is prepared and the bus flushes after each event inside its
savepoint; an event whose handler fails leaves nothing held behind."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import store
from services.dispatch.app import metrics, schedule, service
from services.dispatch.handlers import HANDLERS
from services.dispatch.uow import DispatchUnitOfWork
from shared.events import CloudEvent
from shared.uow import of_batch

DESCRIPTIONS = {
    "accepted": "Route the accepted form, open its ledger lines and start its clocks.",
    "validity_judged": "An invalid complaint (confirmed by a manager) ends its handling: its clocks are cancelled "
                       "and no breach follows.",
    "reopened": "The owner was not satisfied: a new round with fresh clocks.",
    "progress_updated": "The owner heard from us: the reply clock is met; the update is logged for the "
                        "twice-a-week rule.",
    "closed": "The ticket is closed (the callback found the owner satisfied): tracking is met, nothing else is owed.",
}
# session.info key: the `accepted` batch's held new rows.
_HELD = "dispatch.new_rows"


def _unit_of_work(session: AsyncSession, held: store.NewRows | None = None) -> DispatchUnitOfWork:
    return DispatchUnitOfWork(session, service.emit, metrics, schedule.noted, held=held)


def _held(session: AsyncSession) -> store.NewRows:
    """The batch's held new rows (created at the batch's first use)."""
    return of_batch(session, _HELD, lambda s: store.NewRows(s, schedule.noted, hold=True))


async def prepare_accepted(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Which of the batch's tickets are routed already, in one statement."""
    await _unit_of_work(session, _held(session)).forms.know_routed(
        list(dict.fromkeys(event.data["ticket_id"] for event in events)))


async def flush_accepted(session: AsyncSession) -> None:
    """Write the held rows (the next batch, or the next event alone, starts afresh)."""
    held = session.info.pop(_HELD, None)
    if held is not None:
        await held.write()


async def on_accepted(session: AsyncSession, event: CloudEvent) -> None:
    """Route one accepted form; its new rows wait in the batch's `NewRows` for the flush."""
    try:
        await HANDLERS["accepted"](event, _unit_of_work(session, _held(session)), service.context)
    except BaseException:
        # Its savepoint is rolled back: what it held goes too.
        session.info.pop(_HELD, None)
        raise


def _consumer(name: str):
    handler = HANDLERS[name]

    async def consume(session: AsyncSession, event: CloudEvent) -> None:
        await handler(event, _unit_of_work(session), service.context)

    consume.__name__ = consume.__qualname__ = f"on_{name}"
    return consume


service.consumer("accepted", description=DESCRIPTIONS["accepted"], prepare=prepare_accepted,
                 flush=flush_accepted)(on_accepted)
for _name in HANDLERS:
    if _name != "accepted":
        service.consumer(_name, description=DESCRIPTIONS[_name])(_consumer(_name))
