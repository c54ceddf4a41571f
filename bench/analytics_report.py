"""Analytics benchmark: time to produce one estate's monthly report (《月客户意见统计分析表》),
the company consolidation and the quarterly summary as the read model grows from 10
thousand to 10 million tickets' worth of rollups across up to 1 000 estates.

    python bench/analytics_report.py                      # 10k → 100k → 1M → 10M tickets
    python bench/analytics_report.py --sizes 10000,100000 # a quick look

How the rollups are sized. Reports never read tickets: they read counters
``(period, estate, dimension, key, metric) -> value``, so 10 million tickets are counters
whose values add up to 10 million opened forms, not 10 million rows. How many counter rows
an estate-month really has is measured, not guessed: one month of a large estate (10 000
tickets a year, ~833 a month: every kind and channel of the form, ~20 cause categories,
24 buildings, 10 customer-service staff, 5 departments, the clocks of dispatch, callbacks,
validity judgements, escalations, breaches and re-opened rounds) is simulated event by
event through the service's own `rules.apply_event`, and its month counters become the
template. Every (estate, month) of the benchmark is a copy of that template with values
jittered by ±10 % (breaches by -70…+70 %, so the estates rank differently). Sizes grow by
estates, each with 12 months of history: 1 estate = 10 thousand tickets, 10 = 100 thousand,
100 = 1 million, 1 000 = 10 million. Day counters (the dashboard's) are not loaded: no
report reads them, and the key starts with the period, so they live in other key ranges
of the same index. The rows are generated inside PostgreSQL (INSERT … SELECT from the
template and generate_series), the table unlogged and its indexes rebuilt after each load:
loading is not what is measured.

Each timing is the full path the HTTP API takes (queries through SQLAlchemy/asyncpg plus
the pure rules building the report), the median of several runs on a warm cache.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from estatedesk.embedded import EmbeddedPostgres  # noqa: E402
from services.analytics import reports, rules, store  # noqa: E402
from shared import events as ev  # noqa: E402
from shared.db import migrate  # noqa: E402
from shared.policy import DEFAULT_POLICY  # noqa: E402
from shared.settings import asyncpg_url  # noqa: E402

TZ = ZoneInfo(DEFAULT_POLICY.timezone)
TEMPLATE_MONTH = "2026-06"
TICKETS_PER_ESTATE = 10_000  # over the months of history

KINDS = [("repair", 40), ("complaint", 15), ("inquiry", 20), ("suggestion", 5), ("praise", 3),
         ("special_service", 7), ("situation_report", 8), ("activity", 2)]
CHANNELS = [("phone", 45), ("walk_in", 25), ("online", 15), ("letter", 3), ("walk_around_visit", 5),
            ("relayed_by_employee", 5), ("escalated_from_above", 2)]
CATEGORIES = {
    "repair": ["plumbing", "electrical", "elevator", "door_lock", "roof_leak", "drains", "lighting", "intercom"],
    "complaint": ["noise", "parking", "hygiene", "staff_attitude", "pets", "security", "fees", "greening"],
    "situation_report": ["hygiene", "security", "greening", "public_facilities", "parking"],
    "special_service": ["cleaning_service", "appliance_repair", "moving"],
}
DEPARTMENT_OF = {"plumbing": "engineering", "electrical": "engineering", "elevator": "engineering",
                 "door_lock": "engineering", "roof_leak": "engineering", "drains": "engineering",
                 "lighting": "engineering", "intercom": "engineering", "appliance_repair": "engineering",
                 "noise": "security", "parking": "security", "security": "security", "pets": "security",
                 "hygiene": "cleaning", "cleaning_service": "cleaning", "moving": "cleaning",
                 "greening": "greening", "public_facilities": "engineering"}
RUNGS = ["department_head", "estate_director", "company_general_management"]


def pick(rng: random.Random, weighted):
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def simulate_ticket(rng: random.Random, n: int, month_start: dt.datetime) -> list[ev.CloudEvent]:
    """One ticket's life, as the services would emit it."""
    kind = pick(rng, KINDS)
    channel = pick(rng, CHANNELS)
    category = rng.choice(CATEGORIES.get(kind, ["general"]))
    department = DEPARTMENT_OF.get(category, "customer_service")
    tid = f"T{n}"
    t = month_start + dt.timedelta(days=rng.randrange(27), hours=rng.randrange(7, 22), minutes=rng.randrange(60))
    staff = f"cs{rng.randrange(1, 11):02d}"
    events: list[tuple[ev.Payload, dt.datetime]] = []

    def at(minutes: float) -> dt.datetime:
        return t + dt.timedelta(minutes=minutes)

    events.append((ev.Accepted(
        ticket_id=tid, form_number=f"F{n}", kind=kind, channel=channel, category=category,
        repair_class="general" if kind == "repair" else None, building=str(rng.randrange(1, 25)),
        description="…", first_contact=staff, received_at=t, off_hours=t.hour >= 18), t))
    if kind == "complaint":
        events.append((ev.ValidityJudged(ticket_id=tid, valid=rng.random() < 0.8, reason="…", judged_by="sup"), at(30)))
    if kind in ("praise", "inquiry") and rng.random() < 0.8:
        events.append((ev.Closed(ticket_id=tid, closed_by=staff, reason="answered"), at(20)))
        return [ev.make_event(p, estate="tpl", actor="x", source="bench", time=w) for p, w in events]
    deadlines = [ev.Deadline(clock="acknowledge", due_at=at(30), department=department),
                 ev.Deadline(clock="reply", due_at=at(60 * 48)),
                 ev.Deadline(clock="tracking", due_at=at(60 * 72))]
    if kind == "repair":
        deadlines += [ev.Deadline(clock="arrival", due_at=at(60), department=department),
                      ev.Deadline(clock="repair_slip_return", due_at=at(60 * 24), department=department)]
    rounds = 2 if rng.random() < 0.04 else 1
    clock = 10.0
    for round_ in range(1, rounds + 1):
        events.append((ev.Assigned(ticket_id=tid, round=round_, departments=[department], assigned_by=staff,
                                   deadlines=deadlines if round_ == 1 else []), at(clock)))
        late = rng.random() < 0.08
        events.append((ev.Acknowledged(ticket_id=tid, round=round_, department=department,
                                       acknowledged_by=f"{department}-1"), at(clock + (45 if late else 15))))
        if kind == "repair":
            arrive = clock + (90 if late else 40)
            events.append((ev.Arrived(ticket_id=tid, round=round_, department=department, arrived_by=f"{department}-2",
                                      arrived_at=at(arrive)), at(arrive)))
            if late:
                events.append((ev.SlaBreached(ticket_id=tid, round=round_, clock="arrival", due_at=at(60),
                                              department=department), at(61)))
                events.append((ev.Escalated(ticket_id=tid, round=round_, rung=rng.choice(RUNGS), reason="late",
                                            clock="arrival", nonconformity=rng.random() < 0.1), at(62)))
        if rng.random() < 0.1 and round_ == rounds:
            return [ev.make_event(p, estate="tpl", actor="x", source="bench", time=w) for p, w in events]  # still open
        done = clock + rng.randrange(120, 60 * 40)
        events.append((ev.SignedBack(ticket_id=tid, round=round_, department=department, opinion="…", result="…",
                                     signed_by=f"{department}-2", verified_by=f"{department}-head"), at(done - 30)))
        events.append((ev.Completed(ticket_id=tid, round=round_, kind=kind, category=category,
                                    departments=[department], completed_at=at(done)), at(done)))
        if kind == "complaint" and rng.random() < 0.3:
            events.append((ev.ProgressUpdated(ticket_id=tid, note="…", updated_by=staff), at(done - 60)))
        callback = f"{tid}-cb{round_}"
        events.append((ev.CallbackScheduled(ticket_id=tid, callback_id=callback, round=round_, due_at=at(done + 60 * 48),
                                            method="phone", rule="bench"), at(done + 1)))
        if rng.random() < 0.05:
            events.append((ev.CallbackOverdue(ticket_id=tid, callback_id=callback, round=round_,
                                              due_at=at(done + 60 * 48)), at(done + 60 * 49)))
        happy = round_ == rounds
        events.append((ev.CallbackDone(ticket_id=tid, callback_id=callback, round=round_, method="phone",
                                       handled_in_time=rng.random() < 0.9,
                                       result_satisfied=happy and rng.random() < 0.93,
                                       attitude_satisfied=rng.random() < 0.97, done_by=staff,
                                       on_time=rng.random() < 0.95), at(done + 60 * 20)))
        if not happy:
            events.append((ev.Reopened(ticket_id=tid, round=round_ + 1, reason="again", reopened_by=staff,
                                       departments=[department]), at(done + 60 * 21)))
            clock = done + 60 * 22
    events.append((ev.Closed(ticket_id=tid, round=rounds, closed_by=staff, reason="satisfied"), at(clock + 60 * 45)))
    return [ev.make_event(p, estate="tpl", actor="x", source="bench", time=w) for p, w in events]


