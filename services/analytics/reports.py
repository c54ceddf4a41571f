"""Reports from the read model: the rows `store` reads, turned into figures by `rules`.

Shared by the HTTP API, `estatedesk analytics rebuild` (to compare a scratch model with the
live one) and the benchmark, so all three produce exactly the same report.

The company consolidation and the quarterly summary rank estates on their own totals
(the ``estate`` dimension, a few dozen counters per estate) and read the company's sums
from the company counters the consumer keeps (`store.write_batch`), instead of loading
every estate's full breakdown to merge in Python: the figures are those of
`rules.company_consolidation` / `rules.quarterly_summary` (the integration tests check
it), minus per-person and per-building tables, which mean nothing across estates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from services.analytics import queries, rules, store
from services.analytics.rules import COMPANY_TOTAL, Figures, MonthlyReport
from shared import events as ev
from shared import periods
from shared.errors import RuleViolation
from shared.policy import Policy

ARRAY_TEXT = ARRAY(sa.String)
def parse_month(text: str) -> str:
    return periods.parse_month(text)


def parse_quarter(text: str) -> tuple[str, tuple[str, str, str]]:
    """ "2026Q4" (or "2026-Q4") → ("2026Q4", its three months)."""
    quarter = periods.parse_quarter(text)
    return quarter, periods.months_of_quarter(quarter)


def local_month(now: dt.datetime, tz: ZoneInfo) -> str:
    return now.astimezone(tz).strftime("%Y-%m")


# --- the department heads' section --------------------------------------------------------------


def corrective_section(suggestions: Iterable, signoffs: Iterable, tz: ZoneInfo
                       ) -> tuple[list, rules.SignOff | None]:
    """Section 8 and 9 of the form: the repeats analytics suggested, then each department
    head's problems and corrective actions; their analyses and signatures sign the form."""
    lines: list = [ev.CorrectiveActionSuggested.model_validate(row.payload) for row in suggestions]
    signed = list(signoffs)
    for row in signed:
        lines.append({"problem": row.problems, "action": row.corrective_actions,
                      "owner": f"{row.department}: {row.signer_name or row.signed_by}", "status": ""})
    if not signed:
        return lines, None
    return lines, rules.SignOff(
        summary="\n".join(f"[{row.department}] {row.problems}" for row in signed),
        department_head="; ".join(f"{row.department}: {row.signer_name or row.signed_by}" for row in signed),
        signed_on=max(row.signed_at for row in signed).astimezone(tz).date(),
    )


# --- one estate ---------------------------------------------------------------------------------


async def estate_monthly(session, model: store.ReadModel, estate: str, month: str, policy: Policy) -> MonthlyReport:
    """The estate's 《月客户意见统计分析表》 from its counters: one prefix scan."""
    rollups = await queries.month_rollups(session, model, estate, month)
    carried = await queries.open_carried_in(session, model, estate, month)
    lines, sign_off = corrective_section(
        await queries.suggestions_for(session, model, month, estate),
        await queries.signoffs_for(session, month, estate), ZoneInfo(policy.timezone),
    )
    return rules.monthly_report(estate, month, rollups, carried, lines, policy=policy, sign_off=sign_off)


async def department_review(session, model: store.ReadModel, estate: str, now: dt.datetime, policy: Policy,
                            department: str | None = None) -> list[rules.DepartmentReview]:
    facts = [f for f in await queries.load_facts(session, model, estate) if f.kind is not None]
    reviews = rules.department_weekly_review(facts, now, policy)
    return [r for r in reviews if department is None or r.department == department]


async def staff_assessment(session, model: store.ReadModel, estate: str, month: str) -> list[rules.StaffAssessment]:
    return list(rules.staff_assessment(await queries.month_rollups(session, model, estate, month)))


# --- the company ----------------------------------------------------------------------------------


def _by_estate(rows: Iterable) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for row in rows:
        grouped.setdefault(row.estate, []).append(row)
    return grouped


