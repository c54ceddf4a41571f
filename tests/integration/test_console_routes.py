"""The read routes the console adds (issue 16): the clock preview Register shows before
saving (dispatch's own rules, nothing stored), the services' clock the countdowns follow,
and requests listed by kind."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import pytest

from shared.clock import FileOffsetClock
from shared.directory import publish_directory
from tests.conftest import auth, demo_estate, token_for, wait_for_directory

pytestmark = pytest.mark.integration


async def test_clock_preview_and_the_server_clock(stack, clock_file):
    code = f"p{uuid.uuid4().hex[:8]}"
    await publish_directory(stack.nats_url, None, [demo_estate(code)])
    await wait_for_directory(stack, code)
    clerk = auth(token_for(stack, f"{code}-cs01", ["customer_service"], [code]))
    url = stack.console_url.rstrip("/")
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        # dispatch may hear of the estate a moment after intake
        for _ in range(50):
            r = await client.get(f"/v1/estates/{code}/clock-preview", headers=clerk,
                                 params={"kind": "repair", "repair_class": "emergency", "category": "plumbing"})
            if r.status_code != 404:
                break
        assert r.status_code == 200, r.text
        preview = r.json()
        now = FileOffsetClock(clock_file).now()
        started = dt.datetime.fromisoformat(preview["now"])
        assert abs((started - now).total_seconds()) < 30 and started.utcoffset() == dt.timedelta(hours=8)
        arrival = [c for c in preview["clocks"] if c["clock"] == "arrival"]
        assert arrival and preview["departments"] == ["engineering"]
        # An emergency: arrival at once (RULES §2 Repair arrival).
        assert dt.datetime.fromisoformat(arrival[0]["due_at"]) == started
        assert preview["nonconformity"] is False

        agreed = (now + dt.timedelta(days=1)).isoformat()
        r = await client.get(f"/v1/estates/{code}/clock-preview", headers=clerk,
                             params={"kind": "complaint", "reply_agreed_by": agreed, "owner_loss_cny": "800.00"})
        assert r.status_code == 200, r.text
        reply = [c for c in r.json()["clocks"] if c["clock"] == "reply"]
        assert reply and dt.datetime.fromisoformat(reply[0]["due_at"]) == dt.datetime.fromisoformat(agreed)
        assert r.json()["nonconformity"] is True

        past = (now - dt.timedelta(hours=1)).isoformat()
        r = await client.get(f"/v1/estates/{code}/clock-preview", headers=clerk,
                             params={"kind": "inquiry", "reply_agreed_by": past})
        assert r.status_code == 422 and r.json()["error_zh"], r.text
        r = await client.get(f"/v1/estates/{code}/clock-preview", headers=clerk, params={"kind": "nonsense"})
        assert r.status_code == 422 and r.json()["error_zh"]

        r = await client.get("/v1/clock", headers=clerk)
        assert r.status_code == 200
        server_now = dt.datetime.fromisoformat(r.json()["now"])
        assert abs((server_now - FileOffsetClock(clock_file).now()).total_seconds()) < 30
        assert (await client.get("/v1/clock")).status_code == 401



async def test_requests_listed_by_kind(stack):
    code = f"k{uuid.uuid4().hex[:8]}"
    await publish_directory(stack.nats_url, None, [demo_estate(code)])
    await wait_for_directory(stack, code)
    clerk = auth(token_for(stack, f"{code}-cs01", ["customer_service"], [code]))
    async with httpx.AsyncClient(base_url=stack.console_url.rstrip("/"), timeout=30) as client:
        for kind in ("complaint", "inquiry"):
            r = await client.post(f"/v1/estates/{code}/requests", headers=clerk,
                                  json={"kind": kind, "channel": "phone", "description": f"一件{kind}"})
            assert r.status_code == 201, r.text
        listed = (await client.get(f"/v1/estates/{code}/requests?kind=complaint", headers=clerk)).json()
        assert [x["kind"] for x in listed] == ["complaint"]
        r = await client.get(f"/v1/estates/{code}/requests?kind=gossip", headers=clerk)
        assert r.status_code == 422 and r.json()["error_zh"]


async def test_a_request_found_by_form_number_and_forms_by_ticket_ids(stack):
    """The ticket page's search and the Mine view ask the servers for exactly what they
    need, however old (they used to search the newest 1,000 in the browser)."""
    code = f"f{uuid.uuid4().hex[:8]}"
    await publish_directory(stack.nats_url, None, [demo_estate(code)])
    await wait_for_directory(stack, code)
    clerk = auth(token_for(stack, f"{code}-cs01", ["customer_service"], [code]))
    async with httpx.AsyncClient(base_url=stack.console_url.rstrip("/"), timeout=30) as client:
        made = []
        for n in range(3):
            r = await client.post(f"/v1/estates/{code}/requests", headers=clerk,
                                  json={"kind": "inquiry", "channel": "phone", "description": f"第{n}件"})
            assert r.status_code == 201, r.text
            made.append(r.json())
        oldest = made[0]
        # The oldest, though a limit of 1 would list only the newest without the filter.
        r = await client.get(f"/v1/estates/{code}/requests", headers=clerk,
                             params={"form_number": oldest["form_number"], "limit": 1})
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()] == [oldest["id"]]
        r = await client.get(f"/v1/estates/{code}/requests", headers=clerk,
                             params={"form_number": f"{code.upper()}-1999-000001"})
        assert r.status_code == 200 and r.json() == []
        for bad in ("not a number", "X" * 60, ""):
            r = await client.get(f"/v1/estates/{code}/requests", headers=clerk, params={"form_number": bad})
            assert r.status_code == 422 and r.json()["error_zh"], (bad, r.text)

        wanted = {made[0]["id"], made[2]["id"]}
        for _ in range(100):  # dispatch opens the forms when it hears of the registrations
            r = await client.get(f"/v1/estates/{code}/forms", headers=clerk,
                                 params={"status": "all", "ticket_id": sorted(wanted), "limit": 2})
            assert r.status_code == 200, r.text
            if len(r.json()) == 2:
                break
            await asyncio.sleep(0.1)
        assert {f["ticket_id"] for f in r.json()} == wanted
        r = await client.get(f"/v1/estates/{code}/forms", headers=clerk,
                             params={"status": "all", "ticket_id": [f"t{n}" for n in range(201)]})
        assert r.status_code == 422 and r.json()["error_zh"], r.text
