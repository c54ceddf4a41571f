"""The archive over real NATS JetStream and PostgreSQL with the services as processes:
closed tickets become chained, printable records; tampering is found by verify; reading
needs a register entry; destruction needs the retention period and the general manager;
monthly and quarterly archiving run by command and on schedule, and twice is once."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import nats
import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from services.archive.rules import PHONE_REDACTED, months_of_quarter, quarter_of
from shared import limits
from shared.clock import FileOffsetClock
from shared.directory import Company, StaffMember, publish_directory
from shared.events import (
    Accepted, Acknowledged, Arrived, Assigned, CallbackDone, CallbackScheduled, Channel, Closed, CloudEvent,
    Completed, Deadline, Escalated, Kind, ProgressUpdated, Reopened, ReplyMethod, SignedBack, SlaBreached,
    ValidityJudged, make_event, subject_for,
)
from tests.conftest import auth, demo_estate, eventually, read_stream, scalar, token_for

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")
FORM_TITLE = "业主(住户)服务登记会签单"


# --- helpers --------------------------------------------------------------------------------


async def archive_estate(stack, archive_policy: dict | None = None) -> str:
    """A fresh estate with an engineer on its staff and, when given, archive policy overrides."""
    code = f"ar{uuid.uuid4().hex[:7]}"
    estate = demo_estate(code)
    estate.staff.append(StaffMember(id=f"{code}-eng1", name="工程一", roles=["department_staff"], department="engineering"))
    estate.staff.append(StaffMember(id=f"{code}-mgr", name="经理", roles=["estate_director"]))
    if archive_policy:
        estate.policy = {"archive": archive_policy}
    await publish_directory(stack.nats_url, Company(), [estate])
    token = token_for(stack, "probe", ["quality_manager"], ["*"])
    async with httpx.AsyncClient(base_url=stack.service("archive").url) as client:
        for _ in range(200):
            r = await client.get(f"/v1/estates/{code}/archive/records", headers=auth(token))
            if r.status_code == 200:
                return code
            await asyncio.sleep(0.05)
    raise AssertionError(f"archive never saw estate {code}")


def history(estate: str, closed_at: dt.datetime, ticket: str | None = None) -> list[CloudEvent]:
    """A valid complaint's full story as intake, dispatch and callback emit it: two
    departments, a breach and an escalation, an unsatisfied callback, a second round, a
    satisfied callback, closure at `closed_at`."""
    ticket = ticket or str(uuid.uuid4())
    start = closed_at - dt.timedelta(days=8)

    def at(hours: float) -> dt.datetime:
        return start + dt.timedelta(hours=hours)

    def ev(payload, hours: float, source: str, actor: str = f"{estate}-cs01") -> CloudEvent:
        return make_event(payload, estate=estate, actor=actor, source=source, time=at(hours))

    t = ticket
    return [
        ev(Accepted(ticket_id=t, form_number=f"{estate.upper()}-2026-{uuid.uuid4().hex[:6]}", kind=Kind.complaint,
                    channel=Channel.walk_in, category="water_leak", building="3", unit="3-1-1201", location="客厅",
                    description="楼上漏水,浸湿客厅天花板。业主电话13812345678,请尽快处理。",
                    first_contact=f"{estate}-cs01", first_contact_name="客服一", received_at=at(-0.1),
                    reply_method=ReplyMethod.phone, owner_id="owner-7788", owner_loss_cny=800.0), 0, "intake"),
        ev(ValidityJudged(ticket_id=t, valid=True, reason="属物业维修责任", judged_by=f"{estate}-cs-head"), 0.2, "intake"),
        ev(Assigned(ticket_id=t, round=1, departments=["engineering", "cleaning"], assigned_by="system",
                    deadlines=[Deadline(clock="tracking", due_at=at(72))]), 0.3, "dispatch", "system"),
        ev(Acknowledged(ticket_id=t, round=1, department="engineering", acknowledged_by=f"{estate}-eng1"), 0.4,
           "dispatch"),
        ev(Acknowledged(ticket_id=t, round=1, department="cleaning", acknowledged_by=f"{estate}-cln-head"), 0.5,
           "dispatch"),
        ev(Arrived(ticket_id=t, round=1, department="engineering", arrived_by=f"{estate}-eng1", arrived_at=at(0.9)),
           0.9, "dispatch"),
        ev(ProgressUpdated(ticket_id=t, note="已关闭楼上水阀,正在查找漏点", updated_by=f"{estate}-cs01"), 5, "intake"),
        ev(SlaBreached(ticket_id=t, round=1, clock="tracking", due_at=at(72)), 72.01, "dispatch", "system"),
        ev(Escalated(ticket_id=t, round=1, rung="department_head", reason="跟踪时限已过", clock="tracking",
                     nonconformity=True), 72.02, "dispatch", "system"),
        ev(SignedBack(ticket_id=t, round=1, department="engineering", opinion="更换楼上漏水管件", result="已更换,不再渗漏",
                      signed_by=f"{estate}-eng1", verified_by=f"{estate}-eng-head"), 90, "dispatch"),
        ev(SignedBack(ticket_id=t, round=1, department="cleaning", opinion="清理积水", result="已清理",
                      signed_by=f"{estate}-cln-head", verified_by=f"{estate}-cln-head"), 90.1, "dispatch"),
        ev(Completed(ticket_id=t, round=1, kind=Kind.complaint, departments=["engineering", "cleaning"],
                     completed_at=at(90.1)), 90.11, "dispatch"),
        ev(CallbackScheduled(ticket_id=t, callback_id=f"cb1-{t}", round=1, due_at=at(140), method=ReplyMethod.phone,
                             rule="complaint_working_days"), 90.12, "callback", "system"),
        ev(CallbackDone(ticket_id=t, callback_id=f"cb1-{t}", round=1, method=ReplyMethod.phone, handled_in_time=True,
                        result_satisfied=False, attitude_satisfied=True, suggestions="天花板仍有水渍",
                        done_by=f"{estate}-cs01"), 120, "callback"),
        ev(Reopened(ticket_id=t, round=2, reason="业主反映天花板仍有水渍", reopened_by=f"{estate}-cs01",
                    departments=["engineering"]), 120.01, "callback"),
        ev(Assigned(ticket_id=t, round=2, departments=["engineering"], assigned_by="system"), 120.02, "dispatch",
           "system"),
        ev(Acknowledged(ticket_id=t, round=2, department="engineering", acknowledged_by=f"{estate}-eng1"), 121,
           "dispatch"),
        ev(SignedBack(ticket_id=t, round=2, department="engineering", opinion="修补并粉刷天花板", result="已修复",
                      signed_by=f"{estate}-eng1", verified_by=f"{estate}-eng-head"), 150, "dispatch"),
        ev(Completed(ticket_id=t, round=2, kind=Kind.complaint, departments=["engineering"], completed_at=at(150)),
           150.01, "dispatch"),
        ev(CallbackScheduled(ticket_id=t, callback_id=f"cb2-{t}", round=2, due_at=at(190), method=ReplyMethod.phone,
                             rule="complaint_working_days"), 150.02, "callback", "system"),
        ev(CallbackDone(ticket_id=t, callback_id=f"cb2-{t}", round=2, method=ReplyMethod.phone, handled_in_time=True,
                        result_satisfied=True, attitude_satisfied=True, owner_confirmed=True,
                        done_by=f"{estate}-cs01"), 191.99, "callback"),
        make_event(Closed(ticket_id=t, round=2, closed_by=f"{estate}-cs01", reason="业主满意"), estate=estate,
                   actor=f"{estate}-cs01", source="callback", time=closed_at),
    ]


async def publish(nats_url: str, events: list[CloudEvent]) -> None:
    """Onto the ticket stream as the upstream services' outbox relays do."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for event in events:
            await js.publish(event.nats_subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id})
    finally:
        await nc.close()