async def _light_reports(session, model, months: Sequence[str], estates: Iterable[str], policy: Policy
                         ) -> list[MonthlyReport]:
    """Per (estate, month) reports carrying only the estate's own totals (for ranking)."""
    totals = await queries.estate_totals(session, model, list(months))
    carried = {m: await queries.open_carried_in_all(session, model, m) for m in months}
    codes = sorted(set(estates) | {e for _, e in totals} | {e for c in carried.values() for e in c})
    tz = ZoneInfo(policy.timezone)
    reports = []
    for month in months:
        suggestions = _by_estate(await queries.suggestions_for(session, model, month))
        signoffs = _by_estate(await queries.signoffs_for(session, month))
        for estate in codes:
            lines, sign_off = corrective_section(suggestions.get(estate, ()), signoffs.get(estate, ()), tz)
            reports.append(rules.monthly_report(estate, month, totals.get((month, estate), {}),
                                                carried[month].get(estate, 0), lines, policy=policy,
                                                sign_off=sign_off))
    return reports


def _prefixed(reports: Iterable[MonthlyReport]) -> list[rules.CorrectiveActionLine]:
    return [dataclasses.replace(line, problem=f"[{r.estate}] {line.problem}")
            for r in reports for line in r.corrective_actions]


async def company_monthly(session, model: store.ReadModel, month: str, policy: Policy,
                          estates: Iterable[str] = ()) -> rules.CompanyConsolidation | None:
    """The quality manager's consolidation: every estate (those named and those with
    figures) ranked, and the company sums. None when there is no estate at all."""
    reports = await _light_reports(session, model, [month], estates, policy)
    if not reports:
        return None
    company = rules.monthly_report(
        COMPANY_TOTAL, month, await queries.company_sums(session, model, [month]),
        sum(r.open_carried_in for r in reports), _prefixed(reports), policy=policy,
    )
    return rules.company_consolidation(reports, policy, company=company)


async def company_quarterly(session, model: store.ReadModel, quarter: str, current_month: str, policy: Policy,
                            estates: Iterable[str] = ()) -> rules.QuarterlySummary | None:
    """For the management representative and the general manager: the quarter's months
    up to the current one (later months are listed as missing)."""
    label, months = parse_quarter(quarter)
    supplied = [m for m in months if m <= current_month]
    if not supplied:
        raise RuleViolation(f"quarter {label} has not begun (current month {current_month})", status=422)
    reports = await _light_reports(session, model, supplied, estates, policy)
    if not reports:
        return None
    by_month, sums = {}, {}
    for month in supplied:
        of_month = [r for r in reports if r.period == month]
        month_sums = await queries.company_sums(session, model, [month])
        for key, value in month_sums.items():
            sums[key] = sums.get(key, 0) + value
        by_month[month] = rules.period_report(
            COMPANY_TOTAL, month, month_sums, sum(r.open_carried_in for r in of_month), _prefixed(of_month),
        )
    first = {}
    for r in reports:  # each estate's quarter starts with its earliest month's carried-in
        first.setdefault(r.estate, r.open_carried_in)
    company = rules.period_report(
        COMPANY_TOTAL, label, sums, sum(first.values()),
        [line for r in by_month.values() for line in r.corrective_actions],
    )
    # Months not supplied (not begun yet) are listed in `missing`.
    return rules.quarterly_summary(reports, policy, company_by_month=by_month, company=company)


# --- JSON shapes -----------------------------------------------------------------------------------


def ranking_json(rows: Iterable[rules.EstateRanking], names: dict[str, str]) -> list[dict]:
    return [
        {
            "rank": row.rank, "estate": row.estate, "name": names.get(row.estate, row.estate),
            "score": row.score, "on_time_rate": row.on_time_rate,
            "callback_on_time_rate": row.callback_on_time_rate, "satisfaction_rate": row.satisfaction_rate,
            "open_carried_in": row.report.open_carried_in, "open_carried_out": row.report.open_carried_out,
            "totals": row.report.totals.to_dict(),
        }
        for row in rows
    ]


def company_report_json(report: MonthlyReport) -> dict:
    data = report.to_dict()
    for table in ("by_staff", "by_building"):
        data.pop(table, None)
    return data


