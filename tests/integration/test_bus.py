"""The bus's guarantees on a real nats-server and PostgreSQL, with an in-process service
whose handler can be told to fail: retries, dead letters after the bounded attempts,
redelivered events processed once, outbox relay de-duplication. The probe's handler holds
its rows in memory and the consumer's batch flush writes them (as analytics does)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid

import nats
import pytest
import sqlalchemy as sa

from shared import bus
from shared.bus import MAX_DELIVER, OutboxRelay
from shared.db import service_metadata
from shared.events import STREAM_NAME, Accepted, make_event, subject_for
from shared.service import Service
from shared.settings import Settings
from tests.conftest import eventually, read_stream

pytestmark = pytest.mark.integration


def accepted_event(estate: str, description: str):
    payload = Accepted(ticket_id=str(uuid.uuid4()), form_number="T-1", kind="inquiry", channel="phone",
                       description=description, first_contact="cs", received_at=dt.datetime.now(dt.timezone.utc))
    return make_event(payload, estate=estate, actor="cs", source="test", time=dt.datetime.now(dt.timezone.utc))


@pytest.fixture
async def probe_service(servers, tmp_root):
    """A service of its own (schema and durable consumer) whose handler records what it
    saw and fails on request."""
    schema = f"bus_{uuid.uuid4().hex[:6]}"
    metadata = service_metadata(schema)
    # The probe's fresh durable consumer replays the whole stream, so every check below
    # looks only at its own estate's events.
    seen = sa.Table("seen", metadata, sa.Column("event_id", sa.String(64), primary_key=True),
                    sa.Column("estate", sa.String(32)), sa.Column("description", sa.Text))
    service = Service(schema, metadata, title="bus probe")
    failures: dict[str, int] = {}

    async def write_seen(session):
        # The consumer's batch flush: rows held in memory by the handler, written before
        # the commit (and, when the batch goes event by event, inside each savepoint).
        rows = session.info.pop("seen", [])
        if rows:
            await session.execute(sa.insert(seen), rows)

    prepared: list[list[str]] = []
    service.prepared = prepared  # the batches `prepare` was given, as event ids
    service.handling = set()  # descriptions of "sleep-" events whose handler has started

    async def note_batch(session, events):
        prepared.append([event.id for event in events])

    @service.consumer("accepted", flush=write_seen, prepare=note_batch,
                      ignore=lambda event: event.data["description"].startswith("ignore-"))
    async def remember(session, event):
        description = event.data["description"]
        if description.startswith("sleep-"):  # a slow batch: seconds
            service.handling.add(description)
            await asyncio.sleep(float(description.split("-")[1]))
        if description.startswith("fail-"):
            failures[description] = failures.get(description, 0) + 1
            limit = int(description.split("-")[1])
            if failures[description] <= limit:
                raise RuntimeError(f"told to fail ({failures[description]})")
        session.info.setdefault("seen", []).append(dict(event_id=event.id, estate=event.estate,
                                                         description=description))

    service.consumers[0].backoff = (0.05,)
    settings = Settings(nats_url=servers["nats"], database_url=servers["database"], data_dir=tmp_root,
                        signing_key="k" * 32)
    service.bind(settings)
    async with service.db.engine.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    await service.start()
    yield service, seen, failures
    await service.stop()
    engine = sa.ext.asyncio.create_async_engine(service.db.engine.url)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()


async def count(service, table, where=None):
    async with service.db.transaction() as session:
        query = sa.select(sa.func.count()).select_from(table)
        if where is not None:
            query = query.where(where)
        return (await session.execute(query)).scalar()


async def test_failing_handler_is_retried_then_dead_lettered_and_the_rest_goes_on(probe_service):
    service, seen, failures = probe_service
    estate = f"b{uuid.uuid4().hex[:6]}"
    nc = await nats.connect(service.settings.nats_url)
    js = nc.jetstream()
    events = [accepted_event(estate, d) for d in ("first", "fail-2", f"fail-{MAX_DELIVER + 5}", "last")]
    for event in events:
        await js.publish(event.nats_subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id})
    await nc.close()

    async def settled():
        done = await count(service, seen, seen.c.estate == estate)
        dead = await count(service, service.db.dead_letters, service.db.dead_letters.c.estate == estate)
        return done == 3 and dead == 1

    ok = await eventually(settled, timeout=60)
    assert ok, (await _all(service, seen, estate), failures)
    descriptions = set(await _all(service, seen, estate))
    assert descriptions == {"first", "fail-2", "last"}  # a transient failure recovers
    # Failed twice, then succeeded; it may have run once more when a later event of its
    # batch failed (the all-at-once pass is rolled back and the batch goes event by event).
    assert failures["fail-2"] in (3, 4)
    # Bounded attempts. (A delivery can be counted by the server yet never reach the
    # handler, e.g. when a pull request expires in flight, so it may be one fewer.)
    assert MAX_DELIVER - 1 <= failures[f"fail-{MAX_DELIVER + 5}"] <= MAX_DELIVER
    async with service.db.transaction() as session:
        letter = (await session.execute(
            sa.select(service.db.dead_letters).where(service.db.dead_letters.c.estate == estate))).one()
    assert letter.event_id == events[2].id and letter.estate == estate
    assert f"handler failed {MAX_DELIVER} times" in letter.reason and "told to fail" in letter.reason
    assert letter.attempts == MAX_DELIVER and letter.stream_seq


async def test_prepare_is_given_each_batch_s_fresh_events_once_and_never_a_duplicate(probe_service):
    """`prepare` (a service loading what a batch touches in one statement) sees the events
    its batch's handlers will run, in stream order, each once; a redelivered one is not
    among them."""
    service, seen, _ = probe_service
    estate = f"b{uuid.uuid4().hex[:6]}"
    events = [accepted_event(estate, f"prepared {i}") for i in range(5)]
    nc = await nats.connect(service.settings.nats_url)
    js = nc.jetstream()
    for event in events:
        await js.publish(event.nats_subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id})
    await js.publish(events[0].nats_subject, events[0].model_dump_json().encode(),
                     headers={"Nats-Msg-Id": events[0].id + "again"})
    await nc.close()
    consumer = service.consumers[0]
    assert await eventually(lambda: _value(consumer.stats.duplicates >= 1), timeout=30)
    ids = [event.id for event in events]
    given = [i for batch in service.prepared for i in batch if i in ids]
    assert given == ids  # each once, in order; the redelivered copy not again
    assert await count(service, seen, seen.c.estate == estate) == 5


async def test_a_gathering_service_consumer_handles_what_comes_within_its_window_in_one_batch(probe_service,
                                                                                            monkeypatch):
    """`gather_seconds` (a read model's consumer), through a service: after a batch's first
    event it keeps gathering that long, so two events published 0.3 s apart are handled in
    one batch; without it, in two."""
    service, seen, _ = probe_service
    consumer = service.consumers[0]
    nc = await nats.connect(service.settings.nats_url)
    js = nc.jetstream()

    async def batches_of_two(estate: str) -> list[list[str]]:
        events = [accepted_event(estate, f"gather {i}") for i in range(2)]
        for event in events:
            await js.publish(event.nats_subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id})
            await asyncio.sleep(0.3)
        ids = {event.id for event in events}
        assert await eventually(lambda: _value(ids <= {i for batch in service.prepared for i in batch}))
        return [[i for i in batch if i in ids] for batch in service.prepared if ids & set(batch)]

    try:
        await batches_of_two(f"b{uuid.uuid4().hex[:6]}")  # the probe has caught up with the stream
        assert len(await batches_of_two(f"b{uuid.uuid4().hex[:6]}")) == 2
        monkeypatch.setitem(bus.GATHERING_CONSUMERS, consumer.durable, 1.5)  # as `register` sets it
        assert len(await batches_of_two(f"b{uuid.uuid4().hex[:6]}")) == 1
    finally:
        await nc.close()


async def test_ignored_events_are_acked_untouched_and_the_others_handled(probe_service):
    """`ignore` (events the handler would leave alone, told from the event): acked with no
    claim, no prepare, no handler, and no payload validation (nothing reads it: an ignored
    event that breaks the contract is acked too); an event the predicate cannot read goes
    the handler's way, where the contract check sets it aside as a dead letter; the batch's
    other events go on as ever."""
    service, seen, _ = probe_service
    estate = f"b{uuid.uuid4().hex[:6]}"
    events = [accepted_event(estate, d) for d in ("ignore-1", "kept 1", "ignore-2", "kept 2", "ignore-3", "unreadable")]
    events[4].data["kind"] = "party"  # breaks the contract, but is ignored
    del events[5].data["description"]  # the predicate raises KeyError; the payload lacks a field
    nc = await nats.connect(service.settings.nats_url)
    js = nc.jetstream()
    for event in events:
        await js.publish(event.nats_subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id})
    await nc.close()
    async def kept_both_and_set_one_aside():
        letters = service.db.dead_letters
        return await count(service, seen, seen.c.estate == estate) == 2 \
            and await count(service, letters, letters.c.estate == estate) == 1

    assert await eventually(kept_both_and_set_one_aside, timeout=30)
    assert sorted(await _all(service, seen, estate)) == ["kept 1", "kept 2"]
    async with service.db.transaction() as session:
        letter = (await session.execute(
            sa.select(service.db.dead_letters).where(service.db.dead_letters.c.estate == estate))).one()
    assert letter.event_id == events[5].id and "description" in letter.reason and "Field required" in letter.reason
    ignored = {events[0].id, events[2].id, events[4].id}
    assert not ignored & {i for batch in service.prepared for i in batch}
    processed = service.db.processed
    assert await count(service, processed, processed.c.event_id.in_(ignored)) == 0

    async def all_acked():
        info = await js_consumer_info(service)
        return info.num_ack_pending == 0 and info.num_pending == 0

    assert await eventually(all_acked, timeout=10)
    assert (await js_consumer_info(service)).num_redelivered == 0


async def js_consumer_info(service):
    nc = await nats.connect(service.settings.nats_url)
    try:
        return await nc.jetstream().consumer_info(STREAM_NAME, service.consumers[0].durable)
    finally:
        await nc.close()


async def _all(service, seen, estate):
    async with service.db.transaction() as session:
        return [r.description for r in (await session.execute(sa.select(seen).where(seen.c.estate == estate))).all()]


async def test_a_redelivered_event_is_processed_once(probe_service):
    """The same CloudEvent published twice under different Nats-Msg-Ids (so JetStream
    keeps both) is still processed once: the consumer's processed-event record decides."""
    service, seen, _ = probe_service
    estate = f"b{uuid.uuid4().hex[:6]}"
    event = accepted_event(estate, "twice")
    nc = await nats.connect(service.settings.nats_url)
    js = nc.jetstream()
    for suffix in ("a", "b"):
        await js.publish(event.nats_subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.id + suffix})
    consumer = service.consumers[0]
    assert await eventually(lambda: _value(consumer.stats.duplicates >= 1), timeout=30)

    # The probe's fresh durable replays the stream, whose other tests' repeats count as
    # duplicates too: wait until both copies of this one have been delivered and answered.
    async def both_answered():
        info = await js.consumer_info(STREAM_NAME, consumer.durable)
        return (info.num_pending == 0 and info.num_ack_pending == 0
                and await count(service, seen, seen.c.event_id == event.id) >= 1)

    try:
        assert await eventually(both_answered, timeout=30)
    finally:
        await nc.close()
    assert await count(service, seen, seen.c.event_id == event.id) == 1


