"""Analytics' HTTP routes and their schemas (RULES §4): the monthly form of an estate and
of the company, the quarterly summary, the weekly department review, the staff
assessment, the read model's ticket lists and the live dashboard (JSON and server-sent
events). Routes parse, authorise, open the transaction and call the report builders
(`reports`, over `queries`) or a handler (`handlers.handle_sign_off`)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Literal

from fastapi import Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, Response
from pydantic import Field
from sse_starlette import EventSourceResponse

from services.analytics import export, handlers, reports, rules, store
from services.analytics.app import service
from services.analytics.dashboard import MIN_PUSH_INTERVAL, REFRESH_SECONDS, STREAM_RECHECK_SECONDS, DashboardClient, hub
from services.analytics.handlers import SignOffCommand
from shared.auth import AuthError, Principal, principal_from_header, verify_token
from shared.errors import RuleViolation
from shared.limits import Contract
from shared.service import known_estate, no_longer_valid, principal, require_estate

Lang = Literal["zh", "en"]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _month_and_format(spec: str) -> tuple[str, str]:
    for suffix in ("xlsx", "html"):
        if spec.endswith(f".{suffix}"):
            return reports.parse_month(spec.removesuffix(f".{suffix}")), suffix
    return reports.parse_month(spec), "json"


def _not_after_now(month: str, tz) -> None:
    handlers.require_begun(month, service.clock.now(), tz)


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
    async with service.db.transaction() as session:
        return await handlers.handle_sign_off(SignOffCommand(estate=estate, month=month, **body.model_dump()),
                                              store.AnalyticsUnitOfWork(session, service.emit), service.context, who)


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
