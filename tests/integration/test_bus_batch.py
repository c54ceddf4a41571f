"""`Database.run_batch` on a real PostgreSQL: a batch in one transaction, and after a
failure item by item with a savepoint each (the consumers' and the registration desk's
one way of committing a batch). Real rollbacks and savepoints: a fake session would
prove nothing about what is stored."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa

from shared.db import Database, service_metadata
from shared.events import Accepted, make_event

pytestmark = pytest.mark.integration


@pytest.fixture
async def scratch(servers):
    """A Database over a schema of its own with one table `rows(name)`."""
    schema = f"batch_{uuid.uuid4().hex[:6]}"
    metadata = service_metadata(schema)
    rows = sa.Table("rows", metadata, sa.Column("name", sa.String(40), primary_key=True))
    db = Database(servers["database"], metadata, pool_size=2)
    async with db.engine.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    yield db, rows
    async with db.engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    await db.dispose()


async def stored(db: Database, rows) -> list[str]:
    async with db.transaction() as session:
        return sorted((await session.execute(sa.select(rows.c.name))).scalars())


def writer(rows, calls: list, fail: set[str]):
    """Work that inserts the item's name and fails (after writing) for names in `fail`."""

    async def work(session, name: str, alone: bool) -> str:
        calls.append((name, alone))
        await session.execute(sa.insert(rows).values(name=name))
        if name in fail:
            raise ValueError(f"{name} refused")
        return name.upper()

    return work


async def test_a_batch_without_failure_commits_in_one_pass_without_savepoints(scratch):
    db, rows = scratch
    calls, begun = [], []

    async def begin(session, alone):
        begun.append(alone)

    outcomes = await db.run_batch(["a", "b", "c"], writer(rows, calls, set()), begin=begin)
    assert [(o.item, o.value, o.error) for o in outcomes] == [("a", "A", None), ("b", "B", None), ("c", "C", None)]
    assert calls == [("a", False), ("b", False), ("c", False)] and begun == [False]
    assert await stored(db, rows) == ["a", "b", "c"]


async def test_a_failing_item_is_rolled_back_alone_and_not_run_twice(scratch):
    db, rows = scratch
    calls, begun = [], []

    async def begin(session, alone):
        begun.append(alone)

    outcomes = await db.run_batch(["a", "b", "c"], writer(rows, calls, {"b"}), begin=begin)
    assert [o.value for o in outcomes] == ["A", None, "C"]
    assert isinstance(outcomes[1].error, ValueError) and "b refused" in str(outcomes[1].error)
    # The first pass stopped at b; the second ran a and c alone, and b not again.
    assert calls == [("a", False), ("b", False), ("a", True), ("c", True)] and begun == [False, True]
    assert await stored(db, rows) == ["a", "c"]


async def test_rerun_failed_gives_the_failing_item_its_savepoint_too(scratch):
    db, rows = scratch
    calls = []
    outcomes = await db.run_batch(["a", "b"], writer(rows, calls, {"a"}), rerun_failed=True)
    assert calls == [("a", False), ("a", True), ("b", True)]
    assert outcomes[0].error is not None and outcomes[1].value == "B"
    assert await stored(db, rows) == ["b"]


async def test_on_error_writes_in_the_same_transaction_and_gives_the_value(scratch):
    db, rows = scratch
    seen = []

    async def on_error(session, name, error):
        seen.append((name, type(error).__name__))
        await session.execute(sa.insert(rows).values(name=f"dead-{name}"))
        return "dead letter"

    outcomes = await db.run_batch(["a", "b", "c"], writer(rows, [], {"a", "c"}), on_error=on_error)
    assert [(o.value, o.error) for o in outcomes] == [("dead letter", None), ("B", None), ("dead letter", None)]
    # a failed in the first pass (not run again); c failed in its savepoint.
    assert seen == [("a", "ValueError"), ("c", "ValueError")]
    assert await stored(db, rows) == ["b", "dead-a", "dead-c"]


async def test_a_failure_outside_the_items_stores_nothing_and_is_raised(scratch):
    db, rows = scratch

    async def begin(session, alone):
        await session.execute(sa.insert(rows).values(name="begun"))
        if alone:
            raise RuntimeError("lock not had")

    with pytest.raises(RuntimeError, match="lock not had"):
        await db.run_batch(["a", "b"], writer(rows, [], {"b"}), begin=begin)
    assert await stored(db, rows) == []


async def test_an_empty_batch_is_one_empty_transaction(scratch):
    db, rows = scratch
    assert await db.run_batch([], writer(rows, [], set())) == []


def event(name: str):
    payload = Accepted(ticket_id=name, form_number="T-1", kind="inquiry", channel="phone", description=name,
                       first_contact="cs", received_at=dt.datetime.now(dt.timezone.utc))
    return make_event(payload, estate="e1", actor="cs", source="test", time=dt.datetime.now(dt.timezone.utc))


