"""The message bus: the ticket-event stream, the outbox relay and idempotent consumers.

Delivery guarantees, end to end:
- a service writes its change and the events it emits in one transaction (outbox);
- the relay publishes each outbox row with the event id as ``Nats-Msg-Id`` so JetStream
  drops a re-publish after a crash, then deletes the row;
- every consumer is a durable pull consumer; it records the event id in the same
  transaction as its own change and acks only after the commit, so a redelivery finds the
  id and does nothing;
- a message that cannot be parsed, or whose handler keeps failing, becomes a dead letter
  with the reason after a bounded number of attempts and is acked: it never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import weakref
from dataclasses import dataclass, field
from typing import Annotated, Awaitable, Callable, Protocol, Sequence

import nats
import sqlalchemy as sa
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsMessage, NatsRouter, PullSub
from nats.js import api
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from pydantic import SkipValidation
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock
from shared.db import Database
from shared.events import (
    STREAM_NAME, STREAM_SUBJECTS, CloudEvent, MalformedEvent, accept_payload, read_envelope, subject_for,
)
from shared.settings import nats_servers

log = logging.getLogger("estatedesk.bus")

# A redelivered event within this window is dropped by JetStream itself; after it the
# consumers' processed-event records still catch it.
DUPLICATE_WINDOW_SECONDS = 120
MAX_DELIVER = 5
# How long JetStream waits for an answer before it delivers a message again. Short, because
# a delivery can be lost in flight and only this brings it back: after a freeze (SIGSTOP)
# the server, on waking, handed new messages to pull requests of a client's connection the
# client had already given up as stale, and wrote them to that dead socket ("Write Error"):
# they came back only after the ack wait (was 30 s; seen in CI as a 31 s recovery). A batch
# in hand is never redelivered for being slow: `consume` tells the server it is in progress
# every `ACK_PROGRESS_SECONDS`.
ACK_WAIT_SECONDS = 6
ACK_PROGRESS_SECONDS = ACK_WAIT_SECONDS / 3
BACKOFF_SECONDS = (0.5, 2.0, 5.0, 10.0)
BATCH_SIZE = 100
# One long pull request per idle consumer: the server answers at the first message.
FETCH_WAIT_SECONDS = 30.0
FETCH_CONNECTION_CHECK_SECONDS = 0.5
FETCH_EXPIRY_MARGIN_SECONDS = 0.5
FETCH_WAIT_WHILE_DISCONNECTED_SECONDS = 0.25
# What is left of a gathering window below this is not worth another pull request.
GATHER_MIN_WAIT_SECONDS = 0.005
# A batch held while the database is down: probed with this timeout, retried with waits
# doubling up to this.
DATABASE_PROBE_SECONDS = 2.0
DATABASE_HOLD_MAX_WAIT_SECONDS = 2.0

@dataclass(frozen=True)
class ReconnectPolicy:
    """How every NATS connection of a service rides out an outage of any length.

    - reconnects forever (`max_attempts` -1; nats-py's default gives up after 60 tries,
      about two minutes), waiting `first_wait_seconds` before the first try, doubling up
      to `max_wait_seconds`, each wait with up to `jitter` (fraction) added so replicas
      do not knock in step;
    - pings every `ping_interval_seconds`; `max_outstanding_pings` unanswered pings make
      the connection stale and start the reconnecting (a frozen server);
    - the health probe flushes (a PING/PONG round trip) every `probe_every_seconds` and
      calls the broker unreachable when no PONG comes within `probe_timeout_seconds`.

    Every value can be set from the environment (`from_env`), so tests can shorten them.
    """

    max_attempts: int = -1
    first_wait_seconds: float = 0.1
    max_wait_seconds: float = 2.0
    jitter: float = 0.1
    ping_interval_seconds: float = 5.0
    max_outstanding_pings: int = 2
    probe_every_seconds: float = 1.0
    probe_timeout_seconds: float = 1.0
    probe_every_while_down_seconds: float = 0.2

    ENV = {
        "max_attempts": ("ESTATEDESK_NATS_MAX_RECONNECTS", int),
        "first_wait_seconds": ("ESTATEDESK_NATS_RECONNECT_FIRST_WAIT", float),
        "max_wait_seconds": ("ESTATEDESK_NATS_RECONNECT_MAX_WAIT", float),
        "ping_interval_seconds": ("ESTATEDESK_NATS_PING_INTERVAL", float),
        "max_outstanding_pings": ("ESTATEDESK_NATS_MAX_OUTSTANDING_PINGS", int),
        "probe_every_seconds": ("ESTATEDESK_NATS_PROBE_EVERY", float),
        "probe_timeout_seconds": ("ESTATEDESK_NATS_PROBE_TIMEOUT", float),
    }

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "ReconnectPolicy":
        env = os.environ if env is None else env
        values = {field: kind(env[name]) for field, (name, kind) in cls.ENV.items() if env.get(name)}
        return cls(**values)

    def wait_before(self, failed_attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before the next reconnect try after `failed_attempts` failures."""
        base = min(self.max_wait_seconds, self.first_wait_seconds * 2 ** min(failed_attempts, 30))
        return base * (1 + self.jitter * rand())

    def connect_options(self) -> dict:
        """Keyword arguments for `nats.connect` and `NatsBroker`."""
        return dict(
            allow_reconnect=True,
            max_reconnect_attempts=self.max_attempts,
            reconnect_time_wait=self.first_wait_seconds,
            ping_interval=self.ping_interval_seconds,
            max_outstanding_pings=self.max_outstanding_pings,
            # nats-py calls this before every reconnect try: (server to use, delay).
            reconnect_to_server_handler=self.next_server,
        )

    def next_server(self, servers: list, info: dict) -> tuple[object, float]:
        """(server to try, seconds to wait first): the one with the fewest failed tries,
        so a client of a cluster moves on from a dead node at once instead of knocking on
        it alone (nats-py, given None, would always take the first of its pool)."""
        server = min(servers, key=lambda s: s.reconnects)
        return server, self.wait_before(server.reconnects)