async def _value(value):
    return value


async def test_outbox_relay_republish_is_dropped_by_jetstream(probe_service):
    """A relay that dies after publishing but before deleting its rows publishes them
    again; JetStream's duplicate window drops the repeat (Nats-Msg-Id = event id)."""
    service, _, _ = probe_service
    estate = f"b{uuid.uuid4().hex[:6]}"
    event = accepted_event(estate, "relayed")
    published = []

    async def publish_then_crash(subject, body, headers):
        published.append(await service._publish(subject, body, headers))
        raise RuntimeError("relay process killed before it could delete the row")

    service.relay.stop()  # this test plays the relay itself
    await asyncio.sleep(0.1)
    async with service.db.transaction() as session:
        await service.db.emit(session, event)
    reported = []  # what each relay tells its service's metric (estatedesk_events_published)
    crashing = OutboxRelay(service.db, publish_then_crash, on_published=reported.append)
    assert await crashing.relay_once() == 0  # nothing it could call acknowledged
    assert await count(service, service.db.outbox) == 1  # the row survived the crash
    assert await OutboxRelay(service.db, service._publish, on_published=reported.append).relay_once() == 1
    assert reported == [1]
    assert [ack.stream for ack in published] == [STREAM_NAME] and not published[0].duplicate
    assert await count(service, service.db.outbox) == 0
    stored = await read_stream(service.settings.nats_url, subject_for(estate, "accepted"), expected=1)
    await asyncio.sleep(0.5)
    stored = await read_stream(service.settings.nats_url, subject_for(estate, "accepted"))
    assert [e["id"] for e in stored] == [event.id]


