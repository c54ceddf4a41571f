"""When a periodic scan next has work, so an idle stack does not query every second
(issue 12: silence when idle).

A scan whose work is rows due at a known time (dispatch's SLA clocks, callback's overdue
callbacks and recurrence windows) reads the earliest such time after each run
(`ScanSchedule.scanned`) and sleeps until it passes; a transaction of this process that
writes an earlier time tells the schedule once it commits (`tell_after_commit`, bound to
`ScanSchedule.noted`). Rows another replica writes are seen at the next look, at most
`max_sleep_seconds` later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass
class ScanSchedule:
    """When a scan next has work: instead of querying every `min_sleep_seconds`, it sleeps
    until `next_at` (the earliest due time, read by each scan; None: nothing is due),
    learns of times this process commits without a query (`noted`, called after the
    commit), and looks at least every `max_sleep_seconds` real seconds, so a row written
    by another replica is seen then. Runs are never closer than `min_sleep_seconds` (the
    old cadence); the clock is read every `tick_seconds`, so a clock moved forward (tests,
    the demo's accelerated time) is noticed within a tick."""

    now: Callable[[], dt.datetime]  # the service's clock (bound after import)
    min_sleep_seconds: float = 1.0
    max_sleep_seconds: float = 15.0
    tick_seconds: float = 1.0
    next_at: dt.datetime | None = None
    known: bool = False  # False until a scan has read next_at: run
    woken: asyncio.Event = field(default_factory=asyncio.Event)

    def scanned(self, next_at: dt.datetime | None) -> None:
        self.next_at, self.known = next_at, True

    def noted(self, due_at: dt.datetime) -> None:
        """A committed transaction wrote a row due at `due_at`."""
        if self.next_at is None or due_at < self.next_at:
            self.next_at = due_at
        self.woken.set()

    def has_work(self) -> bool:
        return not self.known or (self.next_at is not None and self.now() >= self.next_at)

    async def wait(self) -> None:
        """Until the next run: work is due, or `max_sleep_seconds` passed."""
        started = time.monotonic()
        await asyncio.sleep(self.min_sleep_seconds)
        while not self.has_work():
            left = self.max_sleep_seconds - (time.monotonic() - started)
            if left <= 0:
                break
            self.woken.clear()
            try:
                await asyncio.wait_for(self.woken.wait(), min(self.tick_seconds, left))
            except TimeoutError:
                pass


def tell_after_commit(session: AsyncSession, key: str, on_written: Callable[[dt.datetime], None] | None,
                      due_at: Sequence[dt.datetime]) -> None:
    """Call `on_written(earliest due_at)` once after the commit of the session's
    transaction, whatever number of writes it made under `key` (never after a rollback:
    a rolled-back row is due nowhere)."""
    if on_written is None or not due_at:
        return
    info = session.info
    first = key not in info
    info[key] = min([*due_at, info.get(key, max(due_at))])
    if first:
        sa.event.listen(session.sync_session, "after_commit", lambda _: on_written(info.pop(key)), once=True)