async def probe_nats(connection, timeout: float) -> str:
    """"ok" when the server answers a PING within `timeout` seconds, else the reason."""
    if connection is None:
        return "error: not connected yet"
    if connection.is_closed:
        return "error: connection closed"
    if connection.is_reconnecting or not connection.is_connected:
        return "error: reconnecting (server unreachable)"
    try:
        await connection.flush(timeout=timeout)
    except Exception as error:  # timeout: a frozen or partitioned server
        return f"error: no answer to ping within {timeout:g} s ({type(error).__name__})"
    return "ok"


class ServiceLike(Protocol):
    name: str
    db: Database
    clock: Clock


EventHandler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
# Called with the batch's session once its handlers have run, before the commit (and, when
# the batch goes event by event, after each handler inside its savepoint): a consumer that
# holds a batch's writes in memory (analytics sums its counters) writes them here.
BatchFlush = Callable[[AsyncSession], Awaitable[None]]
# Called once at the start of a batch run all at once, with the events it will handle (fresh,
# in order): a service loads (and locks) the rows they touch in one statement per table, so
# the handlers find them in the unit of work instead of one read per event (issue 12).
BatchPrepare = Callable[[AsyncSession, list[CloudEvent]], Awaitable[None]]


def ticket_stream_config(replicas: int = 1) -> StreamConfig:
    """`replicas`: copies kept by a NATS cluster (3 on a three-node cluster: the stream
    survives the loss of any one node)."""
    return StreamConfig(
        name=STREAM_NAME,
        description="EstateDesk ticket events (CloudEvents 1.0), kept for replay",
        subjects=STREAM_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=0,  # keep history: new integrations and `analytics rebuild` replay it
        num_replicas=replicas,
    )


async def ensure_stream(nats_url: str, replicas: int = 1, durables: Sequence[str] = ()) -> list[str]:
    """Create or update the ticket stream (idempotent; every service calls it at start),
    and give the existing durable consumers among `durables` (the service's own) the
    current `ACK_WAIT_SECONDS`: faststream binds to an existing durable as it is, so a
    changed ack wait would otherwise reach only consumers created afresh. One connection
    for both; `nats_url` may list several servers, comma-separated. Returns the durables
    updated."""
    nc = await nats.connect(nats_servers(nats_url))
    try:
        js = nc.jetstream()
        config = ticket_stream_config(replicas)
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)
        updated: list[str] = []
        for durable in durables:
            try:
                info = await js.consumer_info(STREAM_NAME, durable)
            except nats.js.errors.NotFoundError:
                continue  # created with the current config when the service subscribes
            if info.config.ack_wait != ACK_WAIT_SECONDS:
                await js.add_consumer(STREAM_NAME, info.config.evolve(ack_wait=ACK_WAIT_SECONDS))
                updated.append(durable)
        return updated
    finally:
        await nc.close()


TICKET_STREAM = JStream(STREAM_NAME, declare=False)


