"""Intake's SQL repositories on the real PostgreSQL (no service processes): a registration
batch's statements stay few whatever its size, and the fake repositories of the handler
tier (tests/handlers/intake/fakes.py) answer the key queries as the SQL ones do."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from services.intake import handlers, store
from services.intake.domain import Registration
from services.intake.owner_handlers import handle_ticket_event_for_owner, prepare_ticket_events_for_owner
from services.intake.owner_store import SelfService
from services.intake.uow import IntakeUnitOfWork
from shared.clock import ManualClock
from shared.db import Database
from shared.events import Assigned, Completed, Kind, make_event
from shared.lifecycle import TicketState
from shared.uow import HandlerContext, RecordedEvents
from tests.conftest import demo_estate
from tests.handlers.conftest import START, directory_of
from tests.handlers.intake.fakes import FakeIntakeUnitOfWork


@pytest.fixture
async def database(servers):
    database = Database(servers["database"], store.metadata, pool_size=2)
    yield database
    await database.dispose()


def world():
    code = f"r{uuid.uuid4().hex[:8]}"
    clock = ManualClock(START)
    return code, clock, HandlerContext(clock, directory_of(demo_estate(code)))


def sql_uow(database, session, clock):
    async def emit(session, payload, *, estate, actor, time=None):
        event_ = make_event(payload, estate=estate, actor=actor, source="intake", time=time or clock.now())
        await database.emit(session, event_)
        return event_

    async def emit_many(session, drafts):
        await database.emit_many(session, [make_event(p, estate=e, actor=a, source="intake", time=t)
                                           for p, e, a, t in drafts])

    return IntakeUnitOfWork(session, emit, emit_many)


def registration(code, at, n, key=None, **facts):
    fields = dict(kind=Kind.repair, channel="phone", description=f"漏水 {n}", category="漏水", severity="not_serious",
                  urgency="not_urgent", accepted_by="department", reply_method="phone", owner_signed=False,
                  anonymous=False, people=[], attachments=[])
    fields.update(facts)
    return Registration(estate=code, facts=fields, staff_id=f"{code}-cs01", staff_name="客服一", duty_staff=False,
                        received_at=at + dt.timedelta(minutes=n), client_request_id=key)


async def test_a_registration_batch_costs_the_same_few_statements_whatever_its_size(database):
    code, clock, ctx = world()
    statements: list[str] = []
    texts: dict[int, list[str]] = {}

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        for size in (1, 20):
            statements.clear()
            async with database.transaction() as session:
                batch = [registration(code, START, n, key=f"k{size}-{n}") for n in range(size)]
                views = await handlers.handle_register(batch, sql_uow(database, session, clock), ctx)
            # The keys' lookup, the counter, the tickets, the outbox: four, for 1 or 20.
            assert [s.split()[0].upper() for s in statements] == ["SELECT", "INSERT", "INSERT", "INSERT"], statements
            texts[size] = list(statements)
        assert texts[1] == texts[20]  # the same prepared statements whatever the batch's size
        numbers = sorted(v.ticket.form_number for v in views)
        assert numbers == [f"{code.upper()}-2026-{n:06d}" for n in range(2, 22)]  # gapless after the first
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)


async def fill(uow, ctx, code):
    """The same history on either side: registrations, a judged complaint, a closed one."""
    batch = [registration(code, START, n, key=f"k{n}") for n in range(4)]
    batch.append(registration(code, START, 5, kind=Kind.complaint))
    views = await handlers.handle_register(batch, uow, ctx)
    complaint = views[-1].ticket
    await handlers.handle_judge_validity(handlers.JudgeValidity(code, complaint.id, False, "无理", None,
                                                                f"{code}-cs01"), uow, ctx)
    await handlers.handle_decide_validity(handlers.DecideValidity(code, complaint.id, True, None, "mgr",
                                                                  frozenset({"estate_director"})), uow, ctx)
    return [v.ticket.id for v in views]


async def mine(answer, code):
    """Of a query across estates (a periodic job's), this test's estate's part."""
    return [t for t in await answer if t.estate == code]


QUERIES = {
    "by_client_request_ids": lambda uow, code, now: uow.tickets.by_client_request_ids(code, ["k1", "k3", "nope"]),
    "list_for_estate": lambda uow, code, now: uow.tickets.list_for_estate(code),
    "list_by_kind": lambda uow, code, now: uow.tickets.list_for_estate(code, kind="complaint", status="invalid"),
    "list_open": lambda uow, code, now: uow.tickets.list_for_estate(code, status=TicketState.in_handling, limit=3),
    "list_of_first_contact": lambda uow, code, now: uow.tickets.list_for_estate(code, first_contact=f"{code}-cs01"),
    "by_form_number": lambda uow, code, now: uow.tickets.list_for_estate(code, form_number=f"{code.upper()}-2026-000003"),
    "signature_pending": lambda uow, code, now: uow.tickets.list_for_estate(code, signature_pending=True, limit=2),
    "notice_overdue": lambda uow, code, now: uow.tickets.list_for_estate(code, notice_overdue_at=now),
    "signatures_due": lambda uow, code, now: mine(uow.tickets.signatures_due(now), code),
    "registered_by": lambda uow, code, now: uow.tickets.registered_by(
        code, [f"{code}-cs01"], START + dt.timedelta(minutes=1), START + dt.timedelta(minutes=4)),
    "form_numbers": lambda uow, code, now: uow.form_numbers.take(code, 2026, 3),
}


def shape(answer):
    """What must agree: which tickets, in which order, in which state."""
    if isinstance(answer, dict):
        return sorted((k, t.id) for k, t in answer.items())
    if isinstance(answer, list):
        return [(t.id, t.status, t.owner_signature, t.validity_state) for t in answer]
    return answer


@pytest.mark.parametrize("query", sorted(QUERIES))
async def test_the_fake_repositories_answer_like_the_sql_ones(database, query):
    code, clock, ctx = world()
    fake = FakeIntakeUnitOfWork(RecordedEvents(clock))
    ids = await fill(fake, ctx, code)
    async with database.transaction() as session:
        real = sql_uow(database, session, clock)
        real_ids = await fill(real, ctx, code)
        # Same history, other ids (uuid4): compare by position in the registration order.
        rename = dict(zip(real_ids, ids))
        later = START + dt.timedelta(days=3)
        real_answer = shape(await QUERIES[query](real, code, later))
    fake_answer = shape(await QUERIES[query](fake, code, later))

    def renamed(value):
        if isinstance(value, list):
            return [renamed(v) for v in value]
        if isinstance(value, tuple):
            return tuple(renamed(v) for v in value)
        return rename.get(value, value)

    assert renamed(real_answer) == fake_answer
    assert fake_answer not in ([], {}, None)  # the query found something to compare


async def test_registered_tickets_read_back_as_they_were_registered(database):
    """The tickets' insert (one JSON array) stores every column as the aggregate holds it."""
    code, clock, ctx = world()
    batch = [registration(code, START, 1, key="full", owner_loss_cny=Decimal("1234.50"), people=["张三", "李四"],
                          attachments=["/v1/photo/1"], location="楼道", cause="管道老化", building="1",
                          unit="1-1-101", appointment_at=START + dt.timedelta(days=1), kind=Kind.complaint),
             registration(code, START, 2)]
    async with database.transaction() as session:
        views = await handlers.handle_register(batch, sql_uow(database, session, clock), ctx)
    async with database.transaction() as session:
        for view in views:
            stored = await sql_uow(database, session, clock).tickets.get(code, view.ticket.id)
            assert stored.columns() == view.ticket.columns()


async def test_a_batch_of_ticket_events_costs_the_owners_projection_one_statement_whatever_its_size(database):
    """intake-all's read-ahead: a batch's tickets in one query, whatever the number of its
    events (an `accepted` of a desk request needs none); nothing prepared, one per event."""
    code, clock, ctx = world()
    async with database.transaction() as session:
        views = await handlers.handle_register([registration(code, START, n) for n in range(12)],
                                               sql_uow(database, session, clock), ctx)

    def events_of(tickets):
        return [make_event(payload, estate=code, actor="dispatch", source="test", time=START)
                for ticket in tickets for payload in (
                    ticket.accepted(), Assigned(ticket_id=ticket.id, departments=["engineering"], assigned_by="x"),
                    Completed(ticket_id=ticket.id, kind=Kind.repair, departments=["engineering"],
                              completed_at=START))]

    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement.split()[0].upper())

    messages = []
    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        for size, prepared in ((1, True), (12, True), (3, False)):
            batch = events_of([v.ticket for v in views[:size]])
            async with database.transaction() as session:
                uow = IntakeUnitOfWork(session, None, owners=SelfService(session),
                                       notify=lambda **message: messages.append(message))
                statements.clear()
                if prepared:
                    await prepare_ticket_events_for_owner(batch, uow)
                for each in batch:
                    await handle_ticket_event_for_owner(each, uow, ctx)
            assert statements == (["SELECT"] if prepared else ["SELECT"] * 2 * size), (size, statements)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert messages == []  # desk requests: nothing for owners


