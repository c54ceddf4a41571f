"""Analytics' SQL repositories and the handler tier's fakes answer alike (issue 11: keep
the fakes honest), and the batch writes do what the consumer relies on: counters added to
what is stored, the form number kept once seen, one statement for a batch's reads and one
for its writes. Runs on the
session's PostgreSQL in a scratch schema; no services."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from services.analytics import handlers, store
from services.analytics.rules import RecentTicket, RepeatSearch
from shared import events as ev
from shared.policy import DEFAULT_POLICY
from shared.uow import RecordedEvents
from shared.clock import ManualClock
from tests.handlers.analytics.fakes import FakeAnalyticsUnitOfWork

pytestmark = pytest.mark.integration
START = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.timezone.utc)


def accepted(ticket: str, category: str, minutes: int, building: str = "1") -> ev.CloudEvent:
    when = START + dt.timedelta(minutes=minutes)
    return ev.make_event(ev.Accepted(ticket_id=ticket, form_number=f"F-{ticket}", kind="complaint", channel="phone",
                                     category=category, building=building, description="…", first_contact="cs",
                                     received_at=when), estate="e1", actor="cs", source="test", time=when)


@pytest.fixture
async def scratch(db):
    model = store.read_model(f"analytics_t{uuid.uuid4().hex[:8]}")
    async with db.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{model.schema}"'))
        await conn.run_sync(model.metadata.create_all)
    yield model
    async with db.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{model.schema}" CASCADE'))


async def answers(uow, prepared: bool = False) -> tuple:
    """Tickets stored by an earlier batch, one held by the current one; repeat detection's
    reads: the latest two earlier ones of the category, and of the new one's building.
    `prepared`: the reads made up front in one go (`prepare`), as a consumer's batch does."""
    first = [accepted("T1", "noise", 0), accepted("T2", "parking", 1), accepted("T4", "noise", 3, "2"),
             accepted("T5", "noise", 4)]
    if prepared:
        await uow.facts.prepare([(e.estate, e.subject) for e in first], [])
    for e in first:
        await handlers.fold(e, uow, DEFAULT_POLICY)
    await uow.flush(START)

    def search(new: str, minutes: float, since_minutes: float, limit: int) -> RepeatSearch:
        return RepeatSearch("e1", RecentTicket(new, "noise", "1", START + dt.timedelta(minutes=minutes)),
                            ("complaint",), START + dt.timedelta(minutes=since_minutes), limit)

    searches = [search("T9", 10, -60, 2), search("T9", 10, 0.5, 2), search("T6", 1, -60, 3),
                search("T9", 10, -60, 9)]
    tickets = [("e1", t) for t in ("T1", "T3", "T9")]
    if prepared:
        await uow.facts.prepare(tickets, searches)
    await handlers.fold(accepted("T3", "noise", 2), uow, DEFAULT_POLICY)
    recent = [sorted(r.ticket_id for r in await uow.facts.recent_same_category(s)) for s in searches]
    t1, t3, none = [await uow.facts.get_for_update(*key) for key in tickets]
    return (*recent, (t1.category, t1.accepted_at, t1.seen_event_ids == [t1.seen_event_ids[0]]), t3.ticket_id, none)


async def test_the_sql_repository_and_the_fake_answer_alike(db, scratch):
    fake = await answers(FakeAnalyticsUnitOfWork(RecordedEvents(ManualClock(START))))
    async with db.begin() as conn:
        sql = await answers(store.AnalyticsUnitOfWork(conn, model=scratch))
    # T9: the latest two stored (T5, T4), of building 1 (T5, T1), and the batch's T3.
    assert sql == fake == (["T1", "T3", "T4", "T5"], ["T3", "T4", "T5"], ["T1"], ["T1", "T3", "T4", "T5"],
                           ("noise", START, True), "T3", None)


async def test_reads_prepared_in_one_statement_answer_as_reads_one_by_one(db, scratch):
    async with db.begin() as conn:
        one_by_one = await answers(store.AnalyticsUnitOfWork(conn, model=scratch))
        await conn.rollback()
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    async with db.begin() as conn:
        uow = store.AnalyticsUnitOfWork(conn, model=scratch)
        sa.event.listen(db.sync_engine, "before_cursor_execute", count)
        try:
            prepared = await answers(uow, prepared=True)
        finally:
            sa.event.remove(db.sync_engine, "before_cursor_execute", count)
    assert prepared == one_by_one
    # Each batch's one read (`prepare`) and the first one's one write: nothing
    # per ticket, per search or per table.
    assert [s.split(" AS", 1)[0] for s in statements] == ["WITH locked", "WITH written_facts", "WITH locked"]


async def test_batch_writes_add_to_the_stored_counters_and_keep_the_form_number(db, scratch):
    closed = ev.make_event(ev.Closed(ticket_id="T1", closed_by="cs", reason="ok"), estate="e1", actor="cs",
                           source="test", time=START + dt.timedelta(hours=1))
    async with db.begin() as conn:
        uow = store.AnalyticsUnitOfWork(conn, model=scratch)
        await handlers.fold(accepted("T1", "noise", 0), uow, DEFAULT_POLICY)
        await uow.flush(START)
        await handlers.fold(accepted("T2", "noise", 1), uow, DEFAULT_POLICY)
        await handlers.fold(closed, uow, DEFAULT_POLICY)
        await uow.flush(START)
    r, t = scratch.rollups, scratch.facts
    async with db.connect() as conn:
        opened = (await conn.execute(sa.select(r.c.value).where(
            r.c.period == "2026-12", r.c.estate == "e1", r.c.dimension == "estate", r.c.metric == "opened"))).scalar()
        company = (await conn.execute(sa.select(r.c.value).where(
            r.c.period == "2026-12", r.c.estate == "*", r.c.key == "*", r.c.metric == "opened"))).scalar()
        row = (await conn.execute(sa.select(t.c.form_number, t.c.state, t.c.departments).where(
            t.c.ticket_id == "T1"))).one()
    assert (opened, company) == (2, 2)
    assert tuple(row) == ("F-T1", "closed", [])  # the closing row carried no form number
