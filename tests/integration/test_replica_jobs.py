"""Periodic jobs across replicas (issue 13): two processes' worth of one service, each
with its own connection pool, run the same job at the same moments; the advisory lock
lets one run at a time, so each due item fires once, and a holder that dies frees it."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from shared.db import Database, advisory_key, service_metadata
from shared.service import PeriodicJob, Service

pytestmark = pytest.mark.integration


def replica(url: str) -> Service:
    service = Service("callback", service_metadata("callback"), "replica")
    service.db = Database(url, service.metadata, pool_size=2)
    return service


async def test_a_job_runs_in_one_replica_at_a_time_and_each_item_fires_once(servers):
    first, second = replica(servers["database"]), replica(servers["database"])
    due = list(range(40))  # the due items both replicas see
    fired: list[tuple[str, int]] = []
    running = 0
    most_at_once = 0

    def job_of(name: str) -> PeriodicJob:
        async def scan() -> None:
            nonlocal running, most_at_once
            running += 1
            most_at_once = max(most_at_once, running)
            try:
                while due:  # claim and fire, committing before letting go
                    fired.append((name, due.pop(0)))
                    await asyncio.sleep(0.005)
            finally:
                running -= 1

        return PeriodicJob("overdue-scan-test", 1.0, scan)

    try:
        ran = await asyncio.gather(*(s.run_once_across_replicas(job_of(n)) for s, n in
                                     ((first, "a"), (second, "b"), (first, "a"), (second, "b"))))
        assert ran.count(True) >= 1 and most_at_once == 1
        assert sorted(item for _, item in fired) == list(range(40))  # each once
        # The lock is free again afterwards: the other replica takes the next round.
        due.extend(range(40, 45))
        assert await second.run_once_across_replicas(job_of("b"))
        assert [item for name, item in fired[-5:]] == list(range(40, 45))
    finally:
        await first.db.dispose()
        await second.db.dispose()


async def holders_terminated(db: Database, name: str) -> int:
    """Ends the server sessions holding advisory lock `name` (what kill -9 of their process
    does); returns how many."""
    key = advisory_key(name) & 0xFFFFFFFFFFFFFFFF
    async with db.engine.connect() as conn:
        return len((await conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"),
            {"high": key >> 32, "low": key & 0xFFFFFFFF})).all())


async def test_a_lock_held_by_a_replica_that_dies_is_released(servers):
    first, second = replica(servers["database"]), replica(servers["database"])
    name = "estatedesk:test:holder-dies"
    try:
        with pytest.raises(sa.exc.DBAPIError):  # the dead holder cannot even unlock
            async with first.db.advisory_lock(name) as held:
                assert held
                async with second.db.advisory_lock(name) as other:
                    assert not other  # held elsewhere: skip this round
                assert await holders_terminated(second.db, name) == 1
        async with second.db.advisory_lock(name) as other:
            assert other  # the server released it with the dead session
    finally:
        await first.db.dispose()
        await second.db.dispose()
