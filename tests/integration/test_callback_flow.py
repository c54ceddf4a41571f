"""The callback service over real NATS JetStream and PostgreSQL, with every service running
as its own process. Requests are registered at intake (real `accepted`), dispatch assigns
them (real `assigned`); where the rebuilt dispatch is not driven, the `completed` events
are published onto the stream exactly as an upstream service would (CloudEvent + the
Nats-Msg-Id header). Time moves for every process at once through the shared file clock,
only forward, and every expectation is relative to it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from zoneinfo import ZoneInfo

import httpx
import nats
import pytest

from shared.auth import issue_token
from shared.bus import ACK_WAIT_SECONDS
from shared.calendar import WorkingCalendar
from shared.clock import FileOffsetClock
from shared.events import Completed, Payload, ProgressUpdated, make_event, subject_for
from tests.conftest import auth, eventually, read_stream, scalar, token_for, head_verifies

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the demo estates' policy timezone (the default)
# Delivery is at-least-once: a message a consumer fetched but did not ack is redelivered
# after shared.bus.ACK_WAIT_SECONDS (it happens: faststream's pull loop can die on a bare
# asyncio.TimeoutError from nats-py with a fetched batch in hand), so every wait allows two
# redeliveries on the way.
WAIT = 2 * ACK_WAIT_SECONDS + 15
COMPLAINT = {"kind": "complaint", "channel": "phone", "description": "楼上装修噪音，物业未及时制止",
             "category": "noise", "reply_method": "phone", "building": "1", "unit": "1-2-301"}
REPAIR = {"kind": "repair", "channel": "phone", "description": "厨房水管漏水", "repair_class": "simple",
          "category": "plumbing", "building": "1", "unit": "1-2-301"}


# --- helpers ----------------------------------------------------------------------------


@pytest.fixture
def clock(clock_file) -> FileOffsetClock:
    return FileOffsetClock(clock_file)


@pytest.fixture
async def callback_estate(stack, estate) -> str:
    """The per-test estate, once the callback service has seen it in the directory too."""
    token = token_for(stack, "probe", ["quality_manager"], ["*"])
    async with httpx.AsyncClient(base_url=stack.service("callback").url) as client:
        async def known():
            r = await client.get(f"/v1/estates/{estate}/callbacks", headers=auth(token))
            return r.status_code == 200
        assert await eventually(known, timeout=10, interval=0.05), "callback never saw the estate"
    return estate


async def publish(nats_url: str, payload: Payload, estate: str, *, time: dt.datetime, event_id: str | None = None,
                  msg_id: str | None = None, source: str = "dispatch") -> dict:
    """Publish an event as an upstream service's outbox relay does; returns the envelope."""
    event = make_event(payload, estate=estate, actor="system", source=source, time=time, event_id=event_id)
    nc = await nats.connect(nats_url)
    try:
        ack = await nc.jetstream().publish(event.nats_subject, event.model_dump_json().encode(),
                                           headers={"Nats-Msg-Id": msg_id or event.id})
        assert not ack.duplicate
    finally:
        await nc.close()
    return json.loads(event.model_dump_json())


async def register(stack, estate: str, token: str, body: dict) -> dict:
    async with httpx.AsyncClient(base_url=stack.service("intake").url) as client:
        r = await client.post(f"/v1/estates/{estate}/requests", json=body, headers=auth(token))
    assert r.status_code == 201, r.text
    return r.json()


async def events_of(stack, estate: str, event: str, ticket_id: str, expected: int, timeout: float = WAIT) -> list[dict]:
    """The ticket's events of one type, waiting until `expected` are there."""
    async def found():
        all_events = await read_stream(stack.nats_url, subject_for(estate, event), timeout=0)
        mine = [e for e in all_events if e["subject"] == ticket_id]
        return mine if len(mine) >= expected else None

    return await eventually(found, timeout=timeout, interval=0.3) or [
        e for e in await read_stream(stack.nats_url, subject_for(estate, event), timeout=0) if e["subject"] == ticket_id
    ]


