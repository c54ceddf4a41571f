"""How the staff's everyday reads grow with history: one form, one ticket, the work lists,
the SLA scan's claim, the callback worklist, the archive's record and catalogue, timed on
10 thousand → 10 million tickets of history (issue 12, "How the cost grows").

    python bench/history.py                              # 10k → 100k → 1M tickets
    python bench/history.py --sizes 10000000             # 10 M on request (fill: see docs/performance.md)
    python bench/history.py --sizes 10000,100000 --runs 5

The schema is the real one: an embedded PostgreSQL, every service's Alembic migrations.
History is generated inside PostgreSQL (INSERT … SELECT FROM generate_series, in chunks,
tables unlogged and their keys and indexes rebuilt after each load: loading is not what is
measured) into the tables those reads touch: intake's tickets and online submissions,
dispatch's forms, ledger lines and clocks, callback's tickets, rounds, callbacks and
recurrence watches, the archive's records. Every ticket of every service agrees (one id,
one estate, one life) and is a deterministic function of its number.

How history is spread. Large estates take 10 000 tickets a year. History grows both ways,
longer and wider (years = 0.5 · (tickets / 10 000)^⅓, at most 5; estates = tickets /
(10 000 · years)): 10 k tickets = 2 estates × 6 months, 100 k = 9 × 13 months, 1 M = 43 ×
2.3 years, 10 M = 200 × 5 years, so the estate every query asks about holds 5 k, 11 k, 23 k
and 50 k tickets. Tickets are interleaved across estates in time, as in life. A ticket
of the last 10 days is still open with probability 0.6, an older one with 0.003 (long-
running complaints and stragglers): the open work stays about the same size per estate
while history grows (3.6 % of all tickets open at 10 k, 1.0 % at 1 M). Closed within 3 days: awaiting its callback;
otherwise closed, callback done, archived (a 1.5 KB sealed form). Kinds, channels and
categories in the proportions of `bench/analytics_report.py`.

Each query runs through the service's own repository or read-model code (the function
the HTTP route or the scan calls) on an AsyncSession, warm: one run to warm, then the
median of `--runs`; each run in its own transaction, rolled back. Every statement of one
more run is captured and run again under EXPLAIN (ANALYZE, BUFFERS): the shared buffers
(8 KB pages) it touched is the machine-independent figure (a flat query touches the same
pages at every size), and the plan of its heaviest statement is shown for the largest
size. The default sizes take 3–6 minutes (the 1 M fill 2–7 of them, 5.2 GB on disk,
depending on the machine's load); 10 M fills for 25–70 minutes and needs ~52 GB in /tmp.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine  # noqa: E402

from estatedesk.embedded import EmbeddedPostgres  # noqa: E402
from services.archive.store import Chain  # noqa: E402
from services.callback import store as callback_store  # noqa: E402
from services.dispatch import queries as dispatch_queries  # noqa: E402
from services.dispatch import store as dispatch_store  # noqa: E402
from services.intake import handlers as intake_handlers  # noqa: E402
from services.intake.owner_store import SelfService  # noqa: E402
from services.intake.uow import IntakeUnitOfWork  # noqa: E402
from shared import limits  # noqa: E402
from shared.db import migrate  # noqa: E402
from shared.policy import DEFAULT_POLICY  # noqa: E402
from shared.settings import SERVICES, asyncpg_url  # noqa: E402

TICKETS_PER_ESTATE_YEAR = 10_000
CHUNK = 250_000  # ticket numbers per INSERT … SELECT
POLICY = DEFAULT_POLICY
TZ = ZoneInfo(POLICY.timezone)

# --- the synthetic history ----------------------------------------------------------------------

# Ticket number i → one ticket's life. Parameters: $1, $2 the chunk [lo, hi); $3 tickets in
# all; $4 estates; $5 days of history; $6 now. u1…u7 are independent uniforms of i.
TICKETS = """
WITH g AS (
    SELECT i, (hashint8extended(i, 1) & 4294967295) / 4294967296.0 AS u1,
           (hashint8extended(i, 2) & 4294967295) / 4294967296.0 AS u2,
           (hashint8extended(i, 3) & 4294967295) / 4294967296.0 AS u3,
           (hashint8extended(i, 4) & 4294967295) / 4294967296.0 AS u4,
           (hashint8extended(i, 5) & 4294967295) / 4294967296.0 AS u5,
           (hashint8extended(i, 6) & 4294967295) / 4294967296.0 AS u6,
           (hashint8extended(i, 7) & 4294967295) / 4294967296.0 AS u7,
           $5::float8 * ($3::bigint - i) / $3::bigint AS age_days
    FROM generate_series($1::bigint, $2::bigint - 1) AS i
), k AS (
    SELECT g.*, 'T' || lpad(i::text, 9, '0') AS id, 'F' || lpad(i::text, 9, '0') AS form_number,
           'e' || lpad((i % $4::int)::text, 4, '0') AS estate,
           $6::timestamptz - age_days * interval '1 day' AS received_at,
           CASE WHEN u1 < .40 THEN 'repair' WHEN u1 < .55 THEN 'complaint' WHEN u1 < .75 THEN 'inquiry'
                WHEN u1 < .80 THEN 'suggestion' WHEN u1 < .83 THEN 'praise' WHEN u1 < .90 THEN 'special_service'
                WHEN u1 < .98 THEN 'situation_report' ELSE 'activity' END AS kind,
           (ARRAY['plumbing', 'electrical', 'elevator', 'door_lock', 'noise', 'parking', 'hygiene', 'greening',
                  'security', 'public_facilities'])[1 + floor(u2 * 10)::int] AS category,
           (ARRAY['engineering', 'engineering', 'engineering', 'engineering', 'security', 'security', 'cleaning',
                  'greening', 'security', 'engineering'])[1 + floor(u2 * 10)::int] AS department,
           CASE WHEN u3 < .45 THEN 'phone' WHEN u3 < .70 THEN 'walk_in' WHEN u3 < .85 THEN 'online'
                WHEN u3 < .88 THEN 'letter' ELSE 'walk_around_visit' END AS channel,
           'cs' || lpad((i % $4::int)::text, 4, '0') || floor(u5 * 10)::int AS first_contact,
           (floor(u6 * 20)::int + 1) || '-' || (floor(u6 * 40)::int % 2 + 1) || '-'
               || ((floor(u6 * 2000)::int % 25 + 1) * 100 + floor(u6 * 4000)::int % 2 + 1) AS unit
    FROM g
), s AS (
    SELECT k.*, CASE WHEN (age_days < 10 AND u4 < .6) OR u4 < .003 THEN 'in_handling'
                     WHEN age_days < 3 AND kind NOT IN ('inquiry', 'praise') THEN 'completed'
                     ELSE 'closed' END AS status
    FROM k
), t AS (
    SELECT s.*, c.completed_at,
           CASE WHEN status = 'closed' THEN least(c.completed_at + interval '20 hours', $6::timestamptz) END
               AS closed_at
    FROM s, LATERAL (SELECT CASE WHEN status <> 'in_handling' THEN greatest(received_at, least(
        received_at + (1 + 40 * u5) * interval '1 hour', $6::timestamptz - interval '10 minutes')) END
        AS completed_at) c
)
"""

FACTS = """json_build_object('ticket_id', id, 'form_number', form_number, 'kind', kind, 'channel', channel,
    'category', category, 'repair_class', CASE WHEN kind = 'repair' THEN 'general' END, 'building',
    split_part(unit, '-', 1), 'unit', unit, 'description', description, 'first_contact', first_contact,
    'received_at', received_at, 'reply_method', 'phone', 'off_hours', false)"""

DESCRIPTION = "repeat('业主反映：' || category || ' ', 6)"

FILLS: dict[str, str] = {
    "intake.tickets": f"""
        INSERT INTO intake.tickets (id, estate, form_number, kind, channel, category, repair_class, severity, urgency,
            accepted_by, building, unit, description, first_contact, received_at, reply_method, off_hours, anonymous,
            status, round, created_at, current_handler, valid, completed_at, closed_at)
        SELECT id, estate, form_number, kind, channel, category, CASE WHEN kind = 'repair' THEN 'general' END,
            'not_serious', 'not_urgent', 'department', split_part(unit, '-', 1), unit, {DESCRIPTION}, first_contact,
            received_at, 'phone', false, false, status, 1, received_at, first_contact,
            CASE WHEN kind = 'complaint' THEN true END, completed_at, closed_at
        FROM t""",
    "intake.owner_submissions": f"""
        INSERT INTO intake.owner_submissions (id, estate, unit, binding_id, device, kind, category, description,
            reply_method, submitted_at, ticket_id, opened_by, opened_at, stage, round, stage_at)
        SELECT 'S' || id, estate, unit, 'B' || estate || unit, 'device-' || estate || unit, kind, category,
            {DESCRIPTION}, 'online', received_at - interval '5 minutes', o.ticket_id,
            CASE WHEN o.ticket_id IS NOT NULL THEN first_contact END,
            CASE WHEN o.ticket_id IS NOT NULL THEN received_at END,
            CASE WHEN o.ticket_id IS NULL THEN 'submitted' WHEN status = 'closed' THEN 'closed'
                 WHEN status = 'completed' THEN 'completed' ELSE 'dispatched' END, 1, coalesce(closed_at, received_at)
        FROM t, LATERAL (SELECT CASE WHEN age_days < 1 AND u7 < .3 THEN NULL ELSE id END AS ticket_id) o
        WHERE channel = 'online'""",
    "dispatch.forms": f"""
        INSERT INTO dispatch.forms (ticket_id, estate, form_number, kind, category, repair_class, reply_method,
            first_contact, facts, round, status, accepted_at, updated_at, validity, completed_at)
        SELECT id, estate, form_number, kind, category, CASE WHEN kind = 'repair' THEN 'general' END, 'phone',
            first_contact, {FACTS}, 1, status, received_at, coalesce(closed_at, completed_at, received_at),
            CASE WHEN kind = 'complaint' THEN 'valid' END, completed_at
        FROM (SELECT t.*, {DESCRIPTION} AS description FROM t) t""",
    "dispatch.assignments": """
        INSERT INTO dispatch.assignments (ticket_id, round, department, estate, assigned_at, assigned_by,
            acknowledged_at, acknowledged_by, arrived_at, arrived_by, arrival_required, signed_back_at, opinion, result,
            signed_by, verified_by, signed_at, status)
        SELECT id, 1, department, estate, received_at + interval '10 minutes', first_contact,
            CASE WHEN a.acknowledged THEN received_at + interval '25 minutes' END,
            CASE WHEN a.acknowledged THEN department || '-1' END,
            CASE WHEN a.arrived THEN received_at + interval '50 minutes' END,
            CASE WHEN a.arrived THEN department || '-2' END, kind = 'repair',
            completed_at, CASE WHEN completed_at IS NOT NULL THEN '已处理' END,
            CASE WHEN completed_at IS NOT NULL THEN '完成' END,
            CASE WHEN completed_at IS NOT NULL THEN department || '-2' END,
            CASE WHEN completed_at IS NOT NULL THEN department || '-head' END,
            completed_at - interval '30 minutes',
            CASE WHEN completed_at IS NOT NULL THEN 'signed_back' WHEN a.arrived THEN 'arrived'
                 WHEN a.acknowledged THEN 'acknowledged' ELSE 'assigned' END
        FROM t, LATERAL (SELECT completed_at IS NOT NULL OR age_days > 0.02 AS acknowledged,
                                kind = 'repair' AND (completed_at IS NOT NULL OR age_days > 0.04) AS arrived) a""",
    # Closed forms' clocks are all closed (met); an open form's run until met, and those
    # past due were fired by the SLA scan (breached) but for the last two minutes' worth.
    "dispatch.deadlines": """
        INSERT INTO dispatch.deadlines (ticket_id, estate, round, clock, department, due_at, provisional, met_at,
            breached_at, outcome)
        SELECT id, estate, 1, c.clock, c.department, c.due_at, false, c.met_at,
            CASE WHEN c.met_at IS NULL AND c.due_at < $6::timestamptz - interval '2 minutes'
                 THEN c.due_at + interval '1 minute' END,
            CASE WHEN c.met_at IS NOT NULL THEN 'met' END
        FROM t, LATERAL (
            SELECT v.clock, v.department, received_at + v.after AS due_at,
                   CASE WHEN completed_at IS NOT NULL THEN least(received_at + v.took, completed_at)
                        WHEN v.took IS NOT NULL AND received_at + v.took < $6::timestamptz
                        THEN received_at + v.took END AS met_at
            FROM (VALUES ('acknowledge', t.department, interval '30 minutes', interval '25 minutes'),
                         ('arrival', t.department, interval '60 minutes', interval '50 minutes'),
                         ('reply', '', interval '48 hours', NULL),
                         ('tracking', '', interval '72 hours', NULL)) AS v(clock, department, after, took)
            WHERE v.clock <> 'arrival' OR kind = 'repair') c""",
    "callback.tickets": """
        INSERT INTO callback.tickets (ticket_id, estate, form_number, kind, category, category_key, channel,
            repair_class, reply_method, first_contact, raised_at, accepted_seen, valid, departments, first_assigned_at,
            current_round, status, closed_at, closed_round, closed_reason, closed_satisfied, updated_at, unit)
        SELECT id, estate, form_number, kind, category, category, channel, CASE WHEN kind = 'repair' THEN 'general' END,
            'phone', first_contact, received_at, true, CASE WHEN kind = 'complaint' THEN true END,
            ARRAY[department], received_at + interval '10 minutes', 1,
            CASE status WHEN 'completed' THEN 'awaiting_callback' ELSE status END, closed_at,
            CASE WHEN closed_at IS NOT NULL THEN 1 END, CASE WHEN closed_at IS NOT NULL THEN 'satisfied' END,
            CASE WHEN closed_at IS NOT NULL THEN true END, coalesce(closed_at, completed_at, received_at), unit
        FROM t""",
    "callback.rounds": """
        INSERT INTO callback.rounds (ticket_id, round, estate, kind, category, departments, reply_method, completed_at,
            completed_event_id, outcome, outcome_at, outcome_by)
        SELECT id, 1, estate, kind, category, ARRAY[department], 'phone', completed_at, 'ev-' || id || '-completed',
            CASE WHEN closed_at IS NOT NULL THEN 'satisfied' END, closed_at,
            CASE WHEN closed_at IS NOT NULL THEN first_contact END
        FROM t WHERE completed_at IS NOT NULL AND kind NOT IN ('inquiry', 'praise')""",
    "callback.callbacks": """
        INSERT INTO callback.callbacks (callback_id, ticket_id, estate, round, rule, purpose, kind, category,
            departments, method, counts_in_rate, completed_at, due_at, assigned_to, status, scheduled_at, overdue_at,
            done_at, done_by, record_method, handled_in_time, result_satisfied, attitude_satisfied, on_time, outcome,
            outcome_round)
        SELECT id || '-cb1', id, estate, 1, 'standard', 'satisfaction', kind, category, ARRAY[department], 'phone',
            true, completed_at, completed_at + interval '48 hours', first_contact,
            CASE WHEN closed_at IS NOT NULL THEN 'done' ELSE 'pending' END, completed_at,
            CASE WHEN closed_at IS NULL AND completed_at + interval '48 hours' < $6::timestamptz
                 THEN completed_at + interval '49 hours' END,
            closed_at, CASE WHEN closed_at IS NOT NULL THEN first_contact END,
            CASE WHEN closed_at IS NOT NULL THEN 'phone' END,
            CASE WHEN closed_at IS NOT NULL THEN u6 < .9 END, CASE WHEN closed_at IS NOT NULL THEN u6 < .93 END,
            CASE WHEN closed_at IS NOT NULL THEN u6 < .97 END, CASE WHEN closed_at IS NOT NULL THEN u6 < .95 END,
            CASE WHEN closed_at IS NOT NULL THEN 'satisfied' END, CASE WHEN closed_at IS NOT NULL THEN 1 END
        FROM t WHERE completed_at IS NOT NULL AND kind NOT IN ('inquiry', 'praise')""",
    # Repairs with no callback path are judged by the recurrence rule over a window.
    "callback.recurrence_watches": f"""
        INSERT INTO callback.recurrence_watches (ticket_id, round, estate, category, category_key, departments, kind,
            completed_at, window_ends_at, verdict, decided_at)
        SELECT id, 1, estate, category, category, ARRAY[department], kind, completed_at, w.ends_at,
            CASE WHEN w.ends_at < $6::timestamptz THEN 'satisfied' END,
            CASE WHEN w.ends_at < $6::timestamptz THEN w.ends_at END
        FROM t, LATERAL (SELECT completed_at + interval '{POLICY.callback.recurrence_window_days} days' AS ends_at) w
        WHERE completed_at IS NOT NULL AND kind = 'repair' AND u7 < .05""",
    # The sealed form is ~1.5 KB (below the TOAST threshold: stored in the row, as a
    # small real form is). Months before this one are organised, quarters before this
    # one bound into volumes.
    "archive.records": f"""
        INSERT INTO archive.records (estate, sequence, record_number, ticket_id, form_number, kind, title, closed_at,
            closed_month, archived_class, retention_class, archived_at, content, content_hash, previous_hash,
            record_hash, destroyed, month_part, volume_number, volume_item)
        SELECT estate, i, estate || '-' || to_char(m.local, 'YYYY') || '-' || lpad(i::text, 9, '0'), id, form_number,
            kind, kind || '：' || category, closed_at, to_char(m.local, 'YYYY-MM'), 'ordinary', 'ordinary',
            closed_at + interval '1 minute', decode(repeat(md5(id), 96), 'hex'), md5(id) || md5(form_number),
            md5(form_number) || md5(id), md5(id || 'r') || md5(form_number || 'r'), false,
            CASE WHEN date_trunc('month', m.local) < date_trunc('month', m.today) THEN 1 END,
            CASE WHEN date_trunc('quarter', m.local) < date_trunc('quarter', m.today)
                 THEN estate || '-' || to_char(m.local, 'YYYY"Q"Q') || '-1' END,
            CASE WHEN date_trunc('quarter', m.local) < date_trunc('quarter', m.today) THEN i END
        FROM t, LATERAL (SELECT closed_at AT TIME ZONE '{POLICY.timezone}' AS local,
                                $6::timestamptz AT TIME ZONE '{POLICY.timezone}' AS today) m
        WHERE closed_at IS NOT NULL""",
}


def spread(tickets: int) -> tuple[int, float]:
    """(estates, days of history) for a history of `tickets` (module docstring)."""
    years = min(5.0, max(0.5, 0.5 * (tickets / TICKETS_PER_ESTATE_YEAR) ** (1 / 3)))
    return max(1, round(tickets / (TICKETS_PER_ESTATE_YEAR * years))), years * 365


@dataclass
class Keys:
    """A table's primary key, unique constraints and indexes: dropped for the load, rebuilt after."""

    table: str
    constraints: list[tuple[str, str]]
    indexes: list[tuple[str, str]]


