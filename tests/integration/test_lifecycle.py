"""The countersign form's life over real NATS and PostgreSQL, the services as processes:
a complaint and an emergency repair registered by night duty, handed over to the day
shift, dispatched (the complaint to two departments), acknowledged, breached, escalated
and signed back to `completed` — and a dispatch restart that loses no deadline and fires
none twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import uuid
from collections import Counter
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.auth import issue_token
from shared.clock import FileOffsetClock
from shared.events import CloudEvent, subject_for
from tests.conftest import auth, eventually, head_verifies, read_stream, scalar, token_for

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")


def staff_token(stack, staff: str, roles: list[str], estate: str, departments: list[str] = ()) -> dict[str, str]:
    return auth(issue_token(stack.signing_key, staff, roles, [estate], name=staff, departments=list(departments)))


def off_hours_at(now: dt.datetime) -> dict:
    """Office hours that leave `now` (and the next hour) outside them."""
    local = now.astimezone(SHANGHAI)
    if dt.time(2, 0) <= local.time() <= dt.time(22, 0):
        return {"office_opens": "00:00", "office_closes": "00:30"}
    return {"office_opens": "12:00", "office_closes": "12:30"}


def estate_definition(code: str, now: dt.datetime) -> dict:
    return {
        "code": code,
        "name": f"生命周期小区 {code}",
        "director": f"{code}-director",
        "departments": [
            {"code": "engineering", "name": "工程部", "head": f"{code}-eng-head"},
            {"code": "security", "name": "保安部", "head": f"{code}-sec-head"},
            {"code": "cleaning", "name": "保洁部", "head": f"{code}-cln-head"},
            {"code": "customer_service", "name": "客服部", "head": f"{code}-cs-head"},
        ],
        "staff": [
            {"id": f"{code}-cs01", "name": "客服一", "roles": ["customer_service"], "department": "customer_service"},
            {"id": f"{code}-duty01", "name": "值班一", "roles": ["duty_staff"], "department": "security"},
            {"id": f"{code}-eng01", "name": "工程一", "roles": ["department_staff"], "department": "engineering"},
            {"id": f"{code}-sec01", "name": "保安一", "roles": ["department_staff"], "department": "security"},
            {"id": f"{code}-fin01", "name": "财务一", "roles": ["department_staff"], "department": "finance"},
            {"id": f"{code}-cssup", "name": "客服主管", "roles": ["customer_service_supervisor"],
             "department": "customer_service"},
            {"id": f"{code}-duty02", "name": "值班二", "roles": ["duty_staff"], "department": "security"},
        ],
        "buildings": ["1", "2"],
        # A leak in an owner's home is engineering's to fix and customer service's to
        # answer: the complaint goes to both departments.
        "routing_rules": [
            {"kind": "complaint", "category": "*leak*|*water*", "departments": ["engineering", "customer_service"],
             "priority": 50},
        ],
        # This company allows its technicians 10 minutes to reach an emergency (policy grace).
        "policy": {"intake": off_hours_at(now), "escalation": {"minutes_per_rung": 5},
                   "clocks": {"arrival_grace_minutes_immediate": 10}},
    }


async def define_estate(stack, code: str, clock_file) -> None:
    """Through the directory API, as a company admin would; then wait for dispatch too.
    Time is the services' (shared file clock), which other tests may have moved on."""
    admin = auth(token_for(stack, "admin", ["company_admin"], ["*"]))
    definition = estate_definition(code, FileOffsetClock(clock_file).now())
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.put(f"{stack.service('intake').url}/v1/estates/{code}", json=definition, headers=admin)
        assert r.status_code == 200, r.text

        async def dispatch_knows():
            r = await client.get(f"{stack.service('dispatch').url}/v1/estates/{code}/forms", headers=admin)
            return r.status_code == 200

        assert await eventually(dispatch_knows, timeout=20)


@pytest.fixture
async def lifecycle_estate(stack, clock_file) -> str:
    code = f"l{uuid.uuid4().hex[:8]}"
    await define_estate(stack, code, clock_file)
    return code


async def events_of(stack, estate: str, name: str, expected: int | None = None, timeout: float = 45) -> list[dict]:
    return await read_stream(stack.nats_url, subject_for(estate, name), expected=expected, timeout=timeout)


