"""A late event (after its ticket was archived) is appended to the archived record as an
addendum linked in a side chain from the record, never dropped; the frozen form says
what it covers; verify checks the addenda too."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
import sqlalchemy as sa

from services.archive.rules import addendum_hash
from shared.events import ProgressUpdated, make_event
from tests.conftest import auth, eventually, scalar, token_for
from tests.integration.test_archive_flow import archive_estate, archived_events, history, now_of, publish

pytestmark = pytest.mark.integration


async def test_a_late_event_is_appended_to_the_archived_record(stack, db, clock_file):
    estate = await archive_estate(stack)
    closed_at = now_of(clock_file) - dt.timedelta(hours=1)
    events = history(estate, closed_at)
    ticket = events[0].subject
    await publish(stack.nats_url, events)
    (archived,) = await archived_events(stack, estate, 1)
    number, record_hash = archived["data"]["record_number"], archived["data"]["record_hash"]

    late = make_event(ProgressUpdated(ticket_id=ticket, note="业主来电补充：天花板已干", updated_by=f"{estate}-cs01"),
                      estate=estate, actor=f"{estate}-cs01", source="intake", time=closed_at + dt.timedelta(minutes=30))
    await publish(stack.nats_url, [late])

    async def appended():
        return await scalar(db, "SELECT count(*) FROM archive.addenda WHERE event_id = :i", i=late.id)

    assert await eventually(appended, timeout=30)
    async with db.connect() as conn:
        row = (await conn.execute(sa.text("SELECT * FROM archive.addenda WHERE event_id = :i"), {"i": late.id})).one()
        # The services' own reactions to this synthetic history may have come late too.
        before = (await conn.execute(sa.text(
            "SELECT addendum_hash FROM archive.addenda WHERE record_number = :n AND number = :k"),
            {"n": number, "k": row.number - 1})).scalar()
    assert row.record_number == number
    assert row.previous_hash == (record_hash if row.number == 1 else before)
    assert row.addendum_hash == addendum_hash(row.previous_hash, number, row.number, row.content_hash)

    cs = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    base = f"/v1/estates/{estate}/archive"
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        loan = await client.post(f"{base}/loans", headers=auth(cs),
                                 json={"record_number": number, "purpose": "核查", "mode": "consult"})
        assert loan.status_code == 201, loan.text
        body = (await client.get(f"{base}/records/{number}", headers=auth(cs))).json()
        assert body["covers"]["addenda"] == len(body["addenda"]) >= 1 and body["covers"]["events_up_to"]
        (addendum,) = [a for a in body["addenda"] if a["event_id"] == late.id]
        assert addendum["envelope"]["data"]["note"] == "业主来电补充：天花板已干"
        assert late.id not in {s["id"] for s in body["form"]["source_events"]}  # the frozen form is unchanged
        assert (await client.get(f"{base}/records/{number}", headers=auth(cs))).json()["record"]["content_hash"] \
            == archived["data"]["content_hash"]
        verified = (await client.get(f"{base}/verify", headers=auth(cs))).json()
        assert verified["ok"], verified

        async with db.begin() as conn:  # someone edits the addendum behind the archive's back
            await conn.execute(sa.text("UPDATE archive.addenda SET content = :c WHERE event_id = :i"),
                               {"c": b'{"forged":true}', "i": late.id})
        verified = (await client.get(f"{base}/verify", headers=auth(cs))).json()
        assert not verified["ok"] and verified["first_broken"] == number
        assert f"addendum {row.number} of {number}: content altered" in verified["reason"]