async def test_the_open_list_reads_the_open_index_even_as_a_generic_plan(database):
    """asyncpg's prepared statements turn generic after a few runs; a generic plan cannot
    prove a bound `status = $n` implies the open index's predicate, so the open list
    carries the predicate as text (docs/performance.md, "How the cost grows")."""
    code, clock, ctx = world()
    statements: list[str] = []

    def keep(conn, cursor, statement, *args):
        statements.append(statement)

    async with database.transaction() as session:
        await handlers.handle_register([registration(code, START, n, key=f"k{n}") for n in range(3)],
                                       sql_uow(database, session, clock), ctx)
    event.listen(database.engine.sync_engine, "before_cursor_execute", keep)
    try:
        async with database.transaction() as session:
            assert len(await sql_uow(database, session, clock).tickets.list_for_estate(
                code, status=TicketState.in_handling)) == 3
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", keep)
    [listed] = statements
    assert store.OPEN_PREDICATE in listed
    async with database.transaction() as session:
        await session.execute(sa.select(1))  # begins the transaction the SET LOCALs below live in
        pg = (await (await session.connection()).get_raw_connection()).driver_connection
        # Only an index may answer (a handful of rows would otherwise be read in full).
        await pg.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
                         "SET LOCAL plan_cache_mode = force_generic_plan")
        await pg.execute(f"PREPARE open_list AS {listed}")
        plan = "\n".join(r[0] for r in await pg.fetch(f"EXPLAIN EXECUTE open_list('{code}', 200)"))
        await pg.execute("DEALLOCATE open_list")
    assert "ix_tickets_estate_open" in plan, plan
