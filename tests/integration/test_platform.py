"""The platform over real NATS JetStream and PostgreSQL with the services as processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import httpx
import nats
import pytest

from shared.events import CloudEvent, subject_for
from shared.settings import SERVICES
from tests.conftest import auth, eventually, read_stream, scalar, token_for

pytestmark = pytest.mark.integration

REPAIR = {"kind": "repair", "channel": "phone", "description": "厨房水管漏水", "repair_class": "general",
          "category": "plumbing", "building": "1", "unit": "1-2-301"}


async def test_accepted_event_reaches_a_plain_nats_subscriber(stack, estate):
    nc = await nats.connect(stack.nats_url)
    received: asyncio.Queue = asyncio.Queue()
    sub = await nc.subscribe(f"estatedesk.{estate}.ticket.accepted", cb=received.put)
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=30) as client:
        r = await client.post(f"/v1/estates/{estate}/requests", json=REPAIR, headers=auth(token))
    assert r.status_code == 201, r.text
    ticket = r.json()
    msg = await asyncio.wait_for(received.get(), 10)
    await sub.unsubscribe()
    await nc.close()

    assert msg.subject == f"estatedesk.{estate}.ticket.accepted"
    envelope = json.loads(msg.data)
    assert envelope["specversion"] == "1.0"
    assert envelope["type"] == "estatedesk.ticket.accepted"
    assert envelope["source"] == "estatedesk/intake"
    assert envelope["subject"] == ticket["id"]
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["dataschema"] == "urn:estatedesk:ticket.accepted:v1"
    assert envelope["estate"] == estate
    assert envelope["actor"] == f"{estate}-cs01"
    assert envelope["data"]["form_number"] == ticket["form_number"]
    assert envelope["data"]["first_contact"] == f"{estate}-cs01"
    assert {"id", "time"} <= envelope.keys()
    assert ticket["id"] not in msg.subject  # ids never go into subjects
    CloudEvent.model_validate(envelope).payload()  # and it honours the contract


async def test_dispatch_assigns_what_intake_accepted(stack, estate):
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=30) as client:
        r = await client.post(f"/v1/estates/{estate}/requests", json=REPAIR, headers=auth(token))
    ticket_id = r.json()["id"]
    events = await read_stream(stack.nats_url, subject_for(estate, "assigned"), expected=1)
    assert [e["subject"] for e in events] == [ticket_id]
    assert events[0]["data"]["departments"]


async def test_bad_input_gets_readable_4xx(stack, estate):
    own = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    url = f"/v1/estates/{estate}/requests"
    async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=30) as client:
        malformed = await client.post(url, content=b'{"kind": "repair",', headers={**auth(own), "content-type": "application/json"})
        admin = token_for(stack, "admin", ["company_admin"], ["*"])
        unknown = await client.post("/v1/estates/nosuch/requests", json=REPAIR, headers=auth(admin))
        oversize = await client.post(url, content=b"x" * (1024 * 1024 + 1), headers={**auth(own), "content-type": "application/json"})
        async def chunks():
            for _ in range(20):
                yield b"x" * 65536

        chunked = await client.post(url, content=chunks(), headers={**auth(own), "content-type": "application/json"})
        wrong_types = await client.post(url, json={**REPAIR, "kind": 7, "anonymous": "perhaps"}, headers=auth(own))
        other_estate = await client.post("/v1/estates/elsewhere/requests", json=REPAIR, headers=auth(own))
        no_token = await client.post(url, json=REPAIR)
        forged = await client.post(url, json=REPAIR, headers=auth(own[:-4] + "abcd"))
    assert malformed.status_code == 422 and "JSON" in malformed.json()["problems"][0]
    assert unknown.status_code == 404 and "unknown estate 'nosuch'" in unknown.json()["error"]
    assert oversize.status_code == 413 and "1 MiB" in oversize.json()["error"]
    assert chunked.status_code == 413, chunked.text  # no Content-Length to trust
    assert wrong_types.status_code == 422
    problems = " ".join(wrong_types.json()["problems"])
    assert "kind" in problems and "anonymous" in problems
    assert other_estate.status_code == 403 and "elsewhere" in other_estate.json()["error"]
    assert no_token.status_code == 401 and "Bearer" in no_token.json()["error"]
    assert forged.status_code == 401


async def test_malformed_message_becomes_a_dead_letter_and_the_consumer_goes_on(stack, estate, db):
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    await js.publish(subject_for(estate, "accepted"), b"this is not an event")
    await js.publish(subject_for(estate, "accepted"), json.dumps({"specversion": "1.0", "id": "x"}).encode())
    await nc.close()

    async def dead_letters():
        return await scalar(db, "SELECT count(*) FROM dispatch.dead_letters WHERE subject = :s",
                            s=subject_for(estate, "accepted"))

    assert await eventually(lambda: _at_least(dead_letters, 2)) >= 2
    reasons = await scalar(db, "SELECT string_agg(reason, ' | ') FROM dispatch.dead_letters WHERE subject = :s",
                           s=subject_for(estate, "accepted"))
    assert "malformed event" in reasons

    # The consumer keeps going: a valid request after the poison is still dispatched.
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=30) as client:
        r = await client.post(f"/v1/estates/{estate}/requests", json=REPAIR, headers=auth(token))
    events = await read_stream(stack.nats_url, subject_for(estate, "assigned"), expected=1)
    assert [e["subject"] for e in events] == [r.json()["id"]]


async def _at_least(fetch, n):
    value = await fetch()
    return value if value >= n else 0


async def test_crash_of_a_consumer_loses_nothing_and_doubles_nothing(stack, estate, db):
    """500 requests; dispatch is killed with SIGKILL mid-way and restarted by the
    supervisor; every request is dispatched exactly once."""
    total = 500
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    dispatch = stack.service("dispatch")
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=stack.service("intake").url, limits=limits, timeout=30) as client:
        semaphore = asyncio.Semaphore(16)

        async def submit(i: int):
            async with semaphore:
                body = {**REPAIR, "description": f"request {i}", "client_request_id": f"crash-{i}"}
                r = await client.post(f"/v1/estates/{estate}/requests", json=body, headers=auth(token))
                assert r.status_code == 201, r.text

        first = asyncio.gather(*(submit(i) for i in range(total // 2)))
        # Kill once dispatch has started working on this estate's forms.
        async def dispatched():
            return await scalar(db, "SELECT count(*) FROM dispatch.forms WHERE estate = :e", e=estate)

        assert await eventually(lambda: _at_least(dispatched, 20), timeout=60)
        os.kill(dispatch.process.pid, signal.SIGKILL)
        dispatch.process.wait()
        second = asyncio.gather(*(submit(i) for i in range(total // 2, total)))
        await asyncio.gather(first, second)
    stack.supervisor.check_once()  # the supervisor notices the death and restarts it
    assert dispatch.restarts >= 1
    stack.supervisor.wait_healthy()

    async def all_dispatched():
        return await _at_least(dispatched, total)

    assert await eventually(all_dispatched, timeout=120) == total
    await asyncio.sleep(2)  # anything doubled would show up now
    assert await dispatched() == total
    assert await scalar(db, "SELECT count(*) FROM dispatch.assignments WHERE estate = :e", e=estate) == total
    assigned = await read_stream(stack.nats_url, subject_for(estate, "assigned"), expected=total)
    assert len(assigned) == total
    assert len({e["subject"] for e in assigned}) == total
    accepted = await read_stream(stack.nats_url, subject_for(estate, "accepted"), expected=total)
    assert len(accepted) == total


async def test_health_and_metrics(stack, estate):
    token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(f"{stack.service('intake').url}/v1/estates/{estate}/requests", json=REPAIR, headers=auth(token))
        await read_stream(stack.nats_url, subject_for(estate, "assigned"), expected=1)
        for service in (stack.service(name) for name in SERVICES):
            health = await client.get(service.url + "/healthz")
            assert health.status_code == 200, health.text
            assert health.json()["checks"] == {"database": "ok", "nats": "ok", "directory": "ok"}
            metrics = await client.get(service.url + "/metrics")
            assert metrics.status_code == 200
            assert "text/plain" in metrics.headers["content-type"]
        intake_metrics = (await client.get(stack.service("intake").url + "/metrics")).text
        dispatch_metrics = (await client.get(stack.service("dispatch").url + "/metrics")).text
    assert f'estatedesk_events_emitted_total{{estate="{estate}",event="accepted",service="intake"}}' in intake_metrics
    assert f'estatedesk_events_consumed_total{{estate="{estate}",event="accepted",service="dispatch"}}' in dispatch_metrics
    assert "faststream_received_messages_total" in dispatch_metrics


async def test_two_dispatch_replicas_share_the_work_without_doubling_it(stack, estate, db):
    """A second dispatch process joins the same durable consumer: the forms are split
    between the replicas and each is dispatched exactly once."""
    from estatedesk.embedded import free_port
    from estatedesk.supervisor import ServiceProcess

    port = free_port()
    replica = ServiceProcess("dispatch", port, stack.service_env("dispatch", port, replica=1),
                             stack.data_dir / "logs" / "dispatch-replica.log")
    replica.start()
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(100):
                try:
                    if (await client.get(replica.url + "/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            total = 200
            token = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
            semaphore = asyncio.Semaphore(16)

            async def submit(i):
                async with semaphore:
                    r = await client.post(f"{stack.service('intake').url}/v1/estates/{estate}/requests",
                                          json={**REPAIR, "description": f"replica {i}"}, headers=auth(token))
                    assert r.status_code == 201

            await asyncio.gather(*(submit(i) for i in range(total)))
            assigned = await read_stream(stack.nats_url, subject_for(estate, "assigned"), expected=total)
            assert len(assigned) == total and len({e["subject"] for e in assigned}) == total
            assert await scalar(db, "SELECT count(*) FROM dispatch.forms WHERE estate = :e", e=estate) == total
            counted = []
            for url in (stack.service("dispatch").url, replica.url):
                metrics = (await client.get(url + "/metrics")).text
                line = next((l for l in metrics.splitlines() if l.startswith("estatedesk_events_consumed_total")
                             and f'estate="{estate}"' in l and 'event="accepted"' in l), None)
                counted.append(float(line.rsplit(" ", 1)[1]) if line else 0.0)
    finally:
        replica.stop()
    assert sum(counted) == total, counted
    assert all(c > 0 for c in counted), f"one replica did all the work: {counted}"
