"""Gateway benchmark: what going through `estatedesk.gateway` adds to an API call.

On a stack of the embedded servers with intake only (the gateway in front of it, as
`estatedesk up` runs it), the same calls are made straight to intake and through the
gateway, GET (one ticket) and POST (one registration), one at a time and `--concurrency` in
flight. Printed per case: the round trip's p50/p99 and the CPU of the gateway and intake
processes per request (user + system, psutil), so the gateway's own cost reads directly
and the added latency is the difference between the two routes.

    python bench/gateway.py --requests 2000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402

from bench.pipeline import ESTATE, REQUEST, percentile  # noqa: E402
from estatedesk.stack import Stack, wait_until_intake_knows  # noqa: E402
from shared.auth import issue_token  # noqa: E402
from shared.directory import Company, Department, Estate, StaffMember, publish_directory  # noqa: E402


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def run_case(client: aiohttp.ClientSession, method: str, path: str, requests: int, concurrency: int,
                   processes: dict[str, psutil.Process]) -> dict:
    """`requests` calls of `method path` with `concurrency` in flight: round-trip
    percentiles (ms) and CPU ms per request of each process in `processes`."""
    times: list[float] = []
    errors = 0
    remaining = iter(range(requests))

    async def call(i: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        body = REQUEST | {"description": f"gateway bench {i}"} if method == "POST" else None
        async with client.request(method, path, json=body) as answer:
            await answer.read()
            errors += answer.status >= 400
        times.append(time.perf_counter() - started)

    async def worker() -> None:
        for i in remaining:
            await call(i)

    for i in range(min(20, requests)):  # warm the connections and the code paths
        await call(-i)
    times.clear()
    before = {name: cpu_seconds(p) for name, p in processes.items()}
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    took = time.perf_counter() - started
    return {"p50_ms": percentile(times, 50) * 1000, "p99_ms": percentile(times, 99) * 1000,
            "rate": requests / took, "errors": errors,
            **{f"cpu_ms_{name}": 1000 * (cpu_seconds(p) - before[name]) / requests for name, p in processes.items()}}


async def measure(stack: Stack, args) -> list[tuple[str, dict]]:
    await publish_directory(stack.nats_url, Company(), [Estate(
        code=ESTATE, name="压测小区", departments=[Department(code="engineering", name="工程部")],
        staff=[StaffMember(id="bench-cs", name="压测客服", roles=["customer_service"])])])
    token = issue_token(stack.signing_key, "bench-cs", ["customer_service"], [ESTATE])
    intake, gateway = stack.service("intake"), stack.service("gateway")
    async with httpx.AsyncClient(timeout=10) as setup:
        await wait_until_intake_knows(setup, intake.url, ESTATE, token)
        created = await setup.post(f"{intake.url}/v1/estates/{ESTATE}/requests",
                                   json=REQUEST | {"description": "gateway bench"},
                                   headers={"Authorization": f"Bearer {token}"})
        ticket = created.raise_for_status().json()["id"]
    processes = {"gateway": psutil.Process(gateway.process.pid), "intake": psutil.Process(intake.process.pid)}
    results = []
    for route, base in (("direct", intake.url), ("gateway", gateway.url)):
        async with aiohttp.ClientSession(
                base, headers={"Authorization": f"Bearer {token}"}, timeout=aiohttp.ClientTimeout(total=60),
                connector=aiohttp.TCPConnector(limit=max(args.concurrency, 64))) as client:
            for method, path in (("GET", f"/v1/estates/{ESTATE}/requests/{ticket}"),
                                 ("POST", f"/v1/estates/{ESTATE}/requests")):
                for concurrency in (1, args.concurrency):
                    count = args.requests if concurrency > 1 else args.one_at_a_time
                    figures = await run_case(client, method, path, count, concurrency, processes)
                    results.append((f"{route:8} {method:5} {concurrency:3} in flight", figures))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per case with --concurrency in flight")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--one-at-a-time", type=int, default=300, help="requests per case one at a time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edb-", dir="/tmp") as tmp:
        stack = Stack(data_dir=Path(tmp), services=("intake",))
        stack.start()
        try:
            results = asyncio.run(measure(stack, args))
        finally:
            stack.stop()
    print("route    method in flight      p50 ms   p99 ms   req/s  errors  CPU ms/request: gateway  intake")
    for label, f in results:
        print(f"{label}  {f['p50_ms']:8.2f} {f['p99_ms']:8.2f} {f['rate']:7.0f} {f['errors']:7d}"
              f"                  {f['cpu_ms_gateway']:7.2f} {f['cpu_ms_intake']:7.2f}")


if __name__ == "__main__":
    main()
