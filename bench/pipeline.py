"""Pipeline benchmark: the figures of issue 12's table, in one run on one stack.

On the embedded servers with every service running (`--services all`, the default):

1. idle: CPU of every process and NATS messages per second with no traffic (bench/idle.py);
2. one registration's HTTP round trip, unloaded (sequential POSTs, median and p99);
3. accepted → `assigned` latency one request at a time (closed loop, concurrency 1);
4. the same at a steady offered rate (`--rate`, open loop: requests start on a timetable
   whether or not earlier ones are done), p50/p99;
5. sustained rate, `--requests` with `--concurrency` in flight (HTTP accepted → the last
   `assigned` on the stream) and its latency percentiles;
6. the raw JetStream publish-ack and PostgreSQL insert rates measured in the same run, and
   the sustained rate as a share of the raw sequential publish-ack rate;
7. resident memory per service, and `analytics rebuild`'s replay rate over the stream.

Latency runs from acceptance (the `accepted` event's time) to the moment the `assigned`
event reaches a plain NATS subscriber.

    python bench/pipeline.py --requests 2000 --concurrency 32 --rate 100
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

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import httpx  # noqa: E402
import nats  # noqa: E402
import psutil  # noqa: E402

from bench.idle import _processes, measure_idle, print_idle  # noqa: E402
from estatedesk.stack import Stack, wait_until_intake_knows  # noqa: E402
from shared.auth import issue_token  # noqa: E402
from shared.directory import Company, Department, Estate, StaffMember, publish_directory  # noqa: E402
from shared.settings import SERVICES  # noqa: E402

ESTATE = "bench01"
REQUEST = {"kind": "repair", "channel": "phone", "repair_class": "general", "category": "plumbing"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Pipeline:
    """One estate on a running stack, a client for intake, and a plain NATS subscriber that
    notes when each ticket's `accepted` happened and when its `assigned` arrived."""

    def __init__(self, stack: Stack, concurrency: int):
        self.stack = stack
        self.concurrency = concurrency
        self.accepted_at: dict[str, float] = {}
        self.assigned_at: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Future] = {}

    async def __aenter__(self) -> "Pipeline":
        await publish_directory(self.stack.nats_url, Company(), [Estate(
            code=ESTATE, name="压测小区", departments=[Department(code="engineering", name="工程部")],
            staff=[StaffMember(id="bench-cs", name="压测客服", roles=["customer_service"])])])
        token = issue_token(self.stack.signing_key, "bench-cs", ["customer_service"], [ESTATE])
        self.nc = await nats.connect(self.stack.nats_url)
        await self.nc.subscribe(f"estatedesk.{ESTATE}.ticket.accepted", cb=self._on_accepted)
        await self.nc.subscribe(f"estatedesk.{ESTATE}.ticket.assigned", cb=self._on_assigned)
        url = self.stack.service("intake").url
        async with httpx.AsyncClient(timeout=10) as client:
            await wait_until_intake_knows(client, url, ESTATE, token)
        # aiohttp, not httpx, for the load: the client shares the machine's two cores with
        # the stack, and httpx cost 2 ms of CPU a request against aiohttp's 0.07 ms
        # (3,000 POSTs, 32 in flight, to a bare Starlette app), 17 % of all the CPU a
        # registration cost the whole machine.
        self.client = aiohttp.ClientSession(
            url, headers={"Authorization": f"Bearer {token}"}, timeout=aiohttp.ClientTimeout(total=60),
            connector=aiohttp.TCPConnector(limit=max(self.concurrency, 64)))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()
        await self.nc.close()

    async def _on_accepted(self, msg) -> None:
        event = json.loads(msg.data)
        self.accepted_at[event["subject"]] = dt.datetime.fromisoformat(event["time"]).timestamp()

    async def _on_assigned(self, msg) -> None:
        ticket = json.loads(msg.data)["subject"]
        self.assigned_at[ticket] = time.time()
        waiter = self._waiters.pop(ticket, None)
        if waiter and not waiter.done():
            waiter.set_result(None)

    async def post(self, label: str) -> tuple[str | None, float]:
        """One registration: (ticket id or None on a non-201, seconds of the round trip)."""
        started = time.perf_counter()
        async with self.client.post(f"/v1/estates/{ESTATE}/requests", json=REQUEST | {"description": label}) as r:
            ticket = (await r.json())["id"] if r.status == 201 else None
        return ticket, time.perf_counter() - started

    async def assigned(self, ticket: str, timeout: float = 60) -> None:
        if ticket in self.assigned_at:
            return
        waiter = self._waiters.setdefault(ticket, asyncio.get_running_loop().create_future())
        if ticket in self.assigned_at:  # arrived between the check and the future
            return
        await asyncio.wait_for(waiter, timeout)

    def latencies(self, tickets: list[str]) -> list[float]:
        return [self.assigned_at[t] - self.accepted_at[t] for t in tickets
                if t in self.assigned_at and t in self.accepted_at]


