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
import functools
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from shared import limits
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert as pg_insert

from services.analytics import rules
from services.analytics.rules import RollupDelta, TicketFacts
from shared import events as ev
from shared.db import rows_json, service_metadata
from shared.policy import Policy
from shared.uow import SqlUnitOfWork

metadata = service_metadata("analytics")

# Codes, never text for people: compared and sorted byte by byte (4x faster sorts than a
# linguistic collation, and the same on every server whatever its default).
def Code(length: int) -> sa.String:
    return sa.String(length, collation="C")


ALERT_EVENTS = (ev.SlaBreached.event_name, ev.Escalated.event_name, ev.CorrectiveActionSuggested.event_name)
# Per-person and per-building breakdowns mean nothing summed across estates.
COMPANY_SKIPPED_DIMENSIONS = (rules.Dimension.staff.value, rules.Dimension.building.value)
OPEN_BALANCE_METRICS = (rules.Metric.opened.value, rules.Metric.reactivated.value, rules.Metric.closed.value)
COUNTER_KEYS = ("period", "estate", "dimension", "key", "metric")  # a counter's key columns, in key order


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
        # Repeat detection's two searches (rules.RepeatSearch): the estate's latest tickets
        # of a category, and its latest of one building, each an index range of `limit` rows.
        sa.Index("ix_ticket_facts_repeats", "estate", "category", "accepted_at"),
        sa.Index("ix_ticket_facts_repeats_building", "estate", "category", "building", "accepted_at"),
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


# --- writing: what a batch of events changes, held in memory, then one statement ----


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


def company_key(period: str, dimension: str, key: str) -> str | None:
    """The key of a counter's company twin (estate `COMPANY_TOTAL`), None when it has none:
    only month counters, and not the per-person or per-building ones."""
    if len(period) != 7 or dimension in COMPANY_SKIPPED_DIMENSIONS:
        return None
    return rules.COMPANY_TOTAL if dimension == rules.Dimension.estate.value else key


def company_deltas(deltas: list[RollupDelta]) -> list[RollupDelta]:
    """The same increments for the company's month counters (estate `COMPANY_TOTAL`): the
    consolidation reads them instead of summing every estate's breakdowns."""
    return [RollupDelta(rules.COMPANY_TOTAL, d.period, d.dimension, twin, d.metric, d.delta)
            for d in deltas if (twin := company_key(d.period, d.dimension, d.key)) is not None]


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


@dataclass
class Batch:
    """What a batch of events changes in the read model, summed in memory: each changed
    ticket's latest facts (its form number once seen), the counter increments summed per
    counter (the estates'; `totals` adds the company's), the repeat suggestions and alerts. `write_batch`
    stores it with one statement."""

    facts: dict[tuple[str, str], TicketFacts] = field(default_factory=dict)
    form_numbers: dict[tuple[str, str], str] = field(default_factory=dict)
    # The estates' counters (period, estate, dimension, key, metric); `totals` adds the company's.
    counters: dict[tuple[str, str, str, str, str], int] = field(default_factory=dict)
    suggestions: dict[str, dict] = field(default_factory=dict)
    alerts: dict[str, dict] = field(default_factory=dict)
    # The batch's tickets by (estate, category), in the order first seen (ticket id → None),
    # for repeat detection: a search looks at its own category's tickets, not the batch's.
    # A ticket stays under a category it later left; `recent_same_category` checks the facts.
    by_category: dict[tuple[str, str | None], dict[str, None]] = field(default_factory=dict)

    def add(self, event: ev.CloudEvent, after: TicketFacts, deltas: list[RollupDelta], policy: Policy) -> None:
        """One folded event: its ticket's new facts and its increments (never fails, so a
        handler calls it last and a refused event leaves the batch as it was)."""
        key = (after.estate, after.ticket_id)
        self.facts[key] = after
        self.by_category.setdefault((after.estate, after.category), {})[after.ticket_id] = None
        if event.event_name == ev.Accepted.event_name and event.data.get("form_number"):
            self.form_numbers[key] = event.data["form_number"]
        # The fold's hot path (about 20 increments an event): the company's twins are
        # summed once per counter when the batch is written (`totals`), not once per delta.
        counters, get = self.counters, self.counters.get
        for estate, period, dimension, key, metric, delta in deltas:
            counter = (period, estate, dimension, key, metric)
            counters[counter] = get(counter, 0) + delta
        suggestion, alert = extra_rows(event, policy)
        if suggestion:
            self.suggestions.setdefault(suggestion["event_id"], suggestion)
        if alert:
            self.alerts.setdefault(alert["event_id"], alert)

    def totals(self) -> dict[tuple[str, str, str, str, str], int]:
        """Every counter the batch moves, keyed (period, estate, dimension, key, metric):
        the estates' summed increments and their company twins (`company_key`; the
        twin of a sum is the sum of the twins)."""
        totals = dict(self.counters)
        get = totals.get
        for (period, estate, dimension, key, metric), value in self.counters.items():
            twin = company_key(period, dimension, key)
            if twin is not None:
                counter = (period, rules.COMPANY_TOTAL, dimension, twin, metric)
                totals[counter] = get(counter, 0) + value
        return totals

    def __bool__(self) -> bool:
        return bool(self.facts or self.counters or self.suggestions or self.alerts)




