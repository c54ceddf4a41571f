"""Analytics 统计分析 (RULES §4): the quality office's read model, its reports, and the
live dashboard of the head-office quality manager.

One consumer folds every ticket event, in stream order, into the read model (see
`store`): the ticket's facts row locked, `rules.apply_event`, facts and counters written in
the transaction that records the event as processed. A ticket accepted into a category
that keeps coming back raises `corrective_action_suggested` in that same transaction.

The live dashboard. Each replica only consumes part of the events, so a replica cannot
learn from its own consumer that the figures changed. Instead, after every commit the
consumer announces the change on core NATS (`CHANGED_SUBJECT`, not a stream subject:
a lost notice costs nothing because every open dashboard is refreshed every
`REFRESH_SECONDS` anyway). Every replica's dashboard hub subscribes to it and wakes the
server-sent-event streams of the clients allowed to see that estate, which re-read the
read model — at most `1 / MIN_PUSH_INTERVAL` times a second, so a burst of events costs
a few reads, and never before the change is committed (a notice sent on receipt of the
ticket event could race the commit and show stale figures).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Literal

import nats
import sqlalchemy as sa
from fastapi import Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, Response
from prometheus_client import Gauge
from pydantic import Field
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse

from services.analytics import export, reports, rules, store
from shared.auth import AuthError, Principal, principal_from_header, verify_token
from shared.errors import RuleViolation
from shared.limits import Contract
from shared.events import CloudEvent
from shared.service import Service, create_http_app, known_estate, no_longer_valid, principal, require_estate

log = logging.getLogger("estatedesk.analytics")

service = Service(
    "analytics", store.metadata, title="Analytics 统计分析",
    description="Monthly estate reports, company consolidation and the live dashboard.",
)

CHANGED_SUBJECT = "estatedesk.analytics.changed"  # core NATS, outside the ticket stream
REFRESH_SECONDS = 15.0
STREAM_RECHECK_SECONDS = 2.0  # how soon a live stream notices its token is no longer good
MIN_PUSH_INTERVAL = 0.25
Lang = Literal["zh", "en"]


# --- the consumer ----------------------------------------------------------------------------


# Exclusive: every event adds to the same running totals; replicas folding batches at once
# would lock those rows in different orders and deadlock (seen in the cluster fault test).
@service.consumer(description="Fold every ticket event into the read model; suggest corrective action for repeats.",
                  exclusive=True)
async def on_ticket_event(session: AsyncSession, event: CloudEvent) -> None:
    policy = service.directory.policy_for(event.estate)
    now = service.clock.now()
    applied = await store.apply(session, store.LIVE, event, policy, now)
    if applied is None:
        return  # this ticket has already counted this event
    if applied.before.kind is None and applied.after.kind is not None:
        await suggest_corrective_action(session, event, applied.after, policy, now)
    announce_after_commit(session, event)


async def suggest_corrective_action(session: AsyncSession, event: CloudEvent, facts: rules.TicketFacts,
                                    policy, now: dt.datetime) -> None:
    a = policy.analytics
    if facts.kind not in a.repeat_problem_kinds or not facts.category \
            or facts.category in a.repeat_problem_ignored_categories or facts.accepted_at is None:
        return
    # Two replicas accepting the same category at once must see each other's ticket.
    lock_key = f"analytics-repeat|{event.estate}|{facts.category}"
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(lock_key, 0))))
    recent = await store.recent_same_category(
        session, store.LIVE, event.estate, facts.category, tuple(a.repeat_problem_kinds),
        facts.accepted_at - dt.timedelta(days=a.repeat_problem_window_days),
    )
    new = rules.RecentTicket(facts.ticket_id, facts.category, facts.building, facts.accepted_at)
    suggestion = rules.repeat_problem(recent, new, policy)
    if suggestion is not None:
        await service.emit(session, suggestion, estate=event.estate, actor="analytics", time=now)


# --- change notices and the dashboard hub -------------------------------------------------------


_pending: set[asyncio.Task] = set()


def announce_after_commit(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    notice = {
        "estate": event.estate, "event": event.event_name, "ticket_id": event.subject,
        "time": event.time.astimezone(service.directory.timezone_for(event.estate)).isoformat(), "clock": data.get("clock"), "department": data.get("department"),
        "rung": data.get("rung"), "category": data.get("category"),
    }
    loop = asyncio.get_running_loop()

    def committed(_session) -> None:
        task = loop.create_task(_announce(notice))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    sa.event.listen(session.sync_session, "after_commit", committed, once=True)


async def _announce(notice: dict) -> None:
    try:
        await service.broker.publish(json.dumps(notice).encode(), CHANGED_SUBJECT)
    except Exception:  # the periodic refresh covers a lost notice
        log.warning("could not announce a read-model change", exc_info=True)


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
        try:
            notice = json.loads(msg.data)
        except ValueError:
            return
        for client in list(self.clients):
            client.notify(notice)


hub = DashboardHub()


@service.periodic("dashboard-feed", every_seconds=2.0, each_replica=True)  # feeds this replica's viewers
async def dashboard_feed() -> None:
    await hub.run()


# --- HTTP: reports ------------------------------------------------------------------------------

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _month_and_format(spec: str) -> tuple[str, str]:
    for suffix in ("xlsx", "html"):
        if spec.endswith(f".{suffix}"):
            return reports.parse_month(spec.removesuffix(f".{suffix}")), suffix
    return reports.parse_month(spec), "json"


def _not_after_now(month: str, tz) -> None:
    current = reports.local_month(service.clock.now(), tz)
    if month > current:
        raise RuleViolation(f"month {month} has not begun (current month {current})", status=422)


async def _render(report: rules.MonthlyReport, fmt: str, lang: str, filename: str, data: dict | None = None):
    if fmt == "xlsx":
        # Building a workbook is CPU work: off the event loop, so a busy machine does not
        # stall every other request (and drop kept-alive connections) meanwhile.
        workbook = await asyncio.to_thread(export.monthly_report_xlsx, report, lang)
        return Response(workbook, media_type=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'})
    if fmt == "html":
        return HTMLResponse(export.monthly_report_html(report, lang))
    return data if data is not None else report.to_dict()


def _company_only(who: Principal) -> None:
    if not who.company_wide:
        raise AuthError(403, f"{who.staff_id} needs a company-wide role for company reports (has {sorted(who.roles)})")


def _company_policy():
    return service.directory.policy_for(rules.COMPANY_TOTAL)  # no estate by that code: the company's own


def _names() -> dict[str, str]:
    return {code: e.name for code, e in service.directory.estates.items()}


@service.http.get("/estates/{estate}/reports/monthly/{month_spec}", tags=["reports"])
async def estate_monthly_report(estate: str, month_spec: str, lang: Lang = "zh",
                                who: Principal = Depends(require_estate)):
    """《月客户意见统计分析表》 of one estate: `2026-11` (JSON), `2026-11.xlsx`, `2026-11.html`."""
    known_estate(service, estate)
    month, fmt = _month_and_format(month_spec)
    policy = service.directory.policy_for(estate)
    _not_after_now(month, service.directory.timezone_for(estate))
    async with service.db.transaction() as session:
        report = await reports.estate_monthly(session, store.LIVE, estate, month, policy)
    return await _render(report, fmt, lang, f"{estate}-{month}")


class SignOffIn(Contract):
    """The department head's part of the monthly form (RULES §4: signed by the head)."""

    department: str = Field(min_length=1, max_length=64)
    problems: str = Field(min_length=1, max_length=8000, description="存在问题 / the head's analysis")
    corrective_actions: str = Field(min_length=1, max_length=8000, description="纠正措施")
    signed_by: str = Field(min_length=1, max_length=64, description="staff id of the signer: the caller")


