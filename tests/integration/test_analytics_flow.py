"""Analytics over the real stack: requests registered through intake and later lifecycle
events published onto the ticket stream as their upstream services would, folded by the
analytics consumer into its read model; the reports over HTTP; `rebuild` from the stream
giving the same figures as the incremental model; the live summary stream."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
import uuid
from zoneinfo import ZoneInfo

import httpx
import nats
import openpyxl
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from services.analytics import reports, rules, store
from shared import events as ev
from shared.clock import FileOffsetClock
from shared.policy import DEFAULT_POLICY
from shared.settings import asyncpg_url
from shared.directory import Company, publish_directory
from tests.conftest import auth, demo_estate, eventually, read_stream, token_for, wait_for_directory

pytestmark = pytest.mark.integration

TZ = ZoneInfo(DEFAULT_POLICY.timezone)


# --- helpers -------------------------------------------------------------------------------------


def now_of(clock_file) -> dt.datetime:
    return FileOffsetClock(clock_file).now()


async def publish(nats_url: str, *events: ev.CloudEvent) -> None:
    """Publish as an upstream service's outbox relay would: the event id as Nats-Msg-Id."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for event in events:
            ack = await js.publish(event.nats_subject, event.model_dump_json().encode(),
                                   headers={"Nats-Msg-Id": event.id})
            assert not ack.duplicate
    finally:
        await nc.close()


def upstream(payload: ev.Payload, estate: str, when: dt.datetime, source: str, actor: str = "system") -> ev.CloudEvent:
    return ev.make_event(payload, estate=estate, actor=actor, source=source, time=when)


async def register(client: httpx.AsyncClient, estate: str, token: str, **request) -> dict:
    r = await client.post(f"/v1/estates/{estate}/requests", json=request, headers=auth(token))
    assert r.status_code == 201, r.text
    return r.json()


async def seen_event_ids(db, estate: str) -> set[str]:
    async with db.connect() as conn:
        rows = await conn.execute(sa.text(
            "SELECT jsonb_array_elements_text(facts->'seen_event_ids') FROM analytics.ticket_facts WHERE estate = :e"),
            {"e": estate})
        return {r[0] for r in rows}


async def settle(stack, db, estate: str, timeout: float = 75) -> list[dict]:
    """The estate's stream once nothing new arrives and analytics has folded all of it
    (services react to the published events; wait for them too)."""
    deadline = time.monotonic() + timeout
    previous = None
    while True:
        events = await read_stream(stack.nats_url, f"estatedesk.{estate}.ticket.*")
        ids = [e["id"] for e in events]
        if ids == previous and set(ids) <= await seen_event_ids(db, estate):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"analytics did not settle for {estate}: {len(ids)} events in the stream")
        previous = ids
        await asyncio.sleep(0.8)


def expected_report(events: list[dict], estate: str, month: str) -> dict:
    """The report computed by the pure rules straight from the estate's stream."""
    cloud = [ev.CloudEvent.model_validate(e) for e in events]
    _, deltas = rules.replay(cloud)
    totals = rules.fold(deltas)
    carried = sum(
        (-v if metric == "closed" else v)
        for (e, period, dimension, _, metric), v in totals.items()
        if e == estate and len(period) == 7 and period < month and dimension == "estate"
        and metric in ("opened", "reactivated", "closed")
    )
    suggestions = [ev.CorrectiveActionSuggested.model_validate(e.data) for e in cloud
                   if e.event_name == "corrective_action_suggested"
                   and e.time.astimezone(TZ).strftime("%Y-%m") == month]
    report = rules.monthly_report(estate, month, rules.period_rollups(totals, estate, month), carried, suggestions)
    return json.loads(json.dumps(report.to_dict(), default=str))