async def assigned_departments(stack, estate: str, ticket_id: str, round_: int = 1) -> list[str]:
    assigned = await events_of(stack, estate, "assigned", ticket_id, expected=round_)
    found = [e["data"]["departments"] for e in assigned if e["data"].get("round", 1) == round_]
    assert found, f"dispatch never assigned round {round_} of {ticket_id}"
    return found[0]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def completed(ticket: dict, departments: list[str], when: dt.datetime, round_: int = 1, **kw) -> Completed:
    return Completed(
        ticket_id=ticket["id"], round=round_, kind=ticket["kind"], category=ticket["category"],
        departments=departments, reply_method=kw.pop("reply_method", "phone"),
        first_contact=ticket["first_contact"], completed_at=when, **kw,
    )


ANSWERS_UNSATISFIED = {"handled_in_time": True, "result_satisfied": False, "attitude_satisfied": True,
                       "suggestions": "噪音仍未解决", "owner_confirmed": True}
ANSWERS_SATISFIED = {"handled_in_time": True, "result_satisfied": True, "attitude_satisfied": True,
                     "suggestions": "", "owner_confirmed": True}


# --- the acceptance flow ------------------------------------------------------------------


async def test_complaint_called_back_until_the_owner_is_satisfied(stack, callback_estate, clock):
    """complaint completed → callback due in 2 working days → not satisfied → reopened →
    completed again → called back → satisfied → closed; both rounds in the history and a
    100 % callback rate; a double submit and different answers change nothing."""
    estate = callback_estate
    cs = f"{estate}-cs01"
    token = token_for(stack, cs, ["customer_service"], [estate])
    ticket = await register(stack, estate, token, COMPLAINT)
    departments = await assigned_departments(stack, estate, ticket["id"])

    first_done = clock.now()
    await publish(stack.nats_url, completed(ticket, departments, first_done), estate, time=first_done)
    (scheduled,) = await events_of(stack, estate, "callback_scheduled", ticket["id"], expected=1)
    expected_due = WorkingCalendar().add_working_days(first_done.astimezone(SHANGHAI), 2).value
    assert at(scheduled["data"]["due_at"]) == expected_due
    assert scheduled["data"]["rule"] == "complaint" and scheduled["data"]["method"] == "phone"
    assert scheduled["data"]["assigned_to"] == cs and scheduled["data"]["round"] == 1

    base = f"/v1/estates/{estate}"
    async with httpx.AsyncClient(base_url=stack.service("callback").url, timeout=30) as client:
        worklist = (await client.get(f"{base}/callbacks", params={"assigned_to": cs}, headers=auth(token))).json()
        (item,) = worklist["callbacks"]
        assert item["callback_id"] == scheduled["data"]["callback_id"]
        assert (item["method"], item["overdue"], item["status"]) == ("phone", False, "pending")
        assert at(item["due_at"]) == expected_due and item["form_number"] == ticket["form_number"]
        nobody = (await client.get(f"{base}/callbacks", params={"assigned_to": "someone-else"}, headers=auth(token))).json()
        assert nobody["callbacks"] == []

        # Not satisfied, submitted twice at once (a double click): one record, one reopen.
        record_url = f"{base}/callbacks/{item['callback_id']}/record"
        first, second = await asyncio.gather(
            client.post(record_url, json=ANSWERS_UNSATISFIED, headers=auth(token)),
            client.post(record_url, json=ANSWERS_UNSATISFIED, headers=auth(token)),
        )
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        assert sorted([first.json()["duplicate"], second.json()["duplicate"]]) == [False, True]
        assert first.json()["outcome"] == second.json()["outcome"]
        assert first.json()["outcome"]["event"] == "reopened" and first.json()["outcome"]["round"] == 2
        changed = await client.post(record_url, json={**ANSWERS_UNSATISFIED, "result_satisfied": True}, headers=auth(token))
        assert changed.status_code == 409 and "result_satisfied" in changed.json()["error"]

        (reopened,) = await events_of(stack, estate, "reopened", ticket["id"], expected=1)
        assert reopened["data"]["round"] == 2 and reopened["data"]["departments"] == departments
        assert reopened["actor"] == cs

        # Dispatch handles round 2 and completes it again.
        second_done = clock.now()
        await publish(stack.nats_url, completed(ticket, departments, second_done, round_=2), estate, time=second_done)
        scheduled_both = await events_of(stack, estate, "callback_scheduled", ticket["id"], expected=2)
        round_two = next(e for e in scheduled_both if e["data"]["round"] == 2)
        assert round_two["data"]["callback_id"] != item["callback_id"]
        assert at(round_two["data"]["due_at"]) == WorkingCalendar().add_working_days(second_done.astimezone(SHANGHAI), 2).value

        done = await client.post(f"{base}/callbacks/{round_two['data']['callback_id']}/record",
                                 json=ANSWERS_SATISFIED, headers=auth(token))
        assert done.status_code == 200, done.text
        assert done.json()["outcome"]["event"] == "closed" and done.json()["outcome"]["round"] == 2
        (closed,) = await events_of(stack, estate, "closed", ticket["id"], expected=1)
        assert closed["data"]["round"] == 2 and closed["data"]["satisfied"] is True
        done_list = (await client.get(f"{base}/callbacks", params={"status": "done"}, headers=auth(token))).json()
        assert [c["callback_id"] for c in done_list["callbacks"]] == [  # the most recently done first
            round_two["data"]["callback_id"], item["callback_id"]]
        assert done_list["callbacks"][0]["record"]["result_satisfied"] is True and done_list["overdue_count"] == 0

        history = (await client.get(f"{base}/tickets/{ticket['id']}/callbacks", headers=auth(token))).json()
        assert history["status"] == "closed" and history["current_round"] == 2
        assert [(r["round"], r["outcome"]) for r in history["rounds"]] == [(1, "reopened"), (2, "closed")]
        assert [len(r["callbacks"]) for r in history["rounds"]] == [1, 1]
        assert history["rounds"][0]["callbacks"][0]["record"]["result_satisfied"] is False
        assert history["rounds"][0]["callbacks"][0]["record"]["suggestions"] == "噪音仍未解决"
        assert history["rounds"][1]["callbacks"][0]["record"]["result_satisfied"] is True

        metrics = (await client.get(f"{base}/callback-metrics", headers=auth(token))).json()
        assert metrics["overall"]["required"] == 2 and metrics["overall"]["done"] == 2
        assert metrics["overall"]["callback_rate"] == 1.0
        assert metrics["overall"]["satisfaction_rate"] == 0.5
        assert metrics["by_kind"]["complaint"]["callback_rate"] == 1.0
        assert all(metrics["by_department"][d]["callback_rate"] == 1.0 for d in departments)
        month = first_done.astimezone(SHANGHAI).strftime("%Y-%m")
        in_month = (await client.get(f"{base}/callback-metrics", params={"month": month}, headers=auth(token))).json()
        assert in_month["overall"]["required"] >= 1 and in_month["overall"]["callback_rate"] == 1.0

        prometheus = (await client.get("/metrics")).text

    await asyncio.sleep(1.5)  # anything doubled would show up now
    assert len(await events_of(stack, estate, "callback_done", ticket["id"], expected=2)) == 2
    assert len(await events_of(stack, estate, "reopened", ticket["id"], expected=1)) == 1
    assert len(await events_of(stack, estate, "closed", ticket["id"], expected=1)) == 1
    for department in departments:
        labels = f'department="{department}",estate="{estate}",kind="complaint"'
        assert f"estatedesk_callbacks_required_total{{{labels}}} 2.0" in prometheus
        assert f"estatedesk_callbacks_done_total{{{labels}}} 2.0" in prometheus
        assert f"estatedesk_callbacks_satisfied_total{{{labels}}} 1.0" in prometheus


