"""The callback handler tests' fakes answer like the SQL repositories (issue 11): one
story (a one-way online reply judged by a recurring opinion, a complaint called back and
reopened, its second round, an overdue callback) run through the same handlers over the
fakes and over PostgreSQL, in one rolled-back transaction, must leave the same state
and raise the same events."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import handlers, rules
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
        "opinions": sorted(t.ticket_id for t in await uow.tickets.opinions(ESTATE, rules.recurrence_key("漏水"))),
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
    assert dt.timedelta(0) < sql_clock.now() - START
