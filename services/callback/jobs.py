"""The callback service's periodic jobs: the overdue scan, the recurrence scan, and the
recount of complaint windows when the company's calendar changes. Each takes its
dependencies (database, unit-of-work factory, context) as arguments; app.py registers them."""

from __future__ import annotations

from collections.abc import Callable

from services.callback import handlers
from services.callback.store import CallbackUnitOfWork
from shared.db import Database
from shared.uow import HandlerContext

OVERDUE_SCAN_SECONDS = 1.0
RECURRENCE_SCAN_SECONDS = 2.0
SCAN_BATCH = 500

UnitOfWorkFactory = Callable[..., CallbackUnitOfWork]


async def overdue_scan(db: Database, unit_of_work: UnitOfWorkFactory, ctx: HandlerContext) -> int:
    """Report every callback that passed its due time without being made, once. Rows are
    claimed with FOR UPDATE SKIP LOCKED so replicas never report one twice."""
    async with db.transaction() as session:
        return await handlers.report_overdue(unit_of_work(session), ctx, SCAN_BATCH)


async def recompute_complaint_windows(db: Database, unit_of_work: UnitOfWorkFactory, ctx: HandlerContext) -> int:
    """On every change of the company's calendar, count every pending complaint callback's
    working-day window again (issue 10)."""
    async with db.transaction() as session:
        return await handlers.recompute_complaint_windows(unit_of_work(session), ctx)


async def recurrence_scan(db: Database, unit_of_work: UnitOfWorkFactory, ctx: HandlerContext) -> int:
    """Decide the opinions whose recurrence window has elapsed (satisfied unless a
    same-category opinion recurred). A replica that finds the estate busy leaves it for
    its next run."""
    async with db.transaction() as session:
        keys = await unit_of_work(session).watches.due_keys(ctx.now())
    for estate, key in keys:
        async with db.transaction() as session:
            uow = unit_of_work(session)
            if await uow.watches.lock_estate(estate, wait=False):
                await handlers.decide_recurrence(uow, ctx, estate, key)
    return len(keys)