async def test_full_loop_through_dispatch(stack, callback_estate, clock):
    """The same loop with the real dispatch: departments acknowledge and sign back over
    dispatch's API, dispatch emits `completed` and starts round 2 on `reopened`."""
    estate = callback_estate
    cs = f"{estate}-cs01"
    token = token_for(stack, cs, ["customer_service"], [estate])
    handler = issue_token(stack.signing_key, f"{estate}-head", ["department_head", "department_staff", "customer_service"],
                          [estate], departments=["engineering", "security", "cleaning", "customer_service"])
    ticket = await register(stack, estate, token, COMPLAINT)
    # The heads tests/conftest.py's demo estate names in the directory: they verify sign-backs.
    heads = {"engineering": f"{estate}-eng-head", "security": f"{estate}-sec-head",
             "cleaning": f"{estate}-cln-head", "customer_service": f"{estate}-cs-head"}

    async def handle_round(round_: int) -> list[str]:
        departments = await assigned_departments(stack, estate, ticket["id"], round_)
        async with httpx.AsyncClient(base_url=stack.service("dispatch").url) as client:
            for department in departments:
                form = f"/v1/estates/{estate}/forms/{ticket['id']}"
                r = await client.post(f"{form}/acknowledge", json={"department": department}, headers=auth(handler))
                assert r.status_code < 300, r.text
                r = await client.post(f"{form}/sign-back", json={
                    "department": department, "opinion": "已协调装修户", "result": f"第{round_}轮已处理",
                    "verified_by": heads[department]}, headers=auth(handler))
                await head_verifies(client, stack.signing_key, r, estate, department)
        return departments

    departments = await handle_round(1)
    (scheduled,) = await events_of(stack, estate, "callback_scheduled", ticket["id"], expected=1)
    base = f"/v1/estates/{estate}"
    async with httpx.AsyncClient(base_url=stack.service("callback").url, timeout=30) as client:
        r = await client.post(f"{base}/callbacks/{scheduled['data']['callback_id']}/record", json=ANSWERS_UNSATISFIED,
                              headers=auth(token))
        assert r.json()["outcome"]["event"] == "reopened", r.text
        await handle_round(2)
        both = await events_of(stack, estate, "callback_scheduled", ticket["id"], expected=2)
        round_two = next(e for e in both if e["data"]["round"] == 2)
        r = await client.post(f"{base}/callbacks/{round_two['data']['callback_id']}/record", json=ANSWERS_SATISFIED,
                              headers=auth(token))
        assert r.json()["outcome"]["event"] == "closed", r.text
        history = (await client.get(f"{base}/tickets/{ticket['id']}/callbacks", headers=auth(token))).json()
        metrics = (await client.get(f"{base}/callback-metrics", headers=auth(token))).json()
    assert [(r["round"], r["outcome"]) for r in history["rounds"]] == [(1, "reopened"), (2, "closed")]
    assert metrics["overall"]["callback_rate"] == 1.0
    assert departments