# Consumers registered through `EventConsumer.register` wait on the server for their next
# batch (one long pull request) instead of polling; their consumer names are kept here so
# the fetch shim below treats only them that way.
LONG_WAIT_CONSUMERS: set[str] = set()
# Of those, the ones that gather a batch (`EventConsumer.gather_seconds`): durable name →
# seconds after a batch's first message during which later messages still join it.
GATHERING_CONSUMERS: dict[str, float] = {}


def _fetch_shim() -> None:
    """Compatibility and idle-cost shim over nats-py 2.16's `PullSubscription.fetch`, for
    faststream 0.7.8's batch pull loop.

    1. nats-py's batch `fetch` sometimes ends a short wait with a bare `asyncio.TimeoutError`
       instead of `nats.errors.TimeoutError` (its subclass); faststream's batch loop only
       catches the latter, so its fetch task died and dropped the messages it had already
       fetched. Raising the documented error lets the loop hand over what it has.
    2. While the connection is down, faststream's pull loop would call `fetch` in a tight
       loop (a closed connection fails at once: 30-40 % CPU per service); the shim waits.
    3. Silence when idle (issue 12): faststream's batch loop keeps fetching until the batch
       is full or its timeout has passed, so a long timeout would hold a first message for
       the whole wait, and a short one (the old 50 ms) made 20 consumers send about 800
       messages a second to an idle server. For `LONG_WAIT_CONSUMERS` the wait is one long
       pull request (`_long_fetch`, `FETCH_WAIT_SECONDS`) that the server answers the moment
       a message arrives, and the fetch after a non-empty one reports "nothing more" at
       once, so the loop hands the batch over without waiting. A long wait is abandoned
       when the connection drops or reconnects in the meantime (the server forgot the pull
       request).
    4. A consumer in `GATHERING_CONSUMERS` hands over only when its gathering window
       (counted from the batch's first message) has passed or the batch is full: until
       then each fetch waits for more (a batch costs a few statements whatever its size).
    """
    from nats.js.client import JetStreamContext

    pull_subscription = JetStreamContext.PullSubscription
    if getattr(pull_subscription.fetch, "estatedesk_shim", False):
        return
    original = pull_subscription.fetch

    async def fetch(self, batch: int = 1, timeout: float | None = 5, heartbeat: float | None = None):
        connection = getattr(self, "_nc", None)
        if connection is not None and not connection.is_connected:
            # Reconnecting (or closed): a fetch would queue a pull request in the
            # reconnect buffer (filling it) or fail at once, and faststream's loop would
            # spin on it. Wait a little and report an empty batch instead.
            await asyncio.sleep(FETCH_WAIT_WHILE_DISCONNECTED_SECONDS)
            raise nats.errors.TimeoutError()
        long_wait = getattr(self, "_consumer", None) in LONG_WAIT_CONSUMERS
        first_at = getattr(self, "_estatedesk_batch_started", None)
        if long_wait and first_at is not None:
            timeout = first_at + GATHERING_CONSUMERS.get(self._consumer, 0.0) - asyncio.get_running_loop().time()
            if timeout < GATHER_MIN_WAIT_SECONDS:
                self._estatedesk_batch_started = None
                raise nats.errors.TimeoutError()  # the batch so far goes to the handler now
        try:
            if long_wait and connection is not None and timeout:
                try:
                    messages = await _long_fetch(self, batch, timeout, connection)
                except BaseException:  # nothing more (or the fetch failed): the batch goes now
                    self._estatedesk_batch_started = None
                    raise
            else:
                messages = await original(self, batch=batch, timeout=timeout, heartbeat=heartbeat)
        except nats.errors.TimeoutError:
            raise
        except asyncio.TimeoutError as error:
            raise nats.errors.TimeoutError() from error
        if long_wait and messages:
            if len(messages) >= batch:  # the batch is full: it goes now, the next one starts afresh
                self._estatedesk_batch_started = None
            elif first_at is None:
                self._estatedesk_batch_started = asyncio.get_running_loop().time()
        return messages

    fetch.estatedesk_shim = True
    pull_subscription.fetch = fetch


