"""The SLA scan's schedule (issue 12): it has work when no scan has read the next due
time yet, or once that time has come; a clock committed here moves it earlier; a scan
sets it to what the store says (the fakes' `next_wake`)."""

from __future__ import annotations

import asyncio
import datetime as dt

from services.dispatch import handlers, jobs
from shared.schedule import ScanSchedule
from services.dispatch.rules import Clock
from tests.handlers.dispatch.conftest import accepted, event


def test_work_is_due_before_the_first_scan_and_when_the_next_clock_comes(clock):
    schedule = ScanSchedule(clock.now)
    assert schedule.has_work()
    schedule.scanned(None)  # nothing runs: only the longest sleep wakes it
    assert not schedule.has_work()
    schedule.scanned(clock.now() + dt.timedelta(minutes=10))
    assert not schedule.has_work()
    clock.advance(minutes=10)
    assert schedule.has_work()


def test_a_clock_written_here_moves_the_next_run_earlier_never_later(clock):
    schedule = ScanSchedule(clock.now)
    schedule.scanned(clock.now() + dt.timedelta(hours=1))
    schedule.noted(clock.now() + dt.timedelta(hours=2))
    assert schedule.next_at == clock.now() + dt.timedelta(hours=1) and schedule.woken.is_set()
    schedule.noted(clock.now() + dt.timedelta(minutes=5))
    assert schedule.next_at == clock.now() + dt.timedelta(minutes=5)
    schedule.scanned(None)
    schedule.noted(clock.now() + dt.timedelta(minutes=1))
    assert schedule.next_at == clock.now() + dt.timedelta(minutes=1)


async def test_wait_returns_once_work_is_due(clock):
    schedule = ScanSchedule(clock.now, min_sleep_seconds=0, max_sleep_seconds=3600, tick_seconds=0.01)
    schedule.scanned(clock.now() + dt.timedelta(hours=1))
    waiting = asyncio.create_task(schedule.wait())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    schedule.noted(clock.now())  # a clock due now was committed here
    await asyncio.wait_for(waiting, 5)


async def test_scan_reads_the_next_wake_from_the_store(uow, ctx, clock):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def open_uow():
        yield uow

    await handlers.handle_accepted(event(accepted(clock), clock, "intake"), uow, ctx)
    schedule = ScanSchedule(clock.now)
    assert await jobs.scan_clocks(open_uow, ctx, schedule) == 0
    earliest = min(c.due_at for c in uow.clocks.rows if c.met_at is None)
    assert schedule.next_at == earliest and not schedule.has_work()
    clock.advance(seconds=(earliest - clock.now()).total_seconds() + 1)
    assert schedule.has_work()
    assert await jobs.scan_clocks(open_uow, ctx, schedule) >= 1
    # the breach's escalation climbs later: that is the next work too
    climbs = [e.next_at for e in uow.escalations.rows if e.next_at]
    waiting = [c.due_at for c in uow.clocks.rows if c.met_at is None and c.breached_at is None]
    assert schedule.next_at == min(climbs + waiting)
    assert any(c.clock == Clock.acknowledge.value for c in uow.clocks.rows if c.breached_at)