# --- invalid complaints -----------------------------------------------------------------------


async def test_invalid_complaints_need_no_callback(stack, callback_estate, clock, db):
    """Judged invalid while in handling: dispatch ends the handling, callback closes it.
    Judged invalid after completion: the scheduled callback is cancelled and it closes."""
    estate = callback_estate
    cs = f"{estate}-cs01"
    token = token_for(stack, cs, ["customer_service"], [estate])
    judgement = {"valid": False, "reason": "噪音来自市政施工，非物业责任", "confirmed_by": f"{estate}-director"}
    early = await register(stack, estate, token, COMPLAINT)
    late = await register(stack, estate, token, {**COMPLAINT, "description": "垃圾清运不及时"})
    late_departments = await assigned_departments(stack, estate, late["id"])
    when = clock.now()
    await publish(stack.nats_url, completed(late, late_departments, when), estate, time=when)
    (scheduled,) = await events_of(stack, estate, "callback_scheduled", late["id"], expected=1)

    director = auth(token_for(stack, f"{estate}-director", ["estate_director"], [estate]))
    async with httpx.AsyncClient(base_url=stack.service("intake").url) as client:
        for ticket in (early, late):
            r = await client.post(f"/v1/estates/{estate}/requests/{ticket['id']}/validity", json=judgement,
                                  headers=auth(token))
            assert r.status_code == 200, r.text
            # Final only when the manager confirms with their own sign-in.
            r = await client.post(f"/v1/estates/{estate}/requests/{ticket['id']}/validity/confirmation",
                                  json={"confirm": True}, headers=director)
            assert r.status_code == 200, r.text

    for ticket in (early, late):
        (closed,) = await events_of(stack, estate, "closed", ticket["id"], expected=1)
        assert closed["data"]["satisfied"] is None and "invalid complaint" in closed["data"]["reason"]
        assert closed["actor"] == f"{estate}-director"
    assert not await read_stream_of(stack, estate, "callback_scheduled", {early["id"]})
    async with httpx.AsyncClient(base_url=stack.service("callback").url) as client:
        cancelled = (await client.get(f"/v1/estates/{estate}/callbacks/{scheduled['data']['callback_id']}",
                                      headers=auth(token))).json()
        refused = await client.post(f"/v1/estates/{estate}/callbacks/{scheduled['data']['callback_id']}/record",
                                    json=ANSWERS_SATISFIED, headers=auth(token))
        metrics = (await client.get(f"/v1/estates/{estate}/callback-metrics", headers=auth(token))).json()
    assert cancelled["status"] == "cancelled" and "judged invalid" in cancelled["cancel_reason"]
    assert refused.status_code == 409 and "cancelled" in refused.json()["error"]
    assert metrics["overall"]["required"] == 0 and metrics["overall"]["callback_rate"] is None


