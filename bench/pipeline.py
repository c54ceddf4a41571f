"""Pipeline benchmark: N requests through intake → dispatch on the embedded servers.

Prints sustained requests/s (HTTP accepted → `assigned` on the stream), p50/p99 latency
from acceptance (the `accepted` event's time) to the moment the `assigned` event reaches a
plain NATS subscriber, and, measured in the same run on the same machine, the raw
JetStream publish-ack rate and the raw PostgreSQL insert rate to compare against.

    python bench/pipeline.py --requests 2000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import nats  # noqa: E402

from estatedesk.stack import Stack, wait_until_intake_knows  # noqa: E402
from shared.auth import issue_token  # noqa: E402
from shared.directory import Company, Department, Estate, StaffMember, publish_directory  # noqa: E402
from shared.settings import SERVICES  # noqa: E402

ESTATE = "bench01"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def pipeline(stack: Stack, requests: int, concurrency: int) -> dict:
    await publish_directory(stack.nats_url, Company(), [Estate(
        code=ESTATE, name="压测小区", departments=[Department(code="engineering", name="工程部")],
        staff=[StaffMember(id="bench-cs", name="压测客服", roles=["customer_service"])])])
    token = issue_token(stack.signing_key, "bench-cs", ["customer_service"], [ESTATE])
    headers = {"Authorization": f"Bearer {token}"}
    accepted_at: dict[str, float] = {}
    assigned_at: dict[str, float] = {}
    done = asyncio.Event()

    nc = await nats.connect(stack.nats_url)

    async def on_accepted(msg):
        event = json.loads(msg.data)
        accepted_at[event["subject"]] = dt.datetime.fromisoformat(event["time"]).timestamp()

    async def on_assigned(msg):
        assigned_at[json.loads(msg.data)["subject"]] = time.time()
        if len(assigned_at) >= requests:
            done.set()

    await nc.subscribe(f"estatedesk.{ESTATE}.ticket.accepted", cb=on_accepted)
    await nc.subscribe(f"estatedesk.{ESTATE}.ticket.assigned", cb=on_assigned)

    async with httpx.AsyncClient(base_url=stack.service("intake").url, headers=headers,
                                 limits=httpx.Limits(max_connections=concurrency), timeout=60) as client:
        await wait_until_intake_knows(client, stack.service("intake").url, ESTATE, token)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)
        errors = 0

        async def worker():
            nonlocal errors
            while not queue.empty():
                i = queue.get_nowait()
                r = await client.post(f"/v1/estates/{ESTATE}/requests", json={
                    "kind": "repair", "channel": "phone", "repair_class": "general", "category": "plumbing",
                    "description": f"bench request {i}"})
                errors += r.status_code != 201

        started = time.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        http_done = time.time()
        await asyncio.wait_for(done.wait(), timeout=max(120, requests / 20))
        finished = time.time()
    await nc.close()
    latencies = [assigned_at[t] - accepted_at[t] for t in assigned_at if t in accepted_at]
    return {
        "requests": requests,
        "errors": errors,
        "http_accept_rate": requests / (http_done - started),
        "end_to_end_rate": requests / (finished - started),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "mean_ms": statistics.mean(latencies) * 1000,
    }


async def raw_jetstream(nats_url: str, count: int) -> dict:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    stream = f"BENCH_{uuid.uuid4().hex[:6]}"
    await js.add_stream(name=stream, subjects=[f"bench.{stream}"])
    body = b"x" * 600  # about the size of a ticket event
    started = time.time()
    for i in range(count):
        await js.publish(f"bench.{stream}", body, headers={"Nats-Msg-Id": f"s{i}"})
    sequential = count / (time.time() - started)
    started = time.time()
    for chunk in range(0, count, 500):
        await asyncio.gather(*(js.publish(f"bench.{stream}", body, headers={"Nats-Msg-Id": f"c{i}"})
                               for i in range(chunk, min(count, chunk + 500))))
    concurrent = count / (time.time() - started)
    await js.delete_stream(stream)
    await nc.close()
    return {"jetstream_sequential_ack_rate": sequential, "jetstream_concurrent_ack_rate": concurrent}


async def raw_postgres(database_url: str, count: int) -> dict:
    conn = await asyncpg.connect(database_url)
    # A logged table: every autocommit insert waits for its WAL flush, like a service's commit.
    await conn.execute("CREATE TABLE IF NOT EXISTS bench_rows (id bigint, body text)")
    started = time.time()
    for i in range(count):
        await conn.execute("INSERT INTO bench_rows VALUES ($1, $2)", i, "x" * 200)
    single = count / (time.time() - started)
    started = time.time()
    await conn.executemany("INSERT INTO bench_rows VALUES ($1, $2)", [(i, "x" * 200) for i in range(count * 10)])
    many = count * 10 / (time.time() - started)
    await conn.execute("DROP TABLE bench_rows")
    await conn.close()
    return {"postgres_single_insert_rate": single, "postgres_executemany_rate": many}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--raw", type=int, default=5000, help="messages/rows for the raw measurements")
    parser.add_argument("--services", default="intake,dispatch",
                        help="services to run (default: only the measured path; 'all' for the whole system)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edb-", dir="/tmp") as tmp:
        services = SERVICES if args.services == "all" else tuple(args.services.split(","))
        stack = Stack(data_dir=Path(tmp), services=services)
        stack.start()
        try:
            figures = asyncio.run(pipeline(stack, args.requests, args.concurrency))
            figures |= asyncio.run(raw_jetstream(stack.nats_url, args.raw))
            figures |= asyncio.run(raw_postgres(stack.database_url, args.raw))
        finally:
            stack.stop()
    print(f"pipeline intake → dispatch, {figures['requests']} requests, concurrency {args.concurrency}, "
          f"{figures['errors']} errors; services running: {', '.join(services)}")
    print(f"  HTTP accept rate            {figures['http_accept_rate']:8.0f} req/s")
    print(f"  sustained (to assigned)     {figures['end_to_end_rate']:8.0f} req/s")
    print(f"  accepted → assigned latency p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
          f"max {figures['max_ms']:.1f} ms")
    print("raw limits measured in the same run")
    print(f"  JetStream publish, awaiting each ack   {figures['jetstream_sequential_ack_rate']:8.0f} msg/s")
    print(f"  JetStream publish, 500 in flight       {figures['jetstream_concurrent_ack_rate']:8.0f} msg/s")
    print(f"  PostgreSQL single-row insert           {figures['postgres_single_insert_rate']:8.0f} rows/s")
    print(f"  PostgreSQL executemany                 {figures['postgres_executemany_rate']:8.0f} rows/s")
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
