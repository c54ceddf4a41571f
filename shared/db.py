"""Database plumbing every service shares: engine, unit of work, the outbox, the record of
processed events, dead letters, and the Alembic runner (one history per service, each
service in its own schema)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Generic, Sequence, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.events import CloudEvent
from shared.settings import asyncpg_url

REPO_ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchOutcome(Generic[T, R]):
    """What became of one item of `Database.run_batch`: its `value`, or the `error` its
    work raised (then its changes were rolled back alone)."""

    item: T
    value: R | None = None
    error: Exception | None = None


# session.info key: outbox rows `Database.emit` holds for one write before the commit.
_HELD_OUTBOX = "held_outbox_rows"


class _ItemFailed(Exception):
    """The work of item `index` failed in the all-at-once pass."""

    def __init__(self, index: int, error: Exception):
        super().__init__(repr(error))
        self.index, self.error = index, error


def service_metadata(schema: str) -> sa.MetaData:
    """A service's MetaData with the tables every service has: outbox, processed events
    and dead letters."""
    metadata = sa.MetaData(schema=schema)
    sa.Table(
        "outbox",
        metadata,
        # seq orders publication: events of one ticket leave in the order they were made.
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "processed_events",
        metadata,
        sa.Column("consumer", sa.String(80), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "dead_letters",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("consumer", sa.String(80), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("stream_seq", sa.BigInteger),
        sa.Column("event_id", sa.String(64)),
        sa.Column("estate", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table("dead_letter_replays", metadata, *dead_letter_replays_columns())
    return metadata


def dead_letter_replays_columns() -> list[sa.Column]:
    """The record of every dead-letter replay (`estatedesk dead-letters replay`): the dead
    letter as it was, who replayed it when, and the stream sequence of the re-publication.
    Also the body of each service's migration that adds the table."""
    return [
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("dead_letter_id", sa.BigInteger, nullable=False),
        sa.Column("consumer", sa.String(80), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(64)),
        sa.Column("estate", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replayed_by", sa.String(80), nullable=False),
        sa.Column("message_id", sa.String(160), nullable=False),  # Nats-Msg-Id of the re-publication
        sa.Column("stream_seq", sa.BigInteger),
    ]


async def take_numbers(session: AsyncSession, counters: sa.Table, estate: str, year: int, count: int = 1) -> int:
    """Take `count` (>= 1) consecutive numbers of `estate`'s `year` from a counter table
    (columns estate, year, last; primary key (estate, year)) in one statement; returns
    the first. The counter row stays locked until the caller's transaction ends, so a
    rollback gives the numbers back and a year's numbers have no gaps: form numbers (RULES
    §1 Record content), archive record numbers (§5 Catalogue), bill numbers (§2 Paid
    services)."""
    c = counters.c
    result = await session.execute(
        pg_insert(counters).values(estate=estate, year=year, last=count)
        .on_conflict_do_update(index_elements=[c.estate, c.year], set_={"last": c.last + count})
        .returning(c.last)
    )
    return result.scalar_one() - count + 1


class Database:
    def __init__(self, url: str, metadata: sa.MetaData, pool_size: int = 8):
        # No pre-ping: it costs a round trip per transaction; a connection the server
        # dropped fails its transaction once, which is retried (consumers redeliver).
        # application_name: pg_stat_activity and the server's log name the service of a
        # connection (bench/statements.py counts statements per service by it).
        self.engine: AsyncEngine = create_async_engine(
            asyncpg_url(url), pool_size=pool_size, max_overflow=4, pool_recycle=1800,
            connect_args={"server_settings": {"application_name": f"estatedesk-{metadata.schema}"}},
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.metadata = metadata
        self.outbox = metadata.tables[f"{metadata.schema}.outbox"]
        self.processed = metadata.tables[f"{metadata.schema}.processed_events"]
        self.dead_letters = metadata.tables[f"{metadata.schema}.dead_letters"]
        # Set after a commit that wrote outbox rows, so the relay wakes at once.
        self.outbox_written = asyncio.Event()
        # Rows as arrays, zipped by unnest in order (so `seq` keeps the order emitted): one
        # statement for any number of rows (an executemany is one statement per row).
        o = self.outbox.c
        self._outbox_insert = sa.insert(self.outbox).from_select(
            ["event_id", "subject", "body", "created_at"],
            sa.select(*(sa.func.unnest(sa.bindparam(name, type_=ARRAY(column.type)))
                        for name, column in (("event_ids", o.event_id), ("subjects", o.subject), ("bodies", o.body),
                                             ("times", o.created_at)))))
        # One statement for any batch size (an array parameter, not N value rows): one
        # compiled and one prepared statement instead of one per batch length.
        processed = self.processed
        self._claim_many = (
            pg_insert(processed)
            .from_select(["consumer", "event_id", "processed_at"], sa.select(
                sa.bindparam("consumer", type_=processed.c.consumer.type),
                sa.func.unnest(sa.bindparam("ids", type_=ARRAY(processed.c.event_id.type))),
                sa.bindparam("now", type_=processed.c.processed_at.type),
            ))
            .on_conflict_do_nothing()
            .returning(processed.c.event_id)
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on error."""
        async with self.sessions() as session:
            async with session.begin():
                session.info["outbox_rows"] = 0
                yield session
            if session.info.get("outbox_rows"):
                self.outbox_written.set()

    async def run_batch(
        self,
        items: Sequence[T],
        work: Callable[[AsyncSession, T, bool], Awaitable[R]],
        *,
        begin: Callable[[AsyncSession, bool], Awaitable[None]] | None = None,
        on_error: Callable[[AsyncSession, T, Exception], Awaitable[R]] | None = None,
        rerun_failed: bool = False,
        all_at_once: Callable[[AsyncSession, Sequence[T]], Awaitable[list[R]]] | None = None,
        finish: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> list[BatchOutcome[T, R]]:
        """Run `work(session, item, alone)` for every item, in order, committed together.

        The common case costs one transaction and no savepoint (`alone` False). When the
        work of an item raises (or the batch's held outbox rows cannot be written), that
        transaction is rolled back and the batch goes again
        in a new one, each item in its own savepoint (`alone` True), so a failing item is
        rolled back alone and the others commit. `begin(session, alone)` runs first in
        each of the two transactions (a lock, a bulk claim). An item that failed in the
        first pass is not run again unless `rerun_failed` (its attempts stay bounded);
        `on_error(session, item, error)`, run after its savepoint is rolled back, may turn
        its failure into a value written in the same transaction (a dead letter);
        otherwise the outcome carries the error.

        `all_at_once(session, items) -> values` (one value per item, in order), when
        given, does the first pass for the whole batch in one go (set-based work: one
        counter update, one insert for all); when it raises, every item goes alone.
        `finish(session)` runs after the items of the all-at-once pass (a consumer's batch
        flush of what its handlers held in memory); when it raises, every item goes alone
        (in that pass `work` does its own item's share).

        Returns one `BatchOutcome` per item, in order, after the commit. Raises what
        `begin`, `on_error` or the commit raise (nothing of the batch was stored then).
        Used by the consumers (`shared.bus`) and intake's registration desk."""
        failed: _ItemFailed | None = None
        try:
            async with self.transaction() as session:
                if begin is not None:
                    await begin(session, False)
                session.info[_HELD_OUTBOX] = []  # the batch's events in one write (see `emit`)
                values = []
                if all_at_once is not None:
                    try:
                        values = list(await all_at_once(session, items))
                        if len(values) != len(items):
                            raise ValueError(f"all_at_once gave {len(values)} values for {len(items)} items")
                    except Exception as error:  # which item is unknown: every item goes alone
                        raise _ItemFailed(-1, error) from error
                for index, item in enumerate(items if all_at_once is None else ()):
                    try:
                        values.append(await work(session, item, False))
                    except Exception as error:
                        raise _ItemFailed(index, error) from error
                try:
                    if finish is not None:
                        await finish(session)
                    await self._write_held(session)
                except Exception as error:  # which item's is unknown: every item goes alone
                    raise _ItemFailed(-1, error) from error
            return [BatchOutcome(item, value) for item, value in zip(items, values)]
        except _ItemFailed as error:
            failed = error
        outcomes: list[BatchOutcome[T, R]] = []
        async with self.transaction() as session:
            if begin is not None:
                await begin(session, True)
            for index, item in enumerate(items):
                error = failed.error if index == failed.index and not rerun_failed else None
                if error is None:
                    try:
                        async with session.begin_nested():
                            value = await work(session, item, True)
                        outcomes.append(BatchOutcome(item, value))
                        continue
                    except Exception as raised:  # this item's changes are rolled back; the batch goes on
                        error = raised
                if on_error is None:
                    outcomes.append(BatchOutcome(item, error=error))
                else:
                    outcomes.append(BatchOutcome(item, await on_error(session, item, error)))
        return outcomes

    async def emit(self, session: AsyncSession, event: CloudEvent) -> None:
        """Record an event to publish, in the caller's transaction (transactional outbox);
        see `emit_many`."""
        await self.emit_many(session, [event])

    async def emit_many(self, session: AsyncSession, events: list[CloudEvent]) -> None:
        """Record events to publish, in the caller's transaction and in order, in one
        statement (intake's registration batches).

        In the all-at-once pass of `run_batch` the rows are held and the batch's rows are
        written together (one statement) before its commit, in the order emitted. An
        event emitted there inside a savepoint of the caller's own, while rows are held,
        raises RuntimeError (the held rows must not land inside a savepoint that may roll
        back): the batch then goes item by item, where nothing is held."""
        if not events:
            return
        rows = [_outbox_row(event) for event in events]
        session.info["outbox_rows"] = session.info.get("outbox_rows", 0) + len(rows)
        held = session.info.get(_HELD_OUTBOX)
        if held is not None:
            if not session.in_nested_transaction():
                held.extend(rows)
                return
            if held:
                raise RuntimeError("an event emitted inside a savepoint while a batch's events are held")
        await self._insert_outbox(session, rows)

    async def _write_held(self, session: AsyncSession) -> None:
        """Write the rows `emit_many` held, in one statement."""
        held = session.info.pop(_HELD_OUTBOX, None)
        if held:
            await self._insert_outbox(session, held)

    async def _insert_outbox(self, session: AsyncSession, rows: list[dict]) -> None:
        await session.execute(self._outbox_insert, {
            "event_ids": [r["event_id"] for r in rows], "subjects": [r["subject"] for r in rows],
            "bodies": [r["body"] for r in rows], "times": [r["created_at"] for r in rows]})

    async def claim_event(self, session: AsyncSession, consumer: str, event_id: str, now: dt.datetime) -> bool:
        """Record that `consumer` processed `event_id`; False when it already had."""
        result = await session.execute(
            pg_insert(self.processed)
            .values(consumer=consumer, event_id=event_id, processed_at=now)
            .on_conflict_do_nothing()
            .returning(self.processed.c.event_id)
        )
        return result.first() is not None

    async def claim_events(self, session: AsyncSession, consumer: str, event_ids: list[str],
                           now: dt.datetime) -> set[str]:
        """Record that `consumer` processed each of `event_ids`, in one statement; returns
        the ids it had not processed before (the others are duplicates)."""
        if not event_ids:
            return set()
        result = await session.execute(self._claim_many, {"consumer": consumer, "ids": list(event_ids), "now": now})
        return set(result.scalars())

    async def record_dead_letter(
        self,
        session: AsyncSession,
        *,
        consumer: str,
        subject: str,
        body: bytes,
        reason: str,
        attempts: int,
        now: dt.datetime,
        stream_seq: int | None = None,
        event_id: str | None = None,
        estate: str | None = None,
    ) -> None:
        await session.execute(
            sa.insert(self.dead_letters).values(
                consumer=consumer, subject=subject, body=body, reason=reason[:4000],
                attempts=attempts, recorded_at=now, stream_seq=stream_seq,
                event_id=event_id, estate=estate,
            )
        )

    async def lock_transaction(self, session: AsyncSession, name: str) -> None:
        """Wait for the advisory lock `name`, held until the session's transaction ends."""
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(name)})

    @asynccontextmanager
    async def advisory_lock(self, name: str) -> AsyncIterator[bool]:
        """Yields True while this process holds the PostgreSQL advisory lock `name` (one
        holder per database at a time), False when another holds it. The lock lives on a
        connection of its own, so it ends with the holder even after kill -9 (the server
        sees the connection drop). Raises the driver's error when the database is gone."""
        key = advisory_key(name)
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            held = (await conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key})).scalar_one()
            try:
                yield held
            finally:
                if held:
                    await conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL advisory locks from a readable name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def json_default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def rows_json(rows: object) -> str:
    """Rows (a list of column dicts) as one JSON text for `jsonb_populate_recordset` /
    `jsonb_to_recordset`: one parameter whatever the number of rows, so a statement's text
    never changes (SQLAlchemy's compiled cache and asyncpg's prepared statement hit).
    Times as ISO 8601 with their offset (as `datetime.isoformat`), decimals as strings,
    text as UTF-8. orjson: the standard library's encoder was 4-10 % of a consumer's CPU
    (issue 12's profile). Raises TypeError for a value of another type."""
    return orjson.dumps(rows, default=json_default, option=orjson.OPT_NON_STR_KEYS).decode()


# --- migrations -------------------------------------------------------------------------


def alembic_config(service: str, database_url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(REPO_ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", asyncpg_url(database_url).replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def migrate(service: str, database_url: str, revision: str = "head") -> None:
    """Bring a service's schema up to `revision` (synchronous; runs its own event loop)."""
    from alembic import command

    command.upgrade(alembic_config(service, database_url), revision)


def run_alembic_env(metadata: sa.MetaData) -> None:
    """Body of every service's migrations/env.py: online, async, schema-scoped."""
    from alembic import context

    config = context.config
    schema = metadata.schema

    def do_run(connection) -> None:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=lambda name, type_, parent: type_ != "schema" or name == schema,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
        async with engine.begin() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run())


def _outbox_row(event: CloudEvent) -> dict:
    """An outbox row of `event` (as `Database.emit` writes it)."""
    return dict(event_id=event.id, subject=event.nats_subject, body=event.model_dump_json().encode(),
                created_at=event.time)
