"""`estatedesk analytics rebuild`: replay the ticket stream from its first message through
the same `rules.apply_event` into a fresh read model in a scratch schema, then compare it
with the live model counter by counter, or swap it in.

Events are folded in batches through the live consumer's own fold (facts of the batch's
tickets loaded once; facts and counters summed in memory across batches and written
together every `WRITE_COUNTERS` counters), which gives the same facts and totals as folding them one by
one (`rules.replay` is order-preserving and idempotent per ticket). Events the live
consumer would refuse as dead letters (malformed, unknown type, wrong subject, or a
payload `apply_event` rejects) are skipped and counted here too.

Compare: at a stream sequence both models have reached (see `compare_at_common_sequence`),
so a difference is drift, never an event still in flight.

Swap: inside one transaction the live tables are locked (the live consumer waits), the
scratch model catches up with the events published since the replay started, and the
live tables are replaced with its rows. An event the live consumer is still to deliver
afterwards finds its id among the ticket's seen events and adds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import nats
import sqlalchemy as sa
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from services.analytics import handlers, store
from shared.directory import Directory
from shared.events import STREAM_NAME, STREAM_SUBJECTS, CloudEvent, Payload, read_event
from shared.settings import asyncpg_url, nats_servers

# The live consumer (shared.bus.EventConsumer of every event: "<service>-all").
LIVE_DURABLE = "analytics-all"
# Looking for a cut: after locking, wait this long for acks of commits made just before
# the lock to reach the server; give up after CUT_WAIT_SECONDS.
CUT_SETTLE_SECONDS = 0.3
CUT_WAIT_SECONDS = 60.0
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DEFAULT_SCHEMA = "analytics_rebuild"
BATCH = 2000  # events folded together: their tickets' facts read in one query
# What is summed in memory before it is written: counters, and tickets whose facts changed.
WRITE_COUNTERS = 200_000
WRITE_TICKETS = 10_000
STREAM_TABLES = ("ticket_facts", "rollups", "repeat_suggestions", "alerts")


@dataclass
class RebuildResult:
    schema: str
    last_seq: int = 0
    events: int = 0
    skipped: list[str] = field(default_factory=list)
    tickets: int = 0
    counters: int = 0
    differences: int | None = None  # None: no common stream sequence found to compare at
    sample: list[dict] = field(default_factory=list)
    swapped: bool = False
    replay_events: int = 0  # events of the replay alone (before any catch-up)
    replay_seconds: float | None = None  # the replay alone (stream read, folding, writes)

    @property
    def replay_rate(self) -> float | None:
        """Events replayed per second, the replay alone (no catch-up, no comparison)."""
        return self.replay_events / self.replay_seconds if self.replay_seconds else None


class Parsed(NamedTuple):
    event: CloudEvent
    payload: Payload  # validated once here, folded without validating again


def parse(subject: str, body: bytes) -> Parsed:
    """The live consumer's acceptance test (`shared.events.read_event`); raises MalformedEvent."""
    event = read_event(subject, body)
    return Parsed(event, event.payload())


async def fold_batch(uow: store.AnalyticsUnitOfWork, events: list[Parsed], directory: Directory,
                     skipped: list[str]) -> None:
    """Fold a batch of events into the unit of work's read model through the live
    consumer's own fold (`handlers.fold`): the facts of the batch's tickets read in one
    query; everything held in `uow.batch` (counters summed) until the caller flushes."""
    await uow.facts.load_many([(e.estate, e.subject) for e, _ in events])
    for event, payload in events:
        try:
            await handlers.fold(event, uow, directory.policy_for(event.estate), payload)
        except ValueError as error:  # the live consumer dead-letters it after its retries
            skipped.append(f"{event.id}: {error}")


async def replay_stream(js, conn_factory, model: store.ReadModel, directory: Directory, clock_now,
                        first_seq: int, last_seq: int, result: RebuildResult, batch: int = BATCH) -> None:
    """Fold stream messages first_seq..last_seq into `model`, in one transaction of the
    connection `conn_factory()` gives (an async context manager). Events are folded
    `batch` at a time; what they change is summed in memory and written (a COPY per table
    into the empty model, one statement after) only when `WRITE_COUNTERS` counters or `WRITE_TICKETS` tickets are
    pending, and at the end: a counter is written once per write, not once per batch."""
    if last_seq < first_seq:
        return
    # Messages are handed over in chunks by the subscription's callback (no task and no
    # timer per message, as `next_msg` has); a full queue holds the callback, and with it
    # the server's flow control.
    chunks: asyncio.Queue[list] = asyncio.Queue(maxsize=4)
    pending: list = []

    async def on_message(msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq > last_seq:
            return
        pending.append(msg)
        if len(pending) >= batch or seq >= last_seq:
            await chunks.put(pending[:])
            pending.clear()

    sub = await js.subscribe(
        STREAM_SUBJECTS[0], ordered_consumer=True, cb=on_message,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first_seq),
    )
    try:
        async with conn_factory() as conn:
            empty = first_seq == 1  # a fresh scratch model: nothing to read, its first write a COPY
            uow = store.AnalyticsUnitOfWork(conn, model=model)
            uow.facts.nothing_stored = empty
            seq = first_seq - 1
            while seq < last_seq:
                try:
                    chunk = await asyncio.wait_for(chunks.get(), 10)
                except asyncio.TimeoutError:
                    raise RuntimeError(f"the stream stopped after {seq + len(pending)} before {last_seq}") from None
                events: list[Parsed] = []
                for msg in chunk:
                    seq = msg.metadata.sequence.stream
                    result.events += 1
                    try:
                        events.append(parse(msg.subject, msg.data))
                    except ValueError as error:  # MalformedEvent
                        result.skipped.append(f"seq {seq}: {str(error).splitlines()[0]}")
                await fold_batch(uow, events, directory, result.skipped)
                if len(uow.batch.counters) >= WRITE_COUNTERS or len(uow.batch.facts) >= WRITE_TICKETS:
                    await uow.flush(clock_now(), into_empty=empty)
                    # A fresh unit of work: the facts written are read back when needed
                    # (memory stays bounded by the write thresholds, whatever the stream).
                    uow, empty = store.AnalyticsUnitOfWork(conn, model=model), False
            await uow.flush(clock_now(), into_empty=empty)
    finally:
        await sub.unsubscribe()


