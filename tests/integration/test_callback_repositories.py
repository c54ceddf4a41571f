"""The callback handler tests' fakes answer like the SQL repositories (issue 11): one
story (a one-way online reply judged by a recurring opinion, a complaint called back and
reopened, its second round, an overdue callback) run through the same handlers over the
fakes and over PostgreSQL, in one rolled-back transaction, must leave the same state
and raise the same events."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import handlers, rules, store
from services.callback.domain import Ticket
from services.callback.store import CallbackUnitOfWork
from shared.clock import ManualClock
from shared.events import Accepted, Assigned, Completed, ReplyMethod, make_event
from shared.uow import HandlerContext, RecordedEvents
from tests.handlers.callback.fakes import FakeCallbackUnitOfWork
from tests.handlers.conftest import ESTATE, directory_of

CS = f"{ESTATE}-cs01"
# The overdue report is company-wide and the session's database holds other tests'
# callbacks, due around now: the story runs years earlier, so only its own fall due.
START = dt.datetime(2020, 6, 3, 2, 0, tzinfo=dt.timezone.utc)  # a Wednesday, 10:00 in Shanghai


async def story(uow, ctx: HandlerContext, clock: ManualClock) -> None:
    async def run(payload):
        await handlers.HANDLERS[payload.event_name](
            make_event(payload, estate=ESTATE, actor=CS, source="test", time=clock.now()), uow, ctx)

    def accepted(ticket_id, kind, reply):
        return Accepted(ticket_id=ticket_id, form_number=f"F-{ticket_id}", kind=kind, channel="phone",
                        category="漏水", description="漏水", first_contact=CS, received_at=clock.now(),
                        reply_method=reply, unit="1-1-101")

    def completed(ticket_id, kind, reply, round_=1):
        return Completed(ticket_id=ticket_id, round=round_, kind=kind, category="漏水", departments=["engineering"],
                         reply_method=reply, first_contact=CS, completed_at=clock.now())

    await run(accepted("rp-1", "suggestion", "online"))
    await run(Assigned(ticket_id="rp-1", departments=["engineering"], assigned_by=CS))
    await run(completed("rp-1", "suggestion", "online"))
    await run(accepted("rp-2", "complaint", "phone"))
    await run(Assigned(ticket_id="rp-2", departments=["engineering"], assigned_by=CS))
    await run(completed("rp-2", "complaint", "phone"))
    [callback] = await uow.callbacks.pending_of("rp-2")
    answers = rules.CallbackAnswers(handled_in_time=True, result_satisfied=False, attitude_satisfied=False,
                                    suggestions="", owner_confirmed=True, method=ReplyMethod.phone)
    await handlers.handle_record(handlers.RecordCommand(ESTATE, callback.callback_id, answers, CS), uow, ctx)
    clock.advance(hours=1)
    await run(completed("rp-2", "complaint", "phone", round_=2))
    clock.advance(days=10)
    await handlers.report_overdue(uow, ctx, 10)


async def snapshot(uow) -> dict:
    tickets = {t: await uow.tickets.get(ESTATE, t) for t in ("rp-1", "rp-2")}
    return {
        "tickets": {k: (t.status, t.current_round, t.closed_satisfied, t.departments, t.category_key)
                    for k, t in tickets.items()},
        "rounds": {t: [(r.round, r.outcome) for r in await uow.rounds.of_ticket(t)] for t in tickets},
        "callbacks": {t: [(c.round, c.rule, c.status, c.outcome, c.overdue_at is not None)
                          for c in await uow.callbacks.of_ticket(t)] for t in tickets},
        "watches": {t: [(w.round, w.verdict, w.recurring_ticket_id) for w in await uow.watches.of_ticket(t)]
                    for t in tickets},
        "opinions": sorted(t.ticket_id for t in await uow.tickets.opinions(ESTATE, rules.recurrence_key("漏水"), START)),
        "opinions_later": sorted(t.ticket_id for t in await uow.tickets.opinions(
            ESTATE, rules.recurrence_key("漏水"), START + dt.timedelta(microseconds=1))),
        "counted": sorted((c.kind, c.status.value) for c in await uow.callbacks.counted(ESTATE, None, None)),
        "decided": sorted((w.ticket_id, w.verdict) for w in await uow.watches.decided(ESTATE, None, None)),
    }


async def test_fake_and_sql_repositories_tell_one_story_alike(db):
    directory = directory_of()
    fake_clock, sql_clock = ManualClock(START), ManualClock(START)
    fake_events, sql_events = RecordedEvents(fake_clock), RecordedEvents(sql_clock)
    fake = FakeCallbackUnitOfWork(fake_events)
    await story(fake, HandlerContext(fake_clock, directory), fake_clock)

    async def emit(_session, payload, *, estate, actor, time=None):
        return await sql_events.emit(payload, estate=estate, actor=actor, time=time)

    async with AsyncSession(db) as session:
        async with session.begin():
            sql = CallbackUnitOfWork(session, emit)
            await story(sql, HandlerContext(sql_clock, directory), sql_clock)
            sql_state = await snapshot(sql)
            await session.rollback()
    assert sql_state == await snapshot(fake)
    assert sql_events.names() == fake_events.names()
    assert "attitude_complaint_raised" in fake_events.names() and "callback_overdue" in fake_events.names()
    assert sql_state["watches"]["rp-1"] == [(1, "not_satisfied", "rp-2")]
    assert sql_state["opinions"] == ["rp-1", "rp-2"] and sql_state["opinions_later"] == []
    assert dt.timedelta(0) < sql_clock.now() - START


# --- a consumer's batch (issue 12): prepared and flushed, or event by event -------------------

BATCH_START = dt.datetime(2020, 9, 2, 2, 0, tzinfo=dt.timezone.utc)


def ticket_event(payload, clock: ManualClock, event_id: str | None = None):
    return make_event(payload, estate=ESTATE, actor=CS, source="test", time=clock.now(), event_id=event_id)


def opinion(ticket_id: str, clock: ManualClock, *, kind="complaint", reply="phone", category="漏水") -> Accepted:
    return Accepted(ticket_id=ticket_id, form_number=f"F-{ticket_id}", kind=kind, channel="phone",
                    category=category, description=category, first_contact=CS, received_at=clock.now(),
                    reply_method=reply, unit="1-1-101")


def sent(ticket_id: str, department="engineering", round_=1) -> Assigned:
    return Assigned(ticket_id=ticket_id, departments=[department], assigned_by=CS, round=round_)


async def batch_story(session: AsyncSession, emit, clock: ManualClock, batched: bool) -> None:
    """The consumers' batches of one story, each as a prepared batch (one unit of work,
    flushed once) or event by event (a unit of work each, nothing prepared): an opinion with
    no callback path watched first; then a batch of `accepted` (a later same-category
    opinion, another category, a ticket `assigned` first to another department) and a batch
    of `assigned` (the watched ticket's late copy, the recurring opinion that closes it, one
    never accepted, the same ticket twice)."""
    ctx = HandlerContext(clock, directory_of())
    numbered = iter(range(100))

    async def consume(payloads) -> None:
        events = [ticket_event(payload, clock, f"ev-{next(numbered)}") for payload in payloads]
        if batched:
            uow = CallbackUnitOfWork(session, emit)
            await handlers.prepare_batch(events, uow, ctx)
            for event in events:
                await handlers.HANDLERS[event.event_name](event, uow, ctx)
            await uow.flush()
        else:
            for event in events:
                uow = CallbackUnitOfWork(session, emit)
                await handlers.HANDLERS[event.event_name](event, uow, ctx)
                await uow.flush()

    await consume([opinion("b-1", clock, kind="suggestion", reply="online")])
    await consume([sent("b-1")])
    await consume([Completed(ticket_id="b-1", round=1, kind="suggestion", category="漏水", departments=["engineering"],
                             reply_method="online", first_contact=CS, completed_at=clock.now())])
    await consume([sent("b-4", "security")])
    clock.advance(days=3)
    await consume([opinion("b-2", clock), opinion("b-3", clock, category="噪音"), opinion("b-4", clock)])
    clock.advance(minutes=5)
    await consume([sent("b-1"), sent("b-2"), sent("b-5"), sent("b-3", "security"), sent("b-2", "security")])


async def stored(session: AsyncSession) -> dict:
    ids = [f"b-{n}" for n in range(1, 6)]
    state = {}
    for table in (store.tickets, store.rounds, store.callbacks, store.recurrence_watches):
        rows = (await session.execute(sa.select(table).where(table.c.ticket_id.in_(ids)))).mappings().all()
        state[table.name] = sorted((dict(row) for row in rows),
                                   key=lambda r: (r["ticket_id"], r.get("round", 0), r.get("callback_id", "")))
    return state


async def test_a_prepared_batch_stores_what_event_by_event_stores(db):
    """Prepared and flushed once, or one event at a time: the same rows, the same events."""
    results = {}
    for batched in (False, True):
        clock, events = ManualClock(BATCH_START), RecordedEvents(ManualClock(BATCH_START))

        async def emit(_session, payload, *, estate, actor, time=None):
            return await events.emit(payload, estate=estate, actor=actor, time=time)

        async with AsyncSession(db) as session:
            async with session.begin():
                await batch_story(session, emit, clock, batched)
                results[batched] = (await stored(session), [(e.event_name, e.data) for e in events.events])
                await session.rollback()
    assert results[True] == results[False]
    state, raised = results[True]
    watch = next(w for w in state["recurrence_watches"] if w["ticket_id"] == "b-1")
    assert (watch["verdict"], watch["recurring_ticket_id"]) == ("not_satisfied", "b-2")
    assert [name for name, _ in raised].count("closed") == 1
    tickets = {t["ticket_id"]: t for t in state["tickets"]}
    assert tickets["b-2"]["departments"] == ["engineering", "security"] and tickets["b-5"]["category_key"] is None
    assert tickets["b-1"]["status"] == "closed" and tickets["b-4"]["accepted_seen"]
    assert tickets["b-4"]["departments"] == ["security"]


async def test_a_prepared_batch_costs_the_same_few_statements_whatever_its_size(db):
    """A batch of `accepted`, then of `assigned`, for 1 or 20 tickets: the estate's
    recurrence lock and the tickets created-or-locked in one statement, the category's
    watches once the tickets are opinions (assigned), the changed tickets written once."""
    ctx = HandlerContext(ManualClock(BATCH_START), directory_of())
    clock = ctx.clock
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement.split()[0].upper())

    async def emit(_session, payload, *, estate, actor, time=None):
        return make_event(payload, estate=estate, actor=actor, source="test", time=time or clock.now())

    async def recurrence_lock_free() -> bool:  # (tried in a transaction of its own, then let go)
        async with db.connect() as other:
            return (await other.execute(sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"),
                                        {"k": f"callback-recurrence/{ESTATE}"})).scalar()

    async with AsyncSession(db) as session:
        async with session.begin():
            for size in (1, 20):
                for payloads, expected in (([opinion(f"n{size}-{n}", clock) for n in range(size)], ["WITH", "UPDATE"]),
                                           ([sent(f"n{size}-{n}") for n in range(size)], ["WITH", "SELECT", "UPDATE"])):
                    events = [ticket_event(payload, clock) for payload in payloads]
                    uow = CallbackUnitOfWork(session, emit)
                    sa.event.listen(db.sync_engine, "before_cursor_execute", count)
                    try:
                        statements.clear()
                        await handlers.prepare_batch(events, uow, ctx)
                        for event in events:
                            await handlers.HANDLERS[event.event_name](event, uow, ctx)
                        await uow.flush()
                    finally:
                        sa.event.remove(db.sync_engine, "before_cursor_execute", count)
                    assert statements == expected, (size, statements)
                    assert not await recurrence_lock_free()  # held by this batch's transaction
            opinions = await CallbackUnitOfWork(session, emit).tickets.opinions(ESTATE, rules.recurrence_key("漏水"),
                                                                                BATCH_START)
            assert {f"n20-{n}" for n in range(20)} <= {t.ticket_id for t in opinions}
            await session.rollback()
    assert await recurrence_lock_free()


def test_a_held_ticket_travels_whole():
    """A batch's tickets travel as JSON rows of the table's type (`jsonb_populate_recordset`):
    a column the aggregate lacked would arrive NULL, not as its server default."""
    assert {f.name for f in dataclasses.fields(Ticket)} == {c.name for c in store.tickets.c}


# --- the staff's reads stay flat as history grows (issue 12) ---------------------------------

FLAT_START = dt.datetime(2020, 11, 4, 2, 0, tzinfo=dt.timezone.utc)


def ticket_emit(clock: ManualClock):
    async def emit(_session, payload, *, estate, actor, time=None):
        return make_event(payload, estate=estate, actor=actor, source="test", time=time or clock.now())
    return emit


async def test_opinions_are_those_raised_since_the_bound_stored_or_held(db):
    """`Tickets.opinions(since)`: the category's tickets sent to a department and raised at
    or after `since`, as stored, or as a batch holding them left them (not yet flushed)."""
    clock = ManualClock(FLAT_START)
    ctx, emit, key = HandlerContext(clock, directory_of()), ticket_emit(clock), rules.recurrence_key("门禁")
    since = FLAT_START + dt.timedelta(days=5)

    async def one_by_one(uow, payloads):
        for payload in payloads:
            await handlers.HANDLERS[payload.event_name](ticket_event(payload, clock), uow, ctx)

    async with AsyncSession(db) as session:
        async with session.begin():
            await one_by_one(CallbackUnitOfWork(session, emit), [opinion("fl-old", clock, category="门禁"), sent("fl-old")])
            clock.advance(days=10)
            await one_by_one(CallbackUnitOfWork(session, emit), [opinion("fl-new", clock, category="门禁"), sent("fl-new")])
            stored_ = await CallbackUnitOfWork(session, emit).tickets.opinions(ESTATE, key, since)
            everything = await CallbackUnitOfWork(session, emit).tickets.opinions(ESTATE, key, FLAT_START)
            clock.advance(days=1)
            batch = [ticket_event(payload, clock) for payload in
                     (opinion("fl-mid", clock, category="门禁").model_copy(update={"received_at": since}),
                      sent("fl-mid"), sent("fl-old", "security"))]
            uow = CallbackUnitOfWork(session, emit)
            await handlers.prepare_batch(batch, uow, ctx)
            for event in batch:
                await handlers.HANDLERS[event.event_name](event, uow, ctx)
            held = await uow.tickets.opinions(ESTATE, key, since)  # before the batch's flush
            await session.rollback()
    assert [t.ticket_id for t in stored_] == ["fl-new"]
    assert sorted(t.ticket_id for t in everything) == ["fl-new", "fl-old"]
    assert sorted(t.ticket_id for t in held) == ["fl-mid", "fl-new"]


async def test_the_done_worklist_shows_the_most_recently_done_first(db):
    """Done callbacks newest done first (what staff look for), each with its form number;
    pending ones stay earliest due first."""
    clock = ManualClock(FLAT_START)
    ctx, emit = HandlerContext(clock, directory_of()), ticket_emit(clock)
    answers = rules.CallbackAnswers(handled_in_time=True, result_satisfied=True, attitude_satisfied=True,
                                    suggestions="", owner_confirmed=True, method=ReplyMethod.phone)
    ids = [f"fl-done-{n}" for n in range(4)]
    async with AsyncSession(db) as session:
        async with session.begin():
            uow = CallbackUnitOfWork(session, emit)
            for ticket_id in ids:
                for payload in (opinion(ticket_id, clock), sent(ticket_id),
                                Completed(ticket_id=ticket_id, round=1, kind="complaint", category="漏水",
                                          departments=["engineering"], reply_method="phone", first_contact=CS,
                                          completed_at=clock.now())):
                    await handlers.HANDLERS[payload.event_name](ticket_event(payload, clock), uow, ctx)
                clock.advance(minutes=1)
            callbacks = {t: (await uow.callbacks.pending_of(t))[0] for t in ids}
            for ticket_id in (ids[1], ids[0], ids[2]):  # made in this order; ids[3] still pending
                clock.advance(minutes=5)
                await handlers.handle_record(
                    handlers.RecordCommand(ESTATE, callbacks[ticket_id].callback_id, answers, CS), uow, ctx)
            done = await uow.callbacks.worklist(ESTATE, "done", None, clock.now())
            pending = await uow.callbacks.worklist(ESTATE, "pending", CS, clock.now())
            await session.rollback()
    mine = [(c.ticket_id, form_number) for c, form_number in done if c.ticket_id in ids]
    assert mine == [(t, f"F-{t}") for t in (ids[2], ids[0], ids[1])]
    order = [(c.done_at, c.callback_id) for c, _ in done]
    assert order == sorted(order, reverse=True)
    due = [c.due_at for c, _ in pending]
    assert due == sorted(due) and ids[3] in {c.ticket_id for c, _ in pending}