def closed_tickets(events: list[dict]) -> set[str]:
    """Tickets whose last open/close event is `closed` (upstream services may close some,
    e.g. an invalid complaint, on their own)."""
    state: dict[str, str] = {}
    for e in events:
        name = e["type"].rsplit(".", 1)[-1]
        if name in ("accepted", "closed", "reopened"):
            state[e["subject"]] = "closed" if name == "closed" else "open"
    return {ticket for ticket, s in state.items() if s == "closed"}


def without_sign_off(report: dict) -> dict:
    """The figures derived from events alone: no signature, no department heads' lines."""
    derived = {k: v for k, v in report.items() if k != "sign_off"}
    derived["corrective_actions"] = [line for line in report["corrective_actions"] if not line["owner"]]
    return derived


# --- the story ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def story_estate(stack) -> str:
    code = f"t{uuid.uuid4().hex[:8]}"
    await publish_directory(stack.nats_url, Company(), [demo_estate(code)])
    await wait_for_directory(stack, code)
    return code


@pytest.fixture(scope="module")
async def story(stack, story_estate, clock_file, servers):
    """Five requests this month through intake (three noise complaints, a repair, an
    inquiry) plus one request registered last month, then their lifecycle events as
    dispatch and callback would publish them; told once for the module's tests, which
    only read it (the last one adds a request)."""
    estate = story_estate
    cs = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=10) as client:
        a = await register(client, estate, cs, kind="complaint", channel="phone", category="noise",
                           building="1", description="楼上夜间噪音")
        b = await register(client, estate, cs, kind="complaint", channel="walk_in", category="noise", owner_signed=True,
                           building="1", description="装修噪音")
        c = await register(client, estate, cs, kind="complaint", channel="online", category="noise",
                           building="2", description="广场舞噪音")
        d = await register(client, estate, cs, kind="repair", channel="phone", category="plumbing",
                           repair_class="general", building="3", description="厨房水管漏水")
        e = await register(client, estate, cs, kind="inquiry", channel="phone", description="物业费标准")
    now = now_of(clock_file)
    month = dt.datetime.fromisoformat(a["received_at"]).astimezone(TZ).strftime("%Y-%m")
    local = now.astimezone(TZ)
    last_month_day = (local.replace(day=1, hour=10, minute=0, second=0, microsecond=0) - dt.timedelta(days=2))
    previous_month = last_month_day.strftime("%Y-%m")
    f_id = str(uuid.uuid4())
    minute = dt.timedelta(minutes=1)
    A, B, E = a["id"], b["id"], e["id"]
    await publish(stack.nats_url, *[
        # last month's request (registered as intake would have then), closed now
        upstream(ev.Accepted(ticket_id=f_id, form_number=f"{estate.upper()}-OLD-1", kind=ev.Kind.suggestion,
                             channel=ev.Channel.letter, category="greening", description="多种树",
                             first_contact=f"{estate}-cs01", received_at=last_month_day),
                 estate, last_month_day, "intake", f"{estate}-cs01"),
        upstream(ev.ValidityJudged(ticket_id=A, valid=True, reason="属实", judged_by="sup"), estate, now, "intake"),
        upstream(ev.ValidityJudged(ticket_id=B, valid=False, reason="正常施工时段", judged_by="sup",
                                   confirmed_by="mgr"), estate, now, "intake"),
        upstream(ev.Escalated(ticket_id=A, rung="department_head", reason="reply late"), estate, now + minute, "dispatch"),
        upstream(ev.Completed(ticket_id=A, round=1, kind=ev.Kind.complaint, category="noise",
                              departments=["security"], completed_at=now + 2 * minute), estate, now + 2 * minute, "dispatch"),
        upstream(ev.CallbackDone(ticket_id=A, callback_id=f"{A}-t1", round=1, method=ev.ReplyMethod.phone,
                                 handled_in_time=True, result_satisfied=False, attitude_satisfied=True,
                                 done_by=f"{estate}-cs01"), estate, now + 3 * minute, "callback"),
        upstream(ev.Reopened(ticket_id=A, round=2, reason="仍有噪音", reopened_by=f"{estate}-cs01",
                             departments=["security"]), estate, now + 4 * minute, "callback"),
        upstream(ev.Completed(ticket_id=A, round=2, kind=ev.Kind.complaint, category="noise",
                              departments=["security"], completed_at=now + 5 * minute), estate, now + 5 * minute, "dispatch"),
        upstream(ev.CallbackDone(ticket_id=A, callback_id=f"{A}-t2", round=2, method=ev.ReplyMethod.phone,
                                 handled_in_time=True, result_satisfied=True, attitude_satisfied=True,
                                 done_by=f"{estate}-cs01"), estate, now + 6 * minute, "callback"),
        upstream(ev.Closed(ticket_id=A, round=2, closed_by=f"{estate}-cs01", reason="满意"), estate, now + 7 * minute, "callback"),
        upstream(ev.Closed(ticket_id=E, round=1, closed_by=f"{estate}-cs01", reason="已答复"), estate, now + 7 * minute, "callback"),
        upstream(ev.Closed(ticket_id=f_id, round=1, closed_by=f"{estate}-cs01", reason="已采纳"), estate, now + 8 * minute, "callback"),
    ])
    engine = create_async_engine(asyncpg_url(servers["database"]))
    try:
        events = await settle(stack, engine, estate)
    finally:
        await engine.dispose()
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f_id, "month": month, "previous_month": previous_month,
            "cs": cs, "estate": estate, "events": events}