@service.http.post("/estates/{estate}/reports/monthly/{month}/sign-off", tags=["reports"])
async def sign_off_monthly_report(estate: str, month: str, body: SignOffIn,
                                  who: Principal = Depends(require_estate)) -> dict:
    """A department head records the month's problems and corrective actions and signs;
    signing again replaces the earlier entry of that department."""
    known_estate(service, estate)
    month = reports.parse_month(month)
    if body.signed_by != who.staff_id:
        raise AuthError(403, f"a signature is the signer's own: signed_by {body.signed_by!r} is not the caller {who.staff_id!r}")
    info = service.directory.estate(estate)
    departments = {d.code: d for d in info.departments}
    if departments and body.department not in departments:
        raise RuleViolation(f"estate {estate!r} has no department {body.department!r} "
                            f"(has: {', '.join(sorted(departments))})", status=422)
    if not who.has_role("estate_director", "company_admin"):
        head = departments[body.department].head if body.department in departments else None
        if (head and head != who.staff_id) or (who.departments and body.department not in who.departments):
            raise AuthError(403, f"{who.staff_id} is not the head of {body.department!r}"
                                 + (f" (the head is {head})" if head else ""))
    _not_after_now(month, service.directory.timezone_for(estate))
    now = service.clock.now()
    row = dict(estate=estate, month=month, department=body.department, problems=body.problems,
               corrective_actions=body.corrective_actions, signed_by=who.staff_id, signer_name=who.name,
               signed_at=now)
    t = store.report_signoffs
    async with service.db.transaction() as session:
        stmt = pg_insert(t).values(**row)
        await session.execute(stmt.on_conflict_do_update(
            index_elements=["estate", "month", "department"],
            set_={k: stmt.excluded[k] for k in ("problems", "corrective_actions", "signed_by", "signer_name", "signed_at")},
        ))
    return row


