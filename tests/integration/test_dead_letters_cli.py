"""`estatedesk dead-letters list|show|replay` on the running stack: an event dispatch gave
up on is listed, inspected, replayed once the cause is gone, processed, and the replay
is recorded."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from shared.events import Accepted, make_event, subject_for
from tests.conftest import read_stream, scalar

pytestmark = pytest.mark.integration


def cli(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "estatedesk.cli", "dead-letters", *args,
         "--database-url", stack.database_url, "--nats-url", stack.nats_url],
        capture_output=True, text=True, timeout=60,
    )


async def dead_accepted(db, estate: str, form_number: str) -> tuple[Accepted, object, int]:
    """An `accepted` event as dispatch leaves it after the last failed attempt (the cause
    since fixed): (payload, event, dead letter id)."""
    payload = Accepted(ticket_id=str(uuid.uuid4()), form_number=form_number, kind="repair", channel="phone",
                       description="厨房水管漏水", first_contact=f"{estate}-cs01", repair_class="general",
                       category="plumbing", received_at=dt.datetime.now(dt.timezone.utc))
    event = make_event(payload, estate=estate, actor=f"{estate}-cs01", source="intake",
                       time=dt.datetime.now(dt.timezone.utc))
    async with db.begin() as conn:
        dead_letter_id = (await conn.execute(sa.text(
            "INSERT INTO dispatch.dead_letters (consumer, subject, event_id, estate, attempts, reason, body, recorded_at) "
            "VALUES ('dispatch-accepted', :s, :i, :e, 5, 'handler failed 5 times: OperationalError()', :b, now()) "
            "RETURNING id"), {"s": event.nats_subject, "i": event.id, "e": estate,
                               "b": event.model_dump_json().encode()})).scalar()
    return payload, event, dead_letter_id


async def test_list_show_replay_and_the_record_of_it(stack, estate, db):
    payload, event, dead_letter_id = await dead_accepted(db, estate, "DL-1")

    listed = cli(stack, "list", "--estate", estate, "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["service"], row["id"], row["event_id"]) == ("dispatch", dead_letter_id, event.id)
    assert "OperationalError" in row["reason"]

    shown = cli(stack, "show", str(dead_letter_id), "--service", "dispatch")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["body"]["id"] == event.id

    replayed = cli(stack, "replay", str(dead_letter_id), "--service", "dispatch", "--by", "ops-lee")
    assert replayed.returncode == 0, replayed.stderr
    assert "1 replayed" in replayed.stdout
    assigned = await read_stream(stack.nats_url, subject_for(estate, "assigned"), expected=1)
    assert [e["subject"] for e in assigned] == [payload.ticket_id]  # dispatch processed it now
    assert await scalar(db, "SELECT count(*) FROM dispatch.dead_letters WHERE id = :i", i=dead_letter_id) == 0
    assert await scalar(db, "SELECT replayed_by FROM dispatch.dead_letter_replays WHERE dead_letter_id = :i",
                        i=dead_letter_id) == "ops-lee"
    assert json.loads(cli(stack, "list", "--estate", estate, "--json").stdout) == []

    again = cli(stack, "replay", str(dead_letter_id), "--service", "dispatch")
    assert again.returncode == 1 and "already replayed" in again.stderr


async def test_replay_all_of_an_estate_after_a_fix(stack, estate, db):
    """`replay --all --estate E`: every dead letter of the estate goes back, oldest first,
    each processed once and each replay recorded; other estates' stay where they are."""
    dead = [await dead_accepted(db, estate, f"DL-A{i}") for i in range(3)]
    replayed = cli(stack, "replay", "--all", "--estate", estate, "--service", "dispatch", "--by", "ops-wang")
    assert replayed.returncode == 0, replayed.stderr
    assert "3 replayed" in replayed.stdout
    assigned = await read_stream(stack.nats_url, subject_for(estate, "assigned"), expected=3)
    assert sorted(e["subject"] for e in assigned) == sorted(p.ticket_id for p, _, _ in dead)
    ids = [i for _, _, i in dead]
    assert await scalar(db, "SELECT count(*) FROM dispatch.dead_letter_replays WHERE dead_letter_id = ANY(:ids) "
                            "AND replayed_by = 'ops-wang'", ids=ids) == 3
    assert json.loads(cli(stack, "list", "--estate", estate, "--json").stdout) == []
    nothing = cli(stack, "replay", "--all", "--estate", estate, "--service", "dispatch")
    assert nothing.returncode == 0 and "0 replayed" in nothing.stdout
