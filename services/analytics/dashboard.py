"""The live dashboard's change notices (RULES §4: the head-office quality manager's view).

Each replica only consumes part of the events, so a replica cannot learn from its own
consumer that the figures changed. Instead, after every commit the consumer announces the
batch's changes in one message on core NATS (`CHANGED_SUBJECT`, not a stream subject: a
lost notice costs nothing because every open dashboard is refreshed every
`REFRESH_SECONDS` anyway). Every
replica's dashboard hub subscribes to it and wakes the server-sent-event streams of the
clients allowed to see that estate, which re-read the read model — at most
`1 / MIN_PUSH_INTERVAL` times a second, so a burst of events costs a few reads, and never
before the change is committed (a notice sent on receipt of the ticket event could race
the commit and show stale figures).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

import nats
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import store
from services.analytics.app import service
from shared.auth import Principal
from shared.events import CloudEvent

log = logging.getLogger("estatedesk.analytics")

CHANGED_SUBJECT = "estatedesk.analytics.changed"  # core NATS, outside the ticket stream
REFRESH_SECONDS = 15.0
STREAM_RECHECK_SECONDS = 2.0  # how soon a live stream notices its token is no longer good
MIN_PUSH_INTERVAL = 0.25

# One message carries the notices of a committed batch, at most this many (far below
# NATS's 1 MB payload limit: a notice is about 250 bytes).
NOTICES_PER_MESSAGE = 500
_NOTICES = "analytics.dashboard_notices"  # the session's queued notices (session.info)

_pending: set[asyncio.Task] = set()


def notice_of(event: CloudEvent) -> dict:
    """What a dashboard needs to know of a folded event: its estate (who may see it), its
    type and ticket, its local time, and the alert fields (clock, department, rung,
    category)."""
    data = event.data
    return {
        "estate": event.estate, "event": event.event_name, "ticket_id": event.subject,
        "time": event.time.astimezone(service.directory.timezone_for(event.estate)).isoformat(),
        "clock": data.get("clock"), "department": data.get("department"),
        "rung": data.get("rung"), "category": data.get("category"),
    }


def announce_after_commit(session: AsyncSession, event: CloudEvent) -> None:
    """Queue the change notice of `event`; once `session` has committed, the notices it
    queued leave together (`{"notices": [...]}`, `NOTICES_PER_MESSAGE` at most per
    message): a batch of events costs one message and one task, not one of each per event.
    Nothing leaves when the session rolls back (a session serves one transaction)."""
    notices = session.info.get(_NOTICES)
    if notices is None:
        notices = session.info[_NOTICES] = []
        loop = asyncio.get_running_loop()

        def committed(_session) -> None:
            session.info.pop(_NOTICES, None)
            task = loop.create_task(_announce(notices))
            _pending.add(task)
            task.add_done_callback(_pending.discard)

        sa.event.listen(session.sync_session, "after_commit", committed, once=True)
    notices.append(notice_of(event))


async def _announce(notices: list[dict]) -> None:
    try:
        for start in range(0, len(notices), NOTICES_PER_MESSAGE):
            body = {"notices": notices[start:start + NOTICES_PER_MESSAGE]}
            await service.broker.publish(json.dumps(body).encode(), CHANGED_SUBJECT)
    except Exception:  # the periodic refresh covers a lost notice
        log.warning("could not announce a read-model change", exc_info=True)


def notices_in(body: bytes) -> list[dict]:
    """The notices of a change message: `{"notices": [...]}`, or one bare notice (what a
    replica of an earlier version sends); [] for anything else."""
    try:
        message = json.loads(body)
    except ValueError:
        return []
    notices = message.get("notices", [message]) if isinstance(message, dict) else None
    if not isinstance(notices, list):
        return []
    return [n for n in notices if isinstance(n, dict) and isinstance(n.get("estate"), str)
            and isinstance(n.get("event"), str)]


@dataclass(eq=False)
class DashboardClient:
    who: Principal
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    alerts: list[dict] = field(default_factory=list)

    def notify(self, notice: dict) -> None:
        if not self.who.may_act_for(notice["estate"]):
            return
        if notice["event"] in store.ALERT_EVENTS:
            self.alerts.append(notice)
            del self.alerts[:-50]
        self.dirty.set()


class DashboardHub:
    """This replica's open dashboards and its subscription to the change notices."""

    def __init__(self) -> None:
        self.clients: set[DashboardClient] = set()
        self.connected = asyncio.Event()

    async def run(self) -> None:
        nc = await nats.connect(service.settings.nats_servers, name=f"analytics-dashboard-{service.settings.replica}",
                               **service.reconnect.connect_options())
        try:
            await nc.subscribe(CHANGED_SUBJECT, cb=self._on_notice)
            await nc.flush()
            self.connected.set()
            for client in self.clients:  # anything may have changed while we were away
                client.dirty.set()
            while nc.is_connected or nc.is_reconnecting:
                await asyncio.sleep(1.0)
        finally:
            self.connected.clear()
            await nc.close()

    async def _on_notice(self, msg) -> None:
        if not self.clients:
            return
        for notice in notices_in(msg.data):
            for client in list(self.clients):
                client.notify(notice)


hub = DashboardHub()