async def test_complaint_and_emergency_repair_walk_to_completed(stack, lifecycle_estate, clock_file, db):
    estate = lifecycle_estate
    intake = stack.service("intake").url + f"/v1/estates/{estate}"
    dispatch = stack.service("dispatch").url + f"/v1/estates/{estate}"
    duty = staff_token(stack, f"{estate}-duty01", ["duty_staff"], estate, ["security"])
    cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate, ["customer_service"])
    eng = staff_token(stack, f"{estate}-eng01", ["department_staff"], estate, ["engineering"])
    clock = FileOffsetClock(clock_file)

    async with httpx.AsyncClient(timeout=30) as client:
        # --- night duty registers both; they wait on the handover list ---------------------
        complaint = await client.post(f"{intake}/requests", headers=duty, json={
            "kind": "complaint", "channel": "phone", "category": "water leak", "severity": "serious",
            "description": "楼上漏水到我家天花板，投诉处理太慢", "building": "1", "unit": "1-2-301",
            "cause": "楼上卫生间防水层破损", "people": ["业主王先生"], "attachments": ["photo:ceiling-1.jpg"],
        })
        repair = await client.post(f"{intake}/requests", headers=duty, json={
            "kind": "repair", "repair_class": "emergency", "channel": "phone", "category": "water",
            "description": "水管爆裂，急修", "building": "2", "unit": "2-1-101",
        })
        assert complaint.status_code == 201, complaint.text
        assert repair.status_code == 201, repair.text
        complaint, repair = complaint.json(), repair.json()
        for ticket in (complaint, repair):
            assert ticket["first_contact"] == f"{estate}-duty01"
            assert ticket["off_hours"] is True
            assert ticket["signature"]["requirement"] == "later"  # phone: 补签 later
            assert ticket["handover"] and ticket["handover"]["taken_over_by"] is None
        assert complaint["form_number"].startswith(f"{estate.upper()}-")

        handover = (await client.get(f"{intake}/handover", headers=cs)).json()
        assert handover["complete"] is False and handover["unclaimed"] == 2
        first = handover["items"][0]
        taken = await client.post(f"{intake}/handover/{first['id']}/take-over", headers=cs)
        assert taken.status_code == 200, taken.text
        # One item still unclaimed: the handover is not complete.
        assert (await client.get(f"{intake}/handover", headers=cs)).json()["complete"] is False
        again = await client.post(f"{intake}/handover/{first['id']}/take-over", headers=cs)
        assert again.status_code == 409
        second = handover["items"][1]
        assert (await client.post(f"{intake}/handover/{second['id']}/take-over", headers=cs)).status_code == 200
        handover = (await client.get(f"{intake}/handover", headers=cs)).json()
        assert handover["complete"] is True and handover["items"] == []
        shown = (await client.get(f"{intake}/requests/{complaint['id']}", headers=cs)).json()
        # Handing it on never clears the first-contact owner.
        assert shown["first_contact"] == f"{estate}-duty01" and shown["current_handler"] == f"{estate}-cs01"
        assert shown["handover"]["taken_over_by"] == f"{estate}-cs01"
        mine = (await client.get(f"{intake}/requests", params={"first_contact": f"{estate}-duty01", "status": "open"},
                                 headers=duty)).json()
        assert {t["id"] for t in mine} == {complaint["id"], repair["id"]}

        # --- dispatch routes: the complaint to two departments ----------------------------
        assigned = await events_of(stack, estate, "assigned", expected=2)
        by_ticket = {e["subject"]: e["data"] for e in assigned}
        assert sorted(by_ticket[complaint["id"]]["departments"]) == ["customer_service", "engineering"]
        assert by_ticket[repair["id"]]["departments"] == ["engineering"]
        clocks = {(d["clock"], d["department"]) for d in by_ticket[repair["id"]]["deadlines"]}
        assert {("acknowledge", "engineering"), ("arrival", "engineering"), ("repair_slip_return", "engineering"),
                ("reply", None), ("tracking", None)} == clocks

        judged = await client.post(f"{intake}/requests/{complaint['id']}/validity", headers=cs,
                                   json={"valid": True, "reason": "物业负责协调楼上业主并维修"})
        assert judged.status_code == 200, judged.text
        assert judged.json()["validity"]["valid"] is True

        # Engineering signs for both; customer service does not sign for the complaint.
        for ticket in (complaint, repair):
            r = await client.post(f"{dispatch}/forms/{ticket['id']}/acknowledge", headers=eng,
                                  json={"department": "engineering"})
            assert r.status_code == 200, r.text
        progress = await client.post(f"{intake}/requests/{complaint['id']}/progress", headers=cs,
                                     json={"note": "已联系工程部上门查看", "method": "phone"})
        assert progress.status_code == 201, progress.text

        # --- time passes: the emergency arrival (10 min) and the unacknowledged transfer
        # (30 min) run out; each breaches once and climbs the ladder after 5 minutes. ----
        clock.advance(31 * 60)
        breached = await events_of(stack, estate, "sla_breached", expected=2)
        assert sorted((e["subject"], e["data"]["clock"], e["data"]["department"]) for e in breached) == sorted([
            (repair["id"], "arrival", "engineering"), (complaint["id"], "acknowledge", "customer_service"),
        ])
        escalated = await events_of(stack, estate, "escalated", expected=2)
        assert {(e["subject"], e["data"]["rung"], e["data"]["clock"]) for e in escalated} == {
            (repair["id"], "department_head", "arrival"), (complaint["id"], "department_head", "acknowledge"),
        }
        clock.advance(6 * 60)
        escalated = await events_of(stack, estate, "escalated", expected=4)
        assert {(e["subject"], e["data"]["rung"]) for e in escalated} >= {
            (repair["id"], "estate_director"), (complaint["id"], "estate_director"),
        }
        form = (await client.get(f"{dispatch}/forms/{complaint['id']}", headers=cs)).json()
        assert form["overdue"] is True
        overdue = (await client.get(f"{dispatch}/forms", params={"status": "overdue", "department": "customer_service"},
                                    headers=cs)).json()
        assert [f["ticket_id"] for f in overdue] == [complaint["id"]]

        # --- late but done: acknowledgement, arrival, sign-back, completion ------------------
        early = await client.post(f"{dispatch}/forms/{complaint['id']}/sign-back", headers=cs, json={
            "department": "customer_service", "opinion": "o", "result": "r", "verified_by": f"{estate}-cs-head"})
        assert early.status_code == 409 and "before acknowledgement" in early.json()["error"]
        r = await client.post(f"{dispatch}/forms/{complaint['id']}/acknowledge", headers=cs,
                              json={"department": "customer_service"})
        assert r.status_code == 200, r.text
        r = await client.post(f"{dispatch}/forms/{repair['id']}/arrive", headers=eng, json={"department": "engineering"})
        assert r.status_code == 200, r.text
        r = await client.post(f"{dispatch}/forms/{repair['id']}/sign-back", headers=eng, json={
            "department": "engineering", "opinion": "更换爆裂水管", "result": "已修复，业主确认",
            "verified_by": f"{estate}-eng-head"})
        assert r.status_code == 200 and r.json()["status"] == "in_handling", r.text  # waits for the head
        r = await head_verifies(client, stack.signing_key, r, estate, "engineering")
        assert r.json()["status"] == "completed"
        r = await client.post(f"{dispatch}/forms/{complaint['id']}/sign-back", headers=eng, json={
            "department": "engineering", "opinion": "楼上防水层重做", "result": "已维修", "verified_by": f"{estate}-eng-head"})
        r = await head_verifies(client, stack.signing_key, r, estate, "engineering")
        assert r.json()["status"] == "in_handling", r.text
        r = await client.post(f"{dispatch}/forms/{complaint['id']}/sign-back", headers=cs, json={
            "department": "customer_service", "opinion": "已向业主说明", "result": "业主接受",
            "verified_by": f"{estate}-cs-head"})
        r = await head_verifies(client, stack.signing_key, r, estate, "customer_service")
        assert r.json()["status"] == "completed", r.text
        form = r.json()
        # Both breaches were resolved by the late steps: no escalation still climbing.
        assert all(e["resolved_at"] for e in form["escalations"])

        completed = await events_of(stack, estate, "completed", expected=2)
        done = {e["subject"]: e["data"] for e in completed}
        assert sorted(done[complaint["id"]]["departments"]) == ["customer_service", "engineering"]
        assert done[complaint["id"]]["kind"] == "complaint" and done[repair["id"]]["repair_class"] == "emergency"
        assert done[repair["id"]]["first_contact"] == f"{estate}-duty01"

        async def intake_shows_completed():
            r = await client.get(f"{intake}/requests/{complaint['id']}", headers=duty)
            return r.json()["status"] == "completed" and r.json()

        shown = await eventually(intake_shows_completed)
        assert shown and shown["first_contact"] == f"{estate}-duty01"
        assert [u["note"] for u in shown["progress_updates"]] == ["已联系工程部上门查看"]

    # --- every event on its subject, once, honouring the contract --------------------------
    expected = {"accepted": 2, "validity_judged": 1, "progress_updated": 1, "assigned": 2, "acknowledged": 3,
                "arrived": 1, "sla_breached": 2, "signed_back": 3, "completed": 2}
    for name, count in expected.items():
        events = await events_of(stack, estate, name, expected=count)
        assert len(events) == count, (name, events)
        for envelope in events:
            event = CloudEvent.model_validate(envelope)
            assert event.nats_subject == subject_for(estate, name) and event.estate == estate
            event.payload()
    await asyncio.sleep(2)  # a breach fired twice would show up now
    breached = await events_of(stack, estate, "sla_breached")
    assert len(breached) == 2
    escalated = await events_of(stack, estate, "escalated")
    assert Counter((e["subject"], e["data"]["rung"], e["data"]["clock"]) for e in escalated).most_common(1)[0][1] == 1
    assert await scalar(db, "SELECT count(*) FROM dispatch.deadlines d JOIN dispatch.forms f USING (ticket_id) "
                            "WHERE f.estate = :e AND d.breached_at IS NOT NULL", e=estate) == 2