def consolidation_json(c: rules.CompanyConsolidation, names: dict[str, str]) -> dict:
    return {"period": c.period, "ranking_rule": c.ranking_rule, "estates": ranking_json(c.rows, names),
            "company": company_report_json(c.company)}


def quarterly_json(q: rules.QuarterlySummary, names: dict[str, str]) -> dict:
    return {
        "quarter": q.quarter, "months": list(q.months), "ranking_rule": rules.RANKING_RULE,
        "estates": ranking_json(q.ranking, names),
        "company": company_report_json(q.company),
        "company_by_month": {m: company_report_json(r) for m, r in q.company_by_month.items()},
        "missing": [list(pair) for pair in q.missing],
    }


# --- tickets and the dashboard ---------------------------------------------------------------------


TICKET_STATUSES = ("open", "overdue", "closed", "all")


def _overdue(t: sa.Table, now: dt.datetime):
    return sa.or_(t.c.has_breach, t.c.next_due_at < now)


async def ticket_list(session, model: store.ReadModel, estate: str, now: dt.datetime, status: str = "open",
                      department: str | None = None, limit: int = 200) -> list[dict]:
    t = model.facts
    overdue = _overdue(t, now)
    query = sa.select(t, overdue.label("overdue")).where(t.c.estate == estate, t.c.kind.is_not(None))
    if status in ("open", "overdue"):
        query = query.where(t.c.state == rules.OPEN)
    if status == "overdue":
        query = query.where(overdue)
    elif status == "closed":
        query = query.where(t.c.state == rules.CLOSED)
    if department == rules.UNASSIGNED:
        query = query.where(sa.func.cardinality(t.c.departments) == 0)
    elif department:
        query = query.where(t.c.departments.contains([department]))
    query = query.order_by(sa.desc(overdue), t.c.accepted_at, t.c.ticket_id).limit(limit)
    result = []
    for row in await session.execute(query):
        facts = rules.TicketFacts.from_dict(row.facts)
        result.append({
            "ticket_id": row.ticket_id, "form_number": row.form_number, "kind": row.kind,
            "channel": row.channel, "category": row.category, "building": row.building,
            "first_contact": row.first_contact, "accepted_at": row.accepted_at, "state": row.state,
            "round": row.round, "departments": list(row.departments), "overdue": bool(row.overdue),
            "breached_clocks": facts.breached_clocks, "next_due_at": row.next_due_at,
            "escalations": row.escalations, "reopened": row.reopen_count,
            "closed_at": facts.closed_at,
        })
    return result


@dataclass(frozen=True)
class EstateInfo:
    code: str
    name: str
    departments: dict[str, str]  # code -> name
    tz: ZoneInfo


DASHBOARD_METRICS = (
    "opened", "closed", "clocks_met", "clocks_breached", "callbacks_required", "callbacks_done",
    "satisfaction_answers", "result_satisfied", "attitude_satisfied", "escalations",
)


def _month_json(figures: Figures) -> dict:
    satisfaction = None
    if figures.satisfaction_answers:
        satisfaction = (figures.result_satisfied + figures.attitude_satisfied) / (2 * figures.satisfaction_answers)
    return {
        **{m: getattr(figures, m) for m in DASHBOARD_METRICS},
        "on_time_rate": figures.on_time_rate, "callback_rate": figures.callback_rate,
        "result_satisfaction_rate": figures.result_satisfaction_rate,
        "attitude_satisfaction_rate": figures.attitude_satisfaction_rate,
        "satisfaction_rate": satisfaction,
    }


