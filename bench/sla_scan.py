"""What dispatch's SLA scan costs the database while nothing is due (issue 12).

Dispatch alone against an embedded PostgreSQL: `--forms` forms are routed (their clocks
run hours ahead), then the service's `sla-scan` job runs as in production (its periodic
loop, the advisory lock across replicas) for `--seconds`. Printed: the scan's runs, the
SQL statements and transactions it sent, per minute; then how long after its due time a
clock fires when another replica made it due (bounded by the schedule's longest sleep)
and when this process wrote it (within about a second).

    python bench/sla_scan.py --seconds 30 --forms 50
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from estatedesk.embedded import EmbeddedPostgres  # noqa: E402
from shared.clock import SystemClock  # noqa: E402
from shared.db import Database, migrate  # noqa: E402


async def measure(url: str, seconds: float, forms: int) -> None:
    from services.dispatch import app, handlers, store
    from shared.events import Accepted, Channel, Kind, RepairClass, make_event
    from tests.conftest import demo_estate
    from tests.handlers.conftest import directory_of

    service = app.service
    service.db = Database(url, service.metadata)
    service.clock = SystemClock()
    service.directory = directory_of(demo_estate("e1"))
    now = service.clock.now()
    async with app.open_uow() as uow:
        for n in range(forms):
            accepted = Accepted(ticket_id=f"B{uuid.uuid4().hex[:12]}", form_number=f"F{n}", kind=Kind.repair,
                                channel=Channel.phone, category="water leak", repair_class=RepairClass.general,
                                description="leak", first_contact="e1-cs01", received_at=now)
            event = make_event(accepted, estate="e1", actor="bench", source="bench", time=now)
            await handlers.HANDLERS["accepted"](event, uow, service.context)

    counts = {"statements": 0, "transactions": 0}
    engine = service.db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", lambda *a, **k: counts.__setitem__("statements", counts["statements"] + 1))
    sa.event.listen(engine, "commit", lambda *a: counts.__setitem__("transactions", counts["transactions"] + 1))
    (job,) = [j for j in service.jobs if j.name == "sla-scan"]
    runs = {"n": 0}
    original = job.run

    async def counted():
        runs["n"] += 1
        return await original()

    job.run = counted
    task = asyncio.create_task(service._run_periodic(job))
    await asyncio.sleep(seconds)
    per_minute = 60 / seconds
    print(f"idle, {forms} forms with running clocks, {seconds:g} s: scan runs {runs['n'] * per_minute:.1f}/min, "
          f"SQL statements {counts['statements'] * per_minute:.1f}/min, commits {counts['transactions'] * per_minute:.1f}/min")

    async def fired_after(row_id: int, due_at: dt.datetime) -> float:
        while True:
            async with service.db.transaction() as session:
                fired = (await session.execute(sa.select(store.deadlines.c.breached_at)
                                               .where(store.deadlines.c.id == row_id))).scalar()
            waited = (service.clock.now() - due_at).total_seconds()
            if fired is not None or waited > 120:
                return waited
            await asyncio.sleep(0.1)

    async def open_clock() -> int:
        async with service.db.transaction() as session:
            return (await session.execute(sa.select(store.deadlines.c.id).where(
                store.deadlines.c.met_at.is_(None), store.deadlines.c.breached_at.is_(None),
                store.deadlines.c.clock != "tracking").limit(1))).scalar_one()

    # A clock another replica made due (a plain UPDATE this process does not see).
    row = await open_clock()
    due = service.clock.now() - dt.timedelta(seconds=1)
    async with service.db.transaction() as session:
        await session.execute(sa.update(store.deadlines).where(store.deadlines.c.id == row).values(due_at=due))
    print(f"a clock made due by another replica fired {await fired_after(row, due):.1f} s after its due time")
    # A clock this process wrote (through the repository), due 3 s later.
    row = await open_clock()
    async with app.open_uow() as uow:
        await uow.clocks.move(row, service.clock.now() + dt.timedelta(seconds=3), False)
        due = service.clock.now() + dt.timedelta(seconds=3)
    await asyncio.sleep(3)
    print(f"a clock written here, due 3 s later, fired {await fired_after(row, due):.1f} s after its due time")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await service.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--forms", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edb-", dir="/tmp") as root:
        postgres = EmbeddedPostgres(Path(root)).start()
        try:
            migrate("dispatch", postgres.url)
            asyncio.run(measure(postgres.url, args.seconds, args.forms))
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
