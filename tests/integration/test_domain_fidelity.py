"""Issue 10, domain fidelity, on the running stack: the rows of the issue's table with
the issue's values (the pure-rule twins are in tests/unit/test_domain_fidelity.py).

Some rows need a particular moment (30 Dec 2026 10:00 in Shanghai): the test sets the
shared clock file there and puts it back afterwards, so the tests after it see the time
they would have seen. The company calendar is company-wide: a test that changes it
restores the empty one before it ends."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.clock import FileOffsetClock
from tests.conftest import auth, eventually, token_for, head_verifies
from tests.integration.test_lifecycle import define_estate, events_of, staff_token

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _write_offset(clock_file: Path, seconds: float) -> None:
    tmp = clock_file.with_suffix(".tmp")
    tmp.write_text(str(seconds))
    os.replace(tmp, clock_file)


def set_time(clock_file: Path, moment: dt.datetime) -> None:
    """Every service's clock reads `moment` now (offset from real time)."""
    _write_offset(clock_file, (moment - dt.datetime.now(dt.timezone.utc)).total_seconds())


@asynccontextmanager
async def clock_kept(clock_file: Path):
    before = clock_file.read_text()
    try:
        yield
    finally:
        _write_offset(clock_file, float(before.strip() or 0))


@pytest.fixture
async def fidelity_estate(stack, clock_file) -> str:
    code = f"f{uuid.uuid4().hex[:8]}"
    await define_estate(stack, code, clock_file)
    return code


def local(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).astimezone(SHANGHAI)


async def ticket_clocks(client, dispatch: str, ticket_id: str, headers) -> dict[str, dict]:
    async def routed():
        r = await client.get(f"{dispatch}/forms/{ticket_id}", headers=headers)
        return r.json() if r.status_code == 200 else None

    form = await eventually(routed, timeout=45)
    assert form, f"form {ticket_id} never routed"
    return {d["clock"]: d for d in form["deadlines"] if d["department"] is None}


def day_and_flag(deadline: dict) -> tuple[str, str, bool]:
    due = local(deadline["due_at"])
    return due.date().isoformat(), f"{due:%H:%M}", deadline["provisional"]