def cut_of(delivered: int, ack_floor: int, ack_pending: int) -> int | None:
    """The stream sequence up to which the live model holds every event and none after,
    from its consumer's position taken while the live tables are locked against writes
    (so nothing delivered and unacknowledged is committed): the ack floor, when every
    message above it is still pending (nothing acknowledged out of order), else None."""
    return ack_floor if ack_pending == delivered - ack_floor else None


async def live_cut(js) -> int | None:
    await asyncio.sleep(CUT_SETTLE_SECONDS)
    info = await js.consumer_info(STREAM_NAME, LIVE_DURABLE)
    return cut_of(info.delivered.stream_seq, info.ack_floor.stream_seq, info.num_ack_pending)


class _Within:
    """A connection factory that hands out one open connection (writes inside a caller's
    transaction)."""

    def __init__(self, conn: AsyncConnection):
        self.conn = conn

    def __call__(self):
        return self

    async def __aenter__(self):
        return self.conn

    async def __aexit__(self, *exc):
        return False


async def compare_at_common_sequence(engine, js, scratch: store.ReadModel, directory: Directory, clock_now,
                                     result: RebuildResult, batch: int = BATCH) -> None:
    """Compare the scratch model (folded up to `result.last_seq`) with the live one at a
    stream sequence both have reached: lock the live tables against writes, take the live
    consumer's cut, fold the scratch model on to it and compare, all in one transaction.
    When the live model is behind the scratch one, release and try again (it catches up);
    gives up after CUT_WAIT_SECONDS, leaving `result.differences` None."""
    deadline = asyncio.get_running_loop().time() + CUT_WAIT_SECONDS
    live_tables = ", ".join(f'"{store.LIVE.schema}".{name}' for name in STREAM_TABLES)
    while asyncio.get_running_loop().time() < deadline:
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text(f"LOCK TABLE {live_tables} IN SHARE MODE"))
                cut = await live_cut(js)
                if cut is not None and cut >= result.last_seq:
                    await replay_stream(js, _Within(conn), scratch, directory, clock_now, result.last_seq + 1, cut,
                                        result, batch)
                    result.last_seq = cut
                    result.differences, result.sample = await compare(conn, store.LIVE, scratch)
                    return
        except sa.exc.DBAPIError as error:  # a deadlock with the live consumer: PostgreSQL chose us
            if "deadlock" not in str(error):
                raise
        await asyncio.sleep(0.2)  # the lock is released: the live consumer moves on


async def compare(conn: AsyncConnection, live: store.ReadModel, scratch: store.ReadModel,
                  limit: int = 20) -> tuple[int, list[dict]]:
    """Counters whose values differ between the two models (a zero equals a missing row)."""
    keys = store.COUNTER_KEYS
    join = " AND ".join(f"l.{k} = s.{k}" for k in keys)
    select = ", ".join(f"coalesce(l.{k}, s.{k}) AS {k}" for k in keys)
    base = (f'FROM "{live.schema}".rollups l FULL OUTER JOIN "{scratch.schema}".rollups s ON {join} '
            "WHERE coalesce(l.value, 0) <> coalesce(s.value, 0)")
    count = (await conn.execute(sa.text(f"SELECT count(*) {base}"))).scalar_one()
    rows = await conn.execute(sa.text(
        f"SELECT {select}, l.value AS live, s.value AS rebuilt {base} ORDER BY 1, 2, 3, 4, 5 LIMIT {int(limit)}"))
    return int(count), [dict(r._mapping) for r in rows]


async def create_scratch(engine, scratch: store.ReadModel) -> None:
    """An empty read model in the scratch schema (dropped first if it exists)."""
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{scratch.schema}" CASCADE'))
        await conn.execute(sa.text(f'CREATE SCHEMA "{scratch.schema}"'))
        await conn.run_sync(scratch.metadata.create_all)