async def _long_fetch(subscription, batch: int, timeout: float, connection=None) -> list:
    """One long pull request: up to `batch` messages, answered as soon as the server has
    any; `nats.errors.TimeoutError` when `timeout` (seconds) passes with none, or, given
    the subscription's `connection`, as soon as it drops or comes back (`_while_connected`).

    Every request is sent with `no_wait` and `expires`: the server holds it while there is
    nothing to deliver and ends it with a status (404/408) once it has delivered what it
    had, so a fetch never waits for a batch to fill. nats-py's own batch fetch is not used
    here because all pull requests of a subscription share one inbox, and a status left by
    an earlier request (a 408 that arrives just after the client gave up on it) makes it
    open a second request *without* `no_wait`; a later message delivered to that request
    then waits until it expires (seen in CI: an event held 12 s). Here any status ends the
    current fetch (at worst an empty answer and a new request), and messages delivered to an
    earlier request are taken from the inbox first.
    """
    messages = _delivered(subscription, batch)
    if messages:
        return messages
    # Sent before the wait starts: from the wait's own task it would leave after the
    # connection's flusher had its turn, and the last batch's acks and this request would
    # take two writes instead of one.
    deadline = await _request_pull(subscription, batch, timeout)
    pulled = _pulled(subscription, batch, deadline)
    return await (_while_connected(connection, pulled) if connection is not None else pulled)


def _delivered(subscription, batch: int) -> list:
    """What earlier pull requests delivered to the inbox, up to `batch` messages."""
    from nats.js.client import JetStreamContext

    inbox = subscription._sub
    messages = []
    # Never past `batch`: a message taken from the inbox and not handed over would wait
    # for its redelivery (`ACK_WAIT_SECONDS`).
    while len(messages) < batch and not inbox._pending_queue.empty():
        message = inbox._pending_queue.get_nowait()
        inbox._pending_queue.task_done()  # as nats-py's next_msg does: draining joins the queue
        inbox._pending_size -= len(message.data)
        if JetStreamContext.is_status_msg(message) is None:
            messages.append(message)
    return messages


async def _request_pull(subscription, batch: int, timeout: float) -> float:
    """Send one pull request for up to `batch` messages, held by the server for `timeout`
    seconds; the loop time by which `_pulled` gives up. Queued on the connection without
    giving the event loop a turn, so it leaves in the same write as the acks queued
    before it (the batch just handled)."""
    loop = asyncio.get_running_loop()
    # The server gives up a little before we do, so its 408 ends this fetch, not the next.
    expires = timeout - min(FETCH_EXPIRY_MARGIN_SECONDS, timeout / 10)
    request = {"batch": batch, "no_wait": True, "expires": int(expires * 1_000_000_000)}
    await subscription._nc.publish(subscription._nms, json.dumps(request).encode(), subscription._deliver)
    return loop.time() + timeout


async def _pulled(subscription, batch: int, deadline: float) -> list:
    """The messages the pull request delivers (up to `batch`), as soon as the server has
    any; `nats.errors.TimeoutError` when `deadline` (loop time) passes with none, or when
    the request ended another way."""
    from nats.js.client import JetStreamContext

    inbox = subscription._sub
    loop = asyncio.get_running_loop()
    messages = []
    ended_by = None
    while len(messages) < batch:
        try:
            message = await inbox.next_msg(timeout=max(deadline - loop.time(), 0.001))
        except (asyncio.TimeoutError, nats.errors.TimeoutError):
            break
        status = JetStreamContext.is_status_msg(message)
        if status is None:
            messages.append(message)
        elif not JetStreamContext._is_heartbeat(status):
            ended_by = status  # the end of this request, or of an earlier one: hand over
            break
    if not messages:
        if ended_by not in (None, api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT):
            # Not an ordinary end (409 consumer deleted or too many waiting, 503): every
            # fetch would get it at once, so the loop must not spin on it.
            log.warning("pull request ended with status %s", ended_by)
            await asyncio.sleep(FETCH_WAIT_WHILE_DISCONNECTED_SECONDS)
        raise nats.errors.TimeoutError()
    return messages


_fetch_shim()


class ConnectionChanges:
    """Tells waiters the moment a NATS connection drops or comes back: give `changed` to
    nats-py as `disconnected_cb` and `reconnected_cb`, and `watch` the connection once it
    exists. A long fetch (`_while_connected`) then waits on the server and on this, and
    wakes for nothing else (an idle service's event loop stays asleep)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future] = set()

    async def changed(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def next_change(self) -> asyncio.Future:
        """A future done at the next drop or return of the connection."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        return waiter

    def watch(self, connection) -> None:
        _CONNECTION_CHANGES[connection] = self


# A connection's `ConnectionChanges`, when its owner gave it the callbacks.
_CONNECTION_CHANGES: "weakref.WeakKeyDictionary[object, ConnectionChanges]" = weakref.WeakKeyDictionary()


