"""Intake registers concurrent requests of an estate in batches (one lock on the estate's
form counter, one commit): form numbers stay gapless and unique, and one client request id
sent many times at once answers with one ticket."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import auth, token_for

pytestmark = pytest.mark.integration

REPAIR = {"kind": "repair", "channel": "phone", "repair_class": "general", "category": "plumbing",
          "building": "1", "unit": "1-1-101", "description": "厨房水管漏水"}


async def test_concurrent_registrations_take_gapless_numbers_and_one_id_is_one_ticket(stack, estate):
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(base_url=stack.service("intake").url, headers=auth(token), timeout=60) as client:
        url = f"/v1/estates/{estate}/requests"
        plain = [client.post(url, json=REPAIR | {"description": f"漏水 {i}"}) for i in range(30)]
        same = [client.post(url, json=REPAIR | {"client_request_id": f"{estate}-retry"}) for _ in range(10)]
        answers = await asyncio.gather(*plain, *same)
    assert all(r.status_code == 201 for r in answers), [r.text for r in answers if r.status_code != 201][:3]
    tickets = {r.json()["id"]: r.json()["form_number"] for r in answers}
    assert len({r.json()["id"] for r in answers[30:]}) == 1  # one client request id, one ticket
    assert len(tickets) == 31
    sequences = sorted(int(number.rsplit("-", 1)[1]) for number in tickets.values())
    assert sequences == list(range(1, 32))  # gapless and unique within the estate's year