# --- idempotency ----------------------------------------------------------------------------


async def test_redelivered_or_reemitted_completion_schedules_nothing_twice(stack, callback_estate, clock, db):
    estate = callback_estate
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    ticket = await register(stack, estate, token, REPAIR)
    departments = await assigned_departments(stack, estate, ticket["id"])
    when = clock.now()
    payload = completed(ticket, departments, when, repair_class="simple")
    envelope = await publish(stack.nats_url, payload, estate, time=when)
    # The same CloudEvent again under another Nats-Msg-Id (JetStream cannot drop it) ...
    await publish(stack.nats_url, payload, estate, time=when, event_id=envelope["id"], msg_id=envelope["id"] + "-again")
    # ... and the same round re-emitted as a new event (e.g. a replayed upstream outbox).
    await publish(stack.nats_url, payload, estate, time=when)

    scheduled = await events_of(stack, estate, "callback_scheduled", ticket["id"], expected=2)
    await asyncio.sleep(2)
    scheduled = await events_of(stack, estate, "callback_scheduled", ticket["id"], expected=2)
    assert sorted(e["data"]["rule"] for e in scheduled) == ["engineering_supervisor", "small_repair"]
    supervisor = next(e for e in scheduled if e["data"]["rule"] == "engineering_supervisor")
    owner = next(e for e in scheduled if e["data"]["rule"] == "small_repair")
    assert supervisor["data"]["assigned_to"] == f"{estate}-eng-head"
    assert at(supervisor["data"]["due_at"]) == when + dt.timedelta(hours=24)
    assert at(owner["data"]["due_at"]) == when.astimezone(SHANGHAI) + dt.timedelta(days=3)
    assert await scalar(db, "SELECT count(*) FROM callback.callbacks WHERE ticket_id = :t", t=ticket["id"]) == 2
    assert await scalar(db, "SELECT count(*) FROM callback.rounds WHERE ticket_id = :t", t=ticket["id"]) == 1
    assert await scalar(db, "SELECT count(*) FROM callback.processed_events WHERE consumer = 'callback-completed' "
                            "AND event_id = :e", e=envelope["id"]) == 1


# --- overdue ----------------------------------------------------------------------------------


async def test_overdue_callback_is_marked_and_reported_once(stack, callback_estate, clock):
    estate = callback_estate
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    ticket = await register(stack, estate, token, REPAIR)
    departments = await assigned_departments(stack, estate, ticket["id"])
    when = clock.now()
    await publish(stack.nats_url, completed(ticket, departments, when, repair_class="general"), estate, time=when)
    scheduled = await events_of(stack, estate, "callback_scheduled", ticket["id"], expected=2)
    supervisor = next(e for e in scheduled if e["data"]["rule"] == "engineering_supervisor")

    clock.advance(24 * 3600 + 120)  # past the supervisor's 24 h, well inside the owner's 3 days
    (overdue,) = await events_of(stack, estate, "callback_overdue", ticket["id"], expected=1)
    assert overdue["data"]["callback_id"] == supervisor["data"]["callback_id"]
    await asyncio.sleep(3)  # several scans later: still reported once
    assert len(await events_of(stack, estate, "callback_overdue", ticket["id"], expected=1)) == 1

    async with httpx.AsyncClient(base_url=stack.service("callback").url) as client:
        base = f"/v1/estates/{estate}/callbacks"
        overdue_list = (await client.get(base, params={"status": "overdue"}, headers=auth(token))).json()
        pending = (await client.get(base, headers=auth(token))).json()
        # A late callback can still be made; it is recorded as not on time.
        late = await client.post(f"{base}/{supervisor['data']['callback_id']}/record", json=ANSWERS_SATISFIED,
                                 headers=auth(token_for(stack, f"{estate}-eng-head", ["department_head"], [estate])))
    assert [i["callback_id"] for i in overdue_list["callbacks"]] == [supervisor["data"]["callback_id"]]
    assert overdue_list["callbacks"][0]["overdue"] is True and overdue_list["callbacks"][0]["overdue_by_minutes"] >= 1
    assert [(i["rule"], i["overdue"]) for i in pending["callbacks"]] == [("engineering_supervisor", True), ("small_repair", False)]
    assert pending["overdue_count"] == 1
    assert late.status_code == 200, late.text
    assert late.json()["callback"]["record"]["on_time"] is False
    assert late.json()["outcome"] is None  # the supervisor's check does not close the ticket


