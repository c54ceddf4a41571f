"""The analytics read model: tables, and the statements that fold one event into them.

Everything here except `report_signoffs` is derived from the ticket stream alone, so the
same table definitions serve the live model (schema ``analytics``) and a scratch copy
that `estatedesk analytics rebuild` fills by replaying the stream (`read_model(schema)`).

* ``ticket_facts``  one row per ticket: `rules.TicketFacts` as JSON, plus the columns the
  dashboard, the ticket lists and repeat detection filter on (state, departments of the
  current round, breach / next deadline, category, accepted time);
* ``rollups``       the counters ``(period, estate, dimension, key, metric) -> value`` for
  days ("2026-11-22") and months ("2026-11"), and the company's month counters under
  estate ``*`` (all but per-person and per-building ones); the key starts with the period
  so one estate's month and the company's month are prefix scans;
* ``repeat_suggestions``  every `corrective_action_suggested` seen (the report's section 8);
* ``alerts``        breaches, escalations and repeats as they happen, for the dashboard feed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from shared import limits
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import rules
from services.analytics.rules import RollupDelta, TicketFacts
from shared import events as ev
from shared.db import service_metadata
from shared.policy import Policy

metadata = service_metadata("analytics")

# Codes, never text for people: compared and sorted byte by byte (4x faster sorts than a
# linguistic collation, and the same on every server whatever its default).
def Code(length: int) -> sa.String:
    return sa.String(length, collation="C")


# Rows per multi-VALUES statement: asyncpg allows 32 767 bind parameters.
_CHUNK = 4000
ALERT_EVENTS = (ev.SlaBreached.event_name, ev.Escalated.event_name, ev.CorrectiveActionSuggested.event_name)
# Per-person and per-building breakdowns mean nothing summed across estates.
COMPANY_SKIPPED_DIMENSIONS = (rules.Dimension.staff.value, rules.Dimension.building.value)
OPEN_BALANCE_METRICS = (rules.Metric.opened.value, rules.Metric.reactivated.value, rules.Metric.closed.value)


@dataclass(frozen=True)
class ReadModel:
    """The stream-derived tables of one schema (live, or a rebuild's scratch copy)."""

    metadata: sa.MetaData
    facts: sa.Table
    rollups: sa.Table
    suggestions: sa.Table
    alerts: sa.Table

    @property
    def schema(self) -> str:
        return self.metadata.schema


def define_read_model(md: sa.MetaData) -> ReadModel:
    facts = sa.Table(
        "ticket_facts", md,
        sa.Column("estate", Code(32), primary_key=True),
        sa.Column("ticket_id", Code(64), primary_key=True),
        sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN)),
        sa.Column("kind", sa.String(32)),
        sa.Column("channel", sa.String(32)),
        sa.Column("category", Code(64)),
        sa.Column("building", sa.String(limits.BUILDING_MAX)),
        sa.Column("first_contact", sa.String(limits.ID_MAX)),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        sa.Column("state", Code(16), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        # Departments holding the form in its current round (the weekly review's rule).
        sa.Column("departments", ARRAY(sa.String(64)), nullable=False),
        sa.Column("has_breach", sa.Boolean, nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True)),  # earliest running deadline
        sa.Column("escalations", sa.Integer, nullable=False),
        sa.Column("reopen_count", sa.Integer, nullable=False),
        sa.Column("facts", JSONB, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_ticket_facts_open", "estate", "state"),
        sa.Index("ix_ticket_facts_repeats", "estate", "category", "accepted_at"),
    )
    rollups = sa.Table(
        "rollups", md,
        sa.Column("period", Code(10), primary_key=True),
        sa.Column("estate", Code(32), primary_key=True),
        sa.Column("dimension", Code(16), primary_key=True),
        sa.Column("key", Code(160), primary_key=True),
        sa.Column("metric", Code(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        # Open items carried in = the sum of earlier months' opened + reactivated − closed.
        sa.Index(
            "ix_rollups_open_balance", "estate", "period",
            postgresql_where=sa.text(
                "dimension = 'estate' AND metric IN ('opened', 'reactivated', 'closed') AND length(period) = 7"
            ),
        ),
        # All-time breaches per estate and clock (the Prometheus gauge).
        sa.Index(
            "ix_rollups_breaches", "estate", "key",
            postgresql_where=sa.text("dimension = 'clock' AND metric = 'clocks_breached' AND length(period) = 7"),
        ),
    )
    suggestions = sa.Table(
        "repeat_suggestions", md,
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),  # estate-local month of the suggestion
        sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("suggested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_repeat_suggestions_month", "month", "estate"),
    )
    alerts = sa.Table(
        "alerts", md,
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
        sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("clock", sa.String(64)),
        sa.Column("department", sa.String(64)),
        sa.Column("rung", sa.String(64)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_alerts_estate_at", "estate", "at"),
    )
    return ReadModel(md, facts, rollups, suggestions, alerts)


LIVE = define_read_model(metadata)

# The department head's problems, corrective actions and signature for a month's report
# (RULES §4). Entered by people, not derived from events: a rebuild keeps it.
report_signoffs = sa.Table(
    "report_signoffs", metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("department", sa.String(64), primary_key=True),
    sa.Column("problems", sa.Text, nullable=False),
    sa.Column("corrective_actions", sa.Text, nullable=False),
    sa.Column("signed_by", sa.String(64), nullable=False),
    sa.Column("signer_name", sa.String(200)),
    sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
)


def read_model(schema: str) -> ReadModel:
    """The read-model tables in another schema (a rebuild's scratch copy)."""
    return define_read_model(sa.MetaData(schema=schema))


# --- writing ---------------------------------------------------------------------------------


def facts_row(facts: TicketFacts, now: dt.datetime, form_number: str | None = None) -> dict:
    running = [c.due_at for c in facts.clocks if c.outcome == rules.RUNNING and c.due_at is not None]
    return dict(
        estate=facts.estate, ticket_id=facts.ticket_id, form_number=form_number,
        kind=facts.kind, channel=facts.channel, category=facts.category, building=facts.building,
        first_contact=facts.first_contact, accepted_at=facts.accepted_at, state=facts.state,
        round=facts.round, departments=facts.current_departments,
        has_breach=any(c.outcome == rules.BREACHED for c in facts.clocks),
        next_due_at=min(running) if running else None,
        escalations=facts.escalation_count, reopen_count=facts.reopen_count,
        facts=facts.to_dict(), updated_at=now,
    )


async def save_facts(session: AsyncSession, model: ReadModel, rows: list[dict]) -> None:
    table = model.facts
    for start in range(0, len(rows), _CHUNK // 2):
        stmt = pg_insert(table).values(rows[start:start + _CHUNK // 2])
        columns = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in ("estate", "ticket_id")}
        # The form number only travels on `accepted`; later rows must not erase it.
        columns["form_number"] = sa.func.coalesce(stmt.excluded.form_number, table.c.form_number)
        await session.execute(stmt.on_conflict_do_update(index_elements=["estate", "ticket_id"], set_=columns))


def company_deltas(deltas: list[RollupDelta]) -> list[RollupDelta]:
    """The same increments for the company's month counters (estate `COMPANY_TOTAL`): the
    consolidation reads them instead of summing every estate's breakdowns."""
    return [
        RollupDelta(rules.COMPANY_TOTAL, d.period, d.dimension,
                    rules.COMPANY_TOTAL if d.dimension == rules.Dimension.estate.value else d.key, d.metric, d.delta)
        for d in deltas if len(d.period) == 7 and d.dimension not in COMPANY_SKIPPED_DIMENSIONS
    ]


async def add_rollups(session: AsyncSession, model: ReadModel, deltas: list[RollupDelta]) -> None:
    """Add increments to the estate's and the company's counters: summed first (a
    statement may touch a row once), then one INSERT ... ON CONFLICT DO UPDATE SET
    value = value + excluded.value, rows in key order (concurrent writers lock the
    company rows in the same order)."""
    summed: dict[tuple, int] = {}
    for d in deltas + company_deltas(deltas):
        key = (d.period, d.estate, d.dimension, d.key, d.metric)
        summed[key] = summed.get(key, 0) + d.delta
    rows = [dict(period=p, estate=e, dimension=dim, key=k, metric=m, value=v)
            for (p, e, dim, k, m), v in sorted(summed.items()) if v]
    table = model.rollups
    for start in range(0, len(rows), _CHUNK):
        stmt = pg_insert(table).values(rows[start:start + _CHUNK])
        await session.execute(stmt.on_conflict_do_update(
            index_elements=["period", "estate", "dimension", "key", "metric"],
            set_={"value": table.c.value + stmt.excluded.value},
        ))


def extra_rows(event: ev.CloudEvent, policy: Policy) -> tuple[dict | None, dict | None]:
    """The repeat-suggestion and alert rows an event adds, if any."""
    if event.event_name not in ALERT_EVENTS:
        return None, None
    payload = event.payload()
    suggestion = None
    if isinstance(payload, ev.CorrectiveActionSuggested):
        month = event.time.astimezone(ZoneInfo(policy.timezone)).strftime("%Y-%m")
        suggestion = dict(event_id=event.id, estate=event.estate, month=month, ticket_id=event.subject,
                          payload=payload.model_dump(mode="json"), suggested_at=event.time)
    alert = dict(
        event_id=event.id, estate=event.estate, ticket_id=event.subject, event=event.event_name,
        clock=getattr(payload, "clock", None), department=getattr(payload, "department", None),
        rung=getattr(payload, "rung", None), at=event.time,
    )
    return suggestion, alert


async def save_extras(session: AsyncSession, model: ReadModel, suggestions: list[dict], alerts: list[dict]) -> None:
    for table, rows in ((model.suggestions, suggestions), (model.alerts, alerts)):
        for start in range(0, len(rows), _CHUNK // 4):
            await session.execute(pg_insert(table).values(rows[start:start + _CHUNK // 4]).on_conflict_do_nothing())


@dataclass(frozen=True)
class Applied:
    before: TicketFacts
    after: TicketFacts
    deltas: list[RollupDelta]


async def apply(session: AsyncSession, model: ReadModel, event: ev.CloudEvent, policy: Policy,
                now: dt.datetime) -> Applied | None:
    """Fold one event into the read model inside the caller's transaction: the ticket's
    facts row locked, `rules.apply_event`, facts stored, counters added. None when the
    ticket has already seen this event."""
    table = model.facts
    key = (table.c.estate == event.estate) & (table.c.ticket_id == event.subject)
    row = (await session.execute(sa.select(table.c.facts).where(key).with_for_update())).first()
    if row is None:
        # A placeholder first, so two replicas folding the same new ticket's events
        # serialise on its row instead of overwriting each other's facts.
        empty = TicketFacts(ticket_id=event.subject, estate=event.estate)
        await session.execute(pg_insert(table).values(facts_row(empty, now)).on_conflict_do_nothing())
        row = (await session.execute(sa.select(table.c.facts).where(key).with_for_update())).one()
    before = TicketFacts.from_dict(row.facts)
    if event.id in before.seen_event_ids:
        return None
    after, deltas = rules.apply_event(before, event, policy)
    form_number = event.data.get("form_number") if event.event_name == ev.Accepted.event_name else None
    await save_facts(session, model, [facts_row(after, now, form_number)])
    await add_rollups(session, model, deltas)
    suggestion, alert = extra_rows(event, policy)
    await save_extras(session, model, [suggestion] if suggestion else [], [alert] if alert else [])
    return Applied(before, after, deltas)


async def recent_same_category(session: AsyncSession, model: ReadModel, estate: str, category: str,
                               kinds: tuple[str, ...], since: dt.datetime) -> list[rules.RecentTicket]:
    """The estate's tickets of one category accepted after `since` (repeat detection)."""
    t = model.facts
    rows = await session.execute(
        sa.select(t.c.ticket_id, t.c.category, t.c.building, t.c.accepted_at).where(
            t.c.estate == estate, t.c.category == category, t.c.accepted_at > since, t.c.kind.in_(kinds),
        )
    )
    return [rules.RecentTicket(r.ticket_id, r.category, r.building, r.accepted_at) for r in rows]


# --- reading ---------------------------------------------------------------------------------


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
