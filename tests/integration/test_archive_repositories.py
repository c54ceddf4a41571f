"""The archive handler tests' fakes answer like the SQL repositories (issue 11): one story
(a complaint's events collected and sealed, a late event appended, a consultation and a
loan registered, read and returned, the record marked important, and destroyed after its
retention on the general manager's approval of a destruction request) run through the
same handlers over the fakes and over PostgreSQL, in one rolled-back transaction, must
leave the same state and raise the same events."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from services.archive import handlers, rules
from services.archive.domain import CatalogueEntry, Record
from services.archive.uow import ArchiveUnitOfWork
from shared import limits
from shared.clock import ManualClock
from shared.events import ProgressUpdated, make_event
from shared.uow import HandlerContext, RecordedEvents
from tests.conftest import demo_estate
from tests.handlers.archive.fakes import FakeArchiveUnitOfWork
from tests.handlers.conftest import directory_of
from tests.unit.test_archive_rules import TICKET, complaint_events

START = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.timezone.utc)


async def story(uow, ctx: HandlerContext, clock: ManualClock, estate: str) -> None:
    for event in complaint_events():
        await handlers.HANDLERS["*"](event.model_copy(update={"estate": estate}), uow, ctx)
    [seal] = await uow.pending.of_estate(estate)
    assert await uow.pending.claim(estate, TICKET) is not None
    done = await handlers.seal_ticket(uow, ctx, estate, TICKET, seal.closed_at, "archive-all")
    await uow.pending.remove(estate, TICKET)
    late = make_event(ProgressUpdated(ticket_id=TICKET, note="补充说明", updated_by=f"{estate}-cs01"), estate=estate,
                      actor=f"{estate}-cs01", source="test", time=clock.now(), event_id=f"late-{estate}")
    await handlers.HANDLERS["*"](late, uow, ctx)
    cs = rules.Person(f"{estate}-cs01", frozenset({"customer_service"}), frozenset({estate}))
    director = rules.Person(f"{estate}-director", frozenset({"estate_director"}), frozenset({estate}))
    number = done.record_number
    await handlers.handle_register_loan(
        handlers.LoanCommand(estate, number, cs, "复核", "consult", None, None, cs.id), uow, ctx)
    await handlers.handle_read(handlers.ReadCommand(estate, number, cs.id, cs.roles, cs, "content"), uow, ctx)
    engineer = rules.Person(f"{estate}-eng01", frozenset({"department_staff"}), frozenset({estate}))
    await handlers.handle_read(handlers.ReadCommand(estate, number, engineer.id, engineer.roles, engineer, "form.pdf"),
                               uow, ctx)
    clock.advance(minutes=5)
    loan = await handlers.handle_register_loan(
        handlers.LoanCommand(estate, number, cs, "外借复核", "loan", director, "批-1", cs.id), uow, ctx)
    await handlers.handle_return_loan(estate, loan.loan_id, cs.id, False, uow, ctx)
    await handlers.handle_mark_important(estate, number, "重大投诉", director.id, uow, ctx)
    clock.advance(days=366 * 11)
    request = await handlers.handle_request_destruction(handlers.DestructionRequestCommand(
        estate, [number], "保管期满", director.id, director.roles), uow, ctx)
    await handlers.handle_approve_destruction(estate, request.request_id, "gm", {"general_manager"}, uow, ctx)


async def snapshot(uow, estate: str) -> dict:
    records = await uow.chain.catalogue(estate, limit=limits.PAGE_MAX)
    head = await uow.chain.head(estate)
    numbers = [r.record_number for r in records]
    return {
        "records": [(r.record_number, r.sequence, r.content_hash, r.record_hash, r.retention_class, r.archived_class,
                     r.destroyed, (await uow.chain.record(estate, r.record_number)).content is None) for r in records],
        "entry": await uow.chain.entry_of_ticket(estate, TICKET),
        "head": (head.last_sequence, head.last_hash),
        "addenda": [(a.number, a.event, a.addendum_hash) for n in numbers for a in await uow.chain.addenda(n)],
        "of_ticket": await uow.chain.number_of_ticket(estate, TICKET),
        "loans": sorted((loan.mode, loan.basis, loan.approved_by, loan.returned_to is not None)
                        for loan in await uow.loans.register(estate)),
        "open": [loan.mode for n in numbers for loan in await uow.loans.open_of_record(n)],
        "access": [(a.actor, a.what, a.allowed, a.reason) for a in await uow.access.entries(estate, None, False)],
        "important": [(m.record_number, m.previous_class) for n in numbers if (m := await uow.marks.important(n))],
        "destroyed": [(d.record_number, d.approved_by) for d in await uow.marks.destructions(estate)],
        "requests": [(r.status, r.record_numbers, r.requested_by, r.decided_by)
                     for r in await uow.destruction_requests.list_for_estate(estate)],
        "open_requests": sorted(await uow.destruction_requests.open_record_numbers(estate)),
        "pending": len(await uow.pending.of_estate(estate)),
        "collected": len(await uow.collected.timeline(estate, TICKET)),
    }


async def test_fake_and_sql_repositories_tell_one_story_alike(db):
    estate = f"f{uuid.uuid4().hex[:7]}"
    directory = directory_of(demo_estate(estate))
    fake_clock, sql_clock = ManualClock(START), ManualClock(START)
    fake_events, sql_events = RecordedEvents(fake_clock), RecordedEvents(sql_clock)
    fake = FakeArchiveUnitOfWork(fake_events)
    await story(fake, HandlerContext(fake_clock, directory), fake_clock, estate)

    async def emit(_session, payload, *, estate, actor, time=None):
        return await sql_events.emit(payload, estate=estate, actor=actor, time=time)

    async with AsyncSession(db) as session:
        async with session.begin():
            sql = ArchiveUnitOfWork(session, emit)
            await story(sql, HandlerContext(sql_clock, directory), sql_clock, estate)
            sql_state = await snapshot(sql, estate)
            await session.rollback()
    assert sql_state == await snapshot(fake, estate)
    assert sql_events.names() == fake_events.names() == ["archived", "lent", "lent", "returned", "destroyed"]
    assert sql_state["addenda"][0][:2] == (1, "progress_updated") and sql_state["records"][0][6]
    assert [allowed for _, _, allowed, _ in sql_state["access"]] == [True, False]


def sealed(estate: str, sequence: int, month: str, retention_class: str) -> Record:
    """A stand-in record (the catalogue reads metadata only: its content is never checked here)."""
    at = dt.datetime.fromisoformat(f"{month}-10T02:00:00+00:00")
    return Record(estate=estate, sequence=sequence, record_number=f"{estate}-{sequence:05d}", ticket_id=f"t{sequence}",
                  form_number=f"F-{sequence}", kind="complaint", title=f"记录 {sequence}", closed_at=at,
                  closed_month=month, archived_class=retention_class, retention_class=retention_class, archived_at=at,
                  content=b"{}", content_hash="c" * 64, previous_hash="p" * 64, record_hash="r" * 64)


async def test_the_catalogue_pages_newest_first_without_content_in_fake_and_sql_alike(db):
    """Pages walk back by `before`, filter by month and class, never carry the content,
    and the SQL catalogue answers like the fake."""
    estate = f"c{uuid.uuid4().hex[:7]}"
    months = ["2026-09"] * 4 + ["2026-10"] * 3 + ["2026-11"] * 5
    stored = [sealed(estate, n, month, "important_event" if n % 4 == 0 else "ordinary")
              for n, month in enumerate(months, start=1)]
    fake = FakeArchiveUnitOfWork(RecordedEvents(ManualClock(START)))

    async def pages(uow) -> dict:
        async def walk(**filters) -> list[list[int]]:
            seen, before = [], None
            while page := await uow.chain.catalogue(estate, before=before, limit=3, **filters):
                assert all(type(entry) is CatalogueEntry for entry in page)  # never the content
                seen.append([entry.sequence for entry in page])
                before = page[-1].sequence
            return seen
        return {"all": await walk(), "october": await walk(month="2026-10"),
                "important": await walk(retention_class="important_event"),
                "newest": [e.record_number for e in await uow.chain.catalogue(estate, limit=limits.PAGE_DEFAULT)],
                "ticket": await uow.chain.entry_of_ticket(estate, "t7"),
                "unknown": await uow.chain.entry_of_ticket(estate, "no-such-ticket")}

    for record in stored:
        await fake.chain.add(record)
    async with AsyncSession(db) as session:
        async with session.begin():
            sql = ArchiveUnitOfWork(session, None)
            for record in stored:
                await sql.chain.add(record)
            sql_pages = await pages(sql)
            await session.rollback()
    assert sql_pages == await pages(fake)
    assert sql_pages["all"] == [[12, 11, 10], [9, 8, 7], [6, 5, 4], [3, 2, 1]]
    assert sql_pages["october"] == [[7, 6, 5]] and sql_pages["important"] == [[12, 8, 4]]
    assert sql_pages["newest"][0] == f"{estate}-00012" and len(sql_pages["newest"]) == 12
    assert sql_pages["ticket"].record_number == f"{estate}-00007" and sql_pages["unknown"] is None
