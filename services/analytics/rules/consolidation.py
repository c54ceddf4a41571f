"""The quality manager's company consolidation and the quarterly summary (RULES.md §4): estates
ranked by `composite_score` (the rule in `RANKING_RULE`), the company sums, and a quarter's
reports summed per estate and for the company."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from shared import periods
from shared.policy import DEFAULT_POLICY, Policy
from services.analytics.rules.common import COMPANY_TOTAL, Dimension
from services.analytics.rules.figures import Figures, MonthlyReport, _build_report


# --- company consolidation and the quarter ------------------------------------------------


@dataclass(frozen=True)
class EstateRanking:
    rank: int
    estate: str
    score: float | None
    on_time_rate: float | None
    callback_on_time_rate: float | None
    satisfaction_rate: float | None
    report: MonthlyReport


@dataclass(frozen=True)
class CompanyConsolidation:
    period: str
    rows: tuple[EstateRanking, ...]  # best first
    company: MonthlyReport  # the sums of every estate (estate COMPANY_TOTAL)
    ranking_rule: str


def _satisfaction(figures: Figures) -> Fraction | None:
    """Result and attitude answers together: satisfied answers / (2 × answers)."""
    if not figures.satisfaction_answers:
        return None
    return Fraction(figures.result_satisfied + figures.attitude_satisfied, 2 * figures.satisfaction_answers)


def _fraction(numerator: int, denominator: int) -> Fraction | None:
    return Fraction(numerator, denominator) if denominator else None


def composite_score(figures: Figures, policy: Policy = DEFAULT_POLICY) -> Fraction | None:
    """The estates' ranking score, exact: the weighted mean of
    on-time rate (clocks met / counted), callback on-time rate (on-time callbacks /
    required) and satisfaction (satisfied result + attitude answers / 2 × answers),
    weights from `policy.analytics`. A component without data is left out and the other
    weights rescaled; with no component at all the score is None (ranked last)."""
    a = policy.analytics
    components = [
        (a.ranking_weight_on_time_percent, _fraction(figures.clocks_met, figures.clocks_met + figures.clocks_breached)),
        (a.ranking_weight_callback_percent, _fraction(figures.callbacks_on_time, figures.callbacks_required)),
        (a.ranking_weight_satisfaction_percent, _satisfaction(figures)),
    ]
    weighted = [(w, c) for w, c in components if c is not None and w > 0]
    total_weight = sum(w for w, _ in weighted)
    if not total_weight:
        return None
    return sum((w * c for w, c in weighted), Fraction(0)) / total_weight


RANKING_RULE = (
    "score = weighted mean of on-time rate (clocks met / counted), callback on-time rate "
    "(callbacks on time / required) and satisfaction ((result + attitude satisfied) / "
    "(2 × answers)); weights from policy.analytics.ranking_weight_*_percent; missing "
    "components left out and the weights rescaled; higher score first, ties by estate code; "
    "estates without any data last"
)


def _merge(reports: Sequence[MonthlyReport], estate: str) -> dict[tuple[str, str, str], int]:
    """Sum the reports' rollups, the estate dimension folded onto `estate`."""
    merged: dict[tuple[str, str, str], int] = {}
    for report in reports:
        for (dimension, key, metric), value in report.rollups.items():
            if dimension == Dimension.estate.value:
                key = estate
            merged[(dimension, key, metric)] = merged.get((dimension, key, metric), 0) + value
    return merged


def _rank(reports: Sequence[MonthlyReport], policy: Policy) -> tuple[EstateRanking, ...]:
    scored = [(composite_score(r.totals, policy), r) for r in reports]
    scored.sort(key=lambda item: (item[0] is None, -(item[0] or 0), item[1].estate))
    return tuple(
        EstateRanking(
            rank=position, estate=report.estate,
            score=float(score) if score is not None else None,
            on_time_rate=report.totals.on_time_rate,
            callback_on_time_rate=report.totals.callback_on_time_rate,
            satisfaction_rate=float(s) if (s := _satisfaction(report.totals)) is not None else None,
            report=report,
        )
        for position, (score, report) in enumerate(scored, start=1)
    )


