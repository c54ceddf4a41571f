"""Database plumbing every service shares: engine, unit of work, the outbox, the record of
processed events, dead letters, and the Alembic runner (one history per service, each
service in its own schema)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.events import CloudEvent
from shared.settings import asyncpg_url

REPO_ROOT = Path(__file__).resolve().parent.parent


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


class Database:
    def __init__(self, url: str, metadata: sa.MetaData, pool_size: int = 8):
        # No pre-ping: it costs a round trip per transaction; a connection the server
        # dropped fails its transaction once, which is retried (consumers redeliver).
        self.engine: AsyncEngine = create_async_engine(
            asyncpg_url(url), pool_size=pool_size, max_overflow=4, pool_recycle=1800
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.metadata = metadata
        self.outbox = metadata.tables[f"{metadata.schema}.outbox"]
        self.processed = metadata.tables[f"{metadata.schema}.processed_events"]
        self.dead_letters = metadata.tables[f"{metadata.schema}.dead_letters"]
        # Set after a commit that wrote outbox rows, so the relay wakes at once.
        self.outbox_written = asyncio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on error."""
        async with self.sessions() as session:
            async with session.begin():
                session.info["outbox_rows"] = 0
                yield session
            if session.info.get("outbox_rows"):
                self.outbox_written.set()

    async def emit(self, session: AsyncSession, event: CloudEvent) -> None:
        """Record an event to publish, in the caller's transaction (transactional outbox)."""
        await session.execute(
            sa.insert(self.outbox).values(
                event_id=event.id,
                subject=event.nats_subject,
                body=event.model_dump_json().encode(),
                created_at=event.time,
            )
        )
        session.info["outbox_rows"] = session.info.get("outbox_rows", 0) + 1

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
        result = await session.execute(
            pg_insert(self.processed)
            .values([{"consumer": consumer, "event_id": event_id, "processed_at": now} for event_id in event_ids])
            .on_conflict_do_nothing()
            .returning(self.processed.c.event_id)
        )
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

    async def emit_many(self, session: AsyncSession, events: list[CloudEvent]) -> None:
        """Like `emit` for several events, in one statement and in order (intake's
        registration batches; `run_batch`'s held rows, once landed, do the same)."""
        if events:
            await session.execute(sa.insert(self.outbox), [_outbox_row(event) for event in events])
            session.info["outbox_rows"] = session.info.get("outbox_rows", 0) + len(events)

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
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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