async def test_calendar_rows_projected_2027_and_every_change_followed(stack, fidelity_estate, clock_file):
    estate = fidelity_estate
    intake = stack.service("intake").url
    dispatch = f"{stack.service('dispatch').url}/v1/estates/{estate}"
    callback = f"{stack.service('callback').url}/v1/estates/{estate}"
    cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate, ["customer_service"])
    sec = staff_token(stack, f"{estate}-sec01", ["department_staff"], estate, ["security"])
    company = auth(token_for(stack, "qm", ["quality_manager"], ["*"]))
    complaint_body = {"kind": "complaint", "channel": "phone", "category": "noise",
                      "description": "楼上深夜噪音，投诉"}
    opinion_body = {"kind": "suggestion", "channel": "letter", "accepted_by": "company",
                    "description": "建议公司统一更换门禁系统"}

    async with httpx.AsyncClient(timeout=30) as client, clock_kept(clock_file):
        try:
            # Row 1: a complaint accepted Wed 30 Dec 2026 10:00 (2 working days to reply, 3 to track).
            set_time(clock_file, dt.datetime(2026, 12, 30, 10, 0, tzinfo=SHANGHAI))
            r = await client.post(f"{intake}/v1/estates/{estate}/requests", json=complaint_body, headers=cs)
            assert r.status_code == 201, r.text
            complaint = r.json()
            due = await ticket_clocks(client, dispatch, complaint["id"], cs)
            assert day_and_flag(due["reply"]) == ("2027-01-04", "10:00", True)
            assert day_and_flag(due["tracking"]) == ("2027-01-05", "10:00", True)

            # Row 2: a company-accepted opinion Thu 31 Dec 2026 10:00 (7 working days).
            set_time(clock_file, dt.datetime(2026, 12, 31, 10, 0, tzinfo=SHANGHAI))
            r = await client.post(f"{intake}/v1/estates/{estate}/requests", json=opinion_body, headers=cs)
            assert r.status_code == 201, r.text
            opinion = r.json()
            assert day_and_flag((await ticket_clocks(client, dispatch, opinion["id"], cs))["tracking"]) == (
                "2027-01-12", "10:00", True)

            # Two more running deadlines owned by other services, counted on the same calendar:
            # a complaint completed now owes a callback within 2 working days (callback) …
            r = await client.post(f"{intake}/v1/estates/{estate}/requests", json={
                **complaint_body, "description": "夜间广场舞噪音"}, headers=cs)
            done = r.json()
            await ticket_clocks(client, dispatch, done["id"], cs)
            form_url = f"{dispatch}/forms/{done['id']}"
            assert (await client.post(f"{form_url}/acknowledge", headers=sec, json={"department": "security"})
                    ).status_code == 200
            r = await client.post(f"{form_url}/sign-back", headers=sec, json={
                "department": "security", "opinion": "已劝导楼上住户", "result": "噪音已停止",
                "verified_by": f"{estate}-sec-head"})
            r = await head_verifies(client, stack.signing_key, r, estate, "security")
            assert r.json()["status"] == "completed", r.text

            async def complaint_callback():
                r = await client.get(f"{callback}/tickets/{done['id']}/callbacks", headers=cs)
                found = [c for round_ in r.json()["rounds"] for c in round_["callbacks"]
                         if c["rule"] == "complaint"] if r.status_code == 200 else []
                return found[0] if found else None

            def callback_day(c: dict) -> tuple[str, bool]:
                return local(c["due_at"]).date().isoformat(), c["provisional"]

            assert callback_day(await eventually(complaint_callback, timeout=30)) == ("2027-01-05", True)
            # … and an invalid judgement owes the owner a notice within 1 working day (intake).
            r = await client.post(f"{intake}/v1/estates/{estate}/requests", json={
                **complaint_body, "description": "市政施工噪音"}, headers=cs)
            invalid = r.json()
            r = await client.post(f"{intake}/v1/estates/{estate}/requests/{invalid['id']}/validity", headers=cs,
                                  json={"valid": False, "reason": "市政施工，非物业责任"})
            assert r.status_code == 200, r.text

            async def notice_day() -> tuple[str, bool]:
                v = (await client.get(f"{intake}/v1/estates/{estate}/requests/{invalid['id']}", headers=cs)
                     ).json()["validity"]
                return local(v["notify_owner_by"]).date().isoformat(), v["notify_provisional"]

            assert await notice_day() == ("2027-01-04", True)

            # Row 3: the company loads 2027 — the same days, no longer provisional …
            r = await client.put(f"{intake}/v1/company/calendar", headers=company, json={"loaded_years": [2027]})
            assert r.status_code == 200, r.text

            async def clocks_are(ticket_id: str, expected: dict[str, tuple]) -> bool:
                due = await ticket_clocks(client, dispatch, ticket_id, cs)
                return all(day_and_flag(due[c]) == v for c, v in expected.items())

            assert await eventually(lambda: clocks_are(complaint["id"], {
                "reply": ("2027-01-04", "10:00", False), "tracking": ("2027-01-05", "10:00", False)}), timeout=30)
            # … then corrects it: 4 Jan off, Sat 9 Jan a workday. Running clocks follow again.
            r = await client.put(f"{intake}/v1/company/calendar", headers=company, json={
                "loaded_years": [2027], "days_off": ["2027-01-04"], "workdays": ["2027-01-09"]})
            assert r.status_code == 200, r.text
            assert await eventually(lambda: clocks_are(complaint["id"], {
                "reply": ("2027-01-05", "10:00", False), "tracking": ("2027-01-06", "10:00", False)}), timeout=30)
            assert await eventually(lambda: clocks_are(opinion["id"], {
                "tracking": ("2027-01-12", "10:00", False)}), timeout=30)

            async def callback_moved():
                return callback_day(await complaint_callback()) == ("2027-01-06", False)

            async def notice_moved():
                return await notice_day() == ("2027-01-05", False)

            assert await eventually(callback_moved, timeout=30)
            assert await eventually(notice_moved, timeout=30)
        finally:
            r = await client.put(f"{intake}/v1/company/calendar", headers=company, json={})
            assert r.status_code == 200, r.text