# --- recurrence rule ----------------------------------------------------------------------------


async def test_pathless_opinions_are_judged_by_recurrence(stack, callback_estate, clock, db):
    estate = callback_estate
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    anonymous = {**COMPLAINT, "channel": "online", "reply_method": "none", "anonymous": True, "category": "lift_noise"}
    first = await register(stack, estate, token, anonymous)
    first_departments = await assigned_departments(stack, estate, first["id"])
    gate = await register(stack, estate, token, {**REPAIR, "reply_method": "none", "category": "gate"})
    gate_departments = await assigned_departments(stack, estate, gate["id"])
    when = clock.now()
    await publish(stack.nats_url, completed(first, first_departments, when, reply_method="none"), estate, time=when)
    await publish(stack.nats_url, completed(gate, gate_departments, when, reply_method="none"), estate, time=when)

    async def status(ticket_id):
        return await scalar(db, "SELECT status FROM callback.tickets WHERE ticket_id = :t", t=ticket_id)

    assert await eventually(lambda: _equals(status, first["id"], "awaiting_verdict"), timeout=WAIT)
    assert await eventually(lambda: _equals(status, gate["id"], "awaiting_verdict"), timeout=WAIT)

    # The same problem, same department, raised again within the month: the first counts
    # as not satisfied at once.
    again = await register(stack, estate, token, {**COMPLAINT, "category": "lift_noise", "description": "电梯还是很吵"})
    (closed,) = await events_of(stack, estate, "closed", first["id"], expected=1)
    assert closed["data"]["satisfied"] is False and again["id"] in closed["data"]["reason"]

    # Nothing came back about the gate: satisfied once the month has elapsed, not before.
    await asyncio.sleep(2.5)
    assert await status(gate["id"]) == "awaiting_verdict"
    clock.advance(31 * 24 * 3600)
    (gate_closed,) = await events_of(stack, estate, "closed", gate["id"], expected=1)
    assert gate_closed["data"]["satisfied"] is True and gate_closed["actor"] == "system"
    assert not await read_stream_of(stack, estate, "callback_scheduled", {first["id"], gate["id"]})

    async with httpx.AsyncClient(base_url=stack.service("callback").url) as client:
        history = (await client.get(f"/v1/estates/{estate}/tickets/{gate['id']}/callbacks", headers=auth(token))).json()
        metrics = (await client.get(f"/v1/estates/{estate}/callback-metrics", headers=auth(token))).json()
    assert history["recurrence"][0]["verdict"] == "satisfied"
    assert history["rounds"][0]["outcome"] == "closed"
    assert metrics["overall"]["judged_by_recurrence"] == 2 and metrics["overall"]["recurrence_satisfied"] == 1


async def _equals(fetch, key, expected):
    return await fetch(key) == expected


async def read_stream_of(stack, estate: str, event: str, tickets: set[str]) -> list[dict]:
    return [e for e in await read_stream(stack.nats_url, subject_for(estate, event), timeout=0) if e["subject"] in tickets]


# --- long-running complaints ---------------------------------------------------------------------