async def keys_of(pg: asyncpg.Connection, table: str) -> Keys:
    schema, name = table.split(".")
    constraints = await pg.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
        "WHERE conrelid = $1::regclass AND contype IN ('p', 'u')", table)
    owned = [c["conname"] for c in constraints]
    indexes = await pg.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 "
                             "AND NOT indexname = ANY($3::text[])", schema, name, owned)
    return Keys(table, [(c["conname"], c["definition"]) for c in constraints],
                [(i["indexname"], i["indexdef"]) for i in indexes])


async def fill(pg: asyncpg.Connection, keys: list[Keys], tickets: int, estates: int, days: float,
               now: dt.datetime) -> dict[str, float]:
    """Empty the tables and load `tickets` tickets' history; seconds per table (keys
    and indexes rebuilt, then VACUUM ANALYZE, under "keys+analyze")."""
    seconds: dict[str, float] = {}
    await pg.execute("TRUNCATE " + ", ".join(k.table for k in keys) + " RESTART IDENTITY")
    for k in keys:
        schema = k.table.split(".")[0]
        for name, _ in k.constraints:
            await pg.execute(f"ALTER TABLE {k.table} DROP CONSTRAINT IF EXISTS {name}")
        for name, _ in k.indexes:
            await pg.execute(f"DROP INDEX IF EXISTS {schema}.{name}")
    for table, statement in FILLS.items():
        started = time.perf_counter()
        for lo in range(0, tickets, CHUNK):
            await pg.execute(TICKETS + statement, lo, min(lo + CHUNK, tickets), tickets, estates, days, now)
        seconds[table] = time.perf_counter() - started
    started = time.perf_counter()
    for k in keys:
        for name, definition in k.constraints:
            await pg.execute(f"ALTER TABLE {k.table} ADD CONSTRAINT {name} {definition}")
        for _, definition in k.indexes:
            await pg.execute(definition)
    for k in keys:
        await pg.execute(f"VACUUM ANALYZE {k.table}")
    seconds["keys+analyze"] = time.perf_counter() - started
    return seconds