async def archived_events(stack, estate: str, expected: int) -> list[dict]:
    found = await read_stream(stack.nats_url, subject_for(estate, "archived"), expected=expected, timeout=120)
    assert len(found) >= expected, f"only {len(found)} of {expected} tickets archived"
    return found


def now_of(clock_file: Path) -> dt.datetime:
    return FileOffsetClock(clock_file).now()


def previous_quarter_start(now: dt.datetime) -> tuple[dt.datetime, str]:
    """(first local instant of the current quarter, the previous quarter's name)."""
    local = now.astimezone(SHANGHAI)
    first_month = (local.month - 1) // 3 * 3 + 1
    start = dt.datetime(local.year, first_month, 1, tzinfo=SHANGHAI)
    before = start - dt.timedelta(days=1)
    return start, quarter_of(f"{before.year:04d}-{before.month:02d}")


def cli(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "estatedesk.cli", "--data-dir", str(stack.data_dir), "archive", *args],
        capture_output=True, text=True, timeout=60,
    )


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


# --- a closed ticket becomes a record -------------------------------------------------------


async def test_a_closed_history_is_archived_with_every_round_printed_and_verified(stack, db, clock_file):
    estate = await archive_estate(stack)
    events = history(estate, now_of(clock_file) - dt.timedelta(hours=1))
    ticket = events[0].subject
    await publish(stack.nats_url, events)
    (archived,) = await archived_events(stack, estate, 1)
    assert archived["subject"] == ticket and archived["source"] == "estatedesk/archive"
    number, digest = archived["data"]["record_number"], archived["data"]["content_hash"]
    assert number.startswith(f"{estate.upper()}-DA-") and archived["data"]["sequence"] == 1

    cs = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    base = f"/v1/estates/{estate}/archive"
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        catalogue = (await client.get(f"{base}/records", headers=auth(cs))).json()
        assert [(r["record_number"], r["content_hash"], r["ticket_id"]) for r in catalogue] == [(number, digest, ticket)]
        assert "form" not in catalogue[0] and "content" not in catalogue[0]
        assert catalogue[0]["title"].startswith("投诉") and catalogue[0]["retention_class"] == "ordinary"
        # The catalogue is paged, newest first: `before` walks back (past the first record:
        # nothing); a month narrows it; bad paging is refused with the reason.
        assert (await client.get(f"{base}/records", params={"before": 1}, headers=auth(cs))).json() == []
        of_month = await client.get(f"{base}/records", params={"month": catalogue[0]["closed_month"], "limit": 1},
                                    headers=auth(cs))
        assert [r["record_number"] for r in of_month.json()] == [number]
        for bad in ({"limit": 0}, {"limit": limits.PAGE_MAX + 1}, {"before": 0}, {"before": "x"}):
            refused = await client.get(f"{base}/records", params=bad, headers=auth(cs))
            assert refused.status_code == 422 and next(iter(bad)) in refused.json()["error"], refused.text
        # The ticket detail finds its record by key (no catalogue walk).
        timeline = (await client.get(f"/v1/estates/{estate}/tickets/{ticket}/timeline", headers=auth(cs))).json()
        assert timeline["record_number"] == number and timeline["record"]["record_number"] == number
        assert "content" not in timeline["record"] and not timeline["record"]["destroyed"]

        # Nothing is readable without a register entry; the attempt is logged.
        refused = await client.get(f"{base}/records/{number}", headers=auth(cs))
        assert refused.status_code == 403 and "no register entry" in refused.json()["error"]
        assert await scalar(db, "SELECT count(*) FROM archive.access_log WHERE record_number = :n AND NOT allowed "
                                "AND actor = :a", n=number, a=f"{estate}-cs01") == 1

        loan = await client.post(f"{base}/loans", headers=auth(cs),
                                 json={"record_number": number, "purpose": "核查投诉处理过程", "mode": "consult"})
        assert loan.status_code == 201, loan.text
        assert loan.json()["basis"] == "custodian" and loan.json()["borrower"] == f"{estate}-cs01"
        record = await client.get(f"{base}/records/{number}", headers=auth(cs))
        assert record.status_code == 200, record.text
        form = record.json()["form"]
        assert [r["round"] for r in form["rounds"]] == [1, 2]
        assert form["closure"]["round"] == 2 and form["closure"]["reason"] == "业主满意"
        assert {e.id for e in events} <= {s["id"] for s in form["source_events"]}
        assert len(form["rounds"][0]["sign_backs"]) == 2 and form["rounds"][1]["reopen"]["reason"] == "业主反映天花板仍有水渍"
        assert form["rounds"][0]["escalations"][0]["rung"] == "department_head"
        assert "13812345678" not in json.dumps(form, ensure_ascii=False)
        assert PHONE_REDACTED in form["intake"]["description"]

        pdf = await client.get(f"{base}/records/{number}/form.pdf", headers=auth(cs))
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        text = pdf_text(pdf.content)
        for expected in (FORM_TITLE, number, digest, form["form_number"], "第2轮", "业主满意", "更换楼上漏水管件"):
            assert expected in text, expected
        html = await client.get(f"{base}/records/{number}/form.html", headers=auth(cs))
        assert html.status_code == 200 and FORM_TITLE in html.text and digest in html.text

        verified = (await client.get(f"{base}/verify", headers=auth(cs))).json()
        assert verified["ok"] and verified["records_checked"] == 1 and verified["anchors"] == 1

        # `closed` delivered again under a new id (an upstream replay): nothing happens twice.
        again = make_event(events[-1].payload(), estate=estate, actor=events[-1].actor, source="callback",
                           time=events[-1].time)
        await publish(stack.nats_url, [again])

        async def seen():
            return await scalar(db, "SELECT count(*) FROM archive.processed_events WHERE event_id = :i", i=again.id)

        assert await eventually(seen)
        assert await scalar(db, "SELECT count(*) FROM archive.records WHERE estate = :e", e=estate) == 1
        assert len(await read_stream(stack.nats_url, subject_for(estate, "archived"))) == 1
        lent = await read_stream(stack.nats_url, subject_for(estate, "lent"), expected=1)
        assert [e["data"]["record_number"] for e in lent] == [number]