async def test_monthly_report_figures_follow_the_events(stack, story):
    estate, events = story["estate"], story["events"]
    month, previous = story["month"], story["previous_month"]
    cs = story["cs"]
    async with httpx.AsyncClient(base_url=stack.service("analytics").url, timeout=10) as client:
        r = await client.get(f"/v1/estates/{estate}/reports/monthly/{month}", headers=auth(cs))
        before = await client.get(f"/v1/estates/{estate}/reports/monthly/{previous}", headers=auth(cs))
    assert r.status_code == 200, r.text
    report = r.json()

    # Exactly what the rules compute from the estate's stream, figure by figure.
    assert without_sign_off(report) == without_sign_off(expected_report(events, estate, month))
    assert without_sign_off(before.json()) == without_sign_off(expected_report(events, estate, previous))

    # And the figures this story fixes by hand.
    t = report["totals"]
    assert t["opened"] == 5
    assert {k: f["opened"] for k, f in report["by_kind"].items() if f["opened"]} == {
        "complaint": 3, "repair": 1, "inquiry": 1}
    assert report["by_kind_channel"] == {
        "complaint": {"phone": 1, "walk_in": 1, "online": 1}, "repair": {"phone": 1}, "inquiry": {"phone": 1}}
    assert (t["valid_complaints"], t["invalid_complaints"], t["valid_complaint_rate"]) == (1, 1, 0.5)
    # (dispatch itself breaches and escalates last month's F, whose clocks ran out long ago)
    assert report["by_category"]["noise"]["escalations"] == 1
    assert report["by_rung"]["department_head"] >= 1
    assert (t["reopened"], t["reopened_tickets"]) == (1, 1)
    assert (t["satisfaction_answers"], t["result_satisfied"], t["attitude_satisfied"]) == (2, 1, 2)
    closed = closed_tickets(events)
    assert {story["a"]["id"], story["e"]["id"], story["f"]} <= closed  # closed by "callback" above
    # every ticket closed once this month, A after re-opening; F carried in from last month
    assert (t["closed"], t["closed_first_round"]) == (len(closed), len(closed) - 1)
    assert (report["open_carried_in"], report["open_carried_out"]) == (1, 1 + 5 - len(closed))
    assert report["by_category"]["noise"]["opened"] == 3
    # the third noise complaint within the window crossed the threshold (estate-wide)
    assert (t["repeat_problems"], t["repeat_problem_tickets"]) == (1, 3)
    [line] = report["corrective_actions"]
    assert line["category"] == "noise"
    assert set(line["tickets"]) == {story["a"]["id"], story["b"]["id"], story["c"]["id"]}
    assert report["by_staff"][f"{estate}-cs01"]["opened"] == 5
    assert before.json()["totals"]["opened"] == 1 and before.json()["open_carried_out"] == 1

    suggested = [e for e in events if e["type"] == "estatedesk.ticket.corrective_action_suggested"]
    assert len(suggested) == 1
    assert suggested[0]["source"] == "estatedesk/analytics"
    assert suggested[0]["subject"] == story["c"]["id"]
    assert suggested[0]["data"]["scope"] == "estate" and suggested[0]["data"]["count"] == 3