# --- what is asked ------------------------------------------------------------------------------


@dataclass
class Target:
    """The rows the queries ask about: one estate (every estate is alike), a closed ticket
    from the middle of its history, one of its staff, units, months."""

    estate: str
    ticket_id: str
    record_number: str
    month: str
    staff: str
    unit: str
    category: str
    now: dt.datetime


async def target_of(pg: asyncpg.Connection, tickets: int, estates: int, now: dt.datetime) -> Target:
    middle = (tickets // 2) // estates * estates  # a ticket of estate e0000
    ticket_id = f"T{middle:09d}"
    row = await pg.fetchrow("SELECT t.estate, t.first_contact, t.category, r.record_number FROM intake.tickets t "
                            "JOIN archive.records r ON r.ticket_id = t.id WHERE t.id = $1", ticket_id)
    unit = await pg.fetchval("SELECT unit FROM intake.owner_submissions WHERE estate = $1 "
                             "ORDER BY submitted_at DESC LIMIT 1", row["estate"])
    local = now.astimezone(TZ)
    last_month = (local.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    return Target(row["estate"], ticket_id, row["record_number"], last_month, row["first_contact"], unit,
                  row["category"], now)


Run = Callable[[AsyncSession, Target], Awaitable[object]]


@dataclass(frozen=True)
class Probe:
    service: str
    name: str
    run: Run


async def _intake_ticket(s: AsyncSession, t: Target):
    return await intake_handlers.ticket_view(t.estate, t.ticket_id, IntakeUnitOfWork(s, emit=None))


def _intake_list(**filters) -> Run:
    async def run(s: AsyncSession, t: Target):
        extra = {k: (v(t) if callable(v) else v) for k, v in filters.items()}
        return await IntakeUnitOfWork(s, emit=None).tickets.list_for_estate(t.estate, **extra)
    return run


def _clocks(s: AsyncSession) -> dispatch_store.ClockRepository:
    return dispatch_store.ClockRepository(s, dispatch_store.NewRows(s))


def _work_list(department: str | None, status: str, limit: int) -> Run:
    async def run(s: AsyncSession, t: Target):
        return await dispatch_queries.work_list(s, t.estate, department, status, limit, t.now)
    return run


async def _callback_worklist(s: AsyncSession, t: Target):
    """What GET /estates/{estate}/callbacks runs (status pending, every staff member)."""
    uow = callback_store.CallbackUnitOfWork(s, emit=None)
    rows = await uow.callbacks.worklist(t.estate, "pending", None, t.now)
    started_before = t.now - dt.timedelta(days=POLICY.clocks.progress_updates_after_days)
    complaints = await uow.tickets.long_running_complaints(t.estate, None, started_before)
    await uow.progress.of_tickets([c.ticket_id for c in complaints])
    return rows


async def _callback_history(s: AsyncSession, t: Target):
    """What GET /estates/{estate}/tickets/{id}/callbacks runs."""
    uow = callback_store.CallbackUnitOfWork(s, emit=None)
    await uow.tickets.get(t.estate, t.ticket_id)
    return (await uow.rounds.of_ticket(t.ticket_id), await uow.callbacks.of_ticket(t.ticket_id),
            await uow.watches.of_ticket(t.ticket_id), await uow.progress.of_tickets([t.ticket_id]))


async def _callback_metrics(s: AsyncSession, t: Target):
    """What GET /estates/{estate}/callback-metrics?month= runs."""
    uow = callback_store.CallbackUnitOfWork(s, emit=None)
    year, month = (int(p) for p in t.month.split("-"))
    start = dt.datetime(year, month, 1, tzinfo=TZ)
    end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=TZ)
    return await uow.callbacks.counted(t.estate, start, end), await uow.watches.decided(t.estate, start, end)


async def _recurrence_reads(s: AsyncSession, t: Target):
    """What decide_recurrence reads on an `accepted`/`assigned`/`completed` event: the
    category's undecided watches, then the opinions raised since the earliest of them was
    completed, read here as the widest it can be (a window about to elapse: an older one
    is the recurrence scan's to decide) even when no watch of the category is undecided."""
    uow = callback_store.CallbackUnitOfWork(s, emit=None)
    watches = await uow.watches.undecided(t.estate, t.category)
    widest = t.now - dt.timedelta(days=POLICY.callback.recurrence_window_days)
    since = min([widest] + [w.completed_at for w in watches])
    return await uow.tickets.opinions(t.estate, t.category, since), watches


PROBES = [
    Probe("intake", "one request by id (GET /requests/{id})", _intake_ticket),
    Probe("intake", "request list, console default (newest 200)", _intake_list()),
    Probe("intake", "request list, open only", _intake_list(status="in_handling")),
    Probe("intake", "my requests (first contact, Mine view)", _intake_list(first_contact=lambda t: t.staff)),
    Probe("intake", "complaint list (kind=complaint, 500)", _intake_list(kind="complaint", limit=500)),
    Probe("intake", "owner's own requests (self-service)",
          lambda s, t: SelfService(s).submissions_of_unit(t.estate, t.unit)),
    Probe("intake", "online requests waiting for a clerk",
          lambda s, t: SelfService(s).online_requests(t.estate, "waiting")),
    Probe("dispatch", "one form with its lines (FormRepository.get)",
          lambda s, t: dispatch_store.FormRepository(s, dispatch_store.NewRows(s)).get(t.ticket_id, t.estate)),
    Probe("dispatch", "the form as shown (GET /forms/{id})",
          lambda s, t: dispatch_queries.form_detail(s, t.estate, t.ticket_id)),
    Probe("dispatch", "work list, estate open (GET /forms)", _work_list(None, "open", 200)),
    Probe("dispatch", "department queue, open (Worklist view)", _work_list("engineering", "open", 200)),
    Probe("dispatch", "work list, overdue", _work_list(None, "overdue", 200)),
    Probe("dispatch", "all forms, 1000 (Mine view)", _work_list(None, "all", 1000)),
    Probe("dispatch", "SLA scan: claim due clocks (claim_due)",
          lambda s, t: _clocks(s).claim_due(t.now, 100)),
    Probe("dispatch", "SLA scan: next wake (next_wake)", lambda s, t: _clocks(s).next_wake()),
    Probe("callback", "callback worklist, pending (GET /callbacks)", _callback_worklist),
    Probe("callback", "callback worklist, done", lambda s, t: callback_store.CallbackUnitOfWork(s, emit=None)
          .callbacks.worklist(t.estate, "done", None, t.now)),
    Probe("callback", "a ticket's rounds and callbacks", _callback_history),
    Probe("callback", "overdue scan (claim_overdue)", lambda s, t: callback_store.CallbackUnitOfWork(s, emit=None)
          .callbacks.claim_overdue(t.now, 100)),
    Probe("callback", "callback metrics of a month", _callback_metrics),
    Probe("callback", "recurrence rule's reads (per event)", _recurrence_reads),
    Probe("archive", "one record by number", lambda s, t: Chain(s).record(t.estate, t.record_number)),
    Probe("archive", "catalogue of a month, a page (console default)",
          lambda s, t: Chain(s).catalogue(t.estate, month=t.month, limit=limits.PAGE_DEFAULT)),
    Probe("archive", "catalogue, newest page (no month)",
          lambda s, t: Chain(s).catalogue(t.estate, limit=limits.PAGE_DEFAULT)),
    Probe("archive", "record of a ticket (timeline, ticket page)",
          lambda s, t: Chain(s).entry_of_ticket(t.estate, t.ticket_id)),
]


# --- timing and plans -------------------------------------------------------------------------


@dataclass
class Measured:
    ms: float
    buffers: int
    rows: int
    plan: str
    statements: int


@dataclass
class Capture:
    on: bool = False
    statements: list[tuple[str, object]] = field(default_factory=list)

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.on:
            self.statements.append((statement, parameters))


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def describe(plan: dict) -> str:
    """The plan's scans (type, and index or table) and sorts, outermost first."""
    parts = []
    for node in _nodes(plan):
        kind = node["Node Type"]
        if "Scan" in kind:
            on = node.get("Index Name") or node.get("Relation Name") or ""
            parts.append(f"{kind} {on}".strip())
        elif kind in ("Sort", "Incremental Sort"):
            parts.append(f"{kind} ({node.get('Sort Method', '')})".replace(" ()", ""))
    seen: list[str] = []
    for part in parts:
        if part not in seen:
            seen.append(part)
    return " → ".join(seen)


async def measure(maker: async_sessionmaker, capture: Capture, probe: Probe, target: Target, runs: int) -> Measured:
    durations = []
    async with maker() as session:
        result = None
        for n in range(runs + 1):  # the first run warms
            started = time.perf_counter()
            result = await probe.run(session, target)
            if n:
                durations.append(time.perf_counter() - started)
            await session.rollback()
        capture.statements.clear()
        capture.on = True
        try:
            await probe.run(session, target)
        finally:
            capture.on = False
        conn = await session.connection()
        buffers, heaviest = 0, (-1, "")
        for statement, parameters in list(capture.statements):
            explained = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement,
                                                    parameters)).scalar_one()
            plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
            touched = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
            buffers += touched
            if touched > heaviest[0]:
                heaviest = (touched, describe(plan))
        await session.rollback()
    return Measured(statistics.median(durations) * 1000, buffers, returned(result), heaviest[1],
                    len(capture.statements))


