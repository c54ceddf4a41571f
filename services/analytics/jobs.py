"""Analytics' periodic jobs: the dashboard feed's subscription, the Prometheus business
gauges (read from the read model; every replica exports the same values) and the pruning
of old dashboard alerts (`policy.analytics.dashboard_alerts_kept_days`, RULES §4)."""

from __future__ import annotations

import datetime as dt

from prometheus_client import Gauge

from services.analytics import queries, reports, rules, store
from services.analytics.app import service
from services.analytics.dashboard import hub

OPEN_FORMS = Gauge("estatedesk_open_forms", "Forms open now", ["estate"], registry=service.registry)
OVERDUE_FORMS = Gauge("estatedesk_overdue_forms", "Open forms with a breached or past-due clock", ["estate"],
                      registry=service.registry)
SLA_BREACHES = Gauge("estatedesk_sla_breaches_total", "Clocks breached since the read model began",
                     ["estate", "clock"], registry=service.registry)
CALLBACK_RATE = Gauge("estatedesk_callback_rate", "Callbacks done / required this month (0–1)", ["estate"],
                      registry=service.registry)
SATISFACTION = Gauge("estatedesk_satisfaction",
                     "Satisfied answers (result and attitude) / 2 × answers this month (0–1)", ["estate"],
                     registry=service.registry)
METRICS_EVERY_SECONDS = 5.0
MONTH_METRICS = ("callbacks_required", "callbacks_done", "satisfaction_answers", "result_satisfied",
                 "attitude_satisfied")


@service.periodic("dashboard-feed", every_seconds=2.0, each_replica=True)  # feeds this replica's viewers
async def dashboard_feed() -> None:
    await hub.run()


@service.periodic("business-metrics", every_seconds=METRICS_EVERY_SECONDS, each_replica=True)
async def refresh_business_metrics() -> None:
    """Gauges from the read model (every replica exports the same values)."""
    now = service.clock.now()
    months = {code: reports.local_month(now, service.directory.timezone_for(code)) for code in service.directory.estates}
    async with service.db.transaction() as session:
        open_rows = await queries.open_and_overdue(session, store.LIVE, now)
        breach_rows = await queries.breaches_per_clock(session, store.LIVE)
        month_rows = await queries.estate_month_figures(session, store.LIVE, sorted(set(months.values())),
                                                        MONTH_METRICS)
    month_figures: dict[str, dict[str, int]] = {}
    for period, estate, metric, value in month_rows:
        if months.get(estate) == period:
            month_figures.setdefault(estate, {})[metric] = value
    # Built first, swapped in without awaiting, so a scrape never sees half the labels.
    for gauge in (OPEN_FORMS, OVERDUE_FORMS, SLA_BREACHES, CALLBACK_RATE, SATISFACTION):
        gauge.clear()
    counts = {estate: (n, o) for estate, n, o in open_rows}
    for estate in set(months) | set(counts):
        n, o = counts.get(estate, (0, 0))
        OPEN_FORMS.labels(estate).set(n)
        OVERDUE_FORMS.labels(estate).set(o)
    for estate, clock, value in breach_rows:
        SLA_BREACHES.labels(estate, clock).set(value)
    for estate, f in month_figures.items():
        if f.get("callbacks_required"):
            CALLBACK_RATE.labels(estate).set(f.get("callbacks_done", 0) / f["callbacks_required"])
        if f.get("satisfaction_answers"):
            SATISFACTION.labels(estate).set(
                (f.get("result_satisfied", 0) + f.get("attitude_satisfied", 0)) / (2 * f["satisfaction_answers"]))


@service.periodic("prune-alerts", every_seconds=3600)
async def prune_alerts() -> None:
    keep = dt.timedelta(days=service.directory.policy_for(rules.COMPANY_TOTAL).analytics.dashboard_alerts_kept_days)
    async with service.db.transaction() as session:
        await queries.prune_alerts(session, store.LIVE, service.clock.now() - keep)