async def test_restarting_dispatch_loses_no_deadline_and_fires_none_twice(stack, estate, clock_file, db):
    """Deadlines are rows: dispatch is killed while they are pending, time passes while
    it is down, and after the restart each fires exactly once; a second kill and restart
    fires nothing again."""
    total = 6
    clock = FileOffsetClock(clock_file)
    cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate)
    dispatch = stack.service("dispatch")
    async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=30) as client:
        ids = []
        for i in range(total):
            r = await client.post(f"/v1/estates/{estate}/requests", headers=cs, json={
                "kind": "repair", "repair_class": "emergency", "channel": "phone", "category": "plumbing",
                "description": f"burst pipe {i}", "building": "1"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    assigned = await events_of(stack, estate, "assigned", expected=total)
    assert {e["subject"] for e in assigned} == set(ids)

    os.kill(dispatch.process.pid, signal.SIGKILL)
    dispatch.process.wait()
    clock.advance(11 * 60)  # every arrival clock (emergency: 0 + 10 min) runs out while dispatch is down
    stack.supervisor.check_once()
    stack.supervisor.wait_healthy()

    breached = await events_of(stack, estate, "sla_breached", expected=total)
    assert sorted((e["subject"], e["data"]["clock"]) for e in breached) == sorted((i, "arrival") for i in ids)

    # Kill it again at once (it may be mid-scan); time moves on to the acknowledge clocks.
    os.kill(dispatch.process.pid, signal.SIGKILL)
    dispatch.process.wait()
    clock.advance(20 * 60)
    stack.supervisor.check_once()
    stack.supervisor.wait_healthy()
    breached = await events_of(stack, estate, "sla_breached", expected=2 * total)
    await asyncio.sleep(3)  # anything fired twice would show up now
    breached = await events_of(stack, estate, "sla_breached")
    keys = Counter((e["subject"], e["data"]["clock"], e["data"]["department"]) for e in breached)
    assert set(keys) == {(i, c, "engineering") for i in ids for c in ("arrival", "acknowledge")}
    assert set(keys.values()) == {1}
    assert await scalar(db, "SELECT count(*) FROM dispatch.deadlines WHERE estate = :e AND breached_at IS NOT NULL",
                        e=estate) == 2 * total
    escalated = await events_of(stack, estate, "escalated", expected=2 * total)
    assert Counter((e["subject"], e["data"]["clock"], e["data"]["rung"]) for e in escalated).most_common(1)[0][1] == 1