def latency_figures(prefix: str, latencies: list[float]) -> dict:
    if not latencies:
        return {f"{prefix}_p50_ms": float("nan"), f"{prefix}_p99_ms": float("nan")}
    return {f"{prefix}_p50_ms": percentile(latencies, 50) * 1000, f"{prefix}_p99_ms": percentile(latencies, 99) * 1000,
            f"{prefix}_max_ms": max(latencies) * 1000}


async def round_trips(p: Pipeline, count: int) -> dict:
    """Sequential registrations, each waited for before the next: the HTTP round trip
    unloaded, and accepted → assigned one request at a time."""
    times, tickets = [], []
    started = time.time()
    for i in range(count):
        ticket, took = await p.post(f"one at a time {i}")
        times.append(took)
        if ticket:
            tickets.append(ticket)
            await p.assigned(ticket)
    return {"http_round_trip_p50_ms": percentile(times, 50) * 1000,
            "http_round_trip_p99_ms": percentile(times, 99) * 1000,
            "one_at_a_time_rate": count / (time.time() - started),
            **latency_figures("one_at_a_time", p.latencies(tickets))}


async def open_loop(p: Pipeline, rate: float, seconds: float) -> dict:
    """Requests start on a fixed timetable of `rate` per second for `seconds`, whatever
    the state of earlier ones (an open loop: a slow system cannot slow the offer down)."""
    count = int(rate * seconds)
    tickets: list[str] = []
    errors = 0
    started = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        ticket, _ = await p.post(f"open loop {i}")
        if ticket:
            tickets.append(ticket)
        else:
            errors += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    offered_for = time.perf_counter() - started
    await asyncio.gather(*(p.assigned(t, timeout=120) for t in tickets), return_exceptions=True)
    return {"open_loop_rate": rate, "open_loop_requests": count, "open_loop_errors": errors,
            "open_loop_offered_seconds": offered_for, **latency_figures("open_loop", p.latencies(tickets))}


