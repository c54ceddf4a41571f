"""One hook for "the company's working-day calendar changed" (issue 11; the rule is issue
10's: every running day deadline follows every change of the calendar — a year loaded,
a correction, a typhoon day off).

`on_calendar_change(service, name)(recount)` registers `recount` as one of the service's
periodic jobs that runs only when the directory's calendar differs from the one its last
completed run saw, and once on start-up (the `holidays` package may know a year more
than when the deadlines were counted). `recount()` returns how many deadlines it moved;
the job returns 0 when nothing changed. A failed recount is tried again on the next tick.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

Recount = Callable[[], Awaitable[int]]

_NOTHING_SEEN = object()


def on_calendar_change(service, name: str, every_seconds: float = 5.0) -> Callable[[Recount], Callable[..., Awaitable[int]]]:
    def register(recount: Recount) -> Callable[..., Awaitable[int]]:
        seen = {"calendar": _NOTHING_SEEN}

        @functools.wraps(recount)
        async def job(force: bool = False) -> int:
            calendar = service.directory.company.calendar
            if not force and seen["calendar"] == calendar:
                return 0
            changed = await recount()
            seen["calendar"] = calendar
            return changed

        service.periodic(name, every_seconds=every_seconds)(job)
        return job

    return register
