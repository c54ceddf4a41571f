"""The archive's catch-all consumer on the real PostgreSQL (no service processes): a batch
reads whether its tickets are archived with one statement and writes its collected events
with one, whatever its size; and a batch that goes event by event (a handler failed)
stores the same rows, in the same per-ticket order, as one that went all at once."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event

from services.archive import handlers, store
from services.archive.app import service
from services.archive.uow import ArchiveUnitOfWork
from shared.clock import ManualClock
from shared.db import Database
from shared.events import CloudEvent, ProgressUpdated, make_event
from shared.uow import HandlerContext, RecordedEvents
from tests.conftest import demo_estate
from tests.handlers.conftest import directory_of
from tests.unit.test_archive_rules import complaint_events

pytestmark = pytest.mark.integration

START = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
async def archive(servers, monkeypatch):
    """The archive's catch-all consumer over a database of this process, a manual clock and
    a fresh estate."""
    code = f"b{uuid.uuid4().hex[:7]}"
    database = Database(servers["database"], store.metadata, pool_size=2)
    clock = ManualClock(START)
    monkeypatch.setattr(service, "db", database)
    monkeypatch.setattr(service, "clock", clock)
    monkeypatch.setattr(service, "directory", directory_of(demo_estate(code)))
    consumer = next(c for c in service.consumers if c.events is None)
    yield SimpleNamespace(code=code, db=database, clock=clock, consumer=consumer)
    await database.dispose()


def history(code: str, ticket: str, upto: int | None = None) -> list[CloudEvent]:
    """A complaint's events (up to `upto`) in estate `code`, with ids of their own."""
    return [e.model_copy(update={"estate": code, "id": f"{ticket}-{i}"})
            for i, e in enumerate(complaint_events(ticket)[:upto])]


def raw(event: CloudEvent) -> SimpleNamespace:
    """A delivered message as the consumer reads it (first delivery)."""
    return SimpleNamespace(data=event.model_dump_json().encode(), subject=event.nats_subject, metadata=None)


async def consume(archive, events: list[CloudEvent]) -> list[str]:
    """One fetched batch through the consumer (`EventConsumer._run`): the outcomes."""
    consumer = archive.consumer
    outcomes = await consumer._run([await consumer._parse(raw(e)) for e in events], archive.clock.now())
    return [outcome for _, outcome, _ in outcomes]


async def sealed_ticket(archive, ticket: str) -> str:
    """A ticket collected, sealed and its pending seal removed in one transaction (as the
    seal job would; its `archived` event recorded here, not published); its record number."""
    ctx = HandlerContext(archive.clock, service.directory)
    sink = RecordedEvents(archive.clock)

    async def emit(_session, payload, *, estate, actor, time=None):
        return await sink.emit(payload, estate=estate, actor=actor, time=time)

    async with archive.db.transaction() as session:
        uow = ArchiveUnitOfWork(session, emit)
        events = history(archive.code, ticket)
        for event in events:
            await handlers.handle_ticket_event(event, uow, ctx)
        done = await handlers.seal_ticket(uow, ctx, archive.code, ticket, events[-1].time, archive.consumer.durable)
        await uow.pending.remove(archive.code, ticket)
    return done.record_number


def late_event(code: str, ticket: str, n: int) -> CloudEvent:
    return make_event(ProgressUpdated(ticket_id=ticket, note=f"补充 {n}", updated_by=f"{code}-cs01"), estate=code,
                      actor=f"{code}-cs01", source="test", time=START + dt.timedelta(minutes=n),
                      event_id=f"{ticket}-late-{n}")


async def stored(archive, tickets: list[str]) -> dict:
    """The collected rows of `tickets` (each ticket's in the order its timeline reads
    them) and the addenda of the estate."""
    c, a = store.collected_events, store.addenda
    async with archive.db.transaction() as session:
        rows = (await session.execute(
            sa.select(c).where(c.c.estate == archive.code, c.c.ticket_id.in_(tickets))
            .order_by(c.c.ticket_id, c.c.time, c.c.collected_at))).all()
        addenda = (await session.execute(sa.select(a.c.record_number, a.c.number, a.c.event_id)
                                         .where(a.c.estate == archive.code).order_by(a.c.event_id))).all()
    return {"collected": [tuple(row) for row in rows], "addenda": [tuple(row) for row in addenda]}