@contextlib.contextmanager
def fewer_collections(threshold: int = 100_000):
    """Python's cyclic garbage collector, run every 700 allocations by default, rescans the
    replay's growing in-memory batch (facts, counters) again and again: more than half of
    the fold's CPU (bench/rebuild.py). The fold makes no reference cycles, so while it runs
    a young-generation collection waits for `threshold` allocations; restored after."""
    before = gc.get_threshold()
    gc.set_threshold(threshold, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def replay_all(engine, js, scratch: store.ReadModel, directory: Directory, clock, result: RebuildResult,
                     batch: int = BATCH) -> None:
    """Replay the whole stream as it is now into `scratch`, timed (`result.replay_seconds`)."""
    started = time.perf_counter()
    result.last_seq = (await js.stream_info(STREAM_NAME)).state.last_seq
    with fewer_collections():
        await replay_stream(js, engine.begin, scratch, directory, clock.now, 1, result.last_seq, result, batch)
    result.replay_seconds = time.perf_counter() - started
    result.replay_events = result.events


async def rebuild(nats_url: str, database_url: str, schema: str = DEFAULT_SCHEMA, *, swap: bool = False,
                  keep: bool = True, batch: int = BATCH, clock=None) -> RebuildResult:
    if not SCHEMA_NAME.match(schema) or schema in ("analytics", "public"):
        raise ValueError(f"scratch schema {schema!r}: lower-case letters, digits and _, not the live schema")
    from shared.clock import SystemClock

    clock = clock or SystemClock()
    result = RebuildResult(schema=schema)
    scratch = store.read_model(schema)
    engine = create_async_engine(asyncpg_url(database_url))
    directory = Directory()
    await directory.start(nats_url)
    nc = await nats.connect(nats_servers(nats_url))
    try:
        await create_scratch(engine, scratch)
        js = nc.jetstream()
        await replay_all(engine, js, scratch, directory, clock, result, batch)

        if swap:
            async with engine.begin() as conn:
                live_tables = ", ".join(f'"{store.LIVE.schema}".{name}' for name in STREAM_TABLES)
                await conn.execute(sa.text(f"LOCK TABLE {live_tables} IN ACCESS EXCLUSIVE MODE"))
                latest = (await js.stream_info(STREAM_NAME)).state.last_seq
                # The catch-up writes inside the locking transaction.
                await replay_stream(js, _Within(conn), scratch, directory, clock.now, result.last_seq + 1, latest, result, batch)
                result.last_seq = latest
                for name in STREAM_TABLES:
                    await conn.execute(sa.text(f'DELETE FROM "{store.LIVE.schema}".{name}'))
                    await conn.execute(sa.text(
                        f'INSERT INTO "{store.LIVE.schema}".{name} SELECT * FROM "{schema}".{name}'))
            result.swapped = True

        else:
            await compare_at_common_sequence(engine, js, scratch, directory, clock.now, result, batch)
        async with engine.connect() as conn:
            result.tickets = (await conn.execute(sa.text(f'SELECT count(*) FROM "{schema}".ticket_facts'))).scalar_one()
            result.counters = (await conn.execute(sa.text(f'SELECT count(*) FROM "{schema}".rollups'))).scalar_one()
            if swap:
                result.differences, result.sample = await compare(conn, store.LIVE, scratch)
        if not keep:
            async with engine.begin() as conn:
                await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await nc.close()
        await directory.stop()
        await engine.dispose()
    return result


def summary_lines(result: RebuildResult) -> list[str]:
    lines = [
        f"replayed {result.events} events (stream up to seq {result.last_seq}) into schema {result.schema!r}: "
        f"{result.tickets} tickets, {result.counters} counters",
    ]
    if result.replay_rate is not None:
        lines.append(f"replay alone: {result.replay_events} events in {result.replay_seconds:.1f} s = "
                     f"{result.replay_rate:,.0f} events/s")
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} events the live consumer dead-letters too:")
        lines += [f"  {reason}" for reason in result.skipped[:10]]
    if result.swapped:
        lines.append("swapped into the live read model")
    if result.differences is None:
        lines.append(f"the live read model did not reach a common stream sequence within {CUT_WAIT_SECONDS:g} s: "
                     "nothing compared")
    elif result.differences == 0:
        lines.append(f"identical to the live read model at stream sequence {result.last_seq}")
    else:
        lines.append(f"{result.differences} counters differ from the live read model at stream sequence "
                     f"{result.last_seq} (both had every event up to it: this is drift), e.g.:")
        lines += [f"  {json.dumps(row, ensure_ascii=False, default=str)}" for row in result.sample]
    return lines


def run(args) -> int:
    result = asyncio.run(rebuild(args.nats_url, args.database_url, args.into_schema or DEFAULT_SCHEMA,
                                 swap=args.swap, keep=args.keep or bool(args.into_schema)))
    for line in summary_lines(result):
        print(line)
    return 0 if result.differences == 0 else 1
