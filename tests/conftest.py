"""Fixtures: real NATS and PostgreSQL (the embedded ones) started once per test session,
and the five services as real processes pointed at them by URL — the way production
runs them (external mode)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import httpx
import nats
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from estatedesk.embedded import EmbeddedNats, EmbeddedPostgres
from estatedesk.stack import Stack, wait_until_intake_knows
from shared.auth import issue_token
from shared.db import migrate
from shared.directory import Company, Department, Estate, StaffMember, publish_directory
from shared.settings import asyncpg_url

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory) -> Path:
    # Short path: PostgreSQL's Unix socket path must stay under ~100 bytes.
    root = Path("/tmp") / f"edt-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def servers(tmp_root):
    """Real nats-server (JetStream) and PostgreSQL, migrated, for the whole session."""
    nats_server = EmbeddedNats(tmp_root / "servers").start()
    postgres = EmbeddedPostgres(tmp_root / "servers").start()
    for service in ("intake", "dispatch", "callback", "archive", "analytics"):
        migrate(service, postgres.url)
    yield {"nats": nats_server.url, "database": postgres.url, "dir": tmp_root / "servers",
           "nats_monitor": f"http://127.0.0.1:{nats_server.monitor_port}"}
    nats_server.stop()
    postgres.stop()


@pytest.fixture(scope="session")
def clock_file(tmp_root) -> Path:
    """Every service process reads the time offset from this file (see shared.clock)."""
    path = tmp_root / "clock-offset"
    path.write_text("0")
    return path


@pytest.fixture(scope="session")
def stack(servers, tmp_root, clock_file):
    """The five services as OS processes, in external mode against `servers`."""
    stack = Stack(
        data_dir=tmp_root / "stack",
        nats_url=servers["nats"],
        database_url=servers["database"],
        clock_spec=f"file:{clock_file}",
    )
    stack.start_servers()
    try:
        stack.start_services()
        yield stack
    finally:
        # Also when a service never got healthy: no process outlives the session.
        stack.supervisor.stop_all()


def demo_estate(code: str) -> Estate:
    return Estate(
        code=code,
        name=f"测试小区 {code}",
        director=f"{code}-director",
        departments=[
            Department(code="engineering", name="工程部", head=f"{code}-eng-head"),
            Department(code="security", name="保安部", head=f"{code}-sec-head"),
            Department(code="cleaning", name="保洁部", head=f"{code}-cln-head"),
            Department(code="customer_service", name="客服部", head=f"{code}-cs-head"),
        ],
        # Every staff id the tests sign tokens for: a token of someone the directory does
        # not know for the estate is refused (issue 9).
        staff=[
            StaffMember(id=f"{code}-cs01", name="客服一", roles=["customer_service"], department="customer_service"),
            StaffMember(id=f"{code}-duty01", name="值班一", roles=["duty_staff"], department="security"),
            StaffMember(id=f"{code}-eng01", name="工程一", roles=["department_staff"], department="engineering"),
            StaffMember(id=f"{code}-sec01", name="保安一", roles=["department_staff"], department="security"),
            StaffMember(id=f"{code}-fin01", name="财务一", roles=["department_staff"], department="finance"),
            StaffMember(id=f"{code}-head", name="主管一", roles=["department_head", "department_staff", "customer_service"],
                        department="customer_service"),
        ],
        buildings=["1", "2", "3"],
    )


@pytest.fixture
async def estate(stack) -> str:
    """A fresh estate per test, so tests never see each other's tickets."""
    code = f"t{uuid.uuid4().hex[:8]}"
    await publish_directory(stack.nats_url, Company(), [demo_estate(code)])
    await wait_for_directory(stack, code)
    return code


async def wait_for_directory(stack, code: str, timeout: float = 10) -> None:
    """Every service watches the directory; wait until intake knows the estate."""
    token = token_for(stack, "probe", ["quality_manager"], ["*"])
    async with httpx.AsyncClient() as client:
        if not await wait_until_intake_knows(client, stack.service("intake").url, code, token, timeout):
            raise AssertionError(f"directory update for {code} not seen")


def token_for(stack, staff: str, roles: list[str], estates: list[str]) -> str:
    return issue_token(stack.signing_key, staff, roles, estates, name=staff)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# The heads demo_estate and test_lifecycle's estate_definition name, by department.
HEADS = {"engineering": "eng-head", "security": "sec-head", "cleaning": "cln-head", "customer_service": "cs-head"}


async def head_verifies(client: httpx.AsyncClient, signing_key: str, signed: httpx.Response, estate: str,
                        department: str, head: str | None = None) -> httpx.Response:
    """After a sign-back answered `signed`: the department's head (`head`, default the
    HEADS one) verifies it when the line waits for them (a head's own sign-back needs
    none). Returns the form's last answer."""
    assert signed.status_code == 200, signed.text
    form = signed.json()
    line = next(l for l in form["ledger"] if l["department"] == department and not l["transferred_at"]
                and l["round"] == form["round"])
    if line["status"] != "awaiting_verify":
        return signed
    token = issue_token(signing_key, head or f"{estate}-{HEADS[department]}", ["department_head"], [estate])
    url = str(signed.request.url).removesuffix("/sign-back") + "/sign-back/verify"
    r = await client.post(url, json={"department": department}, headers=auth(token))
    assert r.status_code == 200, r.text
    return r


@pytest.fixture
async def db(servers):
    engine = create_async_engine(asyncpg_url(servers["database"]))
    yield engine
    await engine.dispose()


async def scalar(engine, sql: str, **params):
    async with engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).scalar()


async def read_stream(nats_url: str, subject: str, expected: int | None = None, timeout: float = 30) -> list[dict]:
    """All messages of `subject` in the ticket stream, read with plain nats-py
    (`nats_url` may list a cluster's nodes, comma-separated)."""
    from shared.settings import nats_servers

    nc = await nats.connect(nats_servers(nats_url))
    js = nc.jetstream()
    found: list[dict] = []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            found.clear()
            sub = await js.subscribe(subject, ordered_consumer=True)
            try:
                while True:
                    try:
                        msg = await sub.next_msg(timeout=0.5)
                    except nats.errors.TimeoutError:
                        break
                    found.append(json.loads(msg.data))
            finally:
                await sub.unsubscribe()
            if expected is None or len(found) >= expected or asyncio.get_running_loop().time() > deadline:
                return list(found)
            await asyncio.sleep(0.5)
    finally:
        await nc.close()


async def eventually(predicate, timeout: float = 30, interval: float = 0.2):
    """Await `predicate()` until it returns a truthy value or time runs out."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(interval)


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