def template(tickets: int, seed: int = 7) -> dict[tuple[str, str, str], int]:
    """One estate-month of counters, folded by the service's own rules."""
    rng = random.Random(seed)
    month_start = dt.datetime.fromisoformat(f"{TEMPLATE_MONTH}-01T00:00:00").replace(tzinfo=TZ)
    events = [e for n in range(tickets) for e in simulate_ticket(rng, n, month_start)]
    events.sort(key=lambda e: e.time)
    _, deltas = rules.replay(events)
    totals = rules.fold(deltas)
    return rules.period_rollups(totals, "tpl", TEMPLATE_MONTH)


def months_back(last: str, count: int) -> list[str]:
    year, month = (int(p) for p in last.split("-"))
    result = []
    for _ in range(count):
        result.append(f"{year}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return sorted(result)


def estate_code(n: int) -> str:
    return f"e{n:04d}"


async def load(pg: asyncpg.Connection, rows: dict, first: int, last: int, months: list[str]) -> float:
    """Estates first..last-1, every month: template copies, generated inside PostgreSQL."""
    started = time.perf_counter()
    await pg.execute("DROP TABLE IF EXISTS template; CREATE TEMP TABLE template "
                     "(dimension text, key text, metric text, value bigint)")
    await pg.copy_records_to_table("template", records=[(d, k, m, v) for (d, k, m), v in rows.items()])
    await pg.execute("ALTER TABLE analytics.rollups DROP CONSTRAINT IF EXISTS rollups_pkey")
    await pg.execute("DROP INDEX IF EXISTS analytics.ix_rollups_open_balance, analytics.ix_rollups_breaches")
    await pg.execute(
        """
        INSERT INTO analytics.rollups (period, estate, dimension, key, metric, value)
        SELECT m.period, 'e' || lpad(e::text, 4, '0'), t.dimension,
               CASE WHEN t.dimension = 'estate' THEN 'e' || lpad(e::text, 4, '0') ELSE t.key END,
               t.metric,
               greatest(0, round(t.value * CASE WHEN t.metric = 'clocks_breached' THEN 0.3 + 1.4 * random()
                                                ELSE 0.9 + 0.2 * random() END))::bigint
        FROM generate_series($1::int, $2::int - 1) AS e
        CROSS JOIN unnest($3::text[]) AS m(period)
        CROSS JOIN template t
        """, first, last, months)
    # The company's month counters, as the consumer keeps them (store.company_deltas).
    await pg.execute("DELETE FROM analytics.rollups WHERE estate = '*'")
    await pg.execute(
        """
        INSERT INTO analytics.rollups (period, estate, dimension, key, metric, value)
        SELECT period, '*', dimension, CASE WHEN dimension = 'estate' THEN '*' ELSE key END, metric, sum(value)
        FROM analytics.rollups
        WHERE length(period) = 7 AND dimension NOT IN ('staff', 'building') AND estate <> '*'
        GROUP BY 1, 3, 4, 5
        """)
    await pg.execute("ALTER TABLE analytics.rollups ADD PRIMARY KEY (period, estate, dimension, key, metric)")
    await pg.execute(
        "CREATE INDEX ix_rollups_open_balance ON analytics.rollups (estate, period) WHERE dimension = 'estate' "
        "AND metric IN ('opened', 'reactivated', 'closed') AND length(period) = 7")
    await pg.execute(
        "CREATE INDEX ix_rollups_breaches ON analytics.rollups (estate, key) WHERE dimension = 'clock' "
        "AND metric = 'clocks_breached' AND length(period) = 7")
    await pg.execute("VACUUM ANALYZE analytics.rollups")
    return time.perf_counter() - started


async def timed(fn, runs: int) -> tuple[float, object]:
    durations, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = await fn()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), result