async def _while_connected(connection, waiting: Awaitable):
    """Await `waiting` (a fetch), abandoning it with `nats.errors.TimeoutError` as soon as
    `connection` is seen disconnected or reconnected: told by its `ConnectionChanges`
    when it has one, else checked locally every `FETCH_CONNECTION_CHECK_SECONDS` (no
    traffic either way)."""
    reconnects = connection.stats.get("reconnects", 0)
    changes = _CONNECTION_CHANGES.get(connection)
    change = changes.next_change() if changes is not None else None
    task = asyncio.ensure_future(waiting)

    def changed() -> bool:
        return not connection.is_connected or connection.stats.get("reconnects", 0) != reconnects

    try:
        if changed():
            raise nats.errors.TimeoutError()
        if change is not None:
            await asyncio.wait({task, change}, return_when=asyncio.FIRST_COMPLETED)
        else:
            while not task.done() and not changed():
                await asyncio.wait({task}, timeout=FETCH_CONNECTION_CHECK_SECONDS)
        if task.done():
            return task.result()
        raise nats.errors.TimeoutError()
    finally:
        if change is not None:
            change.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


@contextlib.asynccontextmanager
async def _in_progress_until_answered(raws, every: float | None = None):
    """While the block runs, tell JetStream every `every` seconds (default
    `ACK_PROGRESS_SECONDS`) that the messages of `raws` not yet acked or nacked are in
    progress, so a batch that takes longer than `ACK_WAIT_SECONDS` (a slow database, a
    database outage held out) is not delivered again meanwhile. Nothing is sent for a batch
    done within `every`, nor while the connection is down (the server redelivers then)."""
    every = ACK_PROGRESS_SECONDS if every is None else every

    async def tell() -> None:
        while True:
            await asyncio.sleep(every)
            for raw in raws:
                if raw.is_acked or not raw._client.is_connected:
                    continue
                with contextlib.suppress(Exception):  # best effort: at worst a redelivery, done once
                    await raw.in_progress()

    task = asyncio.create_task(tell())
    try:
        yield
    finally:
        # Not awaited: it ends at its next turn. Awaiting it gave the connection's flusher a
        # turn, and the batch's acks left in a write of their own, before the consumer's
        # next pull request (`_request_pull`) instead of with it.
        task.cancel()


# The handler's parameter as the AsyncAPI document shows it: each message on the wire is
# one CloudEvent. Not validated here (it is the batch of nats-py messages from
# `_raw_messages`); `EventConsumer._parse` validates each event.
WireEvents = Annotated[CloudEvent, SkipValidation]


async def _raw_messages(message: NatsMessage) -> list:
    """A consumer's decoder: the batch's nats-py messages as they came. faststream's own
    would JSON-decode every body only for `CloudEvent` to parse it again, and taking the
    message as a context parameter (`msg: NatsMessage`) made fast_depends resolve it in a
    worker thread: a thread hop per batch (issue 12's profile)."""
    raw = message.raw_message
    return raw if isinstance(raw, list) else [raw]


@dataclass
class ConsumerStats:
    processed: int = 0
    duplicates: int = 0
    dead_letters: int = 0