async def test_outbox_relay_resends_only_what_was_not_acknowledged(probe_service):
    """An outage in the middle of a batch: the relay keeps the unacknowledged rows and
    sends only those again, so a plain core-NATS subscriber sees each event id once."""
    service, _, _ = probe_service
    estate = f"b{uuid.uuid4().hex[:6]}"
    events = [accepted_event(estate, f"batch-{i}") for i in range(5)]
    lost = {events[1].id, events[3].id}  # their acks never come back
    nc = await nats.connect(service.settings.nats_url)
    seen: list[str] = []

    async def on_message(msg):
        seen.append(msg.headers["Nats-Msg-Id"])

    sub = await nc.subscribe(subject_for(estate, "accepted"), cb=on_message)
    try:
        service.relay.stop()  # this test plays the relay itself
        await asyncio.sleep(0.1)
        async with service.db.transaction() as session:
            for event in events:
                await service.db.emit(session, event)

        async def publish_losing_some(subject, body, headers):
            if headers["Nats-Msg-Id"] in lost:
                raise nats.errors.TimeoutError()  # never reached the server
            return await service._publish(subject, body, headers)

        async def places() -> dict[str, int]:
            outbox = service.db.outbox
            async with service.db.transaction() as session:
                return dict((await session.execute(sa.select(outbox.c.event_id, outbox.c.seq))).all())

        emitted = await places()
        assert sorted(emitted, key=emitted.get) == [e.id for e in events]  # seq follows emission
        first = OutboxRelay(service.db, publish_losing_some)
        assert await first.relay_once() == 3
        assert first.failed == 2
        # The unacknowledged rows are kept in their places, in the order they were emitted.
        assert await places() == {event_id: emitted[event_id] for event_id in lost}
        assert await OutboxRelay(service.db, service._publish).relay_once() == 2
        assert await count(service, service.db.outbox) == 0
        await eventually(lambda: _value(len(seen) >= 5), timeout=5)
        await asyncio.sleep(0.3)
        assert sorted(seen) == sorted(e.id for e in events)  # each once, none twice
    finally:
        await sub.unsubscribe()
        await nc.close()