def _company_report(reports: Sequence[MonthlyReport], period: str, due_on: dt.date | None) -> MonthlyReport:
    actions = [
        dataclasses.replace(line, problem=f"[{r.estate}] {line.problem}")
        for r in reports for line in r.corrective_actions
    ]
    return _build_report(COMPANY_TOTAL, period, _merge(reports, COMPANY_TOTAL),
                         sum(r.open_carried_in for r in reports), actions, due_on, None)


def company_consolidation(reports: Sequence[MonthlyReport], policy: Policy = DEFAULT_POLICY, *,
                          company: MonthlyReport | None = None) -> CompanyConsolidation:
    """The quality manager's monthly consolidation: estates side by side, ranked by
    `composite_score`, and the company sums (rates recomputed from summed counts).
    `company`: those sums when already known (a read model that keeps them), instead of
    merging the reports."""
    if not reports:
        raise ValueError("no estate reports to consolidate")
    periods = {r.period for r in reports}
    if len(periods) != 1:
        raise ValueError(f"reports of different periods: {sorted(periods)}")
    estates = [r.estate for r in reports]
    if len(set(estates)) != len(estates):
        raise ValueError("an estate appears twice")
    period = periods.pop()
    due_on = reports[0].due_on
    return CompanyConsolidation(
        period=period, rows=_rank(reports, policy),
        company=company if company is not None else _company_report(reports, period, due_on),
        ranking_rule=RANKING_RULE,
    )


@dataclass(frozen=True)
class QuarterlySummary:
    """For the management representative (review) and the general manager (reading)."""

    quarter: str  # "2026Q4"
    months: tuple[str, str, str]
    by_estate: dict[str, MonthlyReport]  # each estate's quarter sums
    company_by_month: dict[str, MonthlyReport]  # company sums month by month (the trend)
    company: MonthlyReport  # company sums for the quarter
    ranking: tuple[EstateRanking, ...]  # estates ranked on their quarter figures
    missing: tuple[tuple[str, str], ...]  # (estate, month) with no report supplied


def quarter_of(month: str) -> tuple[str, tuple[str, str, str]]:
    """ "2026-11" → ("2026Q4", its three months)."""
    quarter = periods.quarter_of(month)
    return quarter, periods.months_of_quarter(quarter)


def quarterly_summary(reports: Sequence[MonthlyReport], policy: Policy = DEFAULT_POLICY, *,
                      company_by_month: Mapping[str, MonthlyReport] | None = None,
                      company: MonthlyReport | None = None) -> QuarterlySummary:
    """Sum the monthly reports of one quarter per estate and for the company.
    `company_by_month` / `company`: the company's sums when already known (a read model
    that keeps them), instead of merging the reports."""
    if not reports:
        raise ValueError("no monthly reports for the quarter")
    quarters = {quarter_of(r.period) for r in reports}
    if len(quarters) != 1:
        raise ValueError(f"reports of different quarters: {sorted(q for q, _ in quarters)}")
    quarter, months = quarters.pop()
    seen = [(r.estate, r.period) for r in reports]
    if len(set(seen)) != len(seen):
        raise ValueError("an estate's month appears twice")
    by_estate: dict[str, MonthlyReport] = {}
    grouped: dict[str, list[MonthlyReport]] = {}
    for report in reports:
        grouped.setdefault(report.estate, []).append(report)
    estates = sorted(grouped)
    for estate in estates:
        own = sorted(grouped[estate], key=lambda r: r.period)
        by_estate[estate] = _build_report(
            estate, quarter, _merge(own, estate), own[0].open_carried_in,
            [line for r in own for line in r.corrective_actions], None, None,
        )
    if company_by_month is None:
        company_by_month = {
            month: _company_report([r for r in reports if r.period == month], month, None)
            for month in months if any(r.period == month for r in reports)
        }
    if company is None:
        company = _build_report(
            COMPANY_TOTAL, quarter, _merge(reports, COMPANY_TOTAL),
            sum(by_estate[e].open_carried_in for e in estates),
            [line for r in company_by_month.values() for line in r.corrective_actions], None, None,
        )
    supplied = set(seen)
    missing = tuple((e, m) for e in estates for m in months if (e, m) not in supplied)
    return QuarterlySummary(
        quarter=quarter, months=months, by_estate=by_estate, company_by_month=dict(company_by_month),
        company=company, ranking=_rank(list(by_estate.values()), policy), missing=missing,
    )