async def test_report_exports_and_sign_off(stack, story):
    estate = story["estate"]
    month = story["month"]
    head = token_for(stack, f"{estate}-eng-head", ["department_head"], [estate])
    other_head = token_for(stack, f"{estate}-sec-head", ["department_head"], [estate])
    url = f"/v1/estates/{estate}/reports/monthly"
    sign = {"department": "engineering", "problems": "水管老化,同楼栋重复报修", "corrective_actions": "更换立管",
            "signed_by": f"{estate}-eng-head"}
    async with httpx.AsyncClient(base_url=stack.service("analytics").url, timeout=10) as client:
        refused = {
            "not the caller": await client.post(f"{url}/{month}/sign-off", json={**sign, "signed_by": "someone"}, headers=auth(head)),
            "not the head": await client.post(f"{url}/{month}/sign-off", json={**sign, "signed_by": f"{estate}-sec-head"}, headers=auth(other_head)),
            "unknown department": await client.post(f"{url}/{month}/sign-off", json={**sign, "department": "kitchen"}, headers=auth(head)),
            "not a head": await client.post(f"{url}/{month}/sign-off", json={**sign, "signed_by": f"{estate}-cs01"}, headers=auth(story["cs"])),
            "bad month": await client.post(f"{url}/2026-13/sign-off", json=sign, headers=auth(head)),
            "missing field": await client.post(f"{url}/{month}/sign-off", json={"department": "engineering"}, headers=auth(head)),
        }
        signed = await client.post(f"{url}/{month}/sign-off", json=sign, headers=auth(head))
        report = (await client.get(f"{url}/{month}", headers=auth(head))).json()
        xlsx = await client.get(f"{url}/{month}.xlsx", headers=auth(head))
        page = await client.get(f"{url}/{month}.html?lang=en", headers=auth(head))
        bad = {
            "month": await client.get(f"{url}/2026-1", headers=auth(head)),
            "lang": await client.get(f"{url}/{month}.html?lang=fr", headers=auth(head)),
            "future": await client.get(f"{url}/2999-01", headers=auth(head)),
            "estate": await client.get(f"/v1/estates/elsewhere/reports/monthly/{month}", headers=auth(head)),
            "token": await client.get(f"{url}/{month}"),
        }
    assert {k: r.status_code for k, r in refused.items()} == {
        "not the caller": 403, "not the head": 403, "unknown department": 422, "not a head": 403,
        "bad month": 422, "missing field": 422}
    assert all(r.json().get("error") for r in refused.values())
    assert signed.status_code == 200, signed.text
    assert report["sign_off"]["department_head"] == f"engineering: {estate}-eng-head"
    assert report["sign_off"]["summary"] == "[engineering] 水管老化,同楼栋重复报修"
    assert report["sign_off"]["signed_on"] is not None
    assert report["corrective_actions"][-1]["action"] == "更换立管"

    assert xlsx.status_code == 200 and xlsx.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    cells = [c for row in sheet.iter_rows(values_only=True) for c in row if c is not None]
    assert sheet.title == "月客户意见统计分析表"
    assert "更换立管" in cells and "[engineering] 水管老化,同楼栋重复报修" in cells
    assert page.status_code == 200 and "Monthly customer opinion statistics" in page.text
    assert "@media print" in page.text and "更换立管" in page.text
    assert {k: r.status_code for k, r in bad.items()} == {
        "month": 422, "lang": 422, "future": 422, "estate": 403, "token": 401}