async def test_outbox_relay_waits_while_the_broker_is_unreachable(probe_service):
    """Not ready (broker away): rows stay in the outbox untouched, nothing is attempted."""
    service, _, _ = probe_service
    estate = f"b{uuid.uuid4().hex[:6]}"
    service.relay.stop()
    await asyncio.sleep(0.1)
    async with service.db.transaction() as session:
        await service.db.emit(session, accepted_event(estate, "waiting"))
    attempts = []

    async def publish(subject, body, headers):
        attempts.append(headers)

    assert await OutboxRelay(service.db, publish, ready=lambda: False).relay_once() == 0
    assert attempts == []
    assert await count(service, service.db.outbox) == 1


async def test_outbox_relay_goes_as_soon_as_the_broker_is_back(probe_service):
    """Rows left while the broker was unreachable go the moment `ready()` is True again,
    with no new commit to wake the relay and long before its idle look."""
    service, _, _ = probe_service
    estate = f"b{uuid.uuid4().hex[:6]}"
    service.relay.stop()  # this test runs a relay of its own
    await asyncio.sleep(0.1)
    ready = False
    relay = OutboxRelay(service.db, service._publish, idle_seconds=60, ready=lambda: ready)
    running = asyncio.create_task(relay.run())
    try:
        async with service.db.transaction() as session:
            await service.db.emit(session, accepted_event(estate, "held while away"))
        await asyncio.sleep(0.5)
        assert relay.published == 0
        ready = True
        back_at = asyncio.get_running_loop().time()
        assert await eventually(lambda: _value(relay.published == 1), timeout=5)
        assert asyncio.get_running_loop().time() - back_at < 2
    finally:
        relay.stop()
        await running


