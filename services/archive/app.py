"""Archive 归档 (RULES.md §5): every closed countersign form frozen into its estate's hash
chain, printable; monthly organisation, quarterly volumes and catalogues; the important-
events file; the lending register; destruction after retention with the general
manager's approval.

Wiring only (issue 11): the `service`, its metrics, the unit of work its handlers get, the
routes (api.py), the consumers (consumers.py) and the periodic jobs (jobs.py). One
consumer collects every ticket event in stream order; a `closed` ticket is sealed by a
job as soon as the consumer's ack floor shows that nothing before its `closed` is still
outstanding (a message redelivered after a lost fetch can arrive late), so a form is
never frozen with a hole in it. Anchors for `verify` are read from the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from services.archive import store
from services.archive.jobs import SCHEDULE_SECONDS, SEAL_SECONDS, Gauges, SealWatch
from services.archive.uow import ArchiveUnitOfWork
from shared.auth import STAFF_ROLES
from shared.events import STREAM_NAME
from shared.service import Service, create_http_app

service = Service("archive", store.metadata, title="Archive 归档",
                  description="Hash-chained archived forms, volumes and catalogues, lending and destruction.")
# Every refusal here lands in the access log (as do refusals at intake's owners' data).
service.audited_routes = ("/estates/{estate}/archive", "/estates/{estate}/tickets/{ticket_id}/timeline")

records_archived = Counter(
    "estatedesk_archive_records_archived", "Closed forms sealed into an estate's chain",
    ["estate", "retention_class"], registry=service.registry,
)
reads_refused = Counter(
    "estatedesk_archive_reads_refused", "Reads of archived records refused (no running register entry)",
    ["estate"], registry=service.registry,
)
late_events = Counter(
    "estatedesk_archive_late_events", "Ticket events that arrived after their ticket was archived",
    ["estate", "event"], registry=service.registry,
)
pending_seals_gauge = Gauge(
    "estatedesk_archive_pending_seals", "Closed tickets not sealed yet (waiting for events, or failing)", ["estate"],
    registry=service.registry,
)
overdue_loans_gauge = Gauge(
    "estatedesk_archive_overdue_loans", "Loans past their due date and not returned", ["estate"],
    registry=service.registry,
)
seal_watch = SealWatch()
gauges = Gauges(lambda estate, n: overdue_loans_gauge.labels(estate).set(n),
                lambda estate, n: pending_seals_gauge.labels(estate).set(n))


def unit_of_work(session: AsyncSession) -> ArchiveUnitOfWork:
    """The archive unit of work over the transaction a consumer or route opened."""
    return ArchiveUnitOfWork(session, service.emit)


@asynccontextmanager
async def transaction() -> AsyncIterator[ArchiveUnitOfWork]:
    """One transaction and its unit of work (routes, jobs and the CLI); what the unit of
    work holds in memory is written before the commit."""
    async with service.db.transaction() as session:
        uow = unit_of_work(session)
        yield uow
        await uow.flush()


def data_dir() -> str | None:
    """Where the monthly backups go (none when the service is not bound to settings)."""
    return service.settings.data_dir if service.settings is not None else None


# Who may call each write route (RULES §5; printed in the README by `estatedesk roles`).
# Every staff role may ask: who may consult, approve, mark, request or approve a
# destruction is the estate's archive policy, checked inside against the record and the
# approvals given.
service.write_roles = {
    ("POST", "/estates/{estate}/archive/loans"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/loans/{loan_id}/return"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/records/{record_number}/important"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/destruction-requests"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/destruction-requests/{request_id}/approve"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/destruction-requests/{request_id}/refuse"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/months/{month}/organise"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/quarters/{quarter}/archive"): STAFF_ROLES,
}

from services.archive import api, consumers, jobs  # noqa: E402,F401  (routes, consumers, jobs)


def ticket_consumer_durable() -> str:
    """The catch-all consumer's durable name: its ack floor gates sealing, and its dead
    letters hold a ticket's form back."""
    return next(c.durable for c in service.consumers if c.events is None)


async def consumer_position() -> tuple[int, int] | None:
    """(last delivered, ack floor) stream sequences of the archive's own durable consumer:
    every message at or below the ack floor has been processed and committed."""
    connection = getattr(service.broker, "_connection", None)
    if connection is None or not connection.is_connected:
        return None
    info = await connection.jetstream().consumer_info(STREAM_NAME, ticket_consumer_durable())
    return info.delivered.stream_seq, info.ack_floor.stream_seq


@service.periodic("seal", SEAL_SECONDS, wait=seal_watch.wait)
async def seal_closed_tickets() -> int:
    return await jobs.seal_closed_tickets(
        transaction, service.context, seal_watch, consumer_position, ticket_consumer_durable(),
        lambda estate, retention: records_archived.labels(estate, retention).inc())


@service.periodic("organise", SCHEDULE_SECONDS)
async def scheduled_organisation() -> None:
    await jobs.scheduled_organisation(transaction, service.context, data_dir())


@service.periodic("gauges", 30, each_replica=True)
async def update_gauges() -> None:
    await gauges.update(transaction, service.context)


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
