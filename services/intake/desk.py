"""The registration desk: registers the requests of one estate in batches.

The gapless form number needs the estate's counter row locked until commit, so
registrations of an estate are serial by nature. Rather than let every request wait for
the lock and its own commit, one worker per estate and year takes whatever has queued up
and registers it in one transaction through `handlers.handle_register` (one counter
update, one ticket insert for the whole batch, one lock, one commit), with no savepoint
unless a registration fails: then `run_batch_or_one_by_one` redoes the batch, each in its
own savepoint, and a refused one gives its number back.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from services.intake.domain import Registration
from services.intake.handlers import TicketView, handle_register
from services.intake.uow import IntakeUnitOfWork


class _RegistrationFailed(Exception):
    """One registration of a batch failed in the all-at-once pass."""


async def run_batch_or_one_by_one(service, batch: list, work: Callable[..., Awaitable[list]]) -> list:
    """Run `work(session, items) -> results` over the whole batch in one transaction; if it
    raises, roll back and redo each item alone in a savepoint of one new transaction.
    Returns one (result, error) per item, in order. An error of the commit itself
    propagates (then nobody in the batch was registered).

    (The shared helper for this pattern is being written in shared/db.py; this is intake's
    copy, in one place, for the lead to swap at merge.)"""
    try:
        async with service.db.transaction() as session:
            try:
                results = await work(session, batch)
            except Exception as error:
                raise _RegistrationFailed() from error
        return [(result, None) for result in results]
    except _RegistrationFailed:
        pass
    outcomes = []
    async with service.db.transaction() as session:
        for item in batch:
            try:
                async with session.begin_nested():
                    outcomes.append(((await work(session, [item]))[0], None))
            except Exception as error:  # this request only; the batch goes on
                outcomes.append((None, error))
    return outcomes


class RegistrationDesk:
    """Queues registrations per (estate, year) and drains each queue in batches."""

    def __init__(self, service) -> None:
        self.service = service
        self._queues: dict[tuple[str, int], list] = {}
        self._workers: dict[tuple[str, int], asyncio.Task] = {}

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

    async def _drain(self, key) -> None:
        while self._queues.get(key):
            batch, self._queues[key] = self._queues[key], []
            try:
                outcomes = await run_batch_or_one_by_one(self.service, [c for c, _ in batch], self._work)
            except Exception as error:  # the commit failed: nobody in the batch was registered
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), (value, error) in zip(batch, outcomes):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)