async def test_emergency_repair_on_a_holiday_night_is_due_at_once_and_the_form_shows_any_grace(
        stack, fidelity_estate, clock_file):
    estate = fidelity_estate
    intake = f"{stack.service('intake').url}/v1/estates/{estate}"
    dispatch = f"{stack.service('dispatch').url}/v1/estates/{estate}"
    duty = staff_token(stack, f"{estate}-duty01", ["duty_staff"], estate, ["security"])
    director = staff_token(stack, f"{estate}-director", ["estate_director"], estate)
    repair = {"kind": "repair", "repair_class": "emergency", "channel": "phone", "category": "water",
              "description": "水管爆裂，急修", "building": "1", "unit": "1-1-101"}

    async def arrival_of(ticket_id: str) -> dict:
        async def routed():
            r = await client.get(f"{dispatch}/forms/{ticket_id}", headers=duty)
            return r.json() if r.status_code == 200 else None

        form = await eventually(routed, timeout=45)
        assert form, f"form {ticket_id} never routed"
        return next(d for d in form["deadlines"] if d["clock"] == "arrival")

    async with httpx.AsyncClient(timeout=30) as client, clock_kept(clock_file):
        # This estate's definition allowed 10 min (test_lifecycle's company); back to the default.
        overrides = (await client.get(f"{intake}/policy", headers=director)).json()["overrides"]
        overrides["clocks"] = {}
        r = await client.put(f"{intake}/policy", json=overrides, headers=director)
        assert r.status_code == 200 and r.json()["effective"]["clocks"]["arrival_grace_minutes_immediate"] == 0
        set_time(clock_file, dt.datetime(2027, 1, 1, 23, 50, tzinfo=SHANGHAI))  # New Year's Day, 23:50
        r = await client.post(f"{intake}/requests", json=repair, headers=duty)
        assert r.status_code == 201, r.text
        ticket = r.json()
        arrival = await arrival_of(ticket["id"])
        assert local(arrival["due_at"]) == local(ticket["received_at"])  # 立即: 0 min
        assert arrival["grace_minutes"] == 0

        # A company that wants travel time sets it as policy, and the form shows it.
        overrides["clocks"] = {"arrival_grace_minutes_immediate": 10}
        r = await client.put(f"{intake}/policy", json=overrides, headers=director)
        assert r.status_code == 200, r.text

        async def graced():
            r = await client.post(f"{intake}/requests", json={**repair, "description": f"急修 {uuid.uuid4().hex[:6]}"},
                                  headers=duty)
            assert r.status_code == 201, r.text
            ticket = r.json()
            arrival = await arrival_of(ticket["id"])
            late = local(arrival["due_at"]) - local(ticket["received_at"])
            return late == dt.timedelta(minutes=10) and arrival["grace_minutes"] == 10

        assert await eventually(graced, timeout=20)