@functools.cache
def _batch_write_statement(schema: str) -> sa.TextClause:
    """A batch's writes in one statement (one round trip) whose text never changes: each
    table's rows in a sub-statement of its own (data-modifying WITH queries), travelling
    as arrays (`unnest`: the counters) or as one JSON array (`jsonb_populate_recordset`:
    facts, suggestions, alerts); a table with nothing to write gets an empty array. A
    multi-VALUES INSERT would be a new statement per row count, compiled anew (28 % of
    analytics' samples in the issue-12 profile)."""
    model = _model(schema)
    quoted = f'"{schema}"'

    def from_json(table: sa.Table, rows: str, on_conflict: str) -> str:
        return (f"INSERT INTO {quoted}.{table.name} AS t SELECT * FROM jsonb_populate_recordset("
                f"NULL::{quoted}.{table.name}, CAST(CAST(:{rows} AS text) AS jsonb)) {on_conflict}")

    kept = [c.name for c in model.facts.columns if c.name not in ("estate", "ticket_id", "form_number")]
    facts = from_json(model.facts, "facts", "ON CONFLICT (estate, ticket_id) DO UPDATE SET "
                      + ", ".join(f"{name} = excluded.{name}" for name in kept)
                      # The form number only travels on `accepted`; later rows must not erase it.
                      + ", form_number = coalesce(excluded.form_number, t.form_number)")
    rollups = (f"INSERT INTO {quoted}.rollups AS t ({', '.join(COUNTER_KEYS)}, value) SELECT * FROM unnest("
               + ", ".join(f"CAST(:{k} AS text[])" for k in COUNTER_KEYS) + ", CAST(:value AS bigint[])) "
               f"ON CONFLICT ({', '.join(COUNTER_KEYS)}) DO UPDATE SET value = t.value + excluded.value")
    return sa.text(f"WITH written_facts AS ({facts}), written_rollups AS ({rollups}), written_suggestions AS "
                   f"({from_json(model.suggestions, 'suggestions', 'ON CONFLICT DO NOTHING')}) "
                   + from_json(model.alerts, "alerts", "ON CONFLICT DO NOTHING"))


async def write_batch(session, model: ReadModel, batch: Batch, now: dt.datetime, *, into_empty: bool = False) -> None:
    """Store a batch: facts, counters (summed increments added to the stored values, rows in
    key order so concurrent writers lock the company rows alike), suggestions and alerts;
    one statement for all four tables. `session` may be an AsyncSession or an
    AsyncConnection. `into_empty`: the facts and counter tables are known to be empty (a
    rebuild's first write), so their rows are copied in (COPY) instead of upserted."""
    if into_empty:  # no other writer and no row lock: no order to keep
        await _copy_in(session, model,
                       [facts_row(facts, now, batch.form_numbers.get(key)) for key, facts in batch.facts.items()],
                       [(counter, value) for counter, value in batch.totals().items() if value])
        facts, counters = [], []
    else:
        facts = [facts_row(batch.facts[key], now, batch.form_numbers.get(key)) for key in sorted(batch.facts)]
        counters = sorted((counter, value) for counter, value in batch.totals().items() if value)
    if not (facts or counters or batch.suggestions or batch.alerts):
        return
    columns = list(zip(*(counter for counter, _ in counters))) or [()] * len(COUNTER_KEYS)
    await session.execute(_batch_write_statement(model.schema), dict(
        zip(COUNTER_KEYS, map(list, columns)), value=[value for _, value in counters], facts=rows_json(facts),
        **{name: rows_json([rows[k] for k in sorted(rows)])
           for name, rows in (("suggestions", batch.suggestions), ("alerts", batch.alerts))}))