async def test_weekly_review_staff_and_ticket_lists(stack, story):
    estate, events = story["estate"], story["events"]
    cs = story["cs"]
    closed = closed_tickets(events)
    open_ids = {story[k]["id"] for k in "abcde"} - closed
    assert open_ids and story["c"]["id"] in open_ids
    async with httpx.AsyncClient(base_url=stack.service("analytics").url, timeout=10) as client:
        review = (await client.get(f"/v1/estates/{estate}/reports/department-review", headers=auth(cs))).json()
        staff = (await client.get(f"/v1/estates/{estate}/reports/staff-assessment?month={story['month']}",
                                  headers=auth(cs))).json()
        open_list = (await client.get(f"/v1/estates/{estate}/tickets?status=open", headers=auth(cs))).json()
        closed_list = (await client.get(f"/v1/estates/{estate}/tickets?status=closed", headers=auth(cs))).json()
        bad_status = await client.get(f"/v1/estates/{estate}/tickets?status=lost", headers=auth(cs))
    listed = {item["ticket_id"] for d in review["departments"] for item in d["items"]}
    assert listed == open_ids
    for department in review["departments"]:
        assert department["open_count"] == len(department["items"])
        one = await _department_review(stack, cs, estate, department["department"])
        assert [d["department"] for d in one] == [department["department"]]
    assert {t["ticket_id"] for t in open_list["tickets"]} == open_ids
    assert {t["ticket_id"] for t in closed_list["tickets"]} == closed
    assert {t["form_number"] for t in open_list["tickets"]} == {story[k]["form_number"] for k in "abcde"
                                                                 if story[k]["id"] in open_ids}
    assert bad_status.status_code == 422
    [me] = [row for row in staff["staff"] if row["staff"] == f"{estate}-cs01"]
    assert me["forms_accepted"] == 5
    assert (me["satisfaction_answers"], me["result_satisfaction_rate"], me["reopened_tickets"]) == (2, 0.5, 1)


async def _department_review(stack, token, estate, department):
    async with httpx.AsyncClient(base_url=stack.service("analytics").url, timeout=10) as client:
        r = await client.get(f"/v1/estates/{estate}/reports/department-review", params={"department": department},
                             headers=auth(token))
    return r.json()["departments"]


