"""One answer to "was this clock met?" (issue 11), over the real stack: a complaint whose
reply clock is met by a progress update before its due time and whose form completes
after it. Dispatch settles every clock once and publishes the verdict (`clock_settled`);
its form, the monthly report and the live dashboard then show the same met/breached
counts."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.clock import FileOffsetClock
from tests.conftest import auth, eventually, token_for, head_verifies
from tests.integration.test_analytics_flow import settle
from tests.integration.test_lifecycle import define_estate, events_of, staff_token

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _month(when: str) -> str:
    return dt.datetime.fromisoformat(when).astimezone(SHANGHAI).strftime("%Y-%m")


async def test_a_reply_met_by_an_update_is_met_in_the_form_the_report_and_the_dashboard(stack, clock_file, db):
    estate = f"v{uuid.uuid4().hex[:8]}"
    await define_estate(stack, estate, clock_file)
    clock = FileOffsetClock(clock_file)
    intake = stack.service("intake").url + f"/v1/estates/{estate}"
    dispatch = stack.service("dispatch").url + f"/v1/estates/{estate}"
    cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate, ["customer_service"])
    eng = staff_token(stack, f"{estate}-eng01", ["department_staff"], estate, ["engineering"])
    reader = auth(token_for(stack, f"{estate}-cssup", ["customer_service_supervisor"], [estate]))
    agreed = clock.now() + dt.timedelta(minutes=45)

    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{intake}/requests", headers=cs, json={
            "kind": "complaint", "channel": "phone", "category": "water leak", "description": "楼上漏水",
            "building": "1", "reply_agreed_by": agreed.isoformat(),
        })
        assert r.status_code == 201, r.text
        ticket = r.json()["id"]
        await events_of(stack, estate, "assigned", expected=1)
        for department, token in (("engineering", eng), ("customer_service", cs)):
            r = await client.post(f"{dispatch}/forms/{ticket}/acknowledge", headers=token,
                                  json={"department": department})
            assert r.status_code == 200, r.text
        r = await client.post(f"{intake}/requests/{ticket}/progress", headers=cs,
                              json={"note": "已联系工程部上门查看", "method": "phone"})
        assert r.status_code == 201, r.text

        async def reply_met():
            form = (await client.get(f"{dispatch}/forms/{ticket}", headers=cs)).json()
            return [d["verdict"] for d in form["deadlines"] if d["clock"] == "reply"] == ["met"]

        assert await eventually(reply_met, timeout=30)

        # The form completes an hour after the agreed reply time.
        clock.advance(105 * 60)
        for department, token, head in (("engineering", eng, "eng-head"), ("customer_service", cs, "cs-head")):
            r = await client.post(f"{dispatch}/forms/{ticket}/sign-back", headers=token, json={
                "department": department, "opinion": "已处理", "result": "已修复", "verified_by": f"{estate}-{head}"})
            r = await head_verifies(client, stack.signing_key, r, estate, department)
        form = r.json()
        assert form["status"] == "completed"

        events = await settle(stack, db, estate)
        verdicts = [e["data"] for e in events if e["type"].endswith(".clock_settled")]
        # One verdict per settled clock: reply and both acknowledgements met; the first week
        # of owner updates (not yet due) gave way to completion, counted neither met nor
        # breached; tracking runs on to the callback.
        assert sorted((v["clock"], v["department"], v["outcome"]) for v in verdicts) == [
            ("acknowledge", "customer_service", "met"), ("acknowledge", "engineering", "met"),
            ("progress_update", None, "superseded"), ("reply", None, "met")]
        assert not [e for e in events if e["type"].endswith(".sla_breached")]
        assert (form["clocks_met"], form["clocks_breached"]) == (3, 0)

        months = {_month(v["settled_at"]) for v in verdicts}
        if len(months) != 1:
            pytest.skip(f"the shared test clock puts the verdicts in two months {sorted(months)}")
        [month] = months
        analytics = stack.service("analytics").url + "/v1"
        report = (await client.get(f"{analytics}/estates/{estate}/reports/monthly/{month}", headers=reader)).json()
        summary = (await client.get(f"{analytics}/dashboard/summary", headers=reader)).json()

    totals = report["totals"]
    assert (totals["clocks_met"], totals["clocks_breached"]) == (form["clocks_met"], form["clocks_breached"])
    reply = report["by_clock"]["reply"]
    assert (reply["clocks_met"], reply["clocks_breached"]) == (1, 0)
    [shown] = [e for e in summary["estates"] if e["code"] == estate]
    if summary["month"] == month:
        assert (shown["month"]["clocks_met"], shown["month"]["clocks_breached"]) == (3, 0)
    else:
        pytest.skip(f"the dashboard shows {summary['month']}, the verdicts fell in {month}")
