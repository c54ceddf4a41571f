"""Issue 16: the ticket detail's one timeline — every event of a ticket from every service,
in order, times in the estate's zone — served by archive through the one address."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import auth, token_for

pytestmark = pytest.mark.integration


async def test_a_tickets_timeline_holds_every_services_events(stack, estate):
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(base_url=stack.console_url, timeout=30) as client:
        created = await client.post(f"/v1/estates/{estate}/requests", headers=auth(token), json={
            "kind": "repair", "channel": "phone", "repair_class": "general", "building": "1",
            "description": "卫生间下水道堵塞"})
        assert created.status_code == 201, created.text
        ticket = created.json()["id"]
        names: list[str] = []
        for _ in range(150):
            r = await client.get(f"/v1/estates/{estate}/tickets/{ticket}/timeline", headers=auth(token))
            if r.status_code == 200:
                names = [e["event"] for e in r.json()["events"]]
                if "assigned" in names:
                    break
            await asyncio.sleep(0.2)
        timeline = r.json()
        missing = await client.get(f"/v1/estates/{estate}/tickets/no-such-ticket/timeline", headers=auth(token))
    assert names[:2] == ["accepted", "assigned"], names
    first = timeline["events"][0]
    assert first["source"] == "intake" and first["actor"] == f"{estate}-cs01"
    assert first["data"]["form_number"] == created.json()["form_number"]
    assert all(e["time"].endswith("+08:00") for e in timeline["events"])
    assert timeline["record_number"] is None
    assert missing.status_code == 404
