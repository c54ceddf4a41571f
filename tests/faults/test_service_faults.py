"""Each service killed with kill -9 in turn under a stream of requests: the supervisor
restarts it, its /healthz returns to 200, and every request made around the kill is
accepted and assigned exactly once with no dead letters."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from shared.settings import SERVICES
from tests.faults.conftest import RequestStream, dead_letters, health_of_all, post_requests, record, wait_all
from tests.faults.test_nats_faults import RECOVERY_LIMIT_SECONDS, assert_all_flowed

pytestmark = pytest.mark.integration


async def test_each_service_killed_in_turn_is_restarted_and_loses_nothing(fault_stack, fault_estate):
    stack, _ = fault_stack
    tickets = await post_requests(stack, fault_estate, 2)
    recovered = {}
    async with RequestStream(stack, fault_estate) as stream:
        await kill_each_in_turn(stack, fault_estate, tickets, recovered)
    await assert_all_flowed(stack, fault_estate, tickets + stream.accepted, timeout=60,
                            unanswered=stream.refused.get(0, 0))
    # Only intake's own restart may leave a request unanswered; nothing else is refused.
    assert set(stream.refused) <= {0}, stream.refused
    assert await dead_letters(stack) == 0
    record("service kill -9", requests_accepted=len(stream.accepted), requests_unanswered=sum(stream.refused.values()),
           **{f"{name}_healthy_after_s": seconds for name, seconds in recovered.items()})


async def kill_each_in_turn(stack, fault_estate: str, tickets: list[str], recovered: dict[str, float]) -> None:
    for name in SERVICES:
        service = stack.service(name)
        restarts, old_pid = service.restarts, service.process.pid
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        if name != "intake":  # intake is the door: while it is down nobody can post
            tickets += await post_requests(stack, fault_estate, 2)
        for _ in range(200):  # restarts counts first, then a new process starts
            if service.restarts > restarts and service.process.pid != old_pid:
                break
            await asyncio.sleep(0.1)
        assert service.restarts > restarts and service.process.pid != old_pid
        healthy_after = await wait_all(stack, 200, timeout=30)
        assert healthy_after is not None, await health_of_all(stack)
        tickets += await post_requests(stack, fault_estate, 2)
        recovered[name] = time.monotonic() - killed_at