async def forget(archive, events: list[CloudEvent]) -> None:
    """Undo what `events` stored (their claims, collected rows and addenda)."""
    ids = [e.id for e in events]
    async with archive.db.transaction() as session:
        for table, column in ((store.collected_events, "event_id"), (store.addenda, "event_id"),
                              (archive.db.processed, "event_id")):
            await session.execute(sa.delete(table).where(table.c[column].in_(ids)))


async def test_a_batch_costs_the_same_few_statements_whatever_its_size(archive):
    record_ticket = f"{archive.code}-T0"
    await sealed_ticket(archive, record_ticket)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def kinds() -> list[tuple[str, str]]:
        return [(s.split()[0], re.search(r'"?archive"?\.(\w+)', s).group(1)) for s in statements]

    sa_event.listen(archive.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        texts = []
        for size in (1, 8):
            statements.clear()
            events = [e for n in range(size) for e in history(archive.code, f"{archive.code}-S{size}-{n}", 2)]
            assert await consume(archive, events) == ["processed"] * len(events)
            # The claims, the tickets' record numbers, the collected events: three, for 2 or 16 events.
            assert kinds() == [("INSERT", "processed_events"), ("SELECT", "records"), ("INSERT", "collected_events")]
            texts.append(list(statements))
        assert texts[0] == texts[1]  # the same SQL text: compiled and prepared once
        # An event of an archived ticket is an addendum (statements of its own, rare).
        statements.clear()
        assert await consume(archive, [late_event(archive.code, record_ticket, 1)]) == ["processed"]
        assert ("INSERT", "addenda") in kinds() and ("INSERT", "collected_events") not in kinds()
    finally:
        sa_event.remove(archive.db.engine.sync_engine, "before_cursor_execute", count)


async def test_event_by_event_stores_what_all_at_once_stores(archive, monkeypatch):
    record_ticket = f"{archive.code}-T0"
    number = await sealed_ticket(archive, record_ticket)
    tickets = [f"{archive.code}-T{n}" for n in (1, 2)]
    # Two tickets' events interleaved, and two late events of the archived one.
    one, two = (history(archive.code, t, 6) for t in tickets)
    batch = [e for pair in zip(one, two) for e in pair]
    batch[3:3] = [late_event(archive.code, record_ticket, 1)]
    batch.append(late_event(archive.code, record_ticket, 2))

    assert await consume(archive, batch) == ["processed"] * len(batch)
    at_once = await stored(archive, tickets)
    assert [row[0] for row in at_once["collected"]] == [e.id for e in one + two]  # stream order per ticket
    assert at_once["addenda"] == [(number, 1, f"{record_ticket}-late-1"), (number, 2, f"{record_ticket}-late-2")]
    await forget(archive, batch)

    # The same batch again: the third event fails in the all-at-once pass, so the batch
    # goes event by event; there the second fails after its handler held its row.
    fails_at = {batch[2].id: 1, batch[1].id: 2}
    calls: dict[str, int] = {}

    async def failing(event, uow, ctx):
        calls[event.id] = calls.get(event.id, 0) + 1
        if fails_at.get(event.id) == calls[event.id] == 1:
            raise RuntimeError("refused before handling")
        collected = await handlers.handle_ticket_event(event, uow, ctx)
        if fails_at.get(event.id) == calls[event.id]:
            raise RuntimeError("refused after handling")
        return collected

    monkeypatch.setitem(handlers.HANDLERS, "*", failing)
    outcomes = await consume(archive, batch)
    assert [i for i, outcome in enumerate(outcomes) if outcome == "retry"] == [1, 2]
    assert {o for i, o in enumerate(outcomes) if i not in (1, 2)} == {"processed"}
    # Neither retried event left a row behind.
    assert batch[1].id not in [row[0] for row in (await stored(archive, tickets))["collected"]]
    # Their redelivery: the others are duplicates now, the two go as a batch of their own.
    assert await consume(archive, batch) == ["processed" if i in (1, 2) else "duplicate" for i in range(len(batch))]
    assert await stored(archive, tickets) == at_once