@service.http.get("/company/reports/monthly/{month_spec}", tags=["reports"])
async def company_monthly_report(month_spec: str, lang: Lang = "zh", who: Principal = Depends(principal)):
    """The quality manager's consolidation: every estate side by side, ranked, with the
    company sums (`.xlsx` / `.html`: the company's sums on the monthly form)."""
    _company_only(who)
    month, fmt = _month_and_format(month_spec)
    policy = _company_policy()
    _not_after_now(month, service.directory.timezone_for(rules.COMPANY_TOTAL))
    async with service.db.transaction() as session:
        result = await reports.company_monthly(session, store.LIVE, month, policy, service.directory.estates)
    if result is None:
        raise RuleViolation("no estates in the directory and no figures for this month", status=404)
    return await _render(result.company, fmt, lang, f"company-{month}", reports.consolidation_json(result, _names()))


@service.http.get("/company/reports/quarterly/{quarter}", tags=["reports"])
async def company_quarterly_report(quarter: str, who: Principal = Depends(principal)) -> dict:
    """The quarterly summary for the management representative and the general manager
    (`2026Q4`): estates ranked on the quarter, the company's months and quarter sums."""
    _company_only(who)
    current = reports.local_month(service.clock.now(), service.directory.timezone_for(rules.COMPANY_TOTAL))
    async with service.db.transaction() as session:
        result = await reports.company_quarterly(session, store.LIVE, quarter, current, _company_policy(),
                                                 service.directory.estates)
    if result is None:
        raise RuleViolation("no estates in the directory and no figures for this quarter", status=404)
    return reports.quarterly_json(result, _names())


@service.http.get("/estates/{estate}/reports/department-review", tags=["reports"])
async def department_review(estate: str, department: str | None = Query(None, max_length=64),
                            who: Principal = Depends(require_estate)) -> dict:
    """The weekly review: each department's open forms, overdue first."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        reviews = await reports.department_review(session, store.LIVE, estate, now,
                                                  service.directory.policy_for(estate), department)
    names = {d.code: d.name for d in service.directory.estate(estate).departments}
    return {"estate": estate, "as_of": now, "departments": [
        {**asdict(r), "name": names.get(r.department, r.department)} for r in reviews]}


@service.http.get("/estates/{estate}/reports/staff-assessment", tags=["reports"])
async def staff_assessment(estate: str, month: str | None = None, who: Principal = Depends(require_estate)) -> dict:
    """Per staff member: forms owned and signed, on-time rate, callbacks, satisfaction,
    re-opens — the countersign forms as evidence for the periodic assessment."""
    known_estate(service, estate)
    tz = service.directory.timezone_for(estate)
    month = reports.parse_month(month) if month else reports.local_month(service.clock.now(), tz)
    async with service.db.transaction() as session:
        rows = await reports.staff_assessment(session, store.LIVE, estate, month)
    names = {s.id: s.name for s in service.directory.estate(estate).staff}
    return {"estate": estate, "month": month, "staff": [{**asdict(r), "name": names.get(r.staff)} for r in rows]}


@service.http.get("/estates/{estate}/tickets", tags=["tickets"])
async def ticket_list(estate: str, status: Literal["open", "overdue", "closed", "all"] = "open",
                      department: str | None = Query(None, max_length=64),
                      limit: int = Query(200, ge=1, le=1000), who: Principal = Depends(require_estate)) -> dict:
    """The read model's tickets of an estate (the dashboard's drill-down)."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        tickets = await reports.ticket_list(session, store.LIVE, estate, now, status, department, limit)
    return {"estate": estate, "status": status, "department": department, "as_of": now, "tickets": tickets}


# --- HTTP: the dashboard --------------------------------------------------------------------------


def _visible(who: Principal) -> list[reports.EstateInfo]:
    estates = service.directory.estates
    codes = sorted(estates) if "*" in who.estates else sorted(set(who.estates) & set(estates))
    return [
        reports.EstateInfo(code, estates[code].name, {d.code: d.name for d in estates[code].departments},
                           service.directory.timezone_for(code))
        for code in codes
    ]


async def _summary(who: Principal) -> dict:
    async with service.db.transaction() as session:
        return await reports.dashboard_summary(
            session, store.LIVE, _visible(who), service.clock.now(),
            service.directory.timezone_for(rules.COMPANY_TOTAL),
        )