async def test_a_delivery_lost_in_flight_is_handled_within_seconds_and_a_slow_batch_is_not_redelivered(
        probe_service):
    """A message JetStream delivered to a client that never answers (after a freeze the
    server wrote deliveries to connections already given up) is handled within seconds
    (ACK_WAIT_SECONDS), not after half a minute; meanwhile a batch slower than the ack wait
    is told in progress and never delivered again."""
    service, seen, _ = probe_service
    consumer = service.consumers[0]
    estate = f"b{uuid.uuid4().hex[:6]}"
    slow = accepted_event(estate, f"sleep-{bus.ACK_WAIT_SECONDS + 4}")
    lost = accepted_event(estate, "lost in flight")
    nc = await nats.connect(service.settings.nats_url)
    ghost = await nats.connect(service.settings.nats_url)
    watcher = await nats.connect(service.settings.nats_url)

    async def take_one(connection, timeout):
        subscription = await connection.jetstream().pull_subscribe_bind(consumer.durable, stream=STREAM_NAME)
        try:
            return await subscription.fetch(1, timeout=timeout)
        except nats.errors.TimeoutError:
            return []

    try:
        js = nc.jetstream()
        # The probe's fresh durable replays the stream: once it has caught up, the only
        # messages the server can hand out below are this test's.
        marker = accepted_event(estate, "caught up")
        await js.publish(marker.nats_subject, marker.model_dump_json().encode(), headers={"Nats-Msg-Id": marker.id})

        async def caught_up():
            info = await js.consumer_info(STREAM_NAME, consumer.durable)
            return (await count(service, seen, seen.c.estate == estate) == 1
                    and info.num_pending == 0 and info.num_ack_pending == 0)

        assert await eventually(caught_up, timeout=60)
        duplicates = consumer.stats.duplicates  # the replay has some (other tests' repeats)
        await js.publish(slow.nats_subject, slow.model_dump_json().encode(), headers={"Nats-Msg-Id": slow.id})
        assert await eventually(lambda: _value(slow.data["description"] in service.handling), timeout=15)
        await asyncio.sleep(2)  # the slow event's ack wait runs out well before the lost one's
        # The probe is busy with its slow batch (no pull request of its own): a pull
        # request of another client takes the next message, which is never answered.
        taking = asyncio.create_task(take_one(ghost, 5))
        await asyncio.sleep(0.3)
        await js.publish(lost.nats_subject, lost.model_dump_json().encode(), headers={"Nats-Msg-Id": lost.id})
        published_at = asyncio.get_running_loop().time()
        assert [json.loads(m.data)["id"] for m in await taking] == [lost.id]
        await ghost.close()  # gone without an answer, as a dead connection
        # Whatever the server delivers again while the slow batch is in hand comes here
        # first: the lost event after its ack wait, never the slow one.
        again = await take_one(watcher, bus.ACK_WAIT_SECONDS + 1)
        assert [json.loads(m.data)["id"] for m in again] == [lost.id]
        await again[0].nak()  # for the probe

        async def both_seen():
            return await count(service, seen, seen.c.estate == estate) == 3  # with the marker

        assert await eventually(both_seen, timeout=30)
        assert asyncio.get_running_loop().time() - published_at < 15  # the fault tests' recovery limit
        assert consumer.stats.duplicates == duplicates
    finally:
        for connection in (nc, ghost, watcher):
            if not connection.is_closed:
                await connection.close()


