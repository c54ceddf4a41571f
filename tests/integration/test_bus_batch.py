"""`Database.run_batch` on a real PostgreSQL: a batch in one transaction, and after a
failure item by item with a savepoint each (the consumers' and the registration desk's
one way of committing a batch). Real rollbacks and savepoints: a fake session would
prove nothing about what is stored."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from shared.db import Database, service_metadata

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
