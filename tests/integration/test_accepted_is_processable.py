"""Issue 9: accepted means processable. Hypothesis generates valid requests (every field
within its declared limits, unusual text included), drives intake's API on the running
stack, and every request answered 201 must reach dispatch (a form), callback (its
schedule's ticket row), archive (collected for the form) and analytics (a row), with no
dead letter anywhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy.ext.asyncio import create_async_engine

from shared import limits
from shared.directory import publish_directory
from shared.settings import SERVICES, asyncpg_url
from tests.conftest import auth, demo_estate, token_for, wait_for_directory

pytestmark = pytest.mark.integration

# Any character a person can type: no control characters (NUL and the other C0 ones are
# refused at the door), no lone surrogates.
TEXT = st.characters(blacklist_categories=("Cs", "Cc"))


def text(max_size: int, min_size: int = 1):
    return st.text(TEXT, min_size=min_size, max_size=max_size).filter(lambda s: s.strip())


def instants(low: dt.datetime, high: dt.datetime):
    zones = st.sampled_from([dt.timezone(dt.timedelta(hours=8)), dt.timezone.utc, dt.timezone(dt.timedelta(hours=-5))])
    return st.builds(lambda moment, zone: moment.astimezone(zone).isoformat(),
                     st.datetimes(min_value=low.replace(tzinfo=None), max_value=high.replace(tzinfo=None),
                                  timezones=st.just(dt.timezone.utc)), zones)


@st.composite
def requests(draw, now: dt.datetime):
    kind = draw(st.sampled_from(["inquiry", "suggestion", "complaint", "praise", "repair", "special_service",
                                 "situation_report"]))
    channel = draw(st.sampled_from(["phone", "letter", "online", "walk_in", "walk_around_visit", "relayed_by_employee",
                                    "escalated_from_above"]))
    body = {"kind": kind, "channel": channel, "description": draw(text(300)),
            "owner_signed": channel in ("walk_in", "walk_around_visit")}
    later = now + dt.timedelta(days=2)
    optional = {
        "category": text(limits.CATEGORY_MAX),
        "severity": st.sampled_from(["serious", "not_serious"]),
        "urgency": st.sampled_from(["urgent", "not_urgent"]),
        "accepted_by": st.sampled_from(["department", "company"]),
        "building": st.sampled_from(["1", "2", "3"]),
        "unit": st.sampled_from(["1-1-101", "2-3-1502"]),
        "location": text(limits.SHORT_TEXT_MAX),
        "reply_method": st.sampled_from(["phone", "visit", "letter", "online", "none"]),
        "reply_agreed_by": instants(later, limits.INSTANT_MAX - dt.timedelta(days=400)),
        "anonymous": st.booleans(),
        "owner_id": text(limits.ID_MAX),
        "about_role": st.sampled_from(["supervisor_or_above", "customer_service_staff", "company_staff"]),
        "owner_loss_cny": st.decimals(min_value=0, max_value=limits.MONEY_MAX, places=2).map(str),
        "client_request_id": text(limits.CLIENT_ID_MAX),
        "occurred_at": instants(limits.INSTANT_MIN, now - dt.timedelta(hours=1)),
        "cause": text(500),
        "people": st.lists(text(50), max_size=3),
        "attachments": st.lists(text(80), max_size=3),
    }
    for name in draw(st.sets(st.sampled_from(sorted(optional)), max_size=8)):
        body[name] = draw(optional[name])
    if kind == "repair":
        body["repair_class"] = draw(st.sampled_from(["emergency", "general", "simple", "appointment",
                                                     "commissioned_immediate", "project"]))
        if body["repair_class"] == "appointment":
            body["appointment_at"] = draw(instants(later, limits.INSTANT_MAX - dt.timedelta(days=400)))
    return body


def test_every_accepted_request_is_processed_by_every_service(stack, servers):
    code = f"h{uuid.uuid4().hex[:8]}"

    async def define():
        await publish_directory(stack.nats_url, None, [demo_estate(code)])
        await wait_for_directory(stack, code)

    asyncio.run(define())
    token = token_for(stack, f"{code}-cs01", ["customer_service"], [code])
    url = f"{stack.service('intake').url}/v1/estates/{code}/requests"
    accepted: set[str] = set()
    refused: list[str] = []
    client = httpx.Client(timeout=30)
    # Intake's clock may have been moved on by other tests: ask it.
    now = dt.datetime.fromisoformat(client.post(url, json={"kind": "inquiry", "channel": "phone",
                                                           "description": "现在几点"},
                                                headers=auth(token)).json()["received_at"])

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(body=requests(now))
    def post(body):
        r = client.post(url, json=body, headers=auth(token))
        assert r.status_code in (201, 422), (r.status_code, r.text, body)
        if r.status_code == 201:
            accepted.add(r.json()["id"])
        else:
            refused.append(r.json()["error"])

    try:
        post()
    finally:
        client.close()
    assert len(accepted) >= 30, (len(accepted), refused[:10])
    asyncio.run(_everywhere(servers["database"], code, accepted))


async def _everywhere(database_url: str, estate: str, tickets: set[str]) -> None:
    engine = create_async_engine(asyncpg_url(database_url))
    where = {
        "dispatch": "SELECT ticket_id FROM dispatch.forms WHERE estate = :e",
        "callback": "SELECT ticket_id FROM callback.tickets WHERE estate = :e",
        "archive": "SELECT DISTINCT ticket_id FROM archive.collected_events WHERE estate = :e",
        "analytics": "SELECT ticket_id FROM analytics.ticket_facts WHERE estate = :e",
    }
    missing: dict[str, set[str]] = {}
    try:
        for _ in range(120):
            async with engine.connect() as conn:
                missing = {name: tickets - {row[0] for row in await conn.execute(sa.text(sql), {"e": estate})}
                           for name, sql in where.items()}
                dead = {name: (await conn.execute(sa.text(f"SELECT count(*) FROM {name}.dead_letters WHERE estate = :e"),
                                                  {"e": estate})).scalar() for name in SERVICES}
            assert not any(dead.values()), f"dead letters: {dead}"
            if not any(missing.values()):
                return
            await asyncio.sleep(1)
        raise AssertionError({name: sorted(ids)[:5] for name, ids in missing.items() if ids})
    finally:
        await engine.dispose()