@dataclass
class EventConsumer:
    """One durable pull consumer of a service, for one event or for all of them."""

    service: "ServiceLike"
    handler: EventHandler
    events: tuple[str, ...] | None = None  # None: every ticket event
    stats: ConsumerStats = field(default_factory=ConsumerStats)
    backoff: tuple[float, ...] = BACKOFF_SECONDS
    on_processed: Callable[[CloudEvent], None] | None = None
    on_dead_letter: Callable[[], None] | None = None
    # One batch at a time across replicas (a transaction advisory lock): for a handler
    # whose every event updates the same rows (analytics' running totals), where two
    # replicas' batches would lock them in different orders and deadlock.
    exclusive: bool = False
    flush: BatchFlush | None = None
    # Not called when the batch goes event by event (after a failure): each handler then
    # loads what it needs itself, so `prepare` is an optimisation, never a requirement.
    prepare: BatchPrepare | None = None
    # Seconds a batch keeps gathering after its first message (0: it goes at once): for a
    # consumer whose batches cost a few statements whatever their size and whose events are
    # not waited for by anyone (the archive), bigger batches under load for a little latency.
    gather_seconds: float = 0.0
    # Events the handler leaves alone whatever is stored, told from the event itself (an
    # owners' projection and an event of a ticket no owner follows): acked with no
    # transaction, no claim (there is nothing to do once), no handler call.
    ignore: Callable[[CloudEvent], bool] | None = None

    @property
    def durable(self) -> str:
        if self.events is None:
            return f"{self.service.name}-all"
        return f"{self.service.name}-{'-'.join(self.events)}"

    @property
    def subject(self) -> str:
        if self.events is None:
            return subject_for("*", "*")
        (event,) = self.events
        return subject_for("*", event)

    def register(self, router: NatsRouter, description: str = "") -> None:
        LONG_WAIT_CONSUMERS.add(self.durable)
        if self.gather_seconds > 0:
            GATHERING_CONSUMERS[self.durable] = self.gather_seconds
        router.subscriber(
            self.subject,
            stream=TICKET_STREAM,
            durable=self.durable,
            # Batches keep a ticket's events in stream order (one handler at a time) and
            # share one commit; a batch is whatever the server has when the long pull
            # request is answered (see `_fetch_shim`), never a wait for it to fill.
            pull_sub=PullSub(batch_size=BATCH_SIZE, timeout=FETCH_WAIT_SECONDS, batch=True),
            config=ConsumerConfig(
                max_deliver=MAX_DELIVER,
                ack_wait=ACK_WAIT_SECONDS,
                max_ack_pending=1000,
            ),
            ack_policy=AckPolicy.MANUAL,
            # The handler takes the fetched messages themselves (see `_raw_messages`).
            decoder=_raw_messages,
            title=f"{self.durable}:consume",
            description=description or (self.handler.__doc__ or "").strip(),
        )(self.consume)

    async def consume(self, raws: WireEvents) -> None:
        """One fetched batch, one commit, then acks.

        First all at once: the batch's event ids claimed in one statement and every
        handler run in one transaction, with no savepoint. When a handler fails, that
        transaction is rolled back and the batch is done again event by event, each in
        its own savepoint: a failing message is rolled back alone and retried (nack with
        back-off) or, at its last attempt, kept as a dead letter and acked."""
        async with _in_progress_until_answered(raws):
            await self._consume(raws)

    async def _consume(self, raws) -> None:
        parsed = [item for raw in raws if (item := await self._parse(raw)) is not None]
        if not parsed:
            return
        while True:
            try:
                outcomes = await self._run(parsed, self.service.clock.now())
                break
            except Exception:  # the transaction itself failed (the database gone?)
                log.exception("batch of %d not committed", len(raws))
                if not await self._hold_while_database_down(raws):
                    for raw in raws:  # the database answers: an attempt like any other
                        await raw.nak(delay=self.backoff[0])
                    return
        for raw, outcome, event in outcomes:
            if outcome == "retry":
                attempts = raw.metadata.num_delivered if raw.metadata else 1
                await raw.nak(delay=self.backoff[min(attempts, len(self.backoff)) - 1])
                continue
            await raw.ack()
            if outcome == "processed":
                self.stats.processed += 1
                log.info("processed %s", event.type,
                         extra={"estate": event.estate, "ticket": event.subject, "event_id": event.id})
                if self.on_processed:
                    self.on_processed(event)
            elif outcome == "duplicate":
                self.stats.duplicates += 1
            elif outcome == "dead_letter":
                self.stats.dead_letters += 1
                if self.on_dead_letter:
                    self.on_dead_letter()

    async def _ack_ignored(self, raw, event: CloudEvent) -> None:
        """Ack an event `ignore` names, untouched (counted as processed)."""
        await raw.ack()
        self.stats.processed += 1
        if self.on_processed:
            self.on_processed(event)

    def _ignores(self, event: CloudEvent) -> bool:
        """Whether `ignore` names the event. When the predicate raises, the event is not
        ignored: a malformed one then meets the contract check (a dead letter with the
        reason); a well-formed one shows a fault of the predicate itself, which is logged
        with its traceback, and the handler gets the event (handling what could have been
        skipped costs time, never a result)."""
        if self.ignore is None:
            return False
        try:
            return self.ignore(event)
        except Exception:
            try:
                accept_payload(event)
            except MalformedEvent:
                return False  # its data unreadable: the contract check says why
            log.exception("the ignore rule of %s failed on a well-formed %s event; handled instead",
                          self.durable, event.event_name,
                          extra={"estate": event.estate, "ticket": event.subject, "event_id": event.id})
            return False

    async def _hold_while_database_down(self, raws) -> bool:
        """While the database does not answer, keep the batch in hand (`consume` tells
        JetStream it is in progress, so it is not redelivered) and try again when it is
        back: an outage of any length spends none of an event's `MAX_DELIVER` attempts,
        which are for events whose handling fails. False at once when the database answers."""
        held = False
        wait = self.backoff[0]
        while True:
            try:
                await asyncio.wait_for(self.service.db.ping(), DATABASE_PROBE_SECONDS)
                if held:
                    log.info("database back; the batch of %d goes again", len(raws))
                return held
            except Exception:
                pass
            if not held:
                log.warning("database unreachable: holding a batch of %d until it is back", len(raws))
            held = True
            await asyncio.sleep(wait)
            wait = min(wait * 2, DATABASE_HOLD_MAX_WAIT_SECONDS)

    async def _parse(self, raw) -> tuple | None:
        """(message, the event, None, None) or (message, None, why it is malformed, its
        envelope when readable: the ticket's own services can tell from it that the event
        was set aside, and archive holds that ticket back); None when `ignore` named the
        event and it was acked (its payload never validated: nothing reads it)."""
        try:
            event = read_envelope(raw.subject, raw.data)
            if self._ignores(event):
                await self._ack_ignored(raw, event)
                return None
            accept_payload(event)
        except MalformedEvent as error:
            return raw, None, f"malformed event: {error}", error.envelope
        return raw, event, None, None

    async def _run(self, parsed, now) -> list[tuple[object, str, CloudEvent | None]]:
        """(message, outcome, event) for each message of the batch, committed together
        (`Database.run_batch`): all at once with the batch's ids claimed in one statement,
        or, after a handler failed, event by event in savepoints."""
        db = self.service.db
        claimed: set[str] = set()

        async def begin(session: AsyncSession, alone: bool) -> None:
            await self._take_turn(session)
            if not alone:
                claimed.update(await db.claim_events(session, self.durable, [e.id for _, e, _, _ in parsed if e], now))
                if self.prepare is not None:
                    fresh, seen = [], set()
                    for _, event, _, _ in parsed:
                        if event is not None and event.id in claimed and event.id not in seen:
                            seen.add(event.id)
                            fresh.append(event)
                    if fresh:
                        await self.prepare(session, fresh)

        async def work(session: AsyncSession, item, alone: bool) -> str:
            raw, event, problem, envelope = item
            if event is None:
                await self._dead_letter(session, raw, problem, now, envelope)
                return "dead_letter"
            if alone:
                fresh = await db.claim_event(session, self.durable, event.id, now)
            else:
                fresh = event.id in claimed
                claimed.discard(event.id)  # the same event twice in a batch: once
            if not fresh:
                return "duplicate"
            try:
                await self.handler(session, event)
                if alone and self.flush is not None:
                    await self.flush(session)  # inside the event's savepoint
            except Exception:
                log.exception("handler failed", extra={"estate": event.estate, "ticket": event.subject,
                                                       "event_id": event.id})
                raise
            return "processed"

        async def on_error(session: AsyncSession, item, error: Exception) -> str:
            raw, event, _, _ = item
            attempts = raw.metadata.num_delivered if raw.metadata else 1
            if attempts < MAX_DELIVER:
                return "retry"
            await self._dead_letter(session, raw, f"handler failed {attempts} times: {error!r}", now, event)
            return "dead_letter"

        async def finish(session: AsyncSession) -> None:
            if self.flush is not None:
                try:
                    await self.flush(session)
                except Exception:
                    log.exception("batch flush failed")
                    raise

        outcomes = await db.run_batch(parsed, work, begin=begin, on_error=on_error, finish=finish)
        return [(o.item[0], o.value, o.item[1]) for o in outcomes]

    async def _take_turn(self, session: AsyncSession) -> None:
        """An exclusive consumer's batch waits until no other replica's is in flight."""
        if self.exclusive:
            await self.service.db.lock_transaction(session, f"estatedesk:consumer:{self.durable}")

    async def _dead_letter(self, session, raw, reason: str, now, envelope: CloudEvent | None = None) -> None:
        metadata = raw.metadata
        event_id, estate = (envelope.id, envelope.estate) if envelope is not None else (None, None)
        log.warning("dead letter on %s: %s", raw.subject, reason, extra={"event_id": event_id, "estate": estate})
        await self.service.db.record_dead_letter(
            session, consumer=self.durable, subject=raw.subject, body=raw.data, reason=reason,
            attempts=metadata.num_delivered if metadata else 1, now=now,
            stream_seq=metadata.sequence.stream if metadata else None, event_id=event_id, estate=estate,
        )