async def test_long_running_complaints_show_their_progress_updates(stack, callback_estate, clock):
    estate = callback_estate
    cs = f"{estate}-cs01"
    token = token_for(stack, cs, ["customer_service"], [estate])
    ticket = await register(stack, estate, token, COMPLAINT)
    update = ProgressUpdated(ticket_id=ticket["id"], note="已联系装修户，正在协调", updated_by=cs)
    await publish(stack.nats_url, update, estate, time=clock.now(), source="intake")

    url = f"/v1/estates/{estate}/callbacks"
    async with httpx.AsyncClient(base_url=stack.service("callback").url) as client:
        fresh = (await client.get(url, params={"assigned_to": cs}, headers=auth(token))).json()
        assert fresh["long_running_complaints"] == []  # the weekly rhythm starts after a week
        clock.advance(8 * 24 * 3600)
        await publish(stack.nats_url, update, estate, time=clock.now(), source="intake")

        async def listed():
            body = (await client.get(url, params={"assigned_to": cs}, headers=auth(token))).json()
            rows = [r for r in body["long_running_complaints"] if r["ticket_id"] == ticket["id"]]
            return rows[0] if rows and rows[0]["updates_total"] == 2 else None

        row = await eventually(listed, timeout=WAIT)
    assert row, "the long-running complaint never showed on the worklist"
    assert row["done_this_week"] == 1 and row["missing_this_week"] == 1  # the first update preceded the rhythm
    assert row["first_contact"] == cs and row["next_update_due_at"]


# --- walk-around visits and bad input ---------------------------------------------------------------


async def test_walk_around_visits_and_their_shortfall(stack, callback_estate, clock):
    estate = callback_estate
    cs = f"{estate}-cs01"
    token = token_for(stack, cs, ["customer_service"], [estate])
    today = clock.now().astimezone(SHANGHAI).date()
    visit = {"visited_on": today.isoformat(), "notes": "走访 1-2-301，业主反映楼道灯坏", "owner_id": "owner-301",
             "unit": "1-2-301", "client_visit_id": "visit-1",
             "raised_request": {"kind": "repair", "description": "楼道灯不亮", "category": "lighting",
                                "repair_class": "simple", "owner_signed": True}}
    base = f"/v1/estates/{estate}"
    async with httpx.AsyncClient(base_url=stack.service("callback").url) as client:
        first = await client.post(f"{base}/visits", json=visit, headers=auth(token))
        repeat = await client.post(f"{base}/visits", json=visit, headers=auth(token))
        month = today.strftime("%Y-%m")
        shortfall = (await client.get(f"{base}/visits/shortfall", params={"month": month}, headers=auth(token))).json()
        future = await client.post(f"{base}/visits", json={**visit, "client_visit_id": "v-2",
                                   "visited_on": (today + dt.timedelta(days=1)).isoformat()}, headers=auth(token))
        bad_month = await client.get(f"{base}/visits/shortfall", params={"month": "2026/11"}, headers=auth(token))
        guard = await client.post(f"{base}/visits", json=visit,
                                  headers=auth(token_for(stack, f"{estate}-duty01", ["duty_staff"], [estate])))
    assert first.status_code == 201, first.text
    assert repeat.status_code == 200 and repeat.json()["visit_id"] == first.json()["visit_id"]
    request = first.json()["intake_request"]
    assert request["channel"] == "walk_around_visit" and request["owner_id"] == "owner-301"
    assert request["owner_signed"] is True and request["client_request_id"] == f"visit-{first.json()['visit_id']}"
    assert shortfall["minimum"] == 2
    (mine,) = [s for s in shortfall["staff"] if s["staff_id"] == cs]
    assert (mine["visits"], mine["missing"]) == (1, 1)
    assert future.status_code == 422 and "future" in future.json()["error"]
    assert bad_month.status_code == 422 and "YYYY-MM" in bad_month.json()["error"]
    assert guard.status_code == 403

    # What the visit raised goes through intake like any other request, once.
    async with httpx.AsyncClient(base_url=stack.service("intake").url) as client:
        registered = await client.post(first.json()["intake_endpoint"], json=request, headers=auth(token))
        again = await client.post(first.json()["intake_endpoint"], json=request, headers=auth(token))
    assert registered.status_code == 201, registered.text
    assert registered.json()["channel"] == "walk_around_visit"
    assert again.json()["id"] == registered.json()["id"]


