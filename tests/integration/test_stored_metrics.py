"""Metrics of stored facts are read from the store when a service starts: after a
restart `estatedesk_dead_letters` says what the database holds, not 0."""

from __future__ import annotations

import os
import re
import signal

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import scalar

pytestmark = pytest.mark.integration


def gauge(metrics: str, service: str) -> float:
    match = re.search(rf'^estatedesk_dead_letters{{service="{service}"}} (\S+)$', metrics, re.M)
    assert match, "estatedesk_dead_letters missing"
    return float(match.group(1))


async def test_dead_letter_gauge_after_a_restart_reads_the_store(stack, db):
    callback = stack.service("callback")
    async with db.begin() as conn:
        for i in range(7):
            await conn.execute(sa.text(
                "INSERT INTO callback.dead_letters (consumer, subject, attempts, reason, body, recorded_at) "
                "VALUES ('callback-completed', 'estatedesk.x.ticket.completed', 5, :r, :b, now())"),
                {"r": f"handler failed 5 times: stored fact {i}", "b": b"\x00\xff not even text"})
    stored = await scalar(db, "SELECT count(*) FROM callback.dead_letters")
    os.kill(callback.process.pid, signal.SIGKILL)
    callback.process.wait()
    stack.supervisor.check_once()
    stack.supervisor.wait_healthy()
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = (await client.get(callback.url + "/metrics")).text
    async with db.begin() as conn:  # not real dead letters: nobody should replay them
        await conn.execute(sa.text("DELETE FROM callback.dead_letters WHERE reason LIKE '%stored fact%'"))
    assert stored >= 7 and gauge(metrics, "callback") == stored
