"""SQL statements and transactions per registration, per service: the work behind the CPU.

Timing on a shared two-core machine moves by half from run to run; the statements a
registration costs do not. This starts the embedded stack, has PostgreSQL log every
statement with its connection's `application_name` (each service names its connections
`estatedesk-<service>`, `shared.db.Database`), drives `--requests` registrations with
`--concurrency` in flight, waits until every durable consumer has acknowledged
everything, and prints per service: statements per registration by kind (BEGIN, COMMIT,
SELECT, INSERT, UPDATE, DELETE, other) and the most frequent statement texts. Then, with
no traffic, the statements per second each service's periodic jobs and probes cost over
`--idle` seconds (silence when idle is a target of its own: issue 12).

    python bench/statements.py --requests 300 --concurrency 32 --idle 20
    python bench/statements.py --requests 50 --concurrency 1     # one at a time: no batching
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import nats  # noqa: E402

from bench.pipeline import Pipeline, closed_loop  # noqa: E402
from estatedesk.stack import Stack  # noqa: E402

PREFIX = "@@"  # log_line_prefix: "@@<application_name>|"
LINE = re.compile(r"^@@(?P<app>[^|]*)\|LOG:\s+(?:statement|execute [^:]*): (?P<sql>.*)$")


async def set_logging(database_url: str, on: bool) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        if on:
            await conn.execute("ALTER SYSTEM SET log_statement = 'all'")
            await conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{PREFIX}%a|'")
        else:
            await conn.execute("ALTER SYSTEM RESET log_statement")
            await conn.execute("ALTER SYSTEM RESET log_line_prefix")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def settled(nats_url: str, timeout: float = 120) -> None:
    """Until every durable consumer of every stream has nothing pending or unacknowledged."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            busy = 0
            for stream in await js.streams_info():
                for consumer in await js.consumers_info(stream.config.name):
                    busy += consumer.num_pending + consumer.num_ack_pending
            if not busy:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError("consumers still busy")
    finally:
        await nc.close()


def kind_of(sql: str) -> str:
    word = sql.lstrip("( ").split(None, 1)[0].upper().rstrip(";") if sql.strip() else ""
    if word == "WITH":
        for verb in ("INSERT", "UPDATE", "DELETE"):
            if f" {verb} " in sql.upper():
                return verb
        return "SELECT"
    return word if word in {"BEGIN", "COMMIT", "ROLLBACK", "SELECT", "INSERT", "UPDATE", "DELETE",
                            "SAVEPOINT", "RELEASE"} else "other"


def count(log: str) -> tuple[dict[str, collections.Counter], dict[str, collections.Counter]]:
    kinds: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    texts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in log.splitlines():
        match = LINE.match(line)
        if not match or not match["app"].startswith("estatedesk-"):
            continue
        service, sql = match["app"].removeprefix("estatedesk-"), match["sql"]
        kinds[service][kind_of(sql)] += 1
        texts[service][re.sub(r"\s+", " ", sql)[:110]] += 1
    return kinds, texts


def logged_between(log: Path, start: int, end: int) -> str:
    with log.open("rb") as f:
        f.seek(start)
        return f.read(end - start).decode("utf-8", "replace")


def print_texts(texts: dict[str, collections.Counter], per: float, unit: str) -> None:
    for service in sorted(texts):
        print(f"{service}: most frequent statements, per {unit}")
        for sql, n in texts[service].most_common(8):
            print(f"  {n / per:6.2f}  {sql}")


async def drive(stack: Stack, requests: int, concurrency: int, idle_seconds: float) -> None:
    async with Pipeline(stack, concurrency) as p:
        await closed_loop(p, 20, min(concurrency, 20))  # warm up: connections, prepared statements
        await settled(stack.nats_url)
        log = stack.data_dir / "pgdata" / "log"
        await set_logging(stack.database_url, True)
        await asyncio.sleep(1)
        start = log.stat().st_size
        await closed_loop(p, requests, concurrency)
        await settled(stack.nats_url)
        await asyncio.sleep(1)  # periodic jobs' work in the same window is shown as it is
        end = log.stat().st_size
        if idle_seconds:
            await asyncio.sleep(5)  # the jobs' own catch-up after the load is not idle
            idle_start = log.stat().st_size
            await asyncio.sleep(idle_seconds)
            idle_end = log.stat().st_size
        await set_logging(stack.database_url, False)
    kinds, texts = count(logged_between(log, start, end))
    order = ("BEGIN", "COMMIT", "SELECT", "INSERT", "UPDATE", "DELETE", "SAVEPOINT", "RELEASE", "ROLLBACK", "other")
    print(f"SQL statements per registration ({requests} registrations, {concurrency} in flight)")
    print(f"  {'service':<10} {'total':>6}  " + " ".join(f"{k:>8}" for k in order))
    total = 0.0
    for service in sorted(kinds):
        c = kinds[service]
        n = sum(c.values()) / requests
        total += n
        print(f"  {service:<10} {n:6.2f}  " + " ".join(f"{c[k] / requests:8.2f}" for k in order))
    print(f"  {'all':<10} {total:6.2f}")
    print_texts(texts, requests, "registration")
    if not idle_seconds:
        return
    kinds, texts = count(logged_between(log, idle_start, idle_end))
    print(f"\nidle stack: SQL statements per second ({idle_seconds:g} s, no traffic)")
    for service in sorted(kinds):
        print(f"  {service:<10} {sum(kinds[service].values()) / idle_seconds:6.2f}")
    print(f"  {'all':<10} {sum(sum(c.values()) for c in kinds.values()) / idle_seconds:6.2f}")
    print_texts(texts, idle_seconds, "second idle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of no traffic to count (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edb-", dir="/tmp") as tmp:
        stack = Stack(data_dir=Path(tmp))
        stack.start()
        try:
            asyncio.run(drive(stack, args.requests, args.concurrency, args.idle))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
