"""Callback 回访: every valid complaint and every repair called back; unsatisfied owners
sent round again; opinions without a callback path judged by the recurrence rule;
walk-around visits tallied (RULES §3).

Wiring only (issue 11): the `service`, its metrics, the unit of work its handlers get,
the routes (api.py, online.py), the consumers (consumers.py, from handlers.HANDLERS) and
the periodic jobs (jobs.py). Callback learns about tickets only from the lifecycle's
events and never reads another service's tables.
"""

from __future__ import annotations

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import jobs, store
from shared.calendar_watch import on_calendar_change
from shared.schedule import ScanSchedule
from shared.service import Service, create_http_app

service = Service(
    "callback", store.metadata, title="Callback 回访",
    description="Callback schedule, records, walk-around visits and recurrence decisions.",
)

# Roles that make callbacks: customer service, and department heads for the repair check.
RECORDING_ROLES = ("customer_service", "customer_service_supervisor", "department_head", "estate_director")
VISITING_ROLES = ("customer_service", "customer_service_supervisor")

COUNTERS = {
    "required": Counter("estatedesk_callbacks_required", "Owner callbacks that RULES §3 requires (scheduled)",
                        ["estate", "kind", "department"], registry=service.registry),
    "done": Counter("estatedesk_callbacks_done", "Required owner callbacks made and recorded",
                    ["estate", "kind", "department"], registry=service.registry),
    "satisfied": Counter("estatedesk_callbacks_satisfied",
                         "Recorded owner callbacks whose owner was satisfied with the result",
                         ["estate", "kind", "department"], registry=service.registry),
}


def count(metric: str, estate: str, kind: str, departments: list[str]) -> None:
    for department in departments or [""]:
        COUNTERS[metric].labels(estate, kind, department).inc()


# The scans sleep until their next row is due; this process's commits of new ones tell them.
overdue_schedule = ScanSchedule(lambda: service.clock.now(), min_sleep_seconds=jobs.OVERDUE_SCAN_SECONDS)
recurrence_schedule = ScanSchedule(lambda: service.clock.now(), min_sleep_seconds=jobs.RECURRENCE_SCAN_SECONDS)


def unit_of_work(session: AsyncSession) -> store.CallbackUnitOfWork:
    """The callback unit of work over the transaction a consumer or route opened."""
    return store.CallbackUnitOfWork(session, service.emit, count, on_callback_due=overdue_schedule.noted,
                                    on_window_end=recurrence_schedule.noted)


# Who may call each write route (RULES §3; printed in the README by `estatedesk roles`).
service.write_roles = {
    ("POST", "/estates/{estate}/callbacks/{callback_id}/record"): RECORDING_ROLES,
    ("POST", "/estates/{estate}/visits"): VISITING_ROLES,
}

from services.callback import api, consumers, online  # noqa: E402,F401  (routes, consumers)


@service.periodic("overdue-scan", jobs.OVERDUE_SCAN_SECONDS, wait=overdue_schedule.wait)
async def overdue_scan() -> int:
    return await jobs.overdue_scan(service.db, unit_of_work, service.context, overdue_schedule)


@on_calendar_change(service, "calendar-recompute")
async def recompute_on_calendar_change() -> int:
    return await jobs.recompute_complaint_windows(service.db, unit_of_work, service.context)


@service.periodic("recurrence-scan", jobs.RECURRENCE_SCAN_SECONDS, wait=recurrence_schedule.wait)
async def recurrence_scan() -> int:
    return await jobs.recurrence_scan(service.db, unit_of_work, service.context, recurrence_schedule)


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
