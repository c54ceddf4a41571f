"""Dispatch's `accepted` consumer works per batch (issue 12): one statement answers
"already routed?" for the whole batch, and its new forms, ledger lines and clocks are
written with one statement per table, so a batch costs the same few statements whatever
its size. The batch path and the event-by-event path (after a failure) store the same.

Dispatch's own consumer (`services/dispatch/consumers.py`) runs in this process on the
test's database, clock and directory, through the bus's batch runner (`EventConsumer
._run`: claims, prepare, handlers, flush, commit), on an estate of its own."""

from __future__ import annotations

import contextlib
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event

from services.dispatch import handlers, store
from services.dispatch.app import metrics, service
from services.dispatch.uow import DispatchUnitOfWork
from shared.clock import ManualClock
from shared.db import Database
from shared.events import CloudEvent, Kind, RepairClass
from tests.conftest import demo_estate
from tests.handlers.conftest import START, directory_of
from tests.handlers.dispatch.conftest import accepted, event

pytestmark = pytest.mark.integration
# Rows compared without what differs between two runs by construction.
UNCOMPARED = {"id", "assignment_id", "deadline_id", "ticket_id", "form_number", "facts", "seq", "event_id"}


@pytest.fixture
async def dispatch(servers):
    """(service, its `accepted` consumer, estate code) with the service's database, clock
    and directory swapped for the test's; the rows the test made are deleted afterwards."""
    estate = f"b{uuid.uuid4().hex[:8]}"
    saved = service.db, service.clock, service.directory
    service.db = Database(servers["database"], store.metadata, pool_size=2)
    service.clock = ManualClock(START)
    service.directory = directory_of(demo_estate(estate).model_copy(update={"routing_rules": [
        {"kind": "repair", "category": "*both*", "departments": ["engineering", "security"], "priority": 50}]}))
    try:
        yield service, next(c for c in service.consumers if c.events == ("accepted",)), estate
    finally:
        async with service.db.transaction() as session:
            for table in (store.forms, store.assignments, store.deadlines, store.escalations, store.nonconformities):
                await session.execute(sa.delete(table).where(table.c.estate == estate))
            outbox = service.db.outbox
            await session.execute(sa.delete(outbox).where(outbox.c.subject.like(f"%.{estate}.%")))
        await service.db.dispose()
        service.db, service.clock, service.directory = saved


def accepted_events(clock, estate: str, prefix: str) -> list[CloudEvent]:
    """A batch with every path of `handle_accepted`: one department, two, a complaint
    about staff (escalated) with an owner's loss (nonconformity record), an inquiry, an
    appointment; and the first ticket again under a new event id (a re-publish)."""
    variants = [
        {},
        {"category": "both taps"},
        {"kind": Kind.complaint, "repair_class": None, "category": "attitude",
         "about_role": "customer_service_staff", "owner_loss_cny": "900.00"},
        {"kind": Kind.inquiry, "repair_class": None, "category": "fees"},
        {"repair_class": RepairClass.appointment, "appointment_at": START.replace(hour=8)},
    ]
    events = []
    for n, overrides in enumerate(variants):
        payload = accepted(clock, f"{prefix}-{n}", **overrides)
        events.append(event(payload, clock, "intake").model_copy(update={"estate": estate}))
    again = events[0].model_copy(update={"id": uuid.uuid4().hex})
    return events + [again]


async def run(consumer, events: list[CloudEvent]) -> list[str]:
    """The bus's batch run of `events` (as if fetched together); each one's outcome."""
    parsed = [(SimpleNamespace(metadata=None), e, None, None) for e in events]
    return [outcome for _, outcome, _ in await consumer._run(parsed, consumer.service.clock.now())]


async def stored(service, estate: str, prefix: str) -> dict:
    """Every row the tickets `prefix-*` have in dispatch's tables, by table, in a stable
    order, without ids, with the ticket named by its number in the batch."""

    def plain(row) -> dict:
        data = {k: v for k, v in row._mapping.items() if k not in UNCOMPARED}
        return {**data, "n": row.ticket_id.rsplit("-", 1)[1]}

    answer = {}
    async with service.db.transaction() as session:
        for table in (store.forms, store.assignments, store.deadlines, store.escalations, store.nonconformities):
            rows = (await session.execute(sa.select(table).where(
                table.c.estate == estate, table.c.ticket_id.like(f"{prefix}-%")))).all()
            answer[table.name] = sorted((plain(r) for r in rows), key=repr)
        outbox = service.db.outbox
        bodies = (await session.execute(sa.select(outbox.c.body).where(outbox.c.subject.like(f"%.{estate}.%"))
                                        .order_by(outbox.c.seq))).scalars()
        events = [CloudEvent.model_validate_json(body) for body in bodies]
        answer["events"] = [(e.event_name, {k: v for k, v in e.data.items() if k != "ticket_id"})
                            for e in events if e.subject.startswith(f"{prefix}-")]
    return answer