async def dashboard_summary(session, model: store.ReadModel, estates: Sequence[EstateInfo], now: dt.datetime,
                            company_tz: ZoneInfo, days: int = 14, alerts: int = 30) -> dict:
    """Everything the live dashboard shows, for the estates the caller may see."""
    codes = [e.code for e in estates]
    today = {e.code: now.astimezone(e.tz).date() for e in estates}
    company_today = now.astimezone(company_tz).date()
    day_labels = [(company_today - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]
    periods = set(day_labels) | {d.isoformat() for d in today.values()} | {d.isoformat()[:7] for d in today.values()}
    r, t, a = model.rollups, model.facts, model.alerts

    counters: dict[tuple[str, str], dict] = {}
    if codes:
        rows = await session.execute(
            sa.select(r.c.period, r.c.estate, r.c.metric, r.c.value).where(
                r.c.period.in_(sorted(periods)), r.c.estate.in_(codes),
                r.c.dimension == rules.Dimension.estate.value, r.c.metric.in_(DASHBOARD_METRICS),
            )
        )
        for row in rows:
            counters.setdefault((row.period, row.estate), {})[(rules.Dimension.estate.value, row.estate, row.metric)] = row.value

    overdue = _overdue(t, now)
    open_by_estate: dict[str, tuple[int, int]] = {}
    open_by_department: dict[tuple[str, str], tuple[int, int]] = {}
    if codes:
        open_rows = sa.and_(t.c.estate.in_(codes), t.c.state == rules.OPEN, t.c.kind.is_not(None))
        for row in await session.execute(
            sa.select(t.c.estate, sa.func.count(), sa.func.count().filter(overdue)).where(open_rows).group_by(t.c.estate)
        ):
            open_by_estate[row[0]] = (row[1], row[2])
        department = sa.func.unnest(sa.case(
            (sa.func.cardinality(t.c.departments) == 0, sa.literal([rules.UNASSIGNED], ARRAY_TEXT)),
            else_=t.c.departments,
        )).label("department")
        inner = sa.select(t.c.estate, department, overdue.label("overdue")).where(open_rows).subquery()
        for row in await session.execute(
            sa.select(inner.c.estate, inner.c.department, sa.func.count(), sa.func.count().filter(inner.c.overdue))
            .group_by(inner.c.estate, inner.c.department)
        ):
            open_by_department[(row[0], row[1])] = (row[2], row[3])

    result_estates = []
    totals = Figures()
    for e in estates:
        day, month = today[e.code].isoformat(), today[e.code].isoformat()[:7]
        figures = Figures.from_rollups(counters.get((month, e.code), {}), rules.Dimension.estate.value, e.code)
        totals = totals + figures
        today_opened = counters.get((day, e.code), {}).get((rules.Dimension.estate.value, e.code, "opened"), 0)
        open_count, overdue_count = open_by_estate.get(e.code, (0, 0))
        department_codes = list(e.departments) + sorted(
            {d for (code, d) in open_by_department if code == e.code} - set(e.departments))
        result_estates.append({
            "code": e.code, "name": e.name, "timezone": e.tz.key, "today_opened": today_opened,
            "open": open_count, "overdue": overdue_count, "month": _month_json(figures),
            "departments": [
                {"code": d, "name": e.departments.get(d, d),
                 "open": open_by_department.get((e.code, d), (0, 0))[0],
                 "overdue": open_by_department.get((e.code, d), (0, 0))[1]}
                for d in department_codes
            ],
        })

    daily = []
    for label in day_labels:
        opened = sum(counters.get((label, c), {}).get((rules.Dimension.estate.value, c, "opened"), 0) for c in codes)
        closed = sum(counters.get((label, c), {}).get((rules.Dimension.estate.value, c, "closed"), 0) for c in codes)
        daily.append({"day": label, "opened": opened, "closed": closed})

    recent = []
    if codes:
        rows = await session.execute(
            sa.select(a, t.c.form_number).select_from(
                a.outerjoin(t, (t.c.estate == a.c.estate) & (t.c.ticket_id == a.c.ticket_id))
            ).where(a.c.estate.in_(codes)).order_by(a.c.at.desc(), a.c.event_id).limit(alerts)
        )
        recent = [{"estate": row.estate, "ticket_id": row.ticket_id, "form_number": row.form_number,
                   "event": row.event, "clock": row.clock, "department": row.department, "rung": row.rung,
                   "at": row.at} for row in rows]

    return {
        "generated_at": now, "today": company_today.isoformat(), "month": company_today.isoformat()[:7],
        "totals": {
            "today_opened": sum(e["today_opened"] for e in result_estates),
            "open": sum(e["open"] for e in result_estates),
            "overdue": sum(e["overdue"] for e in result_estates),
            "month": _month_json(totals),
        },
        "estates": result_estates, "daily_intake": daily, "alerts": recent,
    }