async def test_rescheduled_appointment_ends_the_old_ladder_and_starts_a_fresh_clock(
        stack, fidelity_estate, clock_file):
    estate = fidelity_estate  # minutes_per_rung 5 (test_lifecycle's company)
    intake = f"{stack.service('intake').url}/v1/estates/{estate}"
    dispatch = f"{stack.service('dispatch').url}/v1/estates/{estate}"
    cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate, ["customer_service"])
    eng = staff_token(stack, f"{estate}-eng01", ["department_staff"], estate, ["engineering"])
    clock = FileOffsetClock(clock_file)

    async def arrival_events(name: str, expected: int | None = None) -> list[dict]:
        found = await events_of(stack, estate, name, expected=expected, timeout=20 if expected else 2)
        return [e for e in found if e["data"].get("clock") == "arrival"]

    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{intake}/requests", headers=cs, json={
            "kind": "repair", "repair_class": "general", "channel": "phone", "category": "plumbing",
            "description": "卫生间水龙头漏水", "building": "1", "unit": "1-2-301"})
        assert r.status_code == 201, r.text
        ticket = r.json()
        url = f"{dispatch}/forms/{ticket['id']}"
        assert await eventually(lambda: _ok(client.get(url, headers=cs)), timeout=45)
        r = await client.post(f"{url}/acknowledge", headers=eng, json={"department": "engineering"})
        assert r.status_code == 200, r.text

        clock.advance(61 * 60)  # general repair: 60 min, breached
        assert len(await arrival_events("sla_breached", 1)) == 1
        assert [e["data"]["rung"] for e in await arrival_events("escalated", 1)] == ["department_head"]

        tomorrow_ten = (clock.now().astimezone(SHANGHAI) + dt.timedelta(days=1)).replace(
            hour=10, minute=0, second=0, microsecond=0)
        r = await client.post(f"{url}/reschedule", headers=cs, json={
            "department": "engineering", "appointment_at": tomorrow_ten.isoformat(), "note": "业主不在家，留条改约"})
        assert r.status_code == 200, r.text
        arrivals = [d for d in r.json()["deadlines"] if d["clock"] == "arrival"]
        assert [(d["outcome"], d["met_at"] is not None) for d in arrivals] == [("rescheduled", True), (None, False)]
        assert local(arrivals[1]["due_at"]) == tomorrow_ten
        assert all(e["resolved_at"] for e in r.json()["escalations"] if e["clock"] == "arrival")

        # The old ladder stops: hours later, before the appointment, no further rung.
        clock.advance(7 * 3600)
        await asyncio.sleep(3)
        assert [e["data"]["rung"] for e in await arrival_events("escalated")] == ["department_head"]
        assert len(await arrival_events("sla_breached")) == 1

        # The new appointment is missed: a fresh breach, escalated afresh from the first rung.
        offset = (tomorrow_ten - clock.now()).total_seconds() + 60
        clock.advance(offset)
        assert len(await arrival_events("sla_breached", 2)) == 2
        assert [e["data"]["rung"] for e in await arrival_events("escalated", 2)] == [
            "department_head", "department_head"]
        form = (await client.get(url, headers=cs)).json()
        fresh = [d for d in form["deadlines"] if d["clock"] == "arrival" and d["outcome"] is None]
        assert len(fresh) == 1 and fresh[0]["breached_at"] is not None


async def _ok(response_coro) -> bool:
    return (await response_coro).status_code == 200


async def test_anonymous_online_opinion_owes_no_later_signature(stack, fidelity_estate):
    estate = fidelity_estate
    intake = f"{stack.service('intake').url}/v1/estates/{estate}"
    cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate, ["customer_service"])
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{intake}/requests", headers=cs, json={
            "kind": "complaint", "channel": "online", "reply_method": "none", "anonymous": True,
            "category": "lift_noise", "description": "论坛匿名帖：电梯夜间异响"})
        assert r.status_code == 201, r.text
        signature = r.json()["signature"]
        assert signature["requirement"] == "not_required"
        assert signature["next_reminder_at"] is None and signature["reminders_sent"] == 0
        # A known caller still owes the later signature (补签) and is reminded.
        r = await client.post(f"{intake}/requests", headers=cs, json={
            "kind": "complaint", "channel": "phone", "category": "lift_noise", "description": "电梯夜间异响"})
        assert r.status_code == 201, r.text
        assert r.json()["signature"]["requirement"] == "later" and r.json()["signature"]["next_reminder_at"]


