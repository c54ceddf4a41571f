"""The registration desk: registers the requests of one estate in batches.

The gapless form number needs the estate's counter row locked until commit, so
registrations of an estate are serial by nature. Rather than let every request wait for
the lock and its own commit, one worker per estate and year takes whatever has queued up
and registers it in one transaction through `handlers.handle_register` (one counter
update, one ticket insert for the whole batch, one lock, one commit), with no savepoint
unless a registration fails: then `Database.run_batch` (shared/db.py, the consumers' batch
too) redoes the batch, each in its own savepoint, and a refused one gives its number back.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from services.intake.domain import Registration
from services.intake.handlers import TicketView, handle_register
from services.intake.uow import IntakeUnitOfWork


# How many of its latest registrations the desk remembers (`recent_keys`): about 1 MB.
RECENT_TICKETS = 10_000


class RegistrationDesk:
    """Queues registrations per (estate, year) and drains each queue in batches."""

    def __init__(self, service) -> None:
        self.service = service
        self._queues: dict[tuple[str, int], list] = {}
        self._workers: dict[tuple[str, int], asyncio.Task] = {}
        # Ticket id -> its idempotency key (or None) for the tickets this desk registered
        # lately, oldest first. A registration's key never changes, so the owners'
        # projection tells from it, with no query, that a ticket's events concern no
        # owner's online request (owners.py); a ticket not here is simply read.
        self.recent_keys: OrderedDict[str, str | None] = OrderedDict()

    def _remember(self, view: TicketView) -> None:
        ticket = view.ticket
        self.recent_keys[ticket.id] = ticket.record.get("client_request_id")
        if len(self.recent_keys) > RECENT_TICKETS:
            self.recent_keys.popitem(last=False)

    async def register(self, command: Registration, year: int) -> TicketView:
        future = asyncio.get_running_loop().create_future()
        key = (command.estate, year)
        self._queues.setdefault(key, []).append((command, future))
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.create_task(self._drain(key))
        return await future

    async def _work(self, session, commands: list[Registration]) -> list[TicketView]:
        uow = IntakeUnitOfWork(session, self.service.emit, self.service.emit_many)
        return await handle_register(commands, uow, self.service.context)

    async def _work_one(self, session, command: Registration, alone: bool) -> TicketView:
        return (await self._work(session, [command]))[0]

    async def _drain(self, key) -> None:
        while self._queues.get(key):
            batch, self._queues[key] = self._queues[key], []
            try:
                outcomes = await self.service.db.run_batch([c for c, _ in batch], self._work_one,
                                                           all_at_once=self._work)
            except Exception as error:  # the commit failed: nobody in the batch was registered
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), outcome in zip(batch, outcomes):
                if future.done():
                    continue
                if outcome.error is not None:
                    future.set_exception(outcome.error)
                else:
                    self._remember(outcome.value)
                    future.set_result(outcome.value)
