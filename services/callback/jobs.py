"""The callback service's periodic jobs: the overdue scan, the recurrence scan, and the
recount of complaint windows when the company's calendar changes. Each takes its
dependencies (database, unit-of-work factory, context) as arguments; app.py registers them.

The two scans look no more often than every `OVERDUE_SCAN_SECONDS` / `RECURRENCE_SCAN_SECONDS`
and, with a `ScanSchedule`, only when their next row is due (the earliest due time or
window end, read by each run; this process's commits move it earlier; at least every 15 s
for rows another replica wrote): an idle stack runs no query for them (issue 12)."""

from __future__ import annotations

from collections.abc import Callable

from services.callback import handlers
from services.callback.store import CallbackUnitOfWork
from shared.db import Database
from shared.schedule import ScanSchedule
from shared.uow import HandlerContext

OVERDUE_SCAN_SECONDS = 1.0
RECURRENCE_SCAN_SECONDS = 2.0
SCAN_BATCH = 500

UnitOfWorkFactory = Callable[..., CallbackUnitOfWork]


async def overdue_scan(db: Database, unit_of_work: UnitOfWorkFactory, ctx: HandlerContext,
                       schedule: ScanSchedule | None = None) -> int:
    """Report every callback that passed its due time without being made, once. Rows are
    claimed with FOR UPDATE SKIP LOCKED so replicas never report one twice. With a
    `schedule`, tell it when the next pending callback falls due."""
    async with db.transaction() as session:
        uow = unit_of_work(session)
        reported = await handlers.report_overdue(uow, ctx, SCAN_BATCH)
        if schedule is not None:
            schedule.scanned(ctx.now() if reported == SCAN_BATCH else await uow.callbacks.next_overdue())
        return reported


async def recompute_complaint_windows(db: Database, unit_of_work: UnitOfWorkFactory, ctx: HandlerContext) -> int:
    """On every change of the company's calendar, count every pending complaint callback's
    working-day window again (issue 10)."""
    async with db.transaction() as session:
        return await handlers.recompute_complaint_windows(unit_of_work(session), ctx)


async def recurrence_scan(db: Database, unit_of_work: UnitOfWorkFactory, ctx: HandlerContext,
                          schedule: ScanSchedule | None = None) -> int:
    """Decide the opinions whose recurrence window has elapsed (satisfied unless a
    same-category opinion recurred). A replica that finds the estate busy leaves it for
    its next run. With a `schedule`, tell it when the next undecided window ends (read
    before deciding: a window left undecided here is due at once, so the next run comes
    after `RECURRENCE_SCAN_SECONDS`; one decided makes at most one look for nothing)."""
    async with db.transaction() as session:
        watches = unit_of_work(session).watches
        keys = await watches.due_keys(ctx.now())
        if schedule is not None:
            schedule.scanned(await watches.next_window_end())
    for estate, key in keys:
        async with db.transaction() as session:
            uow = unit_of_work(session)
            if await uow.watches.lock_estate(estate, wait=False):
                await handlers.decide_recurrence(uow, ctx, estate, key)
    return len(keys)
