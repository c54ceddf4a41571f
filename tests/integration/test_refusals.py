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


async def test_refusals_at_owners_data_and_archive_land_in_the_archive_access_log(stack, estate):
    """A token for another estate asking for this estate's owners (intake) or archived
    records (archive), and a clerk of this estate asking to destroy a record: each refusal
    is published as `access_refused` and kept in the archive's access log ("door")."""
    stranger = token_for(stack, "stranger-cs", ["customer_service"], ["somewhere-else"])
    engineer = token_for(stack, f"{estate}-eng01", ["department_staff"], [estate])
    company = token_for(stack, "qm-audit", ["quality_manager"], ["*"])
    intake, archive = stack.service("intake").url, stack.service("archive").url
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{intake}/v1/estates/{estate}/owners", headers=auth(stranger))).status_code == 403
        assert (await client.get(f"{intake}/v1/estates/{estate}/units")).status_code == 401
        assert (await client.get(f"{archive}/v1/estates/{estate}/archive/records",
                                 headers=auth(stranger))).status_code == 403
        # Outside the audited routes a refusal is logged and counted only.
        assert (await client.get(f"{intake}/v1/estates/{estate}/requests/none",
                                 headers=auth(stranger))).status_code == 403
        assert (await client.get(f"{archive}/v1/estates/{estate}/archive/access-log",
                                 headers=auth(engineer))).status_code == 403
        expected = {
            ("stranger-cs", "intake", f"GET /v1/estates/{estate}/owners", None),
            ("anonymous", "intake", f"GET /v1/estates/{estate}/units", None),
            ("stranger-cs", "archive", f"GET /v1/estates/{estate}/archive/records", None),
            (f"{estate}-eng01", "archive", f"GET /v1/estates/{estate}/archive/access-log", None),
        }
        for _ in range(100):
            log = (await client.get(f"{archive}/v1/estates/{estate}/archive/access-log",
                                    params={"refused": "true"}, headers=auth(company))).json()
            found = {(e["actor"], e["service"], e["request"], e["record_number"]) for e in log if e["what"] == "door"}
            if found >= expected:
                break
            await asyncio.sleep(0.1)
    assert found == expected
    (stranger_row,) = [e for e in log if e["request"] == f"GET /v1/estates/{estate}/owners"]
    assert stranger_row["roles"] == ["customer_service"] and not stranger_row["allowed"]
    assert stranger_row["reason"].startswith("403: ") and estate in stranger_row["reason"]