@service.http.get("/dashboard/summary", tags=["dashboard"])
async def dashboard_summary(who: Principal = Depends(principal)) -> dict:
    """Every figure of the live dashboard for the estates the token covers."""
    return await _summary(who)


@service.http.get("/dashboard/stream", tags=["dashboard"])
async def dashboard_stream(request: Request, token: str | None = Query(None, max_length=4096)):
    """Server-sent events: `summary` (the whole dashboard JSON) at once and again within a
    second of every change; `alert` for each breach, escalation or repeat. EventSource
    cannot send headers, so the token may come as `?token=`."""
    header = request.headers.get("authorization")
    who = verify_token(service.settings.signing_key, token) if token else principal_from_header(
        service.settings.signing_key, header)
    ended = no_longer_valid(service, who)
    if ended:
        raise AuthError(401, ended)
    client = DashboardClient(who)
    hub.clients.add(client)

    async def stream():
        loop = asyncio.get_running_loop()
        last_push = 0.0
        try:
            while True:
                summary = await _summary(who)
                last_push = loop.time()
                yield {"event": "summary", "data": json.dumps(jsonable_encoder(summary), ensure_ascii=False)}
                while client.alerts:
                    yield {"event": "alert", "data": json.dumps(client.alerts.pop(0), ensure_ascii=False)}
                # Wait for a change, re-checking the token meanwhile: the stream ends when
                # it expires, its sign-in ends or its staff member leaves the directory.
                waited_until = loop.time() + REFRESH_SECONDS
                while (ended := no_longer_valid(service, who)) is None and loop.time() < waited_until:
                    try:
                        await asyncio.wait_for(client.dirty.wait(), min(STREAM_RECHECK_SECONDS,
                                                                        waited_until - loop.time()))
                        break
                    except asyncio.TimeoutError:
                        pass
                if ended:
                    yield {"event": "end", "data": json.dumps({"reason": ended}, ensure_ascii=False)}
                    return
                # Coalesce a burst of notices into one re-read.
                await asyncio.sleep(max(0.0, last_push + MIN_PUSH_INTERVAL - loop.time()))
                client.dirty.clear()
        finally:
            hub.clients.discard(client)

    return EventSourceResponse(stream(), ping=10, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# --- Prometheus business metrics and housekeeping -----------------------------------------------

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


@service.periodic("business-metrics", every_seconds=METRICS_EVERY_SECONDS, each_replica=True)
async def refresh_business_metrics() -> None:
    """Gauges from the read model (every replica exports the same values)."""
    now = service.clock.now()
    t, r = store.LIVE.facts, store.LIVE.rollups
    overdue = sa.or_(t.c.has_breach, t.c.next_due_at < now)
    months = {code: reports.local_month(now, service.directory.timezone_for(code)) for code in service.directory.estates}
    async with service.db.transaction() as session:
        open_rows = (await session.execute(
            sa.select(t.c.estate, sa.func.count(), sa.func.count().filter(overdue))
            .where(t.c.state == rules.OPEN, t.c.kind.is_not(None)).group_by(t.c.estate)
        )).all()
        breach_rows = (await session.execute(
            sa.select(r.c.estate, r.c.key, sa.func.sum(r.c.value)).where(
                r.c.dimension == "clock", r.c.metric == "clocks_breached", sa.func.length(r.c.period) == 7,
                r.c.estate != rules.COMPANY_TOTAL,
            ).group_by(r.c.estate, r.c.key)
        )).all()
        month_rows = (await session.execute(
            sa.select(r.c.period, r.c.estate, r.c.metric, r.c.value).where(
                r.c.period.in_(sorted(set(months.values()))), r.c.dimension == rules.Dimension.estate.value,
                r.c.metric.in_(("callbacks_required", "callbacks_done", "satisfaction_answers",
                                "result_satisfied", "attitude_satisfied")),
            )
        )).all() if months else []
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
    keep = dt.timedelta(days=_company_policy().analytics.dashboard_alerts_kept_days)
    async with service.db.transaction() as session:
        await session.execute(sa.delete(store.LIVE.alerts).where(store.LIVE.alerts.c.at < service.clock.now() - keep))


# --- the app ----------------------------------------------------------------------------------------


# Who may call each write route (RULES §4; printed in the README by `estatedesk roles`).
service.write_roles = {
    ("POST", "/estates/{estate}/reports/monthly/{month}/sign-off"): ("department_head", "estate_director"),
}


def create_app(manage_lifecycle: bool = True):
    # The dashboard page itself is a screen of the staff console (console/src/dashboard),
    # signed in the same way; this service gives it /v1/dashboard/summary and /stream.
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