async def test_company_consolidation_and_quarter(stack, story, db):
    estate, events = story["estate"], story["events"]
    month = story["month"]
    qm = token_for(stack, "qm01", ["quality_manager"], ["*"])
    year, number = month.split("-")
    quarter = f"{year}Q{(int(number) - 1) // 3 + 1}"
    async with httpx.AsyncClient(base_url=stack.service("analytics").url, timeout=20) as client:
        company = await client.get(f"/v1/company/reports/monthly/{month}", headers=auth(qm))
        quarterly = await client.get(f"/v1/company/reports/quarterly/{quarter}", headers=auth(qm))
        sheet = await client.get(f"/v1/company/reports/monthly/{month}.xlsx", headers=auth(qm))
        estate_only = await client.get(f"/v1/company/reports/monthly/{month}", headers=auth(story["cs"]))
        bad_quarter = await client.get(f"/v1/company/reports/quarterly/{year}Q5", headers=auth(qm))
    assert company.status_code == 200, company.text
    body = company.json()
    [row] = [r for r in body["estates"] if r["estate"] == estate]
    assert row["totals"]["opened"] == 5 and row["open_carried_out"] == 1 + 5 - len(closed_tickets(events))
    assert [r["rank"] for r in body["estates"]] == list(range(1, len(body["estates"]) + 1))
    assert body["company"]["estate"] == rules.COMPANY_TOTAL
    assert body["company"]["totals"]["opened"] == sum(r["totals"]["opened"] for r in body["estates"])
    assert quarterly.status_code == 200, quarterly.text
    assert estate in {r["estate"] for r in quarterly.json()["estates"]}
    assert month in quarterly.json()["company_by_month"]
    assert sheet.status_code == 200
    assert (estate_only.status_code, bad_quarter.status_code) == (403, 422)

    # The database-summed company figures are those of the pure consolidation of full
    # estate reports (one snapshot for both).
    policy = DEFAULT_POLICY
    async with db.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        fast = await reports.company_monthly(conn, store.LIVE, month, policy, [estate])
        estates = [r.estate for r in fast.rows]
        assert estate in estates
        full = [await reports.estate_monthly(conn, store.LIVE, e, month, policy) for e in sorted(estates)]
        fast_q = await reports.company_quarterly(conn, store.LIVE, quarter, month, policy, [estate])
        months = [m for m in rules.quarter_of(month)[1] if m <= month]
        full_q = [await reports.estate_monthly(conn, store.LIVE, e, m, policy)
                  for e in sorted(fast_q.by_estate) for m in months]
    pure = rules.company_consolidation(full, policy)
    assert reports.company_report_json(fast.company) == reports.company_report_json(pure.company)
    assert [(r.estate, r.rank, r.score) for r in fast.rows] == [(r.estate, r.rank, r.score) for r in pure.rows]
    pure_q = rules.quarterly_summary(full_q, policy)
    assert reports.company_report_json(fast_q.company) == reports.company_report_json(pure_q.company)
    assert {m: reports.company_report_json(r) for m, r in fast_q.company_by_month.items()} == \
        {m: reports.company_report_json(r) for m, r in pure_q.company_by_month.items()}
    assert [(r.estate, r.rank) for r in fast_q.ranking] == [(r.estate, r.rank) for r in pure_q.ranking]


# --- rebuild ----------------------------------------------------------------------------------------


