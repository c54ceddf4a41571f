"""The one "calendar changed" hook (issue 11): a recount runs on start-up and after each
change of the company's calendar, never twice for the same calendar, and again after a
failed run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shared.calendar_watch import on_calendar_change


class FakeService:
    def __init__(self) -> None:
        self.directory = SimpleNamespace(company=SimpleNamespace(calendar={"2026": "loaded"}))
        self.jobs: list[tuple[str, float, object]] = []

    def periodic(self, name: str, every_seconds: float):
        def register(fn):
            self.jobs.append((name, every_seconds, fn))
            return fn
        return register


async def test_a_recount_runs_once_per_calendar_and_again_after_a_change():
    service, runs = FakeService(), []

    @on_calendar_change(service, "calendar-recompute")
    async def recount() -> int:
        runs.append(service.directory.company.calendar)
        return 3

    assert [(n, s) for n, s, _ in service.jobs] == [("calendar-recompute", 5.0)]
    assert await recount() == 3  # start-up: nothing seen yet
    assert await recount() == 0 and len(runs) == 1
    service.directory.company.calendar = {"2026": "loaded", "2026-09-15": "typhoon day off"}
    assert await recount() == 3 and len(runs) == 2
    assert await recount(force=True) == 3 and len(runs) == 3


async def test_a_failed_recount_is_tried_again():
    service, attempts = FakeService(), []

    @on_calendar_change(service, "provisional-recompute")
    async def recount() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("database away")
        return 0

    with pytest.raises(ConnectionError):
        await recount()
    assert await recount() == 0 and len(attempts) == 2
