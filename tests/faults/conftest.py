"""A stack of its own for fault injection: embedded nats-server and PostgreSQL (the way
`estatedesk up` runs them, so the supervisor watches and restarts them), the five
services as processes, and the supervisor's watch loop in a thread. Faults here never
touch the session stack the other tests share.

Reconnect and ping intervals are shortened through the environment (see
shared.bus.ReconnectPolicy) so a test of some seconds makes more reconnect tries than
nats-py's default give-up (60)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from estatedesk.stack import Stack
from shared.directory import Company, publish_directory
from shared.settings import SERVICES, asyncpg_url
from tests.conftest import auth, demo_estate, token_for, wait_for_directory

FAULT_ENV = {
    "ESTATEDESK_NATS_RECONNECT_FIRST_WAIT": "0.05",
    "ESTATEDESK_NATS_RECONNECT_MAX_WAIT": "0.25",
    "ESTATEDESK_NATS_PING_INTERVAL": "2",
    "ESTATEDESK_NATS_MAX_OUTSTANDING_PINGS": "2",
    "ESTATEDESK_NATS_PROBE_EVERY": "0.5",
    "ESTATEDESK_NATS_PROBE_TIMEOUT": "1",
}
REPAIR = {"kind": "repair", "channel": "phone", "description": "厨房水管漏水", "repair_class": "general",
          "category": "plumbing", "building": "1", "unit": "1-2-301"}


class Watch:
    """The supervisor's loop of `estatedesk up` (check, sleep 0.5 s) in a thread; a test
    can hold it off while it plays the outage itself."""

    def __init__(self, stack: Stack, every: float = 0.5):
        self.stack = stack
        self.every = every
        self.enabled = threading.Event()
        self.enabled.set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fault-supervisor", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            if self.enabled.is_set():
                self.stack.supervisor.check_once()
            time.sleep(self.every)

    @contextmanager
    def paused(self):
        self.enabled.clear()
        time.sleep(self.every * 2)  # let a check in progress finish
        try:
            yield
        finally:
            self.enabled.set()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(10)


@pytest.fixture(scope="module")
def fault_stack(tmp_root):
    stack = Stack(data_dir=tmp_root / f"faults-{uuid.uuid4().hex[:4]}", extra_env=dict(FAULT_ENV))
    stack.start()
    watch = Watch(stack)
    yield stack, watch
    watch.stop()
    stack.stop()


@pytest.fixture
async def fault_estate(fault_stack) -> str:
    stack, _ = fault_stack
    code = f"f{uuid.uuid4().hex[:8]}"
    await publish_directory(stack.nats_url, Company(), [demo_estate(code)])
    await wait_for_directory(stack, code)
    return code


async def post_requests(stack: Stack, estate: str, count: int, timeout: float = 15) -> list[str]:
    """POST `count` repair requests; returns the ticket ids (every answer must be 201)."""
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    ids = []
    async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=timeout) as client:
        for _ in range(count):
            r = await client.post(f"/v1/estates/{estate}/requests", json=REPAIR, headers=auth(token))
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    return ids


class RequestStream:
    """Posts one repair every `every` seconds in the background for as long as the block
    runs: the fault happens under a steady stream of requests, as an operator sees it.

    `accepted` holds the ids of every 201; every other answer (a 503 while the database
    is down, no answer while intake restarts) is counted in `refused` by status (0: no
    answer) - nothing of those was accepted, so nothing of them may appear downstream."""

    def __init__(self, stack: Stack, estate: str, every: float = 0.5, timeout: float = 5):
        self.stack, self.estate, self.every, self.timeout = stack, estate, every, timeout
        self.accepted: list[str] = []
        self.refused: dict[int, int] = {}
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> "RequestStream":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        # The request in flight is let finish: cancelled, it could be registered with its
        # answer lost, a ticket downstream that `accepted` does not know of.
        self._stop.set()
        await self._task

    async def _run(self) -> None:
        token = token_for(self.stack, f"{self.estate}-cs01", ["customer_service"], [self.estate])
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    # The address is read each time: a restarted intake may listen elsewhere.
                    r = await client.post(f"{self.stack.service('intake').url}/v1/estates/{self.estate}/requests",
                                          json=REPAIR, headers=auth(token))
                    status = r.status_code
                except httpx.HTTPError:
                    status = 0
                if status == 201:
                    self.accepted.append(r.json()["id"])
                else:
                    self.refused[status] = self.refused.get(status, 0) + 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), max(0.0, self.every - (time.monotonic() - started)))


async def health_of_all(stack: Stack) -> dict[str, tuple[int, dict]]:
    """{service: (status code, checks)}; a service that does not answer in 3 s is (0, {})."""
    found = {}
    async with httpx.AsyncClient(timeout=3) as client:
        for service in stack.service_processes:
            try:
                r = await client.get(service.url + "/healthz")
                found[service.name] = (r.status_code, r.json().get("checks", {}))
            except (httpx.HTTPError, ValueError):
                found[service.name] = (0, {})
    return found


async def wait_all(stack: Stack, status: int, timeout: float, nats_says: str = "") -> float | None:
    """Seconds until every /healthz answers `status` (and its nats check contains
    `nats_says`), None when some did not in time."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = await health_of_all(stack)
        if all(code == status and nats_says in checks.get("nats", "") for code, checks in found.values()):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    return None


async def dead_letters(stack: Stack) -> int:
    engine = create_async_engine(asyncpg_url(stack.database_url))
    try:
        async with engine.connect() as conn:
            total = 0
            for name in SERVICES:
                total += (await conn.execute(sa.text(f'SELECT count(*) FROM "{name}".dead_letters'))).scalar()
            return total
    finally:
        await engine.dispose()


async def processed_by(stack: Stack, service: str, event_ids: list[str]) -> int:
    """How many of `event_ids` the service's consumers have processed (committed)."""
    engine = create_async_engine(asyncpg_url(stack.database_url))
    try:
        async with engine.connect() as conn:
            return (await conn.execute(sa.text(
                f'SELECT count(DISTINCT event_id) FROM "{service}".processed_events WHERE event_id = ANY(:ids)'),
                {"ids": list(event_ids)})).scalar()
    finally:
        await engine.dispose()


def record(name: str, **figures) -> None:
    """Appends a fault's figures (recovery times) to tests/artifacts/faults.txt and prints
    them, for the closing note."""
    line = f"{name}: " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    print(line)
    artifacts = Path(__file__).resolve().parent.parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with open(artifacts / "faults.txt", "a") as out:
        out.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + line + "\n")