def run_cli(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ESTATEDESK_NATS_URL": stack.nats_url, "ESTATEDESK_DATABASE_URL": stack.database_url}
    return subprocess.run([sys.executable, "-m", "estatedesk.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


async def test_rebuild_from_the_stream_equals_the_incremental_model(stack, story, db):
    estate = story["estate"]
    await settle(stack, db, estate)  # anything the other tests caused, too
    schema = f"rb_{uuid.uuid4().hex[:8]}"
    done = run_cli(stack, "analytics", "rebuild", "--into-schema", schema)
    # Compared at a stream sequence both models reached: events in flight are no difference.
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replayed" in done.stdout and "identical to the live read model at stream sequence" in done.stdout
    scratch = store.read_model(schema)
    try:
        async with db.connect() as conn:
            for month in (story["previous_month"], story["month"]):
                live = await reports.estate_monthly(conn, store.LIVE, estate, month, DEFAULT_POLICY)
                rebuilt = await reports.estate_monthly(conn, scratch, estate, month, DEFAULT_POLICY)
                assert rebuilt.to_dict() == live.to_dict()
                assert rebuilt.totals.opened > 0
            live_facts = await conn.execute(sa.text(
                "SELECT ticket_id, facts FROM analytics.ticket_facts WHERE estate = :e ORDER BY 1"), {"e": estate})
            rebuilt_facts = await conn.execute(sa.text(
                f"SELECT ticket_id, facts FROM {schema}.ticket_facts WHERE estate = :e ORDER BY 1"), {"e": estate})
            assert list(rebuilt_facts) == list(live_facts)
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


async def test_rebuild_on_a_live_system_compares_at_a_common_sequence(stack, estate, db):
    """Requests keep coming while `rebuild` runs: it compares both models at one stream
    sequence, so it finds no difference and exits 0."""
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    stop = asyncio.Event()

    async def feed() -> int:
        sent = 0
        async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=10) as client:
            while not stop.is_set():
                await register(client, estate, token, kind="repair", channel="phone", category="plumbing",
                               repair_class="general", building="1", description=f"漏水 {sent}")
                sent += 1
                await asyncio.sleep(0.05)
        return sent

    feeder = asyncio.create_task(feed())
    await asyncio.sleep(1)
    try:
        done = await asyncio.to_thread(run_cli, stack, "analytics", "rebuild")
    finally:
        stop.set()
        sent = await feeder
    assert sent > 10
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical to the live read model at stream sequence" in done.stdout


async def test_rebuild_swap_keeps_counting_each_event_once(stack, story, db):
    estate = story["estate"]
    await settle(stack, db, estate)
    month = story["month"]
    done = run_cli(stack, "analytics", "rebuild", "--swap")
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: later events of other tests
    assert "swapped into the live read model" in done.stdout
    cs = story["cs"]
    async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=10) as client:
        await register(client, estate, cs, kind="praise", channel="letter", description="保安很负责")
    events = await settle(stack, db, estate)
    async with httpx.AsyncClient(base_url=stack.service("analytics").url, timeout=10) as client:
        report = (await client.get(f"/v1/estates/{estate}/reports/monthly/{month}", headers=auth(cs))).json()
    assert report["totals"]["opened"] == 6
    assert without_sign_off(report) == without_sign_off(expected_report(events, estate, month))


# --- live summary, metrics -----------------------------------------------------------------------------


async def test_summary_stream_pushes_a_change_within_a_second(stack, estate, db):
    token = token_for(stack, "qm02", ["quality_manager"], ["*"])
    cs = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    analytics = stack.service("analytics").url
    async with httpx.AsyncClient(base_url=analytics, timeout=httpx.Timeout(10, read=30)) as client:
        assert (await client.get("/v1/dashboard/stream")).status_code == 401
        assert (await client.get("/v1/dashboard/stream?token=forged")).status_code == 401
        async with client.stream("GET", f"/v1/dashboard/stream?token={token}") as stream:
            summaries = _summaries(stream)
            first = await anext(summaries)
            [mine] = [e for e in first["estates"] if e["code"] == estate]
            assert (mine["open"], mine["today_opened"]) == (0, 0)
            async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=10) as intake:
                ticket = await register(intake, estate, cs, kind="repair", channel="phone", category="electrical",
                                        repair_class="general", building="2", description="楼道灯不亮")
            registered = time.monotonic()
            while True:
                summary = await asyncio.wait_for(anext(summaries), 10)
                [mine] = [e for e in summary["estates"] if e["code"] == estate]
                if mine["open"] == 1:
                    latency = time.monotonic() - registered
                    break
    assert mine["today_opened"] == 1 and mine["month"]["opened"] == 1
    assert sum(d["open"] for d in mine["departments"]) >= 1
    print(f"dashboard saw the new request {latency:.3f} s after intake answered")
    # Intake's outbox relay, the stream, the consumer's commit and the push: one second.
    assert latency < 1.0

    # an estate-scoped token sees its estate only
    async with httpx.AsyncClient(base_url=analytics, timeout=10) as client:
        scoped = (await client.get("/v1/dashboard/summary", headers=auth(cs))).json()
        tickets = (await client.get(f"/v1/estates/{estate}/tickets", headers=auth(cs))).json()
    assert [e["code"] for e in scoped["estates"]] == [estate]
    assert [t["ticket_id"] for t in tickets["tickets"]] == [ticket["id"]]

    async def gauge():
        async with httpx.AsyncClient(base_url=analytics, timeout=10) as client:
            text = (await client.get("/metrics")).text
        return f'estatedesk_open_forms{{estate="{estate}"}} 1.0' in text and text
    text = await eventually(gauge, timeout=20)
    assert text, "open-forms gauge not exported"
    for name in ("estatedesk_sla_breaches_total", "estatedesk_callback_rate", "estatedesk_satisfaction"):
        assert f"# TYPE {name} gauge" in text


async def _summaries(stream):
    event = None
    async for line in stream.aiter_lines():
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:") and event == "summary":
            yield json.loads(line.removeprefix("data:").strip())
