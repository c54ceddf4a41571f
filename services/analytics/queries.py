"""Analytics' read-model queries (the reports', the dashboard's and the metrics' reads),
over a `store.ReadModel` (the live one or a rebuild's scratch copy). Shapes: plain dicts
and lists keyed as the docstrings say; `session` is an AsyncSession or AsyncConnection.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from services.analytics import rules
from services.analytics.rules import TicketFacts
from services.analytics.store import OPEN_BALANCE_METRICS, ReadModel, report_signoffs

async def month_rollups(session, model: ReadModel, estate: str, period: str) -> dict[tuple[str, str, str], int]:
    r = model.rollups
    rows = await session.execute(
        sa.select(r.c.dimension, r.c.key, r.c.metric, r.c.value).where(r.c.period == period, r.c.estate == estate)
    )
    return {(row.dimension, row.key, row.metric): row.value for row in rows}


def _balance_filter(r: sa.Table, before_month: str):
    # Written exactly as the partial index's predicate so the planner uses it.
    return sa.and_(
        r.c.dimension == "estate", r.c.metric.in_(OPEN_BALANCE_METRICS),
        sa.func.length(r.c.period) == 7, r.c.period < before_month,
    )


def _balance_sum(r: sa.Table):
    return sa.func.coalesce(sa.func.sum(
        sa.case((r.c.metric == rules.Metric.closed.value, -r.c.value), else_=r.c.value)
    ), 0)


async def open_carried_in(session, model: ReadModel, estate: str, month: str) -> int:
    """Open items at the start of `month`: every earlier month's opened + reactivated − closed."""
    r = model.rollups
    return int((await session.execute(
        sa.select(_balance_sum(r)).where(r.c.estate == estate, _balance_filter(r, month))
    )).scalar_one())


async def open_carried_in_all(session, model: ReadModel, month: str) -> dict[str, int]:
    r = model.rollups
    rows = await session.execute(
        sa.select(r.c.estate, _balance_sum(r).label("open"))
        .where(_balance_filter(r, month), r.c.estate != rules.COMPANY_TOTAL).group_by(r.c.estate)
    )
    return {row.estate: int(row.open) for row in rows}


async def estate_totals(session, model: ReadModel, periods: list[str]) -> dict[tuple[str, str], dict]:
    """(period, estate) -> that estate's own (dimension 'estate') counters."""
    r = model.rollups
    rows = await session.execute(
        sa.select(r.c.period, r.c.estate, r.c.key, r.c.metric, r.c.value)
        .where(r.c.period.in_(periods), r.c.dimension == rules.Dimension.estate.value,
               r.c.estate != rules.COMPANY_TOTAL)
    )
    result: dict[tuple[str, str], dict] = {}
    dimension = rules.Dimension.estate.value
    for period, estate, key, metric, value in rows:
        result.setdefault((period, estate), {})[(dimension, key, metric)] = value
    return result


async def company_sums(session, model: ReadModel, periods: list[str]) -> dict[tuple[str, str, str], int]:
    """The company's counters of `periods` (summed over them): what `rules.company_consolidation`
    computes by merging every estate's report, kept incrementally by `add_rollups`."""
    r = model.rollups
    rows = await session.execute(
        sa.select(r.c.dimension, r.c.key, r.c.metric, sa.func.sum(r.c.value).label("value"))
        .where(r.c.period.in_(periods), r.c.estate == rules.COMPANY_TOTAL)
        .group_by(r.c.dimension, r.c.key, r.c.metric)
    )
    return {(row.dimension, row.key, row.metric): int(row.value) for row in rows}


async def suggestions_for(session, model: ReadModel, month: str, estate: str | None = None) -> list:
    s = model.suggestions
    query = sa.select(s.c.estate, s.c.payload).where(s.c.month == month).order_by(s.c.suggested_at, s.c.event_id)
    if estate is not None:
        query = query.where(s.c.estate == estate)
    return list(await session.execute(query))


async def signoffs_for(session, month: str, estate: str | None = None) -> list:
    t = report_signoffs
    query = sa.select(t).where(t.c.month == month).order_by(t.c.estate, t.c.department)
    if estate is not None:
        query = query.where(t.c.estate == estate)
    return list(await session.execute(query))


async def load_facts(session, model: ReadModel, estate: str, *, open_only: bool = True) -> list[TicketFacts]:
    t = model.facts
    query = sa.select(t.c.facts).where(t.c.estate == estate)
    if open_only:
        query = query.where(t.c.state == rules.OPEN)
    return [TicketFacts.from_dict(row.facts) for row in await session.execute(query)]


async def open_and_overdue(session, model: ReadModel, now: dt.datetime) -> list[tuple[str, int, int]]:
    """(estate, open forms, open forms with a breached or past-due clock) per estate."""
    t = model.facts
    overdue = sa.or_(t.c.has_breach, t.c.next_due_at < now)
    return [tuple(row) for row in await session.execute(
        sa.select(t.c.estate, sa.func.count(), sa.func.count().filter(overdue))
        .where(t.c.state == rules.OPEN, t.c.kind.is_not(None)).group_by(t.c.estate)
    )]


async def breaches_per_clock(session, model: ReadModel) -> list[tuple[str, str, int]]:
    """(estate, clock, breaches since the read model began) from the month counters."""
    r = model.rollups
    return [tuple(row) for row in await session.execute(
        sa.select(r.c.estate, r.c.key, sa.func.sum(r.c.value)).where(
            r.c.dimension == "clock", r.c.metric == "clocks_breached", sa.func.length(r.c.period) == 7,
            r.c.estate != rules.COMPANY_TOTAL,
        ).group_by(r.c.estate, r.c.key)
    )]


async def estate_month_figures(session, model: ReadModel, periods: list[str],
                               metrics: tuple[str, ...]) -> list[tuple[str, str, str, int]]:
    """(period, estate, metric, value) of the estates' own counters of `periods`."""
    if not periods:
        return []
    r = model.rollups
    return [tuple(row) for row in await session.execute(
        sa.select(r.c.period, r.c.estate, r.c.metric, r.c.value).where(
            r.c.period.in_(periods), r.c.dimension == rules.Dimension.estate.value, r.c.metric.in_(metrics),
        )
    )]


async def prune_alerts(session, model: ReadModel, before: dt.datetime) -> None:
    """Forget the dashboard's alerts older than `before`."""
    await session.execute(sa.delete(model.alerts).where(model.alerts.c.at < before))