async def test_outbox_relay_goes_again_soon_after_a_publication_failed(probe_service):
    """A row whose publication failed is sent again after `retry_seconds`, with no new
    commit to wake the relay and long before its idle look (`idle_seconds`)."""
    service, _, _ = probe_service
    estate = f"b{uuid.uuid4().hex[:6]}"
    service.relay.stop()  # this test runs a relay of its own
    await asyncio.sleep(0.1)
    attempts = []

    async def publish_failing_once(subject, body, headers):
        attempts.append(headers["Nats-Msg-Id"])
        if len(attempts) == 1:
            raise nats.errors.TimeoutError()
        return await service._publish(subject, body, headers)

    relay = OutboxRelay(service.db, publish_failing_once, idle_seconds=60, retry_seconds=0.2)
    running = asyncio.create_task(relay.run())
    try:
        async with service.db.transaction() as session:
            await service.db.emit(session, accepted_event(estate, "retried"))
        assert await eventually(lambda: _value(relay.published == 1), timeout=5), attempts
        assert relay.failed == 1 and len(attempts) == 2
        assert await count(service, service.db.outbox) == 0
    finally:
        relay.stop()
        await running


@contextlib.asynccontextmanager
async def long_wait_pull(nats_url: str, prefix: str, durable: str, gather_seconds: float = 0.0):
    """(connection, JetStream context, stream name, pull subscription) over a scratch stream
    `<prefix>_xxxxxx` (subjects `<name>.>`), whose durable the fetch shim treats as a
    service's consumer: one long wait, and a gathering window of `gather_seconds` if given.
    The stream and the shim's entries go afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    try:
        subscription = await js.pull_subscribe(f"{name}.>", durable=durable, stream=name)
        bus.LONG_WAIT_CONSUMERS.add(durable)
        if gather_seconds:
            bus.GATHERING_CONSUMERS[durable] = gather_seconds
        yield nc, js, name, subscription
    finally:
        bus.LONG_WAIT_CONSUMERS.discard(durable)
        bus.GATHERING_CONSUMERS.pop(durable, None)
        await js.delete_stream(name)
        await nc.close()


async def test_a_status_left_by_an_earlier_pull_request_never_holds_a_later_message(servers):
    """All pull requests of a subscription share one inbox. A 408 from an earlier request
    (here an orphan that expires after 1 s, as when the client gave up on a request just
    before the server did) arrives during a long wait; every message published after it
    must still reach the consumer at once, not when some request expires (CI saw an
    access-log refusal held 12 s this way)."""
    async with long_wait_pull(servers["nats"], "FETCH", "waiter") as (nc, js, name, subscription):
        orphan = {"batch": 10, "no_wait": True, "expires": 1_000_000_000}
        await nc.publish(subscription._nms, json.dumps(orphan).encode(), subscription._deliver)
        loop = asyncio.get_running_loop()
        for round in range(4):
            async def publish_later(key: str = f"m{round}") -> float:
                await asyncio.sleep(1.5)
                await js.publish(f"{name}.x", key.encode())
                return loop.time()

            publishing = asyncio.create_task(publish_later())
            received: list = []
            while not received:  # what faststream's loop does: fetch again after an empty answer
                fetching = asyncio.ensure_future(subscription.fetch(batch=100, timeout=30))
                done, _ = await asyncio.wait({fetching}, timeout=10)
                if not done:
                    fetching.cancel()
                    pytest.fail(f"message {round} was not handed over within 10 s of the fetch")
                try:
                    received = fetching.result()
                except nats.errors.TimeoutError:
                    continue
            waited = loop.time() - await publishing
            assert [m.data for m in received] == [f"m{round}".encode()]
            assert waited < 1.0, f"message {round} held {waited:.1f} s after it was published"
            for message in received:
                await message.ack()
            # The shim hands a non-empty batch over with one "nothing more" answer.
            with pytest.raises(nats.errors.TimeoutError):
                await subscription.fetch(batch=100, timeout=30)


async def test_a_gathering_consumer_hands_its_batch_over_when_the_window_has_passed(servers):
    """A consumer with `gather_seconds` keeps fetching into the batch for that long after
    its first message (what the fetch shim does for `GATHERING_CONSUMERS`), then hands it
    over; a message after the window starts the next batch."""
    window = 1.0
    async with long_wait_pull(servers["nats"], "GATHER", "gatherer", gather_seconds=window) as (
            nc, js, name, subscription):
        loop = asyncio.get_running_loop()

        async def publish_at(delay: float, key: str) -> None:
            await asyncio.sleep(delay)
            await js.publish(f"{name}.x", key.encode())

        await js.publish(f"{name}.x", b"m0")
        first = await subscription.fetch(batch=100, timeout=30)
        started = loop.time()
        later = [asyncio.create_task(publish_at(0.3, "m1")), asyncio.create_task(publish_at(2.5 * window, "m2"))]
        second = await subscription.fetch(batch=99, timeout=30)  # within the window: waits for more
        with pytest.raises(nats.errors.TimeoutError):  # the window has passed: hand over
            await subscription.fetch(batch=98, timeout=30)
        handed_over = loop.time() - started
        assert [m.data for m in first + second] == [b"m0", b"m1"]
        assert 0.8 * window <= handed_over < 2.5 * window, handed_over
        next_batch = await subscription.fetch(batch=100, timeout=30)  # a new batch: the long wait
        assert [m.data for m in next_batch] == [b"m2"]
        for message in first + second + next_batch:
            await message.ack()
        await asyncio.gather(*later)


async def test_an_existing_durable_is_given_the_current_ack_wait(servers):
    """faststream binds to an existing durable consumer as it is: a service started on a
    stream made by an older version (ack wait 30 s) must still get `ACK_WAIT_SECONDS`, or a
    delivery lost in flight would come back only after the old wait."""
    from nats.js.api import ConsumerConfig

    await bus.ensure_stream(servers["nats"])
    durable = f"old_{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(servers["nats"])
    js = nc.jetstream()
    try:
        await js.add_consumer(STREAM_NAME, ConsumerConfig(durable_name=durable, ack_wait=30,
                                                          filter_subject=subject_for("nowhere", "accepted")))
        assert await bus.ensure_stream(servers["nats"], durables=[durable, f"missing_{durable}"]) == [durable]
        info = await js.consumer_info(STREAM_NAME, durable)
        assert info.config.ack_wait == bus.ACK_WAIT_SECONDS
        assert info.config.filter_subject == subject_for("nowhere", "accepted")  # the rest kept
        assert await bus.ensure_stream(servers["nats"], durables=[durable]) == []  # nothing to do now
    finally:
        await js.delete_consumer(STREAM_NAME, durable)
        await nc.close()
