"""The handler tier (issue 11): each service's handlers run against in-memory repositories,
a `ManualClock` and a directory held in memory, in milliseconds, no servers.

Shared fixtures: `clock` (a ManualClock on a Wednesday morning, Shanghai working hours),
`directory` (one demo estate `e1` plus the company's defaults), `ctx` (HandlerContext) and
`sink` (RecordedEvents: every event a handler raised, in order). Each service's fake
repositories and unit of work live beside its tests (`tests/handlers/<service>/fakes.py`).
"""

from __future__ import annotations

import datetime as dt

import pytest

from shared.clock import ManualClock
from shared.directory import Company, Directory
from shared.uow import HandlerContext, RecordedEvents
from tests.conftest import demo_estate

ESTATE = "e1"
# Wednesday 2026-12-02 10:00 in Shanghai: a working day, inside office hours.
START = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.timezone.utc)


def directory_of(*estates, company: Company | None = None) -> Directory:
    """A Directory filled in memory, as the watcher would fill it from the bucket."""
    directory = Directory()
    directory.apply("company", (company or Company()).model_dump_json().encode())
    for estate in estates or (demo_estate(ESTATE),):
        directory.apply(f"estate.{estate.code}", estate.model_dump_json().encode())
    return directory


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def directory() -> Directory:
    return directory_of()


@pytest.fixture
def ctx(clock, directory) -> HandlerContext:
    return HandlerContext(clock, directory)


@pytest.fixture
def sink(clock) -> RecordedEvents:
    return RecordedEvents(clock)
