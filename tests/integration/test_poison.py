"""A poison event harms only its own ticket: published straight onto the stream (as any
upstream could, whatever intake refuses at its own door), it is set aside as a dead letter
with its reason, and every other ticket of every estate keeps flowing through every
service, the archive's sealing included."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from tests.conftest import auth, eventually, scalar, token_for
from tests.integration.test_archive_flow import archive_estate, archived_events, history, now_of, publish

pytestmark = pytest.mark.integration


def poisoned(events):
    """The same history with a NUL character in the accepted request's people
    (PostgreSQL text and JSONB cannot hold one)."""
    accepted = events[0]
    body = json.loads(accepted.model_dump_json())
    body["data"]["people"] = ["\u0000"]
    return [type(accepted).model_validate(body)] + events[1:]


async def test_a_poison_event_is_set_aside_and_every_other_ticket_is_archived(stack, db, clock_file):
    estate, other_estate = await archive_estate(stack), await archive_estate(stack)
    closed_at = now_of(clock_file) - dt.timedelta(hours=1)
    poison = poisoned(history(estate, closed_at))
    poison_ticket, poison_id = poison[0].subject, poison[0].id
    clean = history(estate, closed_at)
    await publish(stack.nats_url, poison + clean)

    async def dead_lettered():
        return await scalar(db, "SELECT count(*) FROM archive.dead_letters WHERE event_id = :i", i=poison_id)

    # The contract refuses the text at once (shared.limits): no attempts are wasted on it.
    assert await eventually(dead_lettered, timeout=90)
    reason = await scalar(db, "SELECT reason FROM archive.dead_letters WHERE event_id = :i", i=poison_id)
    assert "malformed event" in reason and "NUL" in reason
    # Tickets published after the poison was set aside, in the same and another estate.
    later, elsewhere = history(estate, closed_at), history(other_estate, closed_at)
    await publish(stack.nats_url, later + elsewhere)

    archived = await archived_events(stack, estate, 2)
    assert sorted(a["subject"] for a in archived) == sorted([clean[0].subject, later[0].subject])
    (archived_elsewhere,) = await archived_events(stack, other_estate, 1)
    assert archived_elsewhere["subject"] == elsewhere[0].subject

    # The poisoned ticket waits, saying why; nothing of it was sealed.
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(base_url=stack.service("archive").url, timeout=30) as client:
        async def waiting():
            rows = (await client.get(f"/v1/estates/{estate}/archive/pending", headers=auth(token))).json()
            return [r for r in rows if r["ticket_id"] == poison_ticket and r["last_error"]]

        (pending,) = await eventually(waiting, timeout=60)
    assert poison_id in pending["last_error"] and "dead letter" in pending["last_error"]
    assert await scalar(db, "SELECT count(*) FROM archive.records WHERE ticket_id = :t", t=poison_ticket) == 0
    # The other services processed the clean tickets too.
    for service in ("dispatch", "analytics"):
        async def processed(service=service):
            return await scalar(db, f"SELECT count(*) FROM {service}.processed_events WHERE event_id = :i",
                                i=elsewhere[0].id)

        assert await eventually(processed, timeout=30), service