async def test_a_ticket_closed_by_the_lifecycle_is_archived_and_prints(stack, db):
    """intake → dispatch → callback (not satisfied) → round 2 → callback (satisfied) →
    closed → archive, through the services' own HTTP APIs."""
    estate = await archive_estate(stack)
    cs = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    head = token_for(stack, f"{estate}-eng-head", ["department_head"], [estate])
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{stack.service('intake').url}/v1/estates/{estate}/requests", headers=auth(cs), json={
            "kind": "repair", "channel": "phone", "repair_class": "general", "category": "plumbing",
            "building": "2", "unit": "2-1-501", "description": "卫生间地漏堵塞,积水严重",
        })
        assert r.status_code == 201, r.text
        ticket = r.json()["id"]
        dispatch = f"{stack.service('dispatch').url}/v1/estates/{estate}/forms/{ticket}"
        callbacks_done: set[str] = set()

        async def handle_round(round_: int) -> None:
            async def assigned():
                found = await read_stream(stack.nats_url, subject_for(estate, "assigned"))
                return [e for e in found if e["subject"] == ticket and e["data"]["round"] == round_]

            (assignment, *_) = await eventually(assigned, timeout=90)
            for department in assignment["data"]["departments"]:
                ack = await client.post(f"{dispatch}/acknowledge", headers=auth(head), json={"department": department})
                assert ack.status_code == 200, ack.text
                arrived = await client.post(f"{dispatch}/arrive", headers=auth(head), json={"department": department})
                assert arrived.status_code == 200, arrived.text
                signed = await client.post(f"{dispatch}/sign-back", headers=auth(head), json={
                    "department": department, "opinion": f"第{round_}次疏通地漏", "result": f"第{round_}次处理完毕",
                    "verified_by": f"{estate}-eng-head",
                })
                assert signed.status_code == 200, signed.text

        async def record_callbacks(round_: int, satisfied: bool) -> None:
            async def scheduled():
                found = await read_stream(stack.nats_url, subject_for(estate, "callback_scheduled"))
                return [e for e in found if e["subject"] == ticket and e["data"]["round"] == round_
                        and e["data"]["callback_id"] not in callbacks_done]

            # A repair plans a supervisor's check and the satisfaction callback: answer
            # them until one decides the round.
            for _ in range(4):
                pending = await eventually(scheduled, timeout=90)
                assert pending, f"no callback scheduled for round {round_}"
                callback_id = pending[0]["data"]["callback_id"]
                done = await client.post(
                    f"{stack.service('callback').url}/v1/estates/{estate}/callbacks/{callback_id}/record",
                    headers=auth(cs), json={"handled_in_time": True, "result_satisfied": satisfied,
                                            "attitude_satisfied": True, "suggestions": "" if satisfied else "仍有积水",
                                            "owner_confirmed": satisfied})
                assert done.status_code == 200, done.text
                callbacks_done.add(callback_id)
                if done.json()["outcome"]:
                    assert done.json()["outcome"]["event"] == ("closed" if satisfied else "reopened")
                    return
            raise AssertionError(f"no callback decided round {round_}")

        await handle_round(1)
        await record_callbacks(1, satisfied=False)
        await handle_round(2)
        await record_callbacks(2, satisfied=True)

        async def archived():
            found = await read_stream(stack.nats_url, subject_for(estate, "archived"))
            return [e for e in found if e["subject"] == ticket]

        (event,) = await eventually(archived, timeout=120)
        number, digest = event["data"]["record_number"], event["data"]["content_hash"]
        base = f"{stack.service('archive').url}/v1/estates/{estate}/archive"
        loan = await client.post(f"{base}/loans", headers=auth(cs),
                                 json={"record_number": number, "purpose": "月度检查", "mode": "consult"})
        assert loan.status_code == 201, loan.text
        form = (await client.get(f"{base}/records/{number}", headers=auth(cs))).json()["form"]
        assert [r["round"] for r in form["rounds"]] == [1, 2]
        assert form["rounds"][1]["reopen"] is not None and form["closure"]["round"] == 2
        assert [s["opinion"] for r in form["rounds"] for s in r["sign_backs"]] == ["第1次疏通地漏", "第2次疏通地漏"]
        answers = [a["result_satisfied"] for r in form["rounds"] for c in r["callbacks"] for a in c["answers"]]
        assert answers[:1] == [False] and answers[-1] is True
        text = pdf_text((await client.get(f"{base}/records/{number}/form.pdf", headers=auth(cs))).content)
        for expected in (FORM_TITLE, number, digest, "卫生间地漏堵塞", "第2轮", "第2次疏通地漏"):
            assert expected in text, expected
        assert (await client.get(f"{base}/verify", headers=auth(cs))).json()["ok"]


