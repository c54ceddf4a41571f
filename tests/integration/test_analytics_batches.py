"""Analytics' consumer folds a batch with a constant number of statements, and stores what
folding the same events one by one stores (issue 12).

A batch as `consumers.py` runs it all at once: `handlers.prepare` (the batch's tickets'
facts and repeat searches in one read), every handler, one `flush`. Event by event, as
after a failure: a fresh unit of work per event, nothing prepared, a flush after each.
On the session's PostgreSQL, each path in a scratch schema of its own; no services."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from services.analytics import handlers, store
from shared import events as ev
from shared.clock import ManualClock
from shared.uow import HandlerContext, RecordedEvents
from tests.handlers.conftest import ESTATE, START, directory_of

pytestmark = pytest.mark.integration

TICKETS = 24


def stream() -> list[ev.CloudEvent]:
    """Tickets accepted a minute apart in two categories and two buildings (every third
    one of a category, and of a building, crosses the repeat threshold somewhere), each
    one assigned, every other one closed a little later, two breaches and suggestions:
    62 events."""
    events = []

    def add(payload: ev.Payload, minutes: float) -> None:
        events.append(ev.make_event(payload, estate=ESTATE, actor="staff", source="test",
                                    time=START + dt.timedelta(minutes=minutes)))

    for n in range(TICKETS):
        add(ev.Accepted(ticket_id=f"T{n:02}", form_number=f"F-{n}", kind="complaint", channel="phone",
                        category="noise" if n % 3 else "water leak", building=str(n % 2 + 1), description="…",
                        first_contact="e1-cs01", received_at=START + dt.timedelta(minutes=n)), n)
        add(ev.Assigned(ticket_id=f"T{n:02}", departments=["security"], assigned_by="dispatch"), n + 0.5)
        if n >= 4 and n % 2 == 0:
            add(ev.Closed(ticket_id=f"T{n - 4:02}", closed_by="e1-cs01", reason="ok"), n + 0.7)
        if n % 10 == 5:  # the dashboard's alerts and the report's suggestions
            add(ev.SlaBreached(ticket_id=f"T{n:02}", clock="reply", due_at=START, department="security"), n + 0.8)
            add(ev.CorrectiveActionSuggested(ticket_id=f"T{n:02}", category="noise", scope="estate", count=3,
                                             window_days=30, tickets=[f"T{n:02}"]), n + 0.9)
    return events


@pytest.fixture
async def scratch(db):
    """A factory of empty read models in scratch schemas (dropped after the test)."""
    models: list[store.ReadModel] = []

    async def make() -> store.ReadModel:
        model = store.read_model(f"analytics_b{uuid.uuid4().hex[:8]}")
        async with db.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{model.schema}"'))
            await conn.run_sync(model.metadata.create_all)
        models.append(model)
        return model

    yield make
    async with db.begin() as conn:
        for model in models:
            await conn.execute(sa.text(f'DROP SCHEMA "{model.schema}" CASCADE'))


def context() -> tuple[HandlerContext, RecordedEvents, object]:
    clock = ManualClock(START + dt.timedelta(hours=1))
    sink = RecordedEvents(clock)

    async def emit(session, payload, *, estate, actor, time=None):
        return await sink.emit(payload, estate=estate, actor=actor, time=time)

    return HandlerContext(clock, directory_of()), sink, emit


async def in_batches(db, model: store.ReadModel, events: list[ev.CloudEvent], size: int) -> tuple[list, list[int]]:
    """Fold `events` `size` at a time as the consumer's all-at-once pass does; returns the
    suggestions raised and the statements each batch executed."""
    ctx, sink, emit = context()
    counts: list[int] = []
    for start in range(0, len(events), size):
        batch = events[start:start + size]
        statements: list[str] = []

        def count(conn, cursor, statement, *args):
            statements.append(statement)

        async with db.begin() as conn:
            sa.event.listen(db.sync_engine, "before_cursor_execute", count)
            try:
                uow = store.AnalyticsUnitOfWork(conn, emit, model)
                await handlers.prepare(batch, uow, ctx)
                for event in batch:
                    await handlers.HANDLERS[event.event_name](event, uow, ctx)
                await uow.flush(ctx.now())
            finally:
                sa.event.remove(db.sync_engine, "before_cursor_execute", count)
        counts.append(len(statements))
    return sink.payloads("corrective_action_suggested"), counts


async def one_by_one(db, model: store.ReadModel, events: list[ev.CloudEvent]) -> list:
    """Fold `events` as the consumer's event-by-event pass does: nothing prepared, a fresh
    unit of work for each event, flushed after it."""
    ctx, sink, emit = context()
    async with db.begin() as conn:
        for event in events:
            uow = store.AnalyticsUnitOfWork(conn, emit, model)
            await handlers.HANDLERS[event.event_name](event, uow, ctx)
            await uow.flush(ctx.now())
    return sink.payloads("corrective_action_suggested")


async def stored(db, model: store.ReadModel) -> list[list[tuple]]:
    """Every table's rows (facts without their write time), in key order."""
    async with db.connect() as conn:
        return [[tuple(r) for r in await conn.execute(
                    sa.select(*(c for c in table.c if c.name != "updated_at")).order_by(*table.primary_key.columns))]
                for table in (model.facts, model.rollups, model.suggestions, model.alerts)]


async def test_a_batch_costs_the_same_statements_whatever_its_size_and_stores_what_one_by_one_does(db, scratch):
    events = stream()
    alone = await scratch()
    suggested_alone = await one_by_one(db, alone, events)
    expected = await stored(db, alone)
    assert [len(rows) for rows in (expected[0], expected[2], expected[3])] == [TICKETS, 2, 4]
    assert suggested_alone  # the story does cross the threshold

    for size in (7, len(events)):
        model = await scratch()
        suggested, counts = await in_batches(db, model, events, size)
        assert await stored(db, model) == expected, size
        assert suggested == suggested_alone, size
        # One read (facts and repeat searches) and one write (every table); nothing per
        # event, whether the batch holds 6, 7 or 62 of them.
        assert set(counts) == {2}, (size, counts)