async def _copy_in(session, model: ReadModel, facts: list[dict], counters: list[tuple[tuple, int]]) -> None:
    """COPY rows into empty facts and counter tables on the session's own asyncpg connection
    (inside its transaction)."""
    raw = (await session.get_raw_connection()).driver_connection
    if facts:
        names = [c.name for c in model.facts.columns]
        records = [tuple(rows_json(row[n]) if n == "facts" else row[n] for n in names)
                   for row in facts]
        await raw.copy_records_to_table(model.facts.name, schema_name=model.schema, columns=names, records=records)
    if counters:
        await raw.copy_records_to_table(
            model.rollups.name, schema_name=model.schema,
            columns=[*COUNTER_KEYS, "value"],
            records=[(*counter, value) for counter, value in counters])


@dataclass(frozen=True)
class Applied:
    before: TicketFacts | None
    after: TicketFacts
    deltas: list[RollupDelta]


def _model(schema: str) -> ReadModel:
    return LIVE if schema == LIVE.schema else read_model(schema)


# Statements built once per read model (by schema): a statement built per call costs its
# construction and cache-key generation each time even when the compiled form is cached.
@functools.cache
def _facts_for_update_query(schema: str) -> sa.Select:
    t = _model(schema).facts
    return sa.select(t.c.facts).where(t.c.estate == sa.bindparam("estate"),
                                      t.c.ticket_id == sa.bindparam("ticket")).with_for_update()


@functools.cache
def _recent_same_category_query(schema: str) -> sa.CompoundSelect:
    t = _model(schema).facts
    before = sa.tuple_(t.c.accepted_at, t.c.ticket_id) < sa.tuple_(sa.bindparam("at"), sa.bindparam("ticket"))

    def latest(*extra):
        return sa.select(t.c.ticket_id, t.c.category, t.c.building, t.c.accepted_at).where(
            t.c.estate == sa.bindparam("estate"), t.c.category == sa.bindparam("category"),
            t.c.accepted_at > sa.bindparam("since"), before,
            t.c.kind == sa.func.any(sa.bindparam("kinds", type_=ARRAY(sa.Text))), *extra,
        ).order_by(t.c.accepted_at.desc(), t.c.ticket_id.desc()).limit(sa.bindparam("limit")).subquery()

    return sa.union_all(sa.select(latest()), sa.select(latest(t.c.building == sa.bindparam("building"))))


@functools.cache
def _batch_read_statement(schema: str) -> sa.TextualSelect:
    """A batch's reads in one statement whose text never changes: the facts of the tickets
    `:estates`/`:tickets` (arrays, pairwise), locked in key order (the order `write_batch`
    writes them in, so no two writers wait on each other in a circle), and, for each repeat
    search of `:searches` (a JSON array, `ask` numbering them), what
    `_recent_same_category_query` answers for it: a facts row has `ask` NULL, a repeat row
    its search's number. One index range scan per search (estate, category, accepted_at)."""
    t = f'"{schema}".ticket_facts'

    def latest(building: str) -> str:
        return (f"SELECT t.ticket_id, t.category, t.building, t.accepted_at FROM {t} t "
                "WHERE t.estate = s.estate AND t.category = s.category AND t.accepted_at > s.since "
                f"AND (t.accepted_at, t.ticket_id) < (s.at, s.ticket) AND t.kind = ANY(s.kinds){building} "
                "ORDER BY t.accepted_at DESC, t.ticket_id DESC LIMIT s.lim")

    return sa.text(
        f"WITH locked AS (SELECT t.estate, t.ticket_id, t.facts FROM {t} t "
        "JOIN unnest(CAST(:estates AS text[]), CAST(:tickets AS text[])) AS k(estate, ticket_id) "
        "ON t.estate = k.estate AND t.ticket_id = k.ticket_id "
        "ORDER BY t.estate, t.ticket_id FOR UPDATE OF t), "
        "searches AS (SELECT * FROM jsonb_to_recordset(CAST(CAST(:searches AS text) AS jsonb)) AS s("
        'ask int, estate text COLLATE "C", category text COLLATE "C", building text, at timestamptz, '
        'ticket text COLLATE "C", kinds text[], since timestamptz, lim int)) '
        "SELECT NULL::int AS ask, l.estate, l.ticket_id, l.facts, NULL AS category, NULL AS building, "
        "NULL::timestamptz AS accepted_at FROM locked l "
        "UNION ALL SELECT s.ask, s.estate, r.ticket_id, NULL, r.category, r.building, r.accepted_at "
        f"FROM searches s CROSS JOIN LATERAL (({latest('')}) UNION ALL ({latest(' AND t.building = s.building')})) r"
    ).columns(sa.column("ask", sa.Integer), sa.column("estate", sa.Text), sa.column("ticket_id", sa.Text),
              sa.column("facts", JSONB), sa.column("category", sa.Text), sa.column("building", sa.Text),
              sa.column("accepted_at", sa.DateTime(timezone=True)))