async def test_invalid_complaint_waits_for_the_managers_own_sign_in_and_a_late_notice_stays_late(
        stack, fidelity_estate, clock_file):
    estate = fidelity_estate
    intake = f"{stack.service('intake').url}/v1/estates/{estate}"
    dispatch = f"{stack.service('dispatch').url}/v1/estates/{estate}"
    cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate, ["customer_service"])
    director = staff_token(stack, f"{estate}-director", ["estate_director"], estate)
    clock = FileOffsetClock(clock_file)
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{intake}/requests", headers=cs, json={
            "kind": "complaint", "channel": "phone", "category": "noise", "description": "市政道路夜间施工噪音"})
        assert r.status_code == 201, r.text
        ticket = r.json()
        url = f"{intake}/requests/{ticket['id']}"
        assert await eventually(lambda: _ok(client.get(f"{dispatch}/forms/{ticket['id']}", headers=cs)), timeout=45)

        # The clerk names the director as confirming: nothing is final.
        r = await client.post(f"{url}/validity", headers=cs, json={
            "valid": False, "reason": "市政施工，非物业责任", "confirmed_by": f"{estate}-director"})
        assert r.status_code == 200, r.text
        validity = r.json()["validity"]
        assert validity["state"] == "awaiting_confirmation" and validity["confirmed_by"] is None
        assert r.json()["status"] != "invalid"
        judged_at, notify_by = local(validity["judged_at"]), local(validity["notify_owner_by"])
        # 1 working day from the judgement (the estate's calendar), not from any confirmation.
        from shared.calendar import WorkingCalendar
        assert notify_by == WorkingCalendar().add_working_days(judged_at, 1).value
        await asyncio.sleep(2)
        assert not await events_of(stack, estate, "validity_judged", timeout=1)
        form = (await client.get(f"{dispatch}/forms/{ticket['id']}", headers=cs)).json()
        assert form["status"] == "in_handling"

        # The manager is late to confirm: the notice deadline passes meanwhile.
        clock.advance((notify_by - clock.now()).total_seconds() + 60)
        overdue = (await client.get(f"{intake}/requests", params={"notice": "overdue"}, headers=cs)).json()
        assert [t["id"] for t in overdue] == [ticket["id"]]
        r = await client.post(f"{url}/validity/confirmation", headers=cs, json={"confirm": True})
        assert r.status_code == 403
        r = await client.post(f"{url}/validity/confirmation", headers=director, json={"confirm": True})
        assert r.status_code == 200, r.text
        assert r.json()["validity"]["state"] == "confirmed" and r.json()["status"] == "invalid"
        (judged,) = await events_of(stack, estate, "validity_judged", expected=1)
        assert (judged["data"]["valid"], judged["data"]["judged_by"], judged["data"]["confirmed_by"]) == (
            False, f"{estate}-cs01", f"{estate}-director")

        r = await client.post(f"{url}/progress", headers=cs, json={"note": "已电话告知业主无效原因", "method": "phone"})
        assert r.status_code == 201, r.text
        assert r.json()["validity"]["notice_late"] is True and r.json()["validity"]["notice_overdue"] is False
        shown = (await client.get(url, headers=cs)).json()["validity"]
        assert shown["notice_late"] is True and shown["owner_notified_at"]

        # A manager may also reject a clerk's invalid judgement: the complaint stays valid.
        r = await client.post(f"{intake}/requests", headers=cs, json={
            "kind": "complaint", "channel": "phone", "category": "noise", "description": "保安夜间巡逻噪音"})
        other = r.json()
        r = await client.post(f"{intake}/requests/{other['id']}/validity", headers=cs,
                              json={"valid": False, "reason": "非物业责任"})
        assert r.status_code == 200, r.text
        r = await client.post(f"{intake}/requests/{other['id']}/validity/confirmation", headers=director,
                              json={"confirm": False, "note": "保安巡逻属物业服务，投诉有效"})
        assert r.status_code == 200, r.text
        assert r.json()["validity"]["state"] == "rejected" and r.json()["validity"]["valid"] is True
        assert r.json()["validity"]["notify_owner_by"] is None and r.json()["status"] != "invalid"


