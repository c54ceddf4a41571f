"""The archive's bus consumers: the catch-all consumer of every ticket event and the
access-log consumer of `access_refused`, each running its handler of `HANDLERS` in the
batch's transaction with the archive's unit of work."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from services.archive.app import late_events, seal_watch, service, unit_of_work
from services.archive.handlers import HANDLERS
from shared.events import CloudEvent

log = logging.getLogger("estatedesk.archive")


@service.consumer(description="Collect every ticket event; a `closed` ticket is queued for sealing into the chain.")
async def on_ticket_event(session: AsyncSession, event: CloudEvent) -> None:
    collected = await HANDLERS["*"](event, unit_of_work(session), service.context)
    if collected.outcome == "closed":
        seal_watch.work_seen = True  # the seal job looks at once
    elif collected.outcome == "addendum":
        late_events.labels(event.estate, event.event_name).inc()
        log.warning("event %s arrived after its ticket was archived: appended as addendum %s to %s",
                    event.event_name, collected.number, collected.record_number,
                    extra={"estate": event.estate, "ticket": event.subject, "event_id": event.id})


@service.consumer("access_refused", description="Keep every refusal at the door to owners' data or archived "
                  "records, from any service, in the access log.")
async def on_access_refused(session: AsyncSession, event: CloudEvent) -> None:
    await HANDLERS["access_refused"](event, unit_of_work(session), service.context)