class OutboxRelay:
    """Publishes a service's outbox rows to JetStream, oldest first, then deletes them.

    Replicas share the outbox safely: rows are claimed with FOR UPDATE SKIP LOCKED. Only
    rows whose publication JetStream acknowledged are deleted; the others stay for the
    next pass, so a re-publish after a failure sends only what was not acknowledged (a
    plain core-NATS subscriber sees each event once, except one whose ack was lost in
    flight). A commit in this process wakes the relay at once (`Database.outbox_written`);
    `idle_seconds` only bounds how long a row written by another replica (or left by a
    failed pass) waits. While `ready()` is False (broker unreachable) nothing is sent: the rows wait
    in the outbox, the service keeps accepting work, and the relay looks again as soon as
    `ready()` is True. `retry_seconds`, `idle_seconds` and `ready_check_seconds` are seconds;
    `on_published(count)` is told how many rows each pass published (the service's metric).
    """

    def __init__(self, db: Database, publish: Callable[[str, bytes, dict[str, str]], Awaitable[object]],
                 batch_size: int = 256, idle_seconds: float = 5.0, ready: Callable[[], bool] = lambda: True,
                 retry_seconds: float = 0.5, ready_check_seconds: float = 0.1,
                 on_published: Callable[[int], object] = lambda count: None):
        self.db = db
        self.on_published = on_published
        self.ready_check_seconds = ready_check_seconds
        self.publish = publish
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.retry_seconds = retry_seconds
        self.ready = ready
        self.published = 0
        self.failed = 0
        self._stopping = asyncio.Event()
        outbox = db.outbox
        # Taken and deleted in one statement; the delete stands only for rows JetStream
        # acknowledged: the others are put back, with their own seq, before the commit.
        oldest = (sa.select(outbox.c.seq).order_by(outbox.c.seq).limit(sa.bindparam("limit"))
                  .with_for_update(skip_locked=True).scalar_subquery())
        self._take = sa.delete(outbox).where(outbox.c.seq.in_(oldest)).returning(*outbox.c)
        self._put_back = sa.insert(outbox)

    async def relay_once(self) -> int:
        """One batch: returns the number of rows published and deleted. Raises nothing
        for a failed publication (counted in `failed`; the row stays)."""
        if not self.ready():
            return 0
        async with self.db.transaction() as session:
            # Deleted rows stay locked (and are back if the transaction fails) until the commit.
            rows = sorted((await session.execute(self._take, {"limit": self.batch_size})).all(),
                          key=lambda row: row.seq)
            if not rows:
                return 0
            # Sent in order on one connection; acks awaited together for throughput.
            results = await asyncio.gather(
                *(self.publish(row.subject, row.body, {"Nats-Msg-Id": row.event_id}) for row in rows),
                return_exceptions=True,
            )
            acked = [row.seq for row, result in zip(rows, results) if not isinstance(result, BaseException)]
            failures = [result for result in results if isinstance(result, BaseException)]
            if failures:
                await session.execute(self._put_back, [dict(row._mapping) for row, result in zip(rows, results)
                                                       if isinstance(result, BaseException)])
        if failures:
            self.failed += len(failures)
            log.warning("outbox relay: %d of %d not acknowledged (%r); kept for the next pass",
                        len(failures), len(rows), failures[0])
        self.published += len(acked)
        if acked:
            self.on_published(len(acked))
        return len(acked)

    async def run(self) -> None:
        retry_wait = self.retry_seconds
        while not self._stopping.is_set():
            if not self.ready():
                # Nothing can go while the broker is unreachable. Look again the moment it is
                # back (a local look at the connection every `ready_check_seconds`, no
                # traffic), not at the next commit or after `idle_seconds`: rows whose
                # publication failed as it went away (its ack lost) go at once.
                while not self.ready() and not self._stopping.is_set():
                    await asyncio.sleep(self.ready_check_seconds)
                retry_wait = self.retry_seconds
                continue
            # Cleared before looking, so a commit made while we look wakes the next wait.
            self.db.outbox_written.clear()
            failed = self.failed
            try:
                sent = await self.relay_once()
            except Exception:  # the database itself (gone, restarting): try again soon
                log.exception("outbox relay failed; retrying")
                sent, failed = 0, -1
            if sent >= self.batch_size:
                continue  # more may be waiting
            if self.failed != failed:
                # Rows left behind (the database or the broker failed): look again soon,
                # not only at the next commit or after `idle_seconds`; waits doubling up
                # to `idle_seconds` while it keeps failing.
                await asyncio.sleep(retry_wait)
                retry_wait = min(retry_wait * 2, self.idle_seconds)
                continue
            retry_wait = self.retry_seconds
            # Everything committed before the look was taken (or is another replica's);
            # a commit since has set the event again, so no empty look in between.
            try:
                await asyncio.wait_for(self.db.outbox_written.wait(), self.idle_seconds)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()
        self.db.outbox_written.set()