async def test_bad_callback_requests_get_readable_4xx(stack, callback_estate):
    estate = callback_estate
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    base = f"/v1/estates/{estate}"
    async with httpx.AsyncClient(base_url=stack.service("callback").url) as client:
        missing = await client.post(f"{base}/callbacks/nope/record", json=ANSWERS_SATISFIED, headers=auth(token))
        not_bool = await client.post(f"{base}/callbacks/nope/record", json={**ANSWERS_SATISFIED, "result_satisfied": "perhaps"},
                                     headers=auth(token))
        extra = await client.post(f"{base}/callbacks/nope/record", json={**ANSWERS_SATISFIED, "mood": "ok"}, headers=auth(token))
        wrong_role = await client.post(f"{base}/callbacks/nope/record", json=ANSWERS_SATISFIED,
                                       headers=auth(token_for(stack, f"{estate}-duty01", ["duty_staff"], [estate])))
        bad_status = await client.get(f"{base}/callbacks", params={"status": "lost"}, headers=auth(token))
        other_estate = await client.get("/v1/estates/elsewhere/callbacks", headers=auth(token))
        unknown_estate = await client.get("/v1/estates/nosuch/callbacks",
                                          headers=auth(token_for(stack, "qm", ["quality_manager"], ["*"])))
        no_ticket = await client.get(f"{base}/tickets/nope/callbacks", headers=auth(token))
        bad_month = await client.get(f"{base}/callback-metrics", params={"month": "2026-13"}, headers=auth(token))
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert not_bool.status_code == 422 and "result_satisfied" in " ".join(not_bool.json()["problems"])
    assert extra.status_code == 422 and "mood" in " ".join(extra.json()["problems"])
    assert wrong_role.status_code == 403
    assert bad_status.status_code == 422
    assert other_estate.status_code == 403
    assert unknown_estate.status_code == 404 and "nosuch" in unknown_estate.json()["error"]
    assert no_ticket.status_code == 404
    assert bad_month.status_code == 422 and "1..12" in bad_month.json()["error"]


async def test_an_owner_unhappy_with_staff_attitude_gets_a_new_complaint_registered_by_intake(
        stack, callback_estate, clock):
    """RULES §3 Not satisfied / §1 validity grounds: the result is fine but the owner is not
    satisfied with the staff's attitude. Callback decides (`attitude_complaint_raised`),
    intake registers the new complaint once, with the callback's recorder as first contact."""
    estate = callback_estate
    cs = f"{estate}-cs01"
    token = token_for(stack, cs, ["customer_service"], [estate])
    ticket = await register(stack, estate, token, REPAIR)
    departments = await assigned_departments(stack, estate, ticket["id"])
    done = clock.now()
    await publish(stack.nats_url, completed(ticket, departments, done), estate, time=done)
    # A repair gets the desk's callback (and the engineering supervisor's, 004 篇2 六.3).
    (scheduled,) = [e for e in await events_of(stack, estate, "callback_scheduled", ticket["id"], expected=1)
                    if e["data"]["assigned_to"] == cs]
    base = f"/v1/estates/{estate}"
    answers = {**ANSWERS_SATISFIED, "attitude_satisfied": False, "suggestions": "维修师傅态度生硬"}
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{stack.service('callback').url}{base}/callbacks/{scheduled['data']['callback_id']}/record",
                              json=answers, headers=auth(token))
        assert r.status_code == 200, r.text
        (raised,) = await events_of(stack, estate, "attitude_complaint_raised", ticket["id"], expected=1)

        async def the_complaint():
            r = await client.get(f"{stack.service('intake').url}{base}/requests", params={"kind": "complaint"},
                                 headers=auth(token))
            found = [t for t in r.json() if ticket["form_number"] in t["description"]]
            return found or None

        found = await eventually(the_complaint, timeout=WAIT)
    (complaint,) = found
    assert complaint["category"] == "staff_attitude" and complaint["first_contact"] == cs
    assert "维修师傅态度生硬" in complaint["description"]
    assert raised["data"]["client_request_id"] == f"attitude-{scheduled['data']['callback_id']}"