async def test_a_ticket_cannot_close_while_its_nonconformity_waits_for_approval(stack, fidelity_estate):
    estate = fidelity_estate  # its routing sends a leak complaint to engineering and customer service
    intake = f"{stack.service('intake').url}/v1/estates/{estate}"
    dispatch = f"{stack.service('dispatch').url}/v1/estates/{estate}"
    callback = f"{stack.service('callback').url}/v1/estates/{estate}"
    cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate, ["customer_service"])
    eng = staff_token(stack, f"{estate}-eng01", ["department_staff"], estate, ["engineering"])
    rep = auth(token_for(stack, "mr01", ["management_representative"], ["*"]))
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{intake}/requests", headers=cs, json={
            "kind": "complaint", "channel": "phone", "category": "water leak", "owner_loss_cny": 800,
            "description": "水管维修不当泡坏地板，损失约800元"})
        assert r.status_code == 201, r.text
        ticket = r.json()
        url = f"{dispatch}/forms/{ticket['id']}"
        assert await eventually(lambda: _ok(client.get(url, headers=cs)), timeout=45)
        form = (await client.get(url, headers=cs)).json()
        assert form["nonconformity"]["state"] == "opened" and sorted(form["departments"]) == [
            "customer_service", "engineering"]
        for department, headers, head in (("engineering", eng, "eng-head"), ("customer_service", cs, "cs-head")):
            r = await client.post(f"{url}/acknowledge", headers=headers, json={"department": department})
            assert r.status_code == 200, r.text
            r = await client.post(f"{url}/sign-back", headers=headers, json={
                "department": department, "opinion": "赔偿业主地板损失", "result": "已处理",
                "verified_by": f"{estate}-{head}"})
            r = await head_verifies(client, stack.signing_key, r, estate, department)
        form = r.json()
        # Signed back, but not completed: no callback is planned, so the ticket cannot close.
        assert form["status"] == "awaiting_nc" and form["completed_at"] is None
        (nc_escalation,) = [e for e in form["escalations"] if e["nonconformity"]]
        assert nc_escalation["rung"] == "management_representative" and nc_escalation["resolved_at"] is None
        await asyncio.sleep(2)
        assert not await events_of(stack, estate, "completed", timeout=1)
        assert not await events_of(stack, estate, "callback_scheduled", timeout=1)

        # The management representative approves: the escalation resolves and the form completes.
        r = await client.post(f"{url}/nonconformity/approve", headers=rep)
        assert r.status_code == 200 and r.json()["state"] == "approved", r.text
        form = (await client.get(url, headers=cs)).json()
        assert form["status"] == "completed" and form["completed_at"]
        assert all(e["resolved_at"] for e in form["escalations"] if e["nonconformity"])
        (scheduled,) = await events_of(stack, estate, "callback_scheduled", expected=1)
        r = await client.post(f"{callback}/callbacks/{scheduled['data']['callback_id']}/record", headers=cs, json={
            "handled_in_time": True, "result_satisfied": True, "attitude_satisfied": True, "suggestions": "",
            "owner_confirmed": True})
        assert r.status_code == 200, r.text
        (closed,) = await events_of(stack, estate, "closed", expected=1)
        assert closed["subject"] == ticket["id"] and closed["data"]["satisfied"] is True