@contextlib.contextmanager
def counting(service):
    """The statements the service's database runs meanwhile (their first three words)."""
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()[:3]))

    sa_event.listen(service.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa_event.remove(service.db.engine.sync_engine, "before_cursor_execute", count)


async def test_a_batch_of_accepted_costs_the_same_statements_whatever_its_size(dispatch):
    service, consumer, estate = dispatch
    seen = []
    for size in (1, 3, 20):
        prefix = f"S{size}x{uuid.uuid4().hex[:6]}"
        events = [event(accepted(service.clock, f"{prefix}-{n}", category="both taps" if n % 2 else "leak"),
                        service.clock, "intake").model_copy(update={"estate": estate}) for n in range(size)]
        with counting(service) as statements:
            assert await run(consumer, events) == ["processed"] * size
        seen.append(statements)
        rows = await stored(service, estate, prefix)
        assert len(rows["forms"]) == size and len(rows["assignments"]) == size + size // 2
    # The claim, "already routed?", the forms with their lines and clocks, the outbox.
    assert seen[0] == seen[1] == seen[2], seen
    assert [s.split()[0] for s in seen[0]] == ["INSERT", "SELECT", "WITH", "INSERT"], seen[0]


async def test_the_batch_and_the_event_by_event_paths_store_the_same(dispatch, monkeypatch):
    """One batch goes all at once; the same batch (other tickets) with two events whose
    handler fails after it held its rows goes event by event, each in a savepoint with the
    flush after it (the first failing one is not run again; the second fails in its
    savepoint): the failing ones leave nothing, the others store what the batch did."""
    service, consumer, estate = dispatch
    together, alone = (f"{side}{uuid.uuid4().hex[:8]}" for side in ("T", "A"))
    assert await run(consumer, accepted_events(service.clock, estate, together)) == ["processed"] * 6

    poison = [event(accepted(service.clock, f"{alone}-poison{n}"), service.clock, "intake").model_copy(
        update={"estate": estate}) for n in range(2)]
    handle = handlers.HANDLERS["accepted"]

    async def failing(message, uow, ctx):
        await handle(message, uow, ctx)
        if message in poison:
            raise RuntimeError("told to fail")

    monkeypatch.setitem(handlers.HANDLERS, "accepted", failing)
    events = accepted_events(service.clock, estate, alone)
    with counting(service) as statements:
        outcomes = await run(consumer, events[:2] + [poison[0]] + events[2:4] + [poison[1]] + events[4:])
    assert outcomes == ["processed"] * 2 + ["retry"] + ["processed"] * 2 + ["retry"] + ["processed"] * 2
    assert any(s.startswith("SAVEPOINT") for s in statements)  # it did go event by event

    batch, one_by_one = await stored(service, estate, together), await stored(service, estate, alone)
    assert "poison" not in repr(one_by_one)
    assert batch == one_by_one
    # Every path was taken: two lines of one form, the escalation and the nonconformity
    # record, one form for the ticket accepted twice.
    assert len(batch["forms"]) == 5 and len(batch["assignments"]) == 6
    assert len(batch["nonconformities"]) == 1 and len(batch["escalations"]) == 2
    assert [name for name, _ in batch["events"]].count("assigned") == 5
    for prefix in (together, alone):
        assert await lines_of_clocks(service, prefix) == {"ok"}


async def lines_of_clocks(service, prefix: str) -> set[str]:
    """For each clock of the tickets `prefix-*`: "ok" when a department's clock belongs to
    that department's line of its ticket and round and a ticket's own clock to none."""
    D, A = store.deadlines, store.assignments
    line = sa.select(A.c.id).where(A.c.ticket_id == D.c.ticket_id, A.c.round == D.c.round,
                                   A.c.department == D.c.department).scalar_subquery()
    verdict = sa.case((D.c.department == "", sa.case((D.c.assignment_id.is_(None), "ok"), else_="own clock on a line")),
                      (D.c.assignment_id == line, "ok"), else_="department clock on another line")
    async with service.db.transaction() as session:
        return set((await session.execute(sa.select(verdict).where(D.c.ticket_id.like(f"{prefix}-%")))).scalars())


async def test_a_step_writes_only_the_line_that_changed(dispatch):
    """Acknowledging one department of a form on two departments writes that line alone;
    the form's columns did not change, so the form is not written."""
    service, consumer, estate = dispatch
    ticket = f"L{uuid.uuid4().hex[:8]}-0"
    [payload] = [accepted(service.clock, ticket, category="both taps")]
    assert await run(consumer, [event(payload, service.clock, "intake").model_copy(update={"estate": estate})]) \
        == ["processed"]
    async with service.db.transaction() as session:
        uow = DispatchUnitOfWork(session, service.emit, metrics)
        with counting(service) as statements:
            form = await handlers.handle_form_command(handlers.FormCommand(
                estate, ticket, handlers.acknowledge("engineering", f"{estate}-eng01")), uow, service.context)
    assert [line.status.value for line in form.lines] == ["acknowledged", "assigned"]
    writes = [s for s in statements if s.split()[0] in ("INSERT", "UPDATE")]
    assert [s for s in writes if "forms" in s or "assignments" in s] == ["UPDATE dispatch.assignments SET"], writes
