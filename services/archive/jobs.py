"""The archive's periodic jobs: sealing closed tickets into the chain, the scheduled
monthly organisation and quarterly archiving, and the overdue-loan / pending-seal gauges.
Each takes its dependencies as arguments; app.py registers them."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.archive import handlers, organisation, rules
from services.archive.organisation import Transaction
from shared.uow import HandlerContext

log = logging.getLogger("estatedesk.archive")

SCHEDULE_SECONDS = float(os.environ.get("ESTATEDESK_ARCHIVE_SCHEDULE_SECONDS", "10"))
SEAL_SECONDS = float(os.environ.get("ESTATEDESK_ARCHIVE_SEAL_SECONDS", "0.5"))
SEAL_RETRY = dt.timedelta(seconds=30)  # a form that cannot be made yet (no intake) waits this long
# With nothing pending the sealing job looks only this often (another replica may have
# collected a `closed`); pending work is looked at every SEAL_SECONDS.
SEAL_IDLE_LOOK_SECONDS = 10.0


@dataclass
class SealWatch:
    """Whether the sealing job has anything to look at: a `closed` collected here (`seen`),
    or pending rows left by its last look; else it looks every `SEAL_IDLE_LOOK_SECONDS`
    (silence when idle: no database query, no consumer-info request, and, by `wait`, not
    even the replicas' job lock)."""

    work_seen: bool = True  # at start: look
    last_look: float = float("-inf")
    woken: asyncio.Event = field(default_factory=asyncio.Event)

    def seen(self) -> None:
        """A `closed` was collected here: the job looks at its next run."""
        self.work_seen = True
        self.woken.set()

    def should_look(self, now: float) -> bool:
        if not self.work_seen and now - self.last_look < SEAL_IDLE_LOOK_SECONDS:
            return False
        self.work_seen, self.last_look = False, now
        return True

    async def wait(self, every_seconds: float = SEAL_SECONDS) -> None:
        """Until the job's next run: `every_seconds`, then until work is seen or the idle
        look is due."""
        await asyncio.sleep(every_seconds)
        while not self.work_seen:
            left = SEAL_IDLE_LOOK_SECONDS - (time.monotonic() - self.last_look)
            if left <= 0:
                return
            self.woken.clear()
            try:
                await asyncio.wait_for(self.woken.wait(), left)
            except TimeoutError:
                return


async def seal_closed_tickets(transaction: Transaction, ctx: HandlerContext, watch: SealWatch,
                              consumer_position: Callable[[], Awaitable[tuple[int, int] | None]],
                              consumer: str, on_sealed: Callable[[str, str], None]) -> int:
    """Seal closed tickets whose every earlier event has been collected. A pending row
    first gets a barrier (the consumer's delivered position, at or after its `closed`);
    once the ack floor passes the barrier nothing before `closed` is outstanding, even a
    message redelivered out of order. Rows are claimed FOR UPDATE SKIP LOCKED."""
    if not watch.should_look(time.monotonic()):
        return 0
    async with transaction() as uow:
        if not await uow.pending.any():
            return 0
    watch.work_seen = True  # pending rows: look again next time
    position = await consumer_position()
    if position is None:
        return 0
    delivered, floor = position
    async with transaction() as uow:
        await uow.pending.set_barriers(delivered)
        due = await uow.pending.due(floor, ctx.now())
    sealed = 0
    for estate, ticket_id in due:
        async with transaction() as uow:
            seal = await uow.pending.claim(estate, ticket_id)
            if seal is None:
                continue  # another replica has it
            try:
                async with uow.session.begin_nested():
                    done = await handlers.seal_ticket(uow, ctx, estate, ticket_id, seal.closed_at, consumer)
            except Exception as error:  # ValueError (incl. RuleViolation): not yet; anything else: this ticket only
                log.warning("ticket cannot be sealed yet: %s", error, extra={"estate": estate, "ticket": ticket_id},
                            exc_info=not isinstance(error, ValueError))
                seal.failed(str(error), ctx.now() + SEAL_RETRY)
                await uow.pending.save(seal)
                continue
            await uow.pending.remove(estate, ticket_id)
            if done is not None:
                on_sealed(estate, done.retention_class)
                sealed += 1
    return sealed


async def scheduled_organisation(transaction: Transaction, ctx: HandlerContext, data_dir: str | None) -> None:
    """Monthly organisation and quarterly archiving on schedule: any finished period
    (plus the policy's grace) holding records not yet organised or bound is done now."""
    now = ctx.now()
    runs = {"month": organisation.organise_month, "quarter": organisation.archive_quarter}
    for what, estate, period in await organisation.scheduled_work(transaction):
        if not organisation.is_due(period, now, ctx, estate):
            continue
        try:
            await runs[what](transaction, ctx, data_dir, estate, period, "schedule")
        except Exception:  # one estate's trouble must not hold up the others
            log.exception("scheduled %s of %s failed; retried next run", runs[what].__name__, period,
                          extra={"estate": estate})


@dataclass
class Gauges:
    """The overdue-loan (001 第6篇 1.3.5: chase them) and pending-seal gauges; estates seen
    once are set back to 0 when their count goes."""

    set_overdue: Callable[[str, int], None]
    set_pending: Callable[[str, int], None]
    overdue_estates: set[str] = field(default_factory=set)
    pending_estates: set[str] = field(default_factory=set)

    async def update(self, transaction: Transaction, ctx: HandlerContext) -> None:
        async with transaction() as uow:
            counts = await uow.loans.overdue_counts(ctx.now(), rules.LoanMode.loan.value)
            pending = await uow.pending.counts()
        for estate in set(counts) | self.overdue_estates:
            self.set_overdue(estate, counts.get(estate, 0))
        for estate in set(pending) | self.pending_estates:
            self.set_pending(estate, pending.get(estate, 0))
        self.overdue_estates.update(counts)
        self.pending_estates.update(pending)
