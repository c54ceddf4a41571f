"""`estatedesk analytics rebuild` replay rate, the replay alone.

Starts an embedded nats-server and PostgreSQL (no services), publishes `--tickets`
simulated ticket lives (`bench/analytics_report.simulate_ticket`: every kind and channel,
clocks, escalations, callbacks, re-opened rounds) to the ticket stream, then replays the
stream into a scratch read model exactly as `estatedesk analytics rebuild` does
(`rebuild.replay_all`) and prints events per second. Loading the stream is not timed.

    python bench/rebuild.py --tickets 5000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench.analytics_report import TZ, simulate_ticket  # noqa: E402
from estatedesk.embedded import EmbeddedNats, EmbeddedPostgres  # noqa: E402
from services.analytics import rebuild, store  # noqa: E402
from shared.bus import ensure_stream  # noqa: E402
from shared.clock import SystemClock  # noqa: E402
from shared.db import migrate  # noqa: E402
from shared.directory import Directory  # noqa: E402
from shared.settings import asyncpg_url  # noqa: E402

ESTATES = ("bench01", "bench02", "bench03")


def simulated(tickets: int, seed: int = 11) -> list:
    rng = random.Random(seed)
    month_start = dt.datetime(2026, 10, 1, tzinfo=TZ)
    events = []
    for n in range(tickets):
        estate = ESTATES[n % len(ESTATES)]
        events += [e.model_copy(update={"estate": estate}) for e in simulate_ticket(rng, n, month_start)]
    events.sort(key=lambda e: e.time)
    return events


async def load(nats_url: str, events: list) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for start in range(0, len(events), 500):
        await asyncio.gather(*(js.publish(e.nats_subject, e.model_dump_json().encode(), headers={"Nats-Msg-Id": e.id})
                               for e in events[start:start + 500]))
    await nc.close()


async def replay(nats_url: str, database_url: str, batch: int) -> rebuild.RebuildResult:
    engine = create_async_engine(asyncpg_url(database_url))
    nc = await nats.connect(nats_url)
    scratch = store.read_model("bench_rebuild")
    result = rebuild.RebuildResult(schema=scratch.schema)
    try:
        await rebuild.create_scratch(engine, scratch)
        await rebuild.replay_all(engine, nc.jetstream(), scratch, Directory(), SystemClock(), result, batch)
        async with engine.connect() as conn:
            result.tickets = (await conn.execute(sa.text('SELECT count(*) FROM bench_rebuild.ticket_facts'))).scalar_one()
            result.counters = (await conn.execute(sa.text('SELECT count(*) FROM bench_rebuild.rollups'))).scalar_one()
    finally:
        await nc.close()
        await engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=5000, help="simulated tickets (about 8 events each)")
    parser.add_argument("--batch", type=int, default=rebuild.BATCH, help="events folded per batch")
    parser.add_argument("--runs", type=int, default=2, help="replays of the same stream (the best is printed)")
    args = parser.parse_args()
    events = simulated(args.tickets)
    with tempfile.TemporaryDirectory(prefix="edb-rebuild-", dir="/tmp") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats").start()
        postgres = EmbeddedPostgres(Path(tmp) / "pg").start()
        try:
            migrate("analytics", postgres.url)
            asyncio.run(ensure_stream(server.url))
            started = time.perf_counter()
            asyncio.run(load(server.url, events))
            print(f"stream loaded: {len(events)} events of {args.tickets} tickets in "
                  f"{time.perf_counter() - started:.1f} s (not timed below)", flush=True)
            rates = []
            for _ in range(args.runs):
                cpu = time.process_time()
                result = asyncio.run(replay(server.url, postgres.url, args.batch))
                cpu = time.process_time() - cpu
                rates.append(result.replay_rate)
                print(f"  replay: {result.replay_events} events in {result.replay_seconds:.2f} s = "
                      f"{result.replay_rate:,.0f} events/s ({result.tickets} tickets, {result.counters} counters, "
                      f"{len(result.skipped)} skipped; this process's CPU {cpu:.2f} s: on a busy machine "
                      f"{result.replay_events / cpu:,.0f} events per CPU-second is the steadier figure)", flush=True)
        finally:
            postgres.stop()
            server.stop()
    print(f"analytics rebuild replay rate: {max(rates):,.0f} events/s (best of {len(rates)})")


if __name__ == "__main__":
    main()