async def closed_loop(p: Pipeline, requests: int, concurrency: int) -> dict:
    """`requests` registrations with `concurrency` in flight: the sustained rate to the
    last `assigned`."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    tickets: list[str] = []
    errors = 0

    async def worker():
        nonlocal errors
        while not queue.empty():
            ticket, _ = await p.post(f"bench request {queue.get_nowait()}")
            if ticket:
                tickets.append(ticket)
            else:
                errors += 1

    started = time.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    http_done = time.time()
    await asyncio.gather(*(p.assigned(t, timeout=max(120, requests / 20)) for t in tickets))
    finished = time.time()
    return {"requests": requests, "concurrency": concurrency, "errors": errors,
            "http_accept_rate": requests / (http_done - started),
            "end_to_end_rate": requests / (finished - started),
            **latency_figures("sustained", p.latencies(tickets))}


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


def cpu_by_process(stack: Stack) -> dict[str, dict[int, float]]:
    """{process group: {pid: user + system CPU seconds}}: the stack's processes (PostgreSQL's
    backends as they are now: a backend started later counts from zero) and this client."""
    groups = _processes(stack) | {"bench client": [psutil.Process()]}
    seconds: dict[str, dict[int, float]] = {}
    for name, processes in groups.items():
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:  # a backend that ended in between
                continue
            seconds.setdefault(name, {})[process.pid] = times.user + times.system
    return seconds


def resident_memory(stack: Stack) -> dict:
    """Resident set size per service process, MB."""
    return {f"rss_mb_{s.name}": psutil.Process(s.process.pid).memory_info().rss / 2**20
            for s in stack.service_processes if s.process and s.process.poll() is None}


async def rebuild_rate(stack: Stack) -> dict:
    """`analytics rebuild` into a scratch schema (dropped after): events replayed per second,
    the replay alone (its comparison with the live model waits for a common sequence)."""
    from services.analytics.rebuild import rebuild

    started = time.perf_counter()
    result = await rebuild(stack.nats_url, stack.database_url, "bench_rebuild", keep=False)
    took = time.perf_counter() - started
    return {"rebuild_events": result.replay_events, "rebuild_seconds": result.replay_seconds,
            "rebuild_rate": result.replay_rate, "rebuild_total_seconds": took}


async def measure(stack: Stack, args) -> dict:
    figures: dict = {}
    async with Pipeline(stack, args.concurrency) as p:
        figures |= await round_trips(p, args.one_at_a_time)
        figures |= await open_loop(p, args.rate, args.rate_seconds)
        before = cpu_by_process(stack)
        figures |= await closed_loop(p, args.requests, args.concurrency)
        after = cpu_by_process(stack)
        # CPU per registration by process group: the budget is cores / rate (2 cores at 300 req/s: 6.7 ms).
        figures["cpu_ms_per_request"] = {
            name: round(1000 * sum(seconds - before.get(name, {}).get(pid, 0.0) for pid, seconds in pids.items())
                        / args.requests, 2)
            for name, pids in after.items()}
    figures |= resident_memory(stack)
    figures |= await raw_jetstream(stack.nats_url, args.raw)
    figures |= await raw_postgres(stack.database_url, args.raw)
    figures["share_of_raw_publish_rate"] = figures["end_to_end_rate"] / figures["jetstream_sequential_ack_rate"]
    if "analytics" in stack.services:
        figures |= await rebuild_rate(stack)
    return figures


def report(figures: dict, services: tuple[str, ...]) -> None:
    f = figures
    print(f"EstateDesk pipeline benchmark; services running: {', '.join(services)}")
    if "idle" in f:
        print_idle(f["idle"])
    print("one registration at a time (unloaded)")
    print(f"  HTTP round trip             p50 {f['http_round_trip_p50_ms']:7.1f} ms   p99 {f['http_round_trip_p99_ms']:7.1f} ms")
    print(f"  accepted → assigned         p50 {f['one_at_a_time_p50_ms']:7.1f} ms   p99 {f['one_at_a_time_p99_ms']:7.1f} ms"
          f"   ({f['one_at_a_time_rate']:.0f} req/s)")
    print(f"open loop, {f['open_loop_rate']:.0f} req/s offered for {f['open_loop_offered_seconds']:.1f} s "
          f"({f['open_loop_errors']} errors)")
    print(f"  accepted → assigned         p50 {f['open_loop_p50_ms']:7.1f} ms   p99 {f['open_loop_p99_ms']:7.1f} ms")
    print(f"closed loop, {f['requests']} requests, {f['concurrency']} in flight ({f['errors']} errors)")
    print(f"  HTTP accept rate            {f['http_accept_rate']:8.0f} req/s")
    print(f"  sustained (to assigned)     {f['end_to_end_rate']:8.0f} req/s")
    print(f"  accepted → assigned         p50 {f['sustained_p50_ms']:7.1f} ms   p99 {f['sustained_p99_ms']:7.1f} ms")
    if "cpu_ms_per_request" in f:
        cpu = f["cpu_ms_per_request"]
        print(f"  CPU per registration        {sum(cpu.values()):7.2f} ms: "
              + ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(cpu.items(), key=lambda kv: -kv[1])))
    print("raw limits measured in the same run")
    print(f"  JetStream publish, awaiting each ack   {f['jetstream_sequential_ack_rate']:8.0f} msg/s")
    print(f"  JetStream publish, 500 in flight       {f['jetstream_concurrent_ack_rate']:8.0f} msg/s")
    print(f"  PostgreSQL single-row insert           {f['postgres_single_insert_rate']:8.0f} rows/s")
    print(f"  PostgreSQL executemany                 {f['postgres_executemany_rate']:8.0f} rows/s")
    print(f"  sustained rate / raw sequential publish-ack rate: {100 * f['share_of_raw_publish_rate']:.1f} %")
    print("resident memory: " + ", ".join(f"{k.removeprefix('rss_mb_')} {v:.0f} MB"
                                           for k, v in f.items() if k.startswith("rss_mb_")))
    if "rebuild_rate" in f:
        print(f"analytics rebuild replay: {f['rebuild_events']} events in {f['rebuild_seconds']:.1f} s = "
              f"{f['rebuild_rate']:.0f} events/s (the whole rebuild with its comparison: "
              f"{f['rebuild_total_seconds']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="closed loop: registrations")
    parser.add_argument("--concurrency", type=int, default=32, help="closed loop: requests in flight")
    parser.add_argument("--rate", type=float, default=100, help="open loop: requests offered per second")
    parser.add_argument("--rate-seconds", type=float, default=10, help="open loop: for how long")
    parser.add_argument("--one-at-a-time", type=int, default=200, help="sequential registrations")
    parser.add_argument("--raw", type=int, default=5000, help="messages/rows for the raw measurements")
    parser.add_argument("--idle-seconds", type=float, default=20, help="idle measurement (0: skip)")
    parser.add_argument("--services", default="all", help="services to run ('all', or e.g. intake,dispatch)")
    args = parser.parse_args()
    services = SERVICES if args.services == "all" else tuple(args.services.split(","))
    with tempfile.TemporaryDirectory(prefix="edb-", dir="/tmp") as tmp:
        stack = Stack(data_dir=Path(tmp), services=services)
        stack.start()
        try:
            figures = {"idle": measure_idle(stack, args.idle_seconds)} if args.idle_seconds else {}
            figures |= asyncio.run(measure(stack, args))
        finally:
            stack.stop()
    report(figures, services)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
