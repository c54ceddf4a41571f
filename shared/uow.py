"""The seam between a service's handlers and its I/O (the service layer of every service).

Handlers (`services/<svc>/handlers.py`) are plain async functions

    async def handle_<event or command>(message, uow: <Svc>UnitOfWork, ctx: HandlerContext) -> result

that load aggregates through the repositories the unit of work carries, ask the aggregate
to make its transition (it raises `shared.errors.RuleViolation` for a refused one), save
it, and raise events with `await uow.emit(payload, estate=..., actor=...)`. They never
reach for a module-global service, the wall clock or the database: production gives them
a `SqlUnitOfWork` subclass bound to the transaction the consumer or route opened, handler
tests (`tests/handlers/`) an in-memory one with fake repositories and a `ManualClock`.

Shapes: `HandlerContext(clock, directory)`; `EventSink.emit(payload, estate=, actor=,
time=None) -> CloudEvent` (time defaults to `ctx.clock.now()` of the sink's clock).
Reference: "Architecture Patterns with Python" (Percival & Gregory), chapters 6 and 9.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, TypeVar
from zoneinfo import ZoneInfo

from shared.clock import Clock
from shared.events import CloudEvent, Payload, make_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.calendar import WorkingCalendar
    from shared.directory import Directory, Estate
    from shared.policy import Policy


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may know besides its message and its unit of work: the time and
    the directory (estates, staff, policies, the working calendar)."""

    clock: Clock
    directory: "Directory"

    def now(self) -> dt.datetime:
        return self.clock.now()

    def estate(self, code: str) -> "Estate | None":
        return self.directory.estate(code)

    def policy(self, estate: str) -> "Policy":
        return self.directory.policy_for(estate)

    def calendar(self, estate: str) -> "WorkingCalendar":
        return self.directory.calendar_for(estate)

    def timezone(self, estate: str) -> ZoneInfo:
        return self.directory.timezone_for(estate)


class EventSink(Protocol):
    async def emit(self, payload: Payload, *, estate: str, actor: str,
                   time: dt.datetime | None = None) -> CloudEvent: ...


class SqlUnitOfWork:
    """A unit of work over one open transaction (`session`): its repositories share the
    session, and `emit` writes to the service's outbox in the same transaction, so state
    and the events that announce it commit together (transactional outbox). Committing
    belongs to whoever opened the transaction (the consumer's batch or the route)."""

    def __init__(self, session: "AsyncSession", emit: Callable[..., Awaitable[CloudEvent]]):
        self.session = session
        self._emit = emit

    async def emit(self, payload: Payload, *, estate: str, actor: str,
                   time: dt.datetime | None = None) -> CloudEvent:
        return await self._emit(self.session, payload, estate=estate, actor=actor, time=time)


Made = TypeVar("Made")


def of_batch(session: "AsyncSession", key: str, make: Callable[["AsyncSession"], Made]) -> Made:
    """What a consumer batch's handlers share (its unit of work, its held rows): made by
    `make(session)` at the first use and kept in `session.info[key]`. Each batch has a
    session of its own, so nothing outlives the batch; the batch's flush pops it."""
    made = session.info.get(key)
    if made is None:
        made = session.info[key] = make(session)
    return made


@dataclass
class RecordedEvents:
    """An in-memory `EventSink` for handler tests: keeps every raised event, in order."""

    clock: Clock
    source: str = "test"
    events: list[CloudEvent] = field(default_factory=list)

    async def emit(self, payload: Payload, *, estate: str, actor: str,
                   time: dt.datetime | None = None) -> CloudEvent:
        event = make_event(payload, estate=estate, actor=actor, source=self.source, time=time or self.clock.now())
        self.events.append(event)
        return event

    def names(self) -> list[str]:
        return [event.event_name for event in self.events]

    def payloads(self, name: str) -> list[Any]:
        return [event.payload() for event in self.events if event.event_name == name]
