"""The live dashboard's change notices: a committed batch's notices leave in one message,
a rolled-back one's never, and the hub reads both the batch shape and a bare notice."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy.orm import Session

import services.analytics.app  # noqa: F401  (the service first: dashboard is imported through it)
from services.analytics import dashboard
from services.analytics.dashboard import DashboardClient, DashboardHub, notices_in
from shared.auth import Principal


class _AsyncSessionLike:
    """What `announce_after_commit` uses of an AsyncSession: `info` and `sync_session`."""

    def __init__(self) -> None:
        self.sync_session = Session()
        self.info = self.sync_session.info


@pytest.fixture
def published(monkeypatch):
    sent: list[dict] = []

    async def publish(body: bytes, subject: str) -> None:
        assert subject == dashboard.CHANGED_SUBJECT
        sent.append(json.loads(body))

    monkeypatch.setattr(dashboard.service, "broker", type("Broker", (), {"publish": staticmethod(publish)})())
    monkeypatch.setattr(dashboard, "notice_of", lambda event: {"estate": "maple", "event": event, "ticket_id": "T1"})
    return sent


async def test_a_committed_batch_announces_its_notices_in_one_message(published, monkeypatch):
    monkeypatch.setattr(dashboard, "NOTICES_PER_MESSAGE", 2)
    session = _AsyncSessionLike()
    with session.sync_session.begin():
        for name in ("accepted", "assigned", "sla_breached"):
            dashboard.announce_after_commit(session, name)
        assert published == []  # nothing before the commit
    await asyncio.gather(*dashboard._pending)
    assert [[n["event"] for n in m["notices"]] for m in published] == [["accepted", "assigned"], ["sla_breached"]]
    assert dashboard._NOTICES not in session.info


async def test_a_rolled_back_batch_announces_nothing(published):
    session = _AsyncSessionLike()
    session.sync_session.begin()
    dashboard.announce_after_commit(session, "accepted")
    session.sync_session.rollback()
    await asyncio.sleep(0)
    assert published == [] and not dashboard._pending


@pytest.mark.parametrize("body, events", [
    (b'{"notices": [{"estate": "maple", "event": "accepted"}, {"estate": "birch", "event": "closed"}]}',
     ["accepted", "closed"]),
    (b'{"estate": "maple", "event": "sla_breached", "clock": "reply"}', ["sla_breached"]),  # an older replica's
    (b'{"notices": [{"estate": 3, "event": "accepted"}, "x", {"event": "closed"}]}', []),
    (b'{"notices": "accepted"}', []),
    (b"[1, 2]", []),
    (b"not json", []),
])
def test_the_hub_reads_batches_and_bare_notices_and_skips_the_rest(body, events):
    assert [n["event"] for n in notices_in(body)] == events


async def test_the_hub_wakes_only_the_clients_of_the_notices_estates():
    hub = DashboardHub()
    maple = DashboardClient(Principal("m", "M", frozenset({"quality_manager"}), frozenset({"maple"})))
    birch = DashboardClient(Principal("b", "B", frozenset({"quality_manager"}), frozenset({"birch"})))
    hub.clients |= {maple, birch}
    message = type("Msg", (), {"data": json.dumps({"notices": [
        {"estate": "maple", "event": "sla_breached", "ticket_id": "T1"},
        {"estate": "maple", "event": "accepted", "ticket_id": "T2"}]}).encode()})()
    await hub._on_notice(message)
    assert maple.dirty.is_set() and not birch.dirty.is_set()
    assert [a["ticket_id"] for a in maple.alerts] == ["T1"]  # only alert events are listed