class TicketFactsRepository:
    """The tickets' facts of one read model, read through the batch: a ticket loaded once
    per batch (its row locked), its later events see the facts the batch made. A batch's
    reads can be made up front in one statement (`prepare`); whatever was not prepared is
    read when first asked for."""

    def __init__(self, session, model: ReadModel, batch: Batch):
        self.session, self.model, self.batch = session, model, batch
        self._loaded: dict[tuple[str, str], TicketFacts | None] = {}
        # Prepared repeat searches: the stored tickets each one found (what is stored does
        # not change until the batch is written, and `flush` forgets them then).
        self._searched: dict[rules.RepeatSearch, list[rules.RecentTicket]] = {}
        # Set by a rebuild into an empty model until its first write: no ticket is stored.
        self.nothing_stored = False

    async def prepare(self, keys: list[tuple[str, str]], searches: list[rules.RepeatSearch]) -> None:
        """Read, in one statement, the facts of tickets `keys` ((estate, ticket id), their
        rows locked; a ticket without a row is remembered as never seen) and the stored
        answers of repeat `searches` (see `recent_same_category`). Costs nothing when both
        are already known."""
        wanted = sorted(set(keys) - self._loaded.keys() - self.batch.facts.keys())
        searches = [s for s in dict.fromkeys(searches) if s not in self._searched]
        if not wanted and not searches:
            return
        rows = await self.session.execute(_batch_read_statement(self.model.schema), {
            "estates": [estate for estate, _ in wanted], "tickets": [ticket for _, ticket in wanted],
            "searches": rows_json([dict(ask=n, estate=s.estate, category=s.new.category, building=s.new.building,
                                         at=s.new.accepted_at, ticket=s.new.ticket_id, kinds=list(s.kinds),
                                         since=s.since, lim=s.limit) for n, s in enumerate(searches)])})
        self._loaded.update(dict.fromkeys(wanted))
        found: list[dict[str, rules.RecentTicket]] = [{} for _ in searches]
        for r in rows:
            if r.ask is None:
                self._loaded[(r.estate, r.ticket_id)] = TicketFacts.from_dict(r.facts)
            else:
                found[r.ask][r.ticket_id] = rules.RecentTicket(r.ticket_id, r.category, r.building, r.accepted_at)
        self._searched.update((s, list(f.values())) for s, f in zip(searches, found))

    async def get_for_update(self, estate: str, ticket_id: str) -> TicketFacts | None:
        """The ticket's facts as this batch has them (None: never seen)."""
        key = (estate, ticket_id)
        if key in self.batch.facts:
            return self.batch.facts[key]
        if key not in self._loaded:
            row = (await self.session.execute(_facts_for_update_query(self.model.schema),
                                              {"estate": estate, "ticket": ticket_id})).first()
            self._loaded[key] = TicketFacts.from_dict(row.facts) if row else None
        return self._loaded[key]

    async def load_many(self, keys: list[tuple[str, str]]) -> None:
        """Read many tickets' facts at once (the rebuild's batches); unlocked."""
        t = self.model.facts
        wanted = sorted(set(keys) - self._loaded.keys() - self.batch.facts.keys())
        if self.nothing_stored:  # a fresh rebuild before its first write: nothing to read
            self._loaded.update(dict.fromkeys(wanted))
            return
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start:start + 1000]
            rows = await self.session.execute(sa.select(t.c.estate, t.c.ticket_id, t.c.facts)
                                              .where(sa.tuple_(t.c.estate, t.c.ticket_id).in_(chunk)))
            found = {(r.estate, r.ticket_id): TicketFacts.from_dict(r.facts) for r in rows}
            self._loaded.update({key: found.get(key) for key in chunk})

    async def recent_same_category(self, search: rules.RepeatSearch) -> list[rules.RecentTicket]:
        """What repeat detection needs of the estate's earlier tickets of `search.new`'s
        category (see `rules.RepeatSearch`): the latest `limit` stored ones, the latest
        `limit` stored ones in its building, and every such ticket of this batch; flat
        however many tickets the category has (the index on estate, category,
        accepted_at). Read now unless `prepare` read it."""
        estate, new, kinds, since, limit = search
        stored = self._searched.get(search)
        if stored is None:
            rows = await self.session.execute(_recent_same_category_query(self.model.schema), {
                "estate": estate, "category": new.category, "since": since, "at": new.accepted_at,
                "ticket": new.ticket_id, "kinds": list(kinds), "limit": limit, "building": new.building})
            stored = [rules.RecentTicket(r.ticket_id, r.category, r.building, r.accepted_at) for r in rows]
        in_batch = self.batch.facts
        # The batch's facts are newer than the stored rows.
        found = {t.ticket_id: t for t in stored if (estate, t.ticket_id) not in in_batch}
        # The batch's own: `limit` of them in the window (and `limit` of the building) answer
        # as all of them would (any superset of the latest `limit` does: `RepeatSearch`), so
        # the search stops there, latest seen first, and a batch of one category costs
        # each search `limit` tickets, not the batch.
        wanted_estate, wanted_building = limit, (limit if new.building is not None else 0)
        for ticket_id in reversed(self.batch.by_category.get((estate, new.category), ())):
            facts = in_batch[(estate, ticket_id)]
            if facts.category == new.category and facts.kind in kinds and facts.accepted_at is not None \
                    and since < facts.accepted_at and (facts.accepted_at, ticket_id) < (new.accepted_at, new.ticket_id):
                found[ticket_id] = rules.RecentTicket(ticket_id, facts.category, facts.building, facts.accepted_at)
                wanted_estate -= 1
                if new.building is not None and facts.building == new.building:
                    wanted_building -= 1
                if wanted_estate <= 0 and wanted_building <= 0:
                    break
        return list(found.values())

    def save(self, event: ev.CloudEvent, after: TicketFacts, deltas: list[RollupDelta], policy: Policy) -> None:
        """The folded event joins the batch (written by `write_batch`)."""
        self.batch.add(event, after, deltas, policy)


