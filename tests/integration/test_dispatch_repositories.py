"""Issue 11: the handler tier's fakes answer like dispatch's SQL repositories. One
scenario (route two forms, acknowledge, transfer, breach, climb, an owner update, an
invalid judgement) runs through the same handlers over each unit of work; the events
raised and the key queries' answers (the form and its lines, the clocks, the due and
waiting claims, the progress week) must be alike. Real PostgreSQL, rolled back."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import handlers, jobs, store
from services.dispatch.handlers import FormCommand, handle_form_command
from services.dispatch.rules import Clock
from services.dispatch.uow import DispatchUnitOfWork
from shared.clock import ManualClock
from shared.events import Kind, ProgressUpdated, ValidityJudged
from shared.uow import HandlerContext, RecordedEvents
from tests.handlers.conftest import ESTATE, directory_of
from tests.handlers.dispatch.conftest import accepted, event
from tests.handlers.dispatch.fakes import FakeUnitOfWork, RecordedMetrics

pytestmark = pytest.mark.integration
IDS = ("id", "clock_id", "assignment_id", "deadline_id")
# The SLA scan's claims are company-wide and the session's database holds other tests'
# clocks, due around now (and the handler tests' start is a date in this month): the
# scenario runs years earlier, so only its own clocks fall due within its claims' limit.
START = dt.datetime(2020, 6, 3, 2, 0, tzinfo=dt.timezone.utc)  # a Wednesday, 10:00 in Shanghai


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in IDS}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "_mapping"):
        return _plain(dict(value._mapping))
    if hasattr(value, "__dict__") and not isinstance(value, (dt.datetime, str)):
        return _plain({k: v for k, v in vars(value).items() if not k.startswith("_")})
    return value


async def scenario(uow, clock: ManualClock, sink: RecordedEvents, t1: str, t2: str) -> dict:
    ctx = HandlerContext(clock, directory_of())
    answers: dict = {}
    await handlers.handle_accepted(event(accepted(clock, t1), clock, "intake"), uow, ctx)
    await handlers.handle_accepted(event(accepted(clock, t2, kind=Kind.complaint, repair_class=None,
                                                  category="attitude", about_role="company_staff"), clock), uow, ctx)
    clock.advance(minutes=2)
    await handle_form_command(FormCommand(ESTATE, t1, handlers.acknowledge("engineering", "e1-eng01")), uow, ctx)
    form = await handle_form_command(FormCommand(ESTATE, t1, handlers.transfer(
        "engineering", "security", "theirs", "e1-eng01", [], lambda d: None)), uow, ctx)
    line = form.line("security")
    answers["open_for_line"] = sorted(c.clock for c in await uow.clocks.open_for_line(
        line.id, (Clock.arrival.value, Clock.acknowledge.value, Clock.repair_slip_return.value)))
    answers["form"] = (await uow.forms.get(t1)).columns() | {"lines": [l.columns() for l in form.lines]}
    clock.advance(hours=30)
    answers["due"] = sorted((r.ticket_id, r.clock, r.department, r.status) for r in await uow.clocks.claim_due(
        clock.now(), 1000) if r.ticket_id in (t1, t2))
    await jobs.breach_batch(uow, ctx, limit=1000)
    clock.advance(minutes=ctx.policy(ESTATE).escalation.minutes_per_rung + 1)
    answers["waiting"] = sorted((r.ticket_id, r.rung, r.clock, r.deadline_met_at) for r in
                                await uow.escalations.claim_waiting(clock.now(), 1000) if r.ticket_id in (t1, t2))
    await jobs.climb_batch(uow, ctx, limit=1000)
    for act in (handlers.acknowledge("security", "e1-sec01"), handlers.arrive("security", "e1-sec01"),
                handlers.sign_back("security", "o", "r", "h", True)):
        await handle_form_command(FormCommand(ESTATE, t1, act), uow, ctx)
    (week,) = [c for c in answers_clocks(await clocks_of(uow, t2)) if c["clock"] == Clock.progress_update.value]
    clock.advance(seconds=(week["started_at"] - clock.now()).total_seconds() + 60)
    found = await uow.clocks.progress_week_at(t2, clock.now())
    answers["week"] = _plain(found)
    await handlers.handle_progress_updated(event(ProgressUpdated(ticket_id=t2, note="n", updated_by="e1-cs01"), clock),
                                           uow, ctx)
    await handlers.handle_validity_judged(event(ValidityJudged(ticket_id=t2, valid=False, reason="r",
                                                               judged_by="x"), clock), uow, ctx)
    answers["clocks"] = {t: answers_clocks(await clocks_of(uow, t)) for t in (t1, t2)}
    # The SQL scan also claims other tests' due clocks in this database (rolled back): only ours count.
    answers["events"] = [(e.event_name, _plain(e.payload().model_dump())) for e in sink.events
                         if e.payload().ticket_id in (t1, t2)]
    for key in ("form",):
        answers[key] = _plain(answers[key])
    return answers


async def clocks_of(uow, ticket_id: str) -> list:
    if isinstance(uow, FakeUnitOfWork):
        return uow.clocks.of(ticket_id)
    return list((await uow.session.execute(sa.select(store.deadlines).where(store.deadlines.c.ticket_id == ticket_id)
                                            )).all())


def answers_clocks(rows) -> list[dict]:
    plain = [_plain(r) for r in rows]
    return sorted(plain, key=lambda c: (c["round"], c["clock"], c["department"], c["due_at"], str(c["outcome"])))


async def test_fakes_answer_like_the_sql_repositories(db):
    t1, t2 = (f"R{uuid.uuid4().hex[:10]}" for _ in range(2))
    fake_clock = ManualClock(START)
    fake_sink = RecordedEvents(fake_clock)
    fake = await scenario(FakeUnitOfWork(fake_sink), fake_clock, fake_sink, t1, t2)

    sql_clock = ManualClock(START)
    sql_sink = RecordedEvents(sql_clock)

    async def emit(session, payload, *, estate, actor, time=None):
        return await sql_sink.emit(payload, estate=estate, actor=actor, time=time)

    async with AsyncSession(db) as session:
        async with session.begin():
            uow = DispatchUnitOfWork(session, emit, RecordedMetrics())
            sql = await scenario(uow, sql_clock, sql_sink, t1, t2)
            await session.rollback()
    assert fake.keys() == sql.keys()
    for key in fake:
        assert fake[key] == sql[key], key
    assert fake["due"] and fake["waiting"] and fake["week"] and fake["open_for_line"]


async def test_clocks_written_are_told_after_commit_only(db):
    """The SLA scan's schedule hears of clocks this process commits (issue 12): once per
    transaction, with the earliest due time, and never of a rolled-back one."""
    from services.dispatch.effects import NewClock

    ticket = f"R{uuid.uuid4().hex[:10]}"
    due = [START + dt.timedelta(hours=h) for h in (5, 2, 9)]
    heard: list[dt.datetime] = []

    async def write(commit: bool) -> None:
        async with AsyncSession(db) as session:
            async with session.begin():
                uow = DispatchUnitOfWork(session, None, RecordedMetrics(), heard.append)
                await uow.clocks.add(ticket, ESTATE, [NewClock("reply", due[0], START, 1)], {})
                await uow.clocks.add(ticket, ESTATE, [NewClock("progress_update", d, START, 1) for d in due[1:]], {})
                assert heard == []  # not before the commit
                if not commit:
                    await session.rollback()

    await write(commit=False)
    assert heard == []
    await write(commit=True)
    assert heard == [min(due)]
    async with AsyncSession(db) as session, session.begin():
        await session.execute(sa.delete(store.deadlines).where(store.deadlines.c.ticket_id == ticket))