async def test_duty_roster_and_a_holiday_nights_shift_handover(stack, fidelity_estate, clock_file):
    estate = fidelity_estate
    intake = f"{stack.service('intake').url}/v1/estates/{estate}"
    dispatch = f"{stack.service('dispatch').url}/v1/estates/{estate}"
    supervisor = staff_token(stack, f"{estate}-cssup", ["customer_service_supervisor"], estate, ["customer_service"])
    night = staff_token(stack, f"{estate}-duty01", ["duty_staff"], estate, ["security"])
    incoming = staff_token(stack, f"{estate}-duty02", ["duty_staff"], estate, ["security"])
    cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate, ["customer_service"])
    eng = staff_token(stack, f"{estate}-eng01", ["department_staff"], estate, ["engineering"])
    roster = [
        {"day": "2027-01-01", "post": "security_control_centre", "shift": "middle", "staff": [f"{estate}-duty01"]},
        {"day": "2027-01-02", "post": "security_control_centre", "shift": "night", "staff": [f"{estate}-duty02"]},
        {"day": "2027-01-04", "post": "customer_service_desk", "shift": "early", "staff": [f"{estate}-cs01"]},
    ]
    async with httpx.AsyncClient(timeout=30) as client, clock_kept(clock_file):
        assert (await client.put(f"{intake}/roster/2027-01", json=roster, headers=cs)).status_code == 403
        r = await client.put(f"{intake}/roster/2027-01", json=roster, headers=supervisor)
        assert r.status_code == 200, r.text
        (holiday_middle,) = [s for s in r.json() if s["shift"] == "middle"]
        bad = [{**roster[0], "shift": "siesta"}]
        assert (await client.put(f"{intake}/roster/2027-01", json=bad, headers=supervisor)).status_code == 422

        # New Year's Day, 23:00: the security control centre's middle shift registers two requests.
        set_time(clock_file, dt.datetime(2027, 1, 1, 23, 0, tzinfo=SHANGHAI))
        r = await client.post(f"{intake}/requests", headers=night, json={
            "kind": "repair", "repair_class": "emergency", "channel": "phone", "category": "water",
            "description": "水管爆裂，急修", "building": "1", "unit": "1-1-101"})
        assert r.status_code == 201, r.text
        emergency = r.json()
        # Registered off hours on a holiday: handed to the next duty shift at midnight, not
        # to the next working morning (Mon 4 Jan).
        assert local(emergency["handover"]["handover_due"]) == dt.datetime(2027, 1, 2, 0, 0, tzinfo=SHANGHAI)
        r = await client.post(f"{intake}/requests", headers=night, json={
            "kind": "inquiry", "channel": "phone", "description": "明天停水吗？"})
        inquiry = r.json()
        shift_url = f"{intake}/shifts/{holiday_middle['id']}"
        assert (await client.post(f"{shift_url}/log", headers=night, json={"entry": "23:00 1-1-101 水管爆裂，已通知工程部"})
                ).status_code == 201
        assert (await client.post(f"{shift_url}/log", headers=cs, json={"entry": "x"})).status_code == 403

        # The emergency is still open: no handover (001 第1篇 2.4).
        r = await client.post(f"{shift_url}/handover", headers=night, json={"items": [{"note": "对讲机两部已交接"}]})
        assert r.status_code == 409 and emergency["id"] in r.json()["error"]

        # Engineering arrives and signs back; intake sees it completed.
        form_url = f"{dispatch}/forms/{emergency['id']}"
        assert await eventually(lambda: _ok(client.get(form_url, headers=cs)), timeout=45)
        for step, body in (("acknowledge", {"department": "engineering"}), ("arrive", {"department": "engineering"}),
                           ("sign-back", {"department": "engineering", "opinion": "更换水管", "result": "已修复",
                                          "verified_by": f"{estate}-eng-head"})):
            r = await client.post(f"{form_url}/{step}", headers=eng, json=body)
            assert r.status_code == 200, r.text
        await head_verifies(client, stack.signing_key, r, estate, "engineering")

        async def completed():
            r = await client.get(f"{intake}/requests/{emergency['id']}", headers=cs)
            return r.json()["completed_at"]

        assert await eventually(completed, timeout=30)
        r = await client.post(f"{shift_url}/handover", headers=night, json={"items": [{"note": "对讲机两部已交接"}]})
        assert r.status_code == 201, r.text
        items = r.json()
        assert [(i["ticket_id"], i["kind"], i["urgency"]) for i in items] == [
            (inquiry["id"], "inquiry", "not_urgent"), (None, None, None)]
        # Handed to the holiday's next duty shift at midnight, not to Monday's desk.
        assert {local(i["claim_due"]) for i in items} == {dt.datetime(2027, 1, 2, 0, 0, tzinfo=SHANGHAI)}
        assert (await client.post(f"{shift_url}/handover", headers=night, json={})).status_code == 409

        claim = f"{intake}/shift-handover-items/{items[0]['id']}/claim"
        assert (await client.post(claim, headers=cs)).status_code == 403  # not on the incoming shift
        r = await client.post(claim, headers=incoming)
        assert r.status_code == 200 and r.json()["claimed_by"] == f"{estate}-duty02", r.text

        # Past the incoming shift's start the unclaimed item is overdue and escalates.
        set_time(clock_file, dt.datetime(2027, 1, 2, 0, 5, tzinfo=SHANGHAI))

        async def escalated():
            r = await client.get(f"{intake}/shift-handover-items", params={"status": "overdue"}, headers=supervisor)
            return r.json() if r.json() and r.json()[0]["escalated_at"] else None

        overdue = await eventually(escalated, timeout=20)
        assert overdue and [i["id"] for i in overdue] == [items[1]["id"]]
        assert overdue[0]["escalated_to"] == f"{estate}-cssup" and overdue[0]["overdue"] is True
