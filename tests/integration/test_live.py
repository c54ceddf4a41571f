"""Issue 16: live lists. One server-sent-event stream at the console's address
(`/v1/live?estate=`, the token in the Authorization header) tells an open screen about
every ticket event of its estate, and ends when its token expires or its staff member is
removed from the directory."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
import pytest

from shared.auth import issue_token
from shared.directory import publish_directory
from tests.conftest import auth, demo_estate, eventually, token_for

pytestmark = pytest.mark.integration


async def next_event(lines, until: str, timeout: float = 30) -> dict:
    """The data of the first server-sent event named `until`."""
    async def read():
        name = None
        async for line in lines:
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and name == until:
                return json.loads(line.split(":", 1)[1])
        raise AssertionError(f"the stream closed before {until!r}")

    return await asyncio.wait_for(read(), timeout)


async def live_subscriptions(monitor: str) -> list[str]:
    """The subjects the gateway's live hub is subscribed to (nats-server's monitor)."""
    async with httpx.AsyncClient(timeout=10) as client:
        connections = (await client.get(f"{monitor}/connz", params={"subs": 1, "limit": 1000})).json()["connections"]
    return sorted(s for c in connections if c.get("name") == "estatedesk-live" for s in c.get("subscriptions_list", []))


async def test_a_live_list_hears_its_estates_events_and_ends_with_its_account(stack, servers, estate):
    clerk = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    tech = token_for(stack, f"{estate}-eng01", ["department_staff"], [estate])
    async with httpx.AsyncClient(base_url=stack.console_url.rstrip("/"), timeout=30) as client:
        # Refusals are readable and immediate.
        assert (await client.get(f"/v1/live?estate={estate}")).status_code == 401
        other = await client.get("/v1/live?estate=elsewhere", headers=auth(clerk))
        assert other.status_code == 403 and other.json()["error_zh"]
        assert (await client.get("/v1/live", headers=auth(clerk))).status_code == 422

        async with client.stream("GET", f"/v1/live?estate={estate}", headers=auth(tech)) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert (await next_event(lines, "ready"))["estate"] == estate
            # Only the estates a screen has open are subscribed to.
            assert f"estatedesk.{estate}.ticket.*" in await live_subscriptions(servers["nats_monitor"])
            assert "estatedesk.*.ticket.*" not in await live_subscriptions(servers["nats_monitor"])
            r = await client.post(f"/v1/estates/{estate}/requests", headers=auth(clerk), json={
                "kind": "repair", "channel": "phone", "category": "plumbing", "repair_class": "general",
                "building": "1", "unit": "1-1-101", "description": "厨房水龙头漏水"})
            assert r.status_code == 201, r.text
            ticket_id = r.json()["id"]
            seen = set()
            while not {"accepted", "assigned"} <= seen:  # intake's, then dispatch's
                notice = await next_event(lines, "ticket")
                assert notice["estate"] == estate and notice["ticket_id"] == ticket_id
                seen.add(notice["event"])

            # The technician leaves the estate's staff: the open stream ends with the reason.
            without = demo_estate(estate)
            without.staff = [s for s in without.staff if s.id != f"{estate}-eng01"]
            await publish_directory(stack.nats_url, None, [without])
            ended = await next_event(lines, "end", timeout=20)
            assert "not on the staff" in ended["reason"]
        again = await client.get(f"/v1/live?estate={estate}", headers=auth(tech))
        assert again.status_code == 403
        # Its last screen closed: the gateway no longer receives the estate's events.
        async def dropped():
            return f"estatedesk.{estate}.ticket.*" not in await live_subscriptions(servers["nats_monitor"])
        assert await eventually(dropped, timeout=10)


async def test_a_live_list_ends_when_its_token_expires(stack, estate):
    short = issue_token(stack.signing_key, f"{estate}-cs01", ["customer_service"], [estate],
                        ttl=dt.timedelta(seconds=4))
    async with httpx.AsyncClient(base_url=stack.console_url.rstrip("/"), timeout=30) as client:
        started = asyncio.get_running_loop().time()
        async with client.stream("GET", f"/v1/live?estate={estate}", headers=auth(short)) as stream:
            lines = stream.aiter_lines()
            await next_event(lines, "ready")
            assert (await next_event(lines, "end", timeout=20))["reason"] == "token expired"
        assert asyncio.get_running_loop().time() - started < 12
        assert (await client.get(f"/v1/live?estate={estate}", headers=auth(short))).status_code == 401