def returned(result) -> int:
    """Rows a call returned: a list's length, a work list's forms, a tuple's first part."""
    if isinstance(result, dispatch_queries.WorkList):
        return len(result.forms)
    if isinstance(result, tuple):
        return returned(result[0])
    return len(result) if isinstance(result, list) else int(result is not None)


def table(sizes: list[int], results: dict[int, dict[str, Measured]]) -> str:
    def size_name(n: int) -> str:
        return f"{n // 1_000_000} M" if n >= 1_000_000 else f"{n // 1000} k"

    largest = sizes[-1]
    head = ("| query | " + " | ".join(f"{size_name(n)} ms" for n in sizes) + " | "
            + " | ".join(f"{size_name(n)} buffers" for n in sizes) + f" | rows | plan at {size_name(largest)} |")
    lines = [head, "|" + "---|" * (3 + 2 * len(sizes))]
    for probe in PROBES:
        label = f"{probe.service}: {probe.name}"
        at = [results[n][label] for n in sizes]
        lines.append(f"| {label} | " + " | ".join(f"{m.ms:.2f}" for m in at) + " | "
                     + " | ".join(f"{m.buffers:,}" for m in at) + f" | {at[-1].rows} | {at[-1].plan} |")
    return "\n".join(lines)


async def bench(url: str, sizes: list[int], runs: int, now: dt.datetime) -> None:
    pg = await asyncpg.connect(url)
    await pg.execute("SET maintenance_work_mem = '512MB'")
    keys = [await keys_of(pg, name) for name in FILLS]
    for k in keys:
        await pg.execute(f"ALTER TABLE {k.table} SET UNLOGGED")
    engine = create_async_engine(asyncpg_url(url))
    capture = Capture()
    sa.event.listen(engine.sync_engine, "before_cursor_execute", capture)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    results: dict[int, dict[str, Measured]] = {}
    for size in sizes:
        estates, days = spread(size)
        started = time.perf_counter()
        seconds = await fill(pg, keys, size, estates, days, now)
        filled = time.perf_counter() - started
        target = await target_of(pg, size, estates, now)
        per_estate = await pg.fetchval("SELECT count(*) FROM intake.tickets WHERE estate = $1", target.estate)
        open_ = await pg.fetchval("SELECT count(*) FROM intake.tickets WHERE status = 'in_handling'")
        megabytes = await pg.fetchval("SELECT sum(pg_total_relation_size(t::regclass)) / 1e6 FROM unnest($1::text[]) t",
                                      list(FILLS))
        print(f"\n{size:,} tickets: {estates} estates × {days / 365:.1f} years, {per_estate:,} in the estate asked "
              f"about, {open_:,} open ({100 * open_ / size:.1f} %); {megabytes:,.0f} MB in {len(FILLS)} tables; "
              f"filled in {filled:.0f} s ("
              + ", ".join(f"{name.split('.')[-1]} {s:.0f}" for name, s in seconds.items()) + ")", flush=True)
        results[size] = await measure_all(maker, capture, target, runs)
    await engine.dispose()
    await pg.close()
    print(f"\n{platform.node()}, {platform.processor() or platform.machine()}, PostgreSQL (embedded), "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; median of {runs} warm runs; buffers = 8 KB pages "
          "touched (EXPLAIN ANALYZE BUFFERS, all statements of one call); rows = what the call returned\n")
    print(table(sizes, results))


async def measure_all(maker: async_sessionmaker, capture: Capture, target: Target, runs: int) -> dict[str, Measured]:
    results = {}
    for probe in PROBES:
        label = f"{probe.service}: {probe.name}"
        results[label] = m = await measure(maker, capture, probe, target, runs)
        print(f"  {label:<62} {m.ms:8.2f} ms {m.buffers:>8,} buffers {m.rows:>5} rows  {m.plan}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="tickets of history, comma-separated (default 10k,100k,1M; 10000000 on request)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per query (the median is printed)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="estatedesk-history-bench-", dir="/tmp") as tmp:
        postgres = EmbeddedPostgres(Path(tmp)).start()
        try:
            for service in SERVICES:
                migrate(service, postgres.url)  # runs its own event loop: before ours
            asyncio.run(bench(postgres.url, sizes, args.runs, now))
        finally:
            postgres.stop()
    print(f"\nwhole run {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