async def measure(url: str, rows: dict, sizes: list[int], months: list[str], per_estate: int) -> None:
    month = months[-1]
    quarter = rules.quarter_of(month)[0].replace("-", "")
    pg = await asyncpg.connect(url)
    await pg.execute("ALTER TABLE analytics.rollups SET UNLOGGED")
    await pg.execute("SET maintenance_work_mem = '1GB'")
    engine = create_async_engine(asyncpg_url(url))
    header = (f"{'tickets':>12} {'estates':>8} {'counter rows':>13} {'load s':>7} "
              f"{'estate month ms':>16} {'consolidation ms':>17} {'quarter ms':>11}")
    print(header)
    print("-" * len(header), flush=True)
    loaded = 0
    for size in sizes:
        estates = max(1, round(size / per_estate))
        load_s = await load(pg, rows, loaded, estates, months)
        loaded = estates
        count = await pg.fetchval("SELECT count(*) FROM analytics.rollups")
        opened = await pg.fetchval("SELECT sum(value) FROM analytics.rollups WHERE dimension = 'estate' "
                                   "AND metric = 'opened' AND length(period) = 7 AND estate <> '*'")
        async with engine.connect() as conn:
            one, report = await timed(lambda: reports.estate_monthly(
                conn, store.LIVE, estate_code(estates // 2), month, DEFAULT_POLICY), 7)
            company, consolidation = await timed(
                lambda: reports.company_monthly(conn, store.LIVE, month, DEFAULT_POLICY), 3)
            quarterly, _ = await timed(lambda: reports.company_quarterly(
                conn, store.LIVE, quarter, month, DEFAULT_POLICY), 3 if estates < 1000 else 1)
        assert report.totals.opened > 0 and len(consolidation.rows) == estates
        print(f"{opened:>12,} {estates:>8,} {count:>13,} {load_s:>7.1f} {one * 1000:>16.1f} "
              f"{company * 1000:>17.1f} {quarterly * 1000:>11.1f}", flush=True)
    await engine.dispose()
    await pg.close()


def main(sizes: list[int], months_count: int, per_estate: int) -> None:
    per_month = round(per_estate / months_count)
    started = time.perf_counter()
    rows = template(per_month)
    print(f"template: one estate-month of {per_month} tickets simulated through rules.apply_event "
          f"in {time.perf_counter() - started:.1f} s -> {len(rows)} counter rows "
          f"(opened {rows.get(('estate', 'tpl', 'opened'), 0)})", flush=True)
    months = months_back(TEMPLATE_MONTH, months_count)
    with tempfile.TemporaryDirectory(prefix="estatedesk-analytics-bench-", dir="/tmp") as tmp:
        postgres = EmbeddedPostgres(Path(tmp)).start()
        try:
            migrate("analytics", postgres.url)  # runs its own event loop: before ours
            asyncio.run(measure(postgres.url, rows, sizes, months, per_estate))
        finally:
            postgres.stop()
    month = months[-1]
    print(f"\nmonth {month}, {months_count} months of history per estate. One estate's report reads its month's "
          "counters and its carried-in balance (earlier months' opened/reactivated/closed); the consolidation "
          "reads every estate's own totals (ranking) and the company's counters; the quarter does so for 3 months.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000",
                        help="tickets' worth of rollups, comma-separated (default 10k,100k,1M,10M)")
    parser.add_argument("--months", type=int, default=6, help="months of history per estate (default 6)")
    parser.add_argument("--tickets-per-estate", type=int, default=TICKETS_PER_ESTATE,
                        help="tickets per estate over those months (default 10 000)")
    args = parser.parse_args()
    main([int(s) for s in args.sizes.split(",")], args.months, args.tickets_per_estate)