class SignOffRepository:
    """The department heads' sign-offs of the monthly form (entered by people)."""

    def __init__(self, session):
        self.session = session

    async def save(self, row: dict) -> None:
        """Insert or replace the department's entry for (estate, month)."""
        t = report_signoffs
        stmt = pg_insert(t)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=["estate", "month", "department"],
            set_={k: stmt.excluded[k] for k in ("problems", "corrective_actions", "signed_by", "signer_name",
                                                 "signed_at")},
        ), row)


class AnalyticsUnitOfWork(SqlUnitOfWork):
    """The repositories of one transaction over a read model (the live one, or a rebuild's
    scratch copy). Folded events are held in `batch` until `flush` writes them."""

    def __init__(self, session, emit=None, model: ReadModel = LIVE):
        super().__init__(session, emit)
        self.model = model
        self.batch = Batch()
        self.facts = TicketFactsRepository(session, model, self.batch)
        self.signoffs = SignOffRepository(session)

    async def flush(self, now: dt.datetime, *, into_empty: bool = False) -> None:
        """Write the batch (see `write_batch`; `into_empty`: nothing stored yet)."""
        if self.batch:
            await write_batch(self.session, self.model, self.batch, now, into_empty=into_empty)
        self.facts._loaded.update(self.batch.facts)  # what is stored now
        self.facts._searched.clear()
        self.batch = self.facts.batch = Batch()
