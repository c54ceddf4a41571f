"""Issue 16: one address, staff sign-in, lock-out, sign-out, and tokens that stop working
when they should — live streams included. Everything through the gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import pytest

from estatedesk.gateway import route_table
from shared.auth import issue_token
from shared.directory import Company, StaffMember, publish_directory
from tests.conftest import auth, demo_estate, token_for, wait_for_directory

pytestmark = pytest.mark.integration
PASSWORD = "correct horse 7"


@pytest.fixture
async def signed_estate(stack):
    """An estate whose clerk has an account, made by the company admin through the gateway."""
    code = f"s{uuid.uuid4().hex[:8]}"
    estate = demo_estate(code)
    estate.staff.append(StaffMember(id=f"{code}-cs02", name="客服二", roles=["customer_service"],
                                    department="customer_service", phone=f"139{uuid.uuid4().int % 10**8:08d}"))
    await publish_directory(stack.nats_url, None, [estate])
    await wait_for_directory(stack, code)
    admin = token_for(stack, "admin", ["company_admin"], ["*"])
    async with httpx.AsyncClient(base_url=stack.console_url, timeout=30) as client:
        for staff in (f"{code}-cs01", f"{code}-cs02"):
            r = await client.put(f"/v1/accounts/{staff}/password", json={"password": PASSWORD}, headers=auth(admin))
            assert r.status_code == 204, r.text
    return estate


async def login(client, who: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"login": who, "password": password})


def test_no_two_services_claim_a_path():
    routes = route_table()
    assert {r.service for r in routes} == {"intake", "dispatch", "callback", "archive", "analytics"}


async def test_sign_in_work_renew_and_sign_out_through_one_address(stack, signed_estate):
    code = signed_estate.code
    async with httpx.AsyncClient(base_url=stack.console_url, timeout=30) as client:
        r = await login(client, f"{code}-cs01")
        assert r.status_code == 200, r.text
        session = r.json()
        assert session["staff"]["estates"] == [code] and session["staff"]["roles"] == ["customer_service"]
        assert session["expires_at"].endswith("+08:00")
        expires = dt.datetime.fromisoformat(session["expires_at"])
        assert dt.timedelta(hours=7, minutes=59) < expires - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(hours=8)
        token = session["token"]
        created = await client.post(f"/v1/estates/{code}/requests", headers=auth(token),
                                    json={"kind": "inquiry", "channel": "phone", "description": "停车位怎么租？"})
        assert created.status_code == 201, created.text
        ticket = created.json()["id"]

        async def routed():
            r = await client.get(f"/v1/estates/{code}/forms/{ticket}", headers=auth(token))
            return r.status_code == 200

        for _ in range(150):
            if await routed():
                break
            await asyncio.sleep(0.2)
        assert await routed(), "dispatch never answered through the gateway"
        me = await client.get("/v1/auth/me", headers=auth(token))
        assert me.json()["id"] == f"{code}-cs01"

        renewed = await client.post("/v1/auth/renew", headers=auth(token))
        assert renewed.status_code == 200 and renewed.json()["token"] != token
        fresh = renewed.json()["token"]

        assert (await client.post("/v1/auth/logout", headers=auth(token))).status_code == 204
        # Every service refuses the signed-out token once the directory tells it.
        for _ in range(50):
            gone = await client.get(f"/v1/estates/{code}/forms/{ticket}", headers=auth(token))
            if gone.status_code == 401:
                break
            await asyncio.sleep(0.1)
        assert gone.status_code == 401 and "signed out" in gone.json()["error"]
        again = await client.get(f"/v1/estates/{code}/requests/{ticket}", headers=auth(token))
        assert again.status_code == 401
        assert (await client.post("/v1/auth/renew", headers=auth(token))).status_code == 401
        # The renewed sign-in is its own and still good.
        assert (await client.get(f"/v1/estates/{code}/requests/{ticket}", headers=auth(fresh))).status_code == 200


async def test_phone_sign_in_wrong_password_and_lock_out(stack, signed_estate):
    code = signed_estate.code
    phone = signed_estate.staff[-1].phone
    async with httpx.AsyncClient(base_url=stack.console_url, timeout=60) as client:
        assert (await login(client, phone)).status_code == 200
        unknown = await login(client, "nobody-here")
        wrong = await login(client, phone, "wrong password")
        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json()["error"] == wrong.json()["error"] == "wrong staff id or password"
        assert wrong.json()["error_zh"] == "工号或密码错误"
        for _ in range(3):
            assert (await login(client, phone, "wrong password")).status_code == 401
        fifth = await login(client, phone, "wrong password")
        assert fifth.status_code == 403 and "locked" in fifth.json()["error"]
        assert "账号已锁定至" in fifth.json()["error_zh"]
        # Locked: even the right password is refused until the lock ends.
        locked = await login(client, phone)
        assert locked.status_code == 403 and "locked" in locked.json()["error"]
        # The admin's reset lifts the lock.
        admin = token_for(stack, "admin", ["company_admin"], ["*"])
        r = await client.put(f"/v1/accounts/{code}-cs02/password", json={"password": PASSWORD + "!"}, headers=auth(admin))
        assert r.status_code == 204
        assert (await login(client, phone, PASSWORD + "!")).status_code == 200


async def test_password_rules_and_who_may_manage_accounts(stack, signed_estate):
    code = signed_estate.code
    async with httpx.AsyncClient(base_url=stack.console_url, timeout=30) as client:
        clerk = (await login(client, f"{code}-cs01")).json()["token"]
        refused = await client.put(f"/v1/accounts/{code}-cs02/password", json={"password": "whatever123"},
                                   headers=auth(clerk))
        assert refused.status_code == 403 and "needs one of the roles" in refused.json()["error"]
        director = token_for(stack, f"{code}-director", ["estate_director"], [code])
        short = await client.put(f"/v1/accounts/{code}-cs02/password", json={"password": "short"},
                                 headers=auth(director))
        assert short.status_code == 422 and "at least 8" in short.json()["error"]
        missing = await client.put("/v1/accounts/ghost/password", json={"password": "long enough"},
                                   headers=auth(director))
        assert missing.status_code == 404
        listed = await client.get("/v1/accounts", headers=auth(director))
        assert {a["staff_id"]: a["has_password"] for a in listed.json()}[f"{code}-cs01"] is True


async def test_staff_removed_from_the_directory_is_refused_and_their_stream_ends(stack, signed_estate):
    code = signed_estate.code
    async with httpx.AsyncClient(base_url=stack.console_url, timeout=30) as client:
        token = (await login(client, f"{code}-cs02")).json()["token"]
        async with client.stream("GET", f"/v1/dashboard/stream?token={token}") as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            assert await anext_event(lines) == "summary"
            without = signed_estate.model_copy(update={"staff": [s for s in signed_estate.staff
                                                                 if s.id != f"{code}-cs02"]})
            await publish_directory(stack.nats_url, None, [without])
            assert await anext_event(lines, until="end", timeout=20) == "end"
        r = await client.get(f"/v1/estates/{code}/requests", headers=auth(token))
        assert r.status_code == 403 and "not on the staff" in r.json()["error"]


async def test_a_dashboard_stream_ends_when_its_token_expires(stack):
    qm = issue_token(stack.signing_key, "qm-short", ["quality_manager"], ["*"], ttl=dt.timedelta(seconds=4))
    async with httpx.AsyncClient(base_url=stack.console_url, timeout=30) as client:
        started = asyncio.get_running_loop().time()
        async with client.stream("GET", f"/v1/dashboard/stream?token={qm}") as stream:
            lines = stream.aiter_lines()
            assert await anext_event(lines) == "summary"
            assert await anext_event(lines, until="end", timeout=20) == "end"
        assert asyncio.get_running_loop().time() - started < 12
        again = await client.get(f"/v1/dashboard/stream?token={qm}")
        assert again.status_code == 401


async def test_head_office_staff_sign_in_for_every_estate(stack):
    staff_id = f"qm-{uuid.uuid4().hex[:6]}"
    await publish_directory(stack.nats_url, Company(staff=[StaffMember(id=staff_id, name="品质主管",
                                                                          roles=["quality_manager"])]), [])
    admin = token_for(stack, "admin", ["company_admin"], ["*"])
    async with httpx.AsyncClient(base_url=stack.console_url, timeout=30) as client:
        for _ in range(50):
            r = await client.put(f"/v1/accounts/{staff_id}/password", json={"password": PASSWORD}, headers=auth(admin))
            if r.status_code != 404:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 204, r.text
        session = (await login(client, staff_id)).json()
        assert session["staff"]["estates"] == ["*"]
        summary = await client.get("/v1/dashboard/summary", headers=auth(session["token"]))
        assert summary.status_code == 200


async def anext_event(lines, until: str | None = None, timeout: float = 10) -> str | None:
    """The next server-sent event's name (or, with `until`, the first event of that name)."""
    async def read():
        async for line in lines:
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
                if until is None or name == until:
                    return name
        return None

    return await asyncio.wait_for(read(), timeout)
