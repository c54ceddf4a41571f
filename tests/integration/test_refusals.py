"""Every refusal is logged with who, what and which estate, and counted in a metric."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

from tests.conftest import auth, token_for

pytestmark = pytest.mark.integration


def refusals(metrics: str, estate: str, status: str) -> float:
    match = re.search(rf'^estatedesk_refusals_total{{estate="{estate}",service="intake",status="{status}"}} (\S+)$',
                      metrics, re.M)
    return float(match.group(1)) if match else 0.0


async def test_a_token_for_another_estate_is_refused_logged_and_counted(stack, estate):
    intake = stack.service("intake")
    other = token_for(stack, "stranger-cs", ["customer_service"], ["somewhere-else"])
    async with httpx.AsyncClient(base_url=intake.url, timeout=10) as client:
        before = refusals((await client.get("/metrics")).text, estate, "403")
        r = await client.get(f"/v1/estates/{estate}/requests/none", headers=auth(other))
        assert r.status_code == 403
        after = refusals((await client.get("/metrics")).text, estate, "403")
    assert after == before + 1
    for _ in range(50):  # the log line is written as the refusal is answered
        lines = [json.loads(line) for line in intake.log_path.read_text(errors="replace").splitlines()
                 if line.startswith("{") and "refused" in line and estate in line]
        if lines:
            break
        await asyncio.sleep(0.1)
    (line,) = lines
    assert line["actor"] == "stranger-cs" and line["estate"] == estate and line["status"] == 403
    assert f"GET /v1/estates/{estate}/requests/none" in line["message"]
