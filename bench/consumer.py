"""The shared consumer machinery alone: CPU per consumed event and events per second.

One process, real embedded servers (nats-server, PostgreSQL), a probe service whose one
consumer (`accepted`) does the least a real handler does: one insert and one emitted
event (`assigned`, through the outbox and its relay). What it measures is `shared.bus`
and `shared.db` (fetch, parse, claim, the batch's transaction, acks, the relay), not a
service's own rules, so a change to the machinery shows without the noise of five
services sharing two cores with other work.

1. `--events` published first, then the service starts and drains them (batches of up to
   `shared.bus.BATCH_SIZE`): CPU ms of this process per event, events per second until
   the last emitted event was relayed;
2. `--one-at-a-time` events, each published after the previous one's `assigned` reached a
   plain NATS subscriber: that hop's latency (publish → handled → relayed → received) and
   CPU ms per event (the benchmark's own client included).

    python bench/consumer.py --events 3000 --one-at-a-time 300
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.pipeline import percentile  # noqa: E402
from estatedesk.embedded import EmbeddedNats, EmbeddedPostgres  # noqa: E402
from shared.bus import ensure_stream  # noqa: E402
from shared.db import service_metadata  # noqa: E402
from shared.events import Accepted, Assigned, make_event  # noqa: E402
from shared.service import Service  # noqa: E402
from shared.settings import Settings  # noqa: E402

ESTATE = "bench01"


def accepted(i: int):
    payload = Accepted(ticket_id=str(uuid.uuid4()), form_number=f"T-{i}", kind="repair", channel="phone",
                       description=f"bench {i}", first_contact="cs", received_at=dt.datetime.now(dt.timezone.utc))
    return make_event(payload, estate=ESTATE, actor="cs", source="bench", time=dt.datetime.now(dt.timezone.utc))


class Probe:
    def __init__(self, nats_url: str, database_url: str, data_dir: Path):
        metadata = service_metadata("probe")
        self.seen = sa.Table("seen", metadata, sa.Column("event_id", sa.String(64), primary_key=True))
        self.service = Service("probe", metadata, title="consumer benchmark probe")
        self.handled = 0
        self.target = 0
        self.reached = asyncio.Event()

        @self.service.consumer("accepted")
        async def handle(session, event):
            await session.execute(sa.insert(self.seen).values(event_id=event.id))
            await self.service.emit(session, Assigned(ticket_id=event.subject, departments=["engineering"],
                                                      assigned_by="system"), estate=event.estate, actor="system")
            self.handled += 1
            if self.handled >= self.target:
                self.reached.set()

        self.service.bind(Settings(nats_url=nats_url, database_url=database_url, data_dir=data_dir,
                                   signing_key="k" * 32))

    async def create(self) -> None:
        async with self.service.db.engine.begin() as conn:
            await conn.execute(sa.text('CREATE SCHEMA "probe"'))
            await conn.run_sync(self.service.metadata.create_all)

    async def drained(self, count: int, timeout: float = 300) -> None:
        """Until `count` events were handled and as many emitted ones relayed."""
        self.target = count
        if self.handled < count:
            await asyncio.wait_for(self.reached.wait(), timeout)
        while self.service.relay.published < count:
            await asyncio.sleep(0.005)


async def drain(probe: Probe, nats_url: str, events: int) -> dict:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for chunk in range(0, events, 500):
        await asyncio.gather(*(js.publish(e.nats_subject, e.model_dump_json().encode(), headers={"Nats-Msg-Id": e.id})
                               for e in map(accepted, range(chunk, min(events, chunk + 500)))))
    await nc.close()
    cpu, wall = time.process_time(), time.perf_counter()
    await probe.service.start()
    await probe.drained(events)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"drain_events": events, "drain_cpu_ms_per_event": 1000 * cpu / events, "drain_rate": events / wall}


async def one_at_a_time(probe: Probe, nats_url: str, count: int) -> dict:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    waiting: dict[str, asyncio.Future] = {}

    async def on_assigned(msg):
        future = waiting.pop(json.loads(msg.data)["subject"], None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    await nc.subscribe(f"estatedesk.{ESTATE}.ticket.assigned", cb=on_assigned)
    latencies = []
    cpu = time.process_time()
    for i in range(count):
        event = accepted(i)
        future = asyncio.get_running_loop().create_future()
        waiting[event.subject] = future
        started = time.perf_counter()
        await js.publish(event.nats_subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id})
        latencies.append(await asyncio.wait_for(future, 30) - started)
    cpu = time.process_time() - cpu
    await nc.close()
    return {"one_at_a_time_events": count, "one_at_a_time_p50_ms": 1000 * percentile(latencies, 50),
            "one_at_a_time_p99_ms": 1000 * percentile(latencies, 99),
            "one_at_a_time_cpu_ms_per_event": 1000 * cpu / count}


async def measure(args, data_dir: Path) -> dict:
    nats_server = EmbeddedNats(data_dir / "servers").start()
    postgres = EmbeddedPostgres(data_dir / "servers").start()
    try:
        await ensure_stream(nats_server.url)
        probe = Probe(nats_server.url, postgres.url, data_dir)
        await probe.create()
        figures = await drain(probe, nats_server.url, args.events)
        await asyncio.sleep(1)  # the last acks and the relay's delete settle
        figures |= await one_at_a_time(probe, nats_server.url, args.one_at_a_time)
        await probe.service.stop()
        return figures
    finally:
        nats_server.stop()
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="events drained in batches")
    parser.add_argument("--one-at-a-time", type=int, default=300, help="events sent one after the other")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edc-", dir="/tmp") as tmp:
        f = asyncio.run(measure(args, Path(tmp)))
    print("shared consumer machinery (one process; handler: one insert, one emitted event)")
    print(f"  drained in batches     {f['drain_cpu_ms_per_event']:6.3f} ms CPU per event, {f['drain_rate']:7.0f} events/s"
          f" ({f['drain_events']} events)")
    print(f"  one at a time          {f['one_at_a_time_cpu_ms_per_event']:6.3f} ms CPU per event, hop p50 "
          f"{f['one_at_a_time_p50_ms']:.2f} ms, p99 {f['one_at_a_time_p99_ms']:.2f} ms ({f['one_at_a_time_events']} events)")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in f.items()}))


if __name__ == "__main__":
    main()