# --- tampering --------------------------------------------------------------------------------


async def test_altering_any_stored_byte_is_detected_by_verify(stack, db, clock_file):
    estate = await archive_estate(stack)
    closed = now_of(clock_file) - dt.timedelta(hours=2)
    for i in range(3):
        await publish(stack.nats_url, history(estate, closed + dt.timedelta(minutes=i)))
    found = await archived_events(stack, estate, 3)
    numbers = [e["data"]["record_number"] for e in sorted(found, key=lambda e: e["data"]["sequence"])]
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])

    async def verify() -> dict:
        async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
            r = await client.get(f"/v1/estates/{estate}/archive/verify", headers=auth(token))
        assert r.status_code == 200, r.text
        return r.json()

    assert (await verify())["ok"]

    async def execute(sql: str, **params) -> None:
        async with db.begin() as conn:
            await conn.execute(sa.text(sql), params)

    length = await scalar(db, "SELECT length(content) FROM archive.records WHERE record_number = :n", n=numbers[1])
    # The attacker flips single bits anywhere in the stored content.
    for position in (0, 1, length // 3, length // 2, length - 1):
        flip = ("UPDATE archive.records SET content = set_byte(content, :p, get_byte(content, :p) # 1) "
                "WHERE record_number = :n")
        await execute(flip, p=position, n=numbers[1])
        result = await verify()
        assert not result["ok"] and result["first_broken"] == numbers[1], (position, result)
        assert "content altered" in result["reason"]
        await execute(flip, p=position, n=numbers[1])  # flipped back
    assert (await verify())["ok"]

    # Every other stored column of a record is covered too.
    cases = [
        ("content_hash", numbers[1], "repeat('0', 64)"),
        ("record_hash", numbers[1], "repeat('1', 64)"),
        ("previous_hash", numbers[2], "repeat('2', 64)"),
        ("title", numbers[0], "'表扬:一切都好'"),
        ("closed_month", numbers[0], "'2020-01'"),
        ("archived_at", numbers[2], "archived_at - interval '5 years'"),
        ("sequence", numbers[2], "7"),
    ]
    for column, number, value in cases:
        original = await scalar(db, f"SELECT {column}::text FROM archive.records WHERE record_number = :n", n=number)
        await execute(f"UPDATE archive.records SET {column} = {value} WHERE record_number = :n", n=number)
        result = await verify()
        assert not result["ok"] and result["first_broken"] == number, (column, result)
        cast = {"archived_at": "timestamptz", "sequence": "bigint"}.get(column, "text")
        await execute(f"UPDATE archive.records SET {column} = CAST(CAST(:v AS text) AS {cast}) WHERE record_number = :n",
                      v=original, n=number)
    assert (await verify())["ok"]

    # The command says the same, and fails the shell.
    await execute("UPDATE archive.records SET content = set_byte(content, 10, get_byte(content, 10) # 4) "
                  "WHERE record_number = :n", n=numbers[2])
    done = cli(stack, "verify", "--estate", estate)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["first_broken"] == numbers[2] and not report["ok"]

    # Cutting the last record off (head rewound too) is caught by the published anchors.
    await execute("DELETE FROM archive.records WHERE record_number = :n", n=numbers[2])
    await execute("UPDATE archive.chain_heads SET last_sequence = 2, last_hash = "
                  "(SELECT record_hash FROM archive.records WHERE record_number = :n) WHERE estate = :e",
                  n=numbers[1], e=estate)
    result = await verify()
    assert not result["ok"] and result["first_broken"] == numbers[2] and "missing" in result["reason"]


# --- lending ----------------------------------------------------------------------------------


async def test_reading_needs_a_running_register_entry_and_lending_follows_the_approvals(stack, db, clock_file):
    estate = await archive_estate(stack, {"loan_days": 0})  # every loan is due back at once
    await publish(stack.nats_url, history(estate, now_of(clock_file) - dt.timedelta(hours=1)))
    (archived,) = await archived_events(stack, estate, 1)
    number = archived["data"]["record_number"]
    engineer = token_for(stack, f"{estate}-eng1", ["department_staff"], [estate])
    cs = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    director = token_for(stack, f"{estate}-director", ["estate_director"], [estate])
    base = f"/v1/estates/{estate}/archive"
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        async def register(token, **body):
            return await client.post(f"{base}/loans", headers=auth(token),
                                     json={"record_number": number, "purpose": "核查", **body})

        # Staff outside customer service need the estate manager's approval.
        denied = await client.get(f"{base}/records/{number}/form.pdf", headers=auth(engineer))
        assert denied.status_code == 403 and "register" in denied.json()["error"]
        unapproved = await register(engineer)
        assert unapproved.status_code == 403 and "director or manager" in unapproved.json()["error"]
        wrong_approver = await register(engineer, approver=f"{estate}-cs01")
        assert wrong_approver.status_code == 403 and "cannot approve" in wrong_approver.json()["error"]
        approved = await register(engineer, approver=f"{estate}-director")
        assert approved.status_code == 201 and approved.json()["basis"] == "manager_approval"
        assert approved.json()["approved_by"] == f"{estate}-director"
        assert (await client.get(f"{base}/records/{number}", headers=auth(engineer))).status_code == 200
        assert (await register(director, approver=f"{estate}-director")).status_code == 403  # nobody approves themself

        # A copy, and anybody outside the company, need the approval in writing.
        copy = await register(engineer, mode="copy", approver=f"{estate}-mgr")
        assert copy.status_code == 403 and "written approval" in copy.json()["error"]
        lawyer = {"name": "张律师", "organisation": "某律师事务所"}
        unwritten = await register(cs, mode="export", approver=f"{estate}-director", external_borrower=lawyer)
        assert unwritten.status_code == 403 and "outside the company" in unwritten.json()["error"]
        external = await register(cs, mode="export", approver=f"{estate}-director", external_borrower=lawyer,
                                  approval_reference="书面批准 2026-031")
        assert external.status_code == 201, external.text
        assert external.json()["borrower_external"] and external.json()["approval_reference"] == "书面批准 2026-031"
        # The customer-service clerk who registered it hands the export over under that entry.
        export = await client.get(f"{base}/records/{number}/form.pdf", headers=auth(cs))
        assert export.status_code == 200 and number in pdf_text(export.content)

        # A loan is due back at once here: it is flagged overdue and no longer serves.
        lent = await register(engineer, mode="loan", approver=f"{estate}-director", approval_reference="批-7")
        assert lent.status_code == 201 and lent.json()["due_back"]
        await asyncio.sleep(0.05)
        overdue = (await client.get(f"{base}/loans", params={"overdue": "true"}, headers=auth(cs))).json()
        assert [l["loan_id"] for l in overdue] == [lent.json()["loan_id"]] and overdue[0]["overdue"]
        returned = await client.post(f"{base}/loans/{lent.json()['loan_id']}/return", headers=auth(engineer))
        assert returned.status_code == 200 and returned.json()["returned_at"] and not returned.json()["overdue"]
        again = await client.post(f"{base}/loans/{lent.json()['loan_id']}/return", headers=auth(engineer))
        assert again.status_code == 409
        assert (await client.get(f"{base}/loans", params={"overdue": "true"}, headers=auth(cs))).json() == []

        log = (await client.get(f"{base}/access-log", params={"refused": "true"}, headers=auth(director))).json()
        assert {(e["actor"], e["what"]) for e in log} >= {(f"{estate}-eng1", "form.pdf")}
        assert (await client.get(f"{base}/access-log", headers=auth(engineer))).status_code == 403

    lent_events = await read_stream(stack.nats_url, subject_for(estate, "lent"), expected=3)
    assert {e["data"]["mode"] for e in lent_events} == {"consult", "export", "loan"}
    returned_events = await read_stream(stack.nats_url, subject_for(estate, "returned"), expected=1)
    assert [e["data"]["loan_id"] for e in returned_events] == [lent.json()["loan_id"]]


# --- important events and destruction -------------------------------------------------------


async def test_destruction_only_after_retention_with_the_general_managers_approval(stack, db, clock_file):
    estate = await archive_estate(stack, {"retention_years_ordinary": 0})  # ordinary records expire at once
    closed = now_of(clock_file) - dt.timedelta(hours=3)
    for i in range(2):
        await publish(stack.nats_url, history(estate, closed + dt.timedelta(minutes=i)))
    found = await archived_events(stack, estate, 2)
    first, second = [e["data"]["record_number"] for e in sorted(found, key=lambda e: e["data"]["sequence"])]
    gm = token_for(stack, "gm01", ["general_manager"], ["*"])
    qm = token_for(stack, "qm01", ["quality_manager"], ["*"])
    director = token_for(stack, f"{estate}-director", ["estate_director"], [estate])
    cs = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    base = f"/v1/estates/{estate}/archive"
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        # The important-events file: marked beside the record, longer retention.
        assert (await client.post(f"{base}/records/{second}/important", headers=auth(cs),
                                  json={"reason": "业主起诉"})).status_code == 403
        marked = await client.post(f"{base}/records/{second}/important", headers=auth(director),
                                   json={"reason": "业主起诉,涉及法律事务"})
        assert marked.status_code == 201, marked.text
        assert marked.json()["record"]["retention_class"] == "important_event"
        assert (await client.post(f"{base}/records/{second}/important", headers=auth(director),
                                  json={"reason": "again"})).status_code == 409
        important = (await client.get(f"{base}/important", headers=auth(cs))).json()
        assert [(m["record"]["record_number"], m["reason"]) for m in important] == [(second, "业主起诉,涉及法律事务")]

        # Destruction is two steps (RULES §5): a keeper asks, the general manager decides.
        async def ask(token, *numbers, reason="保管期满,申请销毁"):
            return await client.post(f"{base}/destruction-requests", headers=auth(token),
                                     json={"reason": reason, "record_numbers": list(numbers)})

        async def decide(token, request_id, verdict="approve", **body):
            return await client.post(f"{base}/destruction-requests/{request_id}/{verdict}", headers=auth(token),
                                     json=body or None)

        too_early = await ask(director, second)
        assert too_early.status_code == 409 and "kept until" in too_early.json()["error"], too_early.text
        assert "期满前不得销毁" in too_early.json()["error_zh"]
        assert (await ask(director, first, reason=" ")).status_code == 422
        turned_down = (await ask(director, first)).json()["request_id"]
        refusal = await decide(gm, turned_down, "refuse", reason="涉诉未结,继续保管")
        assert refusal.status_code == 200, refusal.text
        assert (refusal.json()["status"], refusal.json()["refusal_reason"]) == ("refused", "涉诉未结,继续保管")
        requested = await ask(director, first)
        assert requested.status_code == 201, requested.text
        request_id = requested.json()["request_id"]
        assert requested.json()["status"] == "requested" and requested.json()["record_numbers"] == [first]
        assert "already in a destruction request" in (await ask(cs, first)).json()["error"]
        not_gm = await decide(qm, request_id)
        assert not_gm.status_code == 403 and "general manager" in not_gm.json()["error"]
        loan = await client.post(f"{base}/loans", headers=auth(cs), json={
            "record_number": first, "purpose": "复核", "mode": "loan", "approver": f"{estate}-director",
            "approval_reference": "批-1"})
        assert loan.status_code == 201, loan.text
        on_loan = await decide(gm, request_id)
        assert on_loan.status_code == 409 and "on loan" in on_loan.json()["error"]
        assert (await client.post(f"{base}/loans/{loan.json()['loan_id']}/return", headers=auth(cs))).status_code == 200

        destroyed = await decide(gm, request_id)
        assert destroyed.status_code == 200, destroyed.text
        assert destroyed.json()["request"]["status"] == "approved" and destroyed.json()["request"]["decided_by"] == "gm01"
        [entry] = destroyed.json()["destroyed"]
        assert (entry["record_number"], entry["approved_by"], entry["approval_reference"]) == (first, "gm01", request_id)
        assert (await decide(gm, request_id)).status_code == 409
        assert "已经销毁" in (await ask(director, first)).json()["error_zh"]
        listed = (await client.get(f"{base}/destruction-requests", headers=auth(cs))).json()
        assert [(r["request_id"], r["status"]) for r in listed] == [(request_id, "approved"), (turned_down, "refused")]
        assert await scalar(db, "SELECT content IS NULL FROM archive.records WHERE record_number = :n", n=first)
        line = next(r for r in (await client.get(f"{base}/records", headers=auth(cs))).json()
                    if r["record_number"] == first)
        assert line["destroyed"] and line["content_hash"]
        gone = await client.get(f"{base}/records/{first}", headers=auth(cs))
        assert gone.status_code == 410 and "destruction log" in gone.json()["error"]
        log = (await client.get(f"{base}/destructions", headers=auth(cs))).json()
        assert [(e["record_number"], e["approved_by"]) for e in log] == [(first, "gm01")]
        verified = (await client.get(f"{base}/verify", headers=auth(cs))).json()
        assert verified["ok"] and verified["records_checked"] == 2, verified

    # The log entry is what makes the tombstone legitimate.
    async with db.begin() as conn:
        await conn.execute(sa.text("DELETE FROM archive.destruction_log WHERE record_number = :n"),
                           {"n": first})
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        verified = (await client.get(f"{base}/verify", headers=auth(cs))).json()
    assert not verified["ok"] and verified["first_broken"] == first
    events = await read_stream(stack.nats_url, subject_for(estate, "destroyed"), expected=1)
    assert [(e["data"]["record_number"], e["data"]["approved_by"], e["data"]["approval_reference"])
            for e in events] == [(first, "gm01", request_id)]


# --- monthly organisation and quarterly archiving -------------------------------------------


async def test_monthly_and_quarterly_archiving_by_command_change_nothing_the_second_time(stack, clock_file):
    # The schedule would wait for ever here: only the commands organise this estate.
    estate = await archive_estate(stack, {"organise_grace_hours": 100_000})
    quarter_start, quarter = previous_quarter_start(now_of(clock_file))
    early, late = quarter_start - dt.timedelta(days=70), quarter_start - dt.timedelta(days=3)
    await publish(stack.nats_url, history(estate, early) + history(estate, late))
    found = await archived_events(stack, estate, 2)
    digests = {e["data"]["record_number"]: e["data"]["content_hash"] for e in found}
    early_month = f"{early.astimezone(SHANGHAI):%Y-%m}"

    first = cli(stack, "monthly", "--estate", estate, "--month", early_month)
    assert first.returncode == 0, first.stderr
    organised = json.loads(first.stdout)
    assert organised["changed"] and len(organised["sets"]) == 1
    (month_set,) = organised["sets"]
    assert month_set["organised_by"] == "command" and month_set["record_count"] == 1
    (line,) = month_set["records"]
    assert digests[line["record_number"]] == line["content_hash"]
    backup = json.loads(Path(month_set["export_path"]).read_text())
    content = backup["contents"][line["record_number"]].encode()
    assert hashlib.sha256(content).hexdigest() == line["content_hash"] and backup["manifest_hash"] == month_set["manifest_hash"]

    second = cli(stack, "monthly", "--estate", estate, "--month", early_month)
    assert second.returncode == 0, second.stderr
    assert not json.loads(second.stdout)["changed"] and json.loads(second.stdout)["sets"] == organised["sets"]

    archived = cli(stack, "quarterly", "--estate", estate, "--quarter", quarter)
    assert archived.returncode == 0, archived.stderr
    volumes = json.loads(archived.stdout)
    assert volumes["changed"] and [v["volume_number"] for v in volumes["volumes"]] == [f"{estate.upper()}-{quarter}-V01"]
    (volume,) = volumes["volumes"]
    assert volume["retention_class"] == "ordinary" and volume["retention_years"] == 3 and volume["item_count"] == 2
    assert {i["record_number"] for i in volume["items"]} == set(digests)
    assert [g["retention_class"] for g in volumes["runs"][0]["general_catalogue"]] == ["ordinary"]
    again = cli(stack, "quarterly", "--estate", estate, "--quarter", quarter)
    assert again.returncode == 0 and {**json.loads(again.stdout), "changed": True} == volumes
    assert not json.loads(again.stdout)["changed"]

    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        listed = (await client.get(f"/v1/estates/{estate}/archive/volumes", params={"quarter": quarter},
                                   headers=auth(token))).json()
        assert listed["volumes"] == volumes["volumes"]
        months = (await client.get(f"/v1/estates/{estate}/archive/months", headers=auth(token))).json()
        assert sorted(m["month"] for m in months) == sorted(months_of_quarter(quarter))  # every month, even empty ones
        records = (await client.get(f"/v1/estates/{estate}/archive/records", headers=auth(token))).json()
        assert all(r["volume_number"] == volume["volume_number"] and r["month_part"] == 1 for r in records)
        # The same runs over HTTP (for the dashboard): done already, nothing changes.
        by_http = await client.post(f"/v1/estates/{estate}/archive/quarters/{quarter}/archive", headers=auth(token))
        assert by_http.status_code == 200 and not by_http.json()["changed"]
        assert by_http.json()["volumes"] == volumes["volumes"]
        bad = await client.post(f"/v1/estates/{estate}/archive/months/2026-13/organise", headers=auth(token))
        assert bad.status_code == 422
        current_month = f"{now_of(clock_file).astimezone(SHANGHAI):%Y-%m}"
        early_days = await client.post(f"/v1/estates/{estate}/archive/months/{current_month}/organise",
                                       headers=auth(token))
        assert early_days.status_code == 409 and "not over" in early_days.json()["error"]
        engineer = token_for(stack, f"{estate}-eng1", ["department_staff"], [estate])
        assert (await client.post(f"/v1/estates/{estate}/archive/months/{early_month}/organise",
                                  headers=auth(engineer))).status_code == 403

    # A form of that quarter archived late goes into a supplementary volume; nothing renumbered.
    await publish(stack.nats_url, history(estate, late + dt.timedelta(hours=1)))
    await archived_events(stack, estate, 3)
    supplement = json.loads(cli(stack, "quarterly", "--estate", estate, "--quarter", quarter).stdout)
    assert supplement["changed"]
    assert [v["volume_number"] for v in supplement["volumes"]] == [f"{estate.upper()}-{quarter}-V01",
                                                                   f"{estate.upper()}-{quarter}-V02"]
    assert supplement["volumes"][0] == volume and "补充归档第2批" in supplement["volumes"][1]["title"]
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        again = await client.post(f"/v1/estates/{estate}/archive/quarters/{quarter}/archive", headers=auth(token))
    assert again.status_code == 200 and not again.json()["changed"] and again.json()["volumes"] == supplement["volumes"]


async def test_the_schedule_organises_and_archives_finished_periods_by_itself(stack, clock_file):
    estate = await archive_estate(stack, {"organise_grace_hours": 0})
    quarter_start, quarter = previous_quarter_start(now_of(clock_file))
    await publish(stack.nats_url, history(estate, quarter_start - dt.timedelta(days=20)))
    (archived,) = await archived_events(stack, estate, 1)
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        async def bound():
            records = (await client.get(f"/v1/estates/{estate}/archive/records", headers=auth(token))).json()
            return records if records and records[0]["volume_number"] else None

        (record,) = await eventually(bound, timeout=45)
        assert record["record_number"] == archived["data"]["record_number"] and record["month_part"] == 1
        assert record["volume_number"] == f"{estate.upper()}-{quarter}-V01"
        months = (await client.get(f"/v1/estates/{estate}/archive/months", params={"month": record["closed_month"]},
                                   headers=auth(token))).json()
        assert [(m["organised_by"], m["record_count"]) for m in months] == [("schedule", 1)]
        volumes = (await client.get(f"/v1/estates/{estate}/archive/volumes", params={"quarter": quarter},
                                    headers=auth(token))).json()
        assert [r["archived_by"] for r in volumes["runs"]] == ["schedule"]


# --- a form is never frozen with a hole in it ------------------------------------------------


async def test_a_ticket_with_a_lost_event_waits_until_the_event_is_back(stack, db, clock_file):
    estate = await archive_estate(stack)
    events = history(estate, now_of(clock_file) - dt.timedelta(hours=1))
    ticket, lost = events[0].subject, events[9]  # the engineering sign-back
    assert lost.event_name == "signed_back"
    # The archive gave up on that event (as after five failed attempts): a dead letter.
    async with db.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO archive.dead_letters (consumer, subject, event_id, estate, attempts, reason, body, recorded_at) "
            "VALUES ('archive-all', :s, :i, :e, 5, 'handler failed 5 times: OperationalError()', :b, now())"),
            {"s": lost.nats_subject, "i": lost.id, "e": estate, "b": lost.model_dump_json().encode()})
    await publish(stack.nats_url, events[:9] + events[10:])
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    base = f"/v1/estates/{estate}/archive"
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        async def waiting():
            rows = (await client.get(f"{base}/pending", headers=auth(token))).json()
            return rows if rows and rows[0]["last_error"] else None

        (pending,) = await eventually(waiting, timeout=90)
        assert pending["ticket_id"] == ticket and "dead letter" in pending["last_error"] and lost.id in pending["last_error"]
        assert (await client.get(f"{base}/records", headers=auth(token))).json() == []

        # The event is replayed (the dead letter resolved): the next attempt seals the whole form.
        async with db.begin() as conn:
            await conn.execute(sa.text("DELETE FROM archive.dead_letters WHERE event_id = :i"), {"i": lost.id})
        await publish(stack.nats_url, [lost])
        FileOffsetClock(clock_file).advance(31)  # past the retry delay
        (archived,) = await archived_events(stack, estate, 1)
        number = archived["data"]["record_number"]
        assert (await client.post(f"{base}/loans", headers=auth(token), json={
            "record_number": number, "purpose": "核查", "mode": "consult"})).status_code == 201
        form = (await client.get(f"{base}/records/{number}", headers=auth(token))).json()["form"]
        assert lost.id in {s["id"] for s in form["source_events"]}
        assert [s["department"] for s in form["rounds"][0]["sign_backs"]] == ["engineering", "cleaning"]
        assert (await client.get(f"{base}/pending", headers=auth(token))).json() == []