async def outbox(db: Database) -> list[str]:
    """Ticket ids of the outbox rows in publication order."""
    async with db.transaction() as session:
        bodies = (await session.execute(sa.select(db.outbox.c.body).order_by(db.outbox.c.seq))).scalars()
        return [json.loads(body)["subject"] for body in bodies]


def emitter(db: Database, rows, fail: set[str] = frozenset()):
    async def work(session, names: tuple[str, ...], alone: bool) -> None:
        # One by `emit`, the rest by `emit_many`: both keep the order of emission.
        await db.emit(session, event(names[0]))
        await db.emit_many(session, [event(name) for name in names[1:]])
        if names[0] in fail:
            raise ValueError(f"{names[0]} refused")

    return work


async def test_a_batchs_events_are_written_together_in_the_order_emitted(scratch):
    db, rows = scratch
    db.outbox_written.clear()
    await db.run_batch([("a1", "a2"), ("b1",), ("c1", "c2")], emitter(db, rows))
    assert await outbox(db) == ["a1", "a2", "b1", "c1", "c2"]
    assert db.outbox_written.is_set()  # the relay is woken


async def test_events_of_a_failed_item_are_not_written_and_the_others_keep_their_order(scratch):
    db, rows = scratch
    await db.run_batch([("a1", "a2"), ("b1", "b2"), ("c1",)], emitter(db, rows, fail={"b1"}))
    assert await outbox(db) == ["a1", "a2", "c1"]


async def test_an_event_emitted_in_a_savepoint_of_the_work_sends_the_batch_item_by_item(scratch):
    """Held rows must not be written inside a savepoint the work may roll back."""
    db, rows = scratch
    calls = []

    async def work(session, name: str, alone: bool) -> None:
        calls.append((name, alone))
        await db.emit(session, event(f"{name}-outer"))
        try:
            async with session.begin_nested():
                await db.emit(session, event(f"{name}-inner"))
                raise LookupError("the work's own savepoint rolls back")
        except LookupError:
            pass

    outcomes = await db.run_batch(["a", "b"], work, rerun_failed=True)
    assert [o.error for o in outcomes] == [None, None]
    assert calls == [("a", False), ("a", True), ("b", True)]
    assert await outbox(db) == ["a-outer", "b-outer"]


async def test_held_rows_that_cannot_be_written_send_every_item_alone(scratch):
    db, rows = scratch
    twice = event("dup")

    async def work(session, name: str, alone: bool) -> None:
        await db.emit(session, twice if name != "ok" else event("ok"))

    # The same event id twice breaks the outbox's unique key only when the rows are
    # written: every item goes again alone, and the second "dup" fails there.
    outcomes = await db.run_batch(["dup", "ok", "dup-again"], work)
    assert [o.error is None for o in outcomes] == [True, True, False]
    assert await outbox(db) == ["dup", "ok"]


async def test_set_based_work_does_the_first_pass_for_the_whole_batch(scratch):
    """`all_at_once` (intake's registration batch: one counter update, one insert for
    all); when it fails, every item goes alone through `work`."""
    db, rows = scratch
    calls = []

    async def all_at_once(session, names):
        calls.append(tuple(names))
        await session.execute(sa.insert(rows), [{"name": name} for name in names])
        if "bad" in names:
            raise ValueError("one of them is refused")
        return [name.upper() for name in names]

    outcomes = await db.run_batch(["a", "b"], writer(rows, calls, set()), all_at_once=all_at_once)
    assert [o.value for o in outcomes] == ["A", "B"] and calls == [("a", "b")]
    calls.clear()
    outcomes = await db.run_batch(["c", "bad", "d"], writer(rows, calls, {"bad"}), all_at_once=all_at_once)
    assert [o.value for o in outcomes] == ["C", None, "D"] and isinstance(outcomes[1].error, ValueError)
    assert calls == [("c", "bad", "d"), ("c", True), ("bad", True), ("d", True)]
    assert await stored(db, rows) == ["a", "b", "c", "d"]


async def test_finish_runs_after_the_items_and_its_failure_sends_every_item_alone(scratch):
    """`finish` (a consumer's batch flush) writes what the items held; when it fails the
    batch goes item by item (where each item's work writes its own share)."""
    db, rows = scratch
    calls = []

    async def work(session, name: str, alone: bool) -> str:
        calls.append((name, alone))
        if alone:
            await session.execute(sa.insert(rows).values(name=name))
        else:
            session.info.setdefault("held", []).append({"name": name})
        return name

    async def finish(session) -> None:
        held = session.info.pop("held", [])
        await session.execute(sa.insert(rows), held)
        if any(row["name"] == "x" for row in held):
            raise ValueError("the flush is refused")

    await db.run_batch(["a", "b"], work, finish=finish)
    assert calls == [("a", False), ("b", False)] and await stored(db, rows) == ["a", "b"]
    calls.clear()
    outcomes = await db.run_batch(["c", "x"], work, finish=finish)
    assert [o.error for o in outcomes] == [None, None]
    assert calls == [("c", False), ("x", False), ("c", True), ("x", True)]
    assert await stored(db, rows) == ["a", "b", "c", "x"]
