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
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

import nats
import sqlalchemy as sa
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsMessage, NatsRouter, PullSub
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock
from shared.db import Database
from shared.events import PAYLOADS, STREAM_NAME, STREAM_SUBJECTS, CloudEvent, subject_for

log = logging.getLogger("estatedesk.bus")

# A redelivered event within this window is dropped by JetStream itself; after it the
# consumers' processed-event records still catch it.
DUPLICATE_WINDOW_SECONDS = 120
MAX_DELIVER = 5
ACK_WAIT_SECONDS = 30
BACKOFF_SECONDS = (0.5, 2.0, 5.0, 10.0)
BATCH_SIZE = 100
BATCH_WAIT_SECONDS = 0.05

class ServiceLike(Protocol):
    name: str
    db: Database
    clock: Clock


EventHandler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


def ticket_stream_config() -> StreamConfig:
    return StreamConfig(
        name=STREAM_NAME,
        description="EstateDesk ticket events (CloudEvents 1.0), kept for replay",
        subjects=STREAM_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=0,  # keep history: new integrations and `analytics rebuild` replay it
    )


async def ensure_stream(nats_url: str) -> None:
    """Create or update the ticket stream (idempotent; every service calls it at start)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        config = ticket_stream_config()
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)
    finally:
        await nc.close()


TICKET_STREAM = JStream(STREAM_NAME, declare=False)


def _fetch_times_out_as_nats_error() -> None:
    """Compatibility shim for nats-py 2.16 + faststream 0.7.8.

    nats-py's batch `fetch` sometimes ends a short wait with a bare `asyncio.TimeoutError`
    instead of `nats.errors.TimeoutError` (its subclass); faststream's batch loop only
    catches the latter, so its fetch task died and dropped the messages it had already
    fetched, which then waited `ACK_WAIT_SECONDS` for redelivery. Raising the documented
    error lets the loop hand over what it has.
    """
    from nats.js.client import JetStreamContext

    pull_subscription = JetStreamContext.PullSubscription
    if getattr(pull_subscription.fetch, "estatedesk_shim", False):
        return
    original = pull_subscription.fetch

    async def fetch(self, *args, **kwargs):
        try:
            return await original(self, *args, **kwargs)
        except nats.errors.TimeoutError:
            raise
        except asyncio.TimeoutError as error:
            raise nats.errors.TimeoutError() from error

    fetch.estatedesk_shim = True
    pull_subscription.fetch = fetch


_fetch_times_out_as_nats_error()


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
        router.subscriber(
            self.subject,
            stream=TICKET_STREAM,
            durable=self.durable,
            # Batches keep a ticket's events in stream order (one handler at a time) and
            # share one commit; the short timeout bounds the wait for a batch to fill.
            pull_sub=PullSub(batch_size=BATCH_SIZE, timeout=BATCH_WAIT_SECONDS, batch=True),
            config=ConsumerConfig(
                max_deliver=MAX_DELIVER,
                ack_wait=ACK_WAIT_SECONDS,
                max_ack_pending=1000,
            ),
            ack_policy=AckPolicy.MANUAL,
            title=f"{self.durable}:consume",
            description=description or (self.handler.__doc__ or "").strip(),
        )(self.consume)

    async def consume(self, msg: NatsMessage) -> None:
        """One fetched batch: every message in its own savepoint, one commit for all,
        then acks. A failing message is rolled back alone and retried (nack with
        back-off) or, at its last attempt, kept as a dead letter and acked."""
        raws = msg.raw_message if isinstance(msg.raw_message, list) else [msg.raw_message]
        outcomes: list[tuple[object, str, CloudEvent | None]] = []  # (raw, outcome, event)
        now = self.service.clock.now()
        try:
            async with self.service.db.transaction() as session:
                for raw in raws:
                    outcomes.append(await self._process(session, raw, now))
        except Exception:  # the commit itself failed (database gone): retry the batch
            log.exception("batch of %d not committed; redelivering", len(raws))
            for raw in raws:
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

    async def _process(self, session: AsyncSession, raw, now) -> tuple[object, str, CloudEvent | None]:
        metadata = raw.metadata
        attempts = metadata.num_delivered if metadata else 1
        stream_seq = metadata.sequence.stream if metadata else None
        body: bytes = raw.data
        try:
            event = CloudEvent.model_validate_json(body)
            if event.event_name not in PAYLOADS:
                raise ValueError(f"unknown event type {event.type!r}")
            if event.nats_subject != raw.subject:
                raise ValueError(f"event of estate {event.estate!r} and type {event.type!r} arrived on {raw.subject!r}")
            event.payload()
        except (ValidationError, ValueError) as error:
            await self._dead_letter(session, raw.subject, body, f"malformed event: {error}", attempts, stream_seq, now)
            return raw, "dead_letter", None
        db = self.service.db
        try:
            async with session.begin_nested():
                if not await db.claim_event(session, self.durable, event.id, now):
                    return raw, "duplicate", event
                await self.handler(session, event)
        except Exception as error:  # this message's changes are rolled back; the batch goes on
            log.exception("handler failed", extra={"estate": event.estate, "ticket": event.subject, "event_id": event.id})
            if attempts < MAX_DELIVER:
                return raw, "retry", event
            await self._dead_letter(
                session, raw.subject, body, f"handler failed {attempts} times: {error!r}", attempts, stream_seq, now,
                event_id=event.id, estate=event.estate,
            )
            return raw, "dead_letter", event
        return raw, "processed", event

    async def _dead_letter(self, session, subject, body, reason, attempts, stream_seq, now, event_id=None, estate=None):
        log.warning("dead letter on %s: %s", subject, reason, extra={"event_id": event_id, "estate": estate})
        await self.service.db.record_dead_letter(
            session, consumer=self.durable, subject=subject, body=body, reason=reason, attempts=attempts,
            now=now, stream_seq=stream_seq, event_id=event_id, estate=estate,
        )


class OutboxRelay:
    """Publishes a service's outbox rows to JetStream, oldest first, then deletes them.

    Replicas share the outbox safely: rows are claimed with FOR UPDATE SKIP LOCKED.
    """

    def __init__(self, db: Database, publish: Callable[[str, bytes, dict[str, str]], Awaitable[object]],
                 batch_size: int = 256, idle_seconds: float = 0.5):
        self.db = db
        self.publish = publish
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.published = 0
        self._stopping = asyncio.Event()

    async def relay_once(self) -> int:
        outbox = self.db.outbox
        async with self.db.transaction() as session:
            rows = (
                await session.execute(
                    sa.select(outbox.c.seq, outbox.c.event_id, outbox.c.subject, outbox.c.body)
                    .order_by(outbox.c.seq)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            # Sent in order on one connection; acks awaited together for throughput.
            await asyncio.gather(
                *(self.publish(row.subject, row.body, {"Nats-Msg-Id": row.event_id}) for row in rows)
            )
            await session.execute(sa.delete(outbox).where(outbox.c.seq.in_([row.seq for row in rows])))
        self.published += len(rows)
        return len(rows)

    async def run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before looking, so a commit made while we look wakes the next wait.
            self.db.outbox_written.clear()
            try:
                sent = await self.relay_once()
            except Exception:
                log.exception("outbox relay failed; retrying")
                sent = 0
                await asyncio.sleep(1.0)
            if sent:
                continue
            try:
                await asyncio.wait_for(self.db.outbox_written.wait(), self.idle_seconds)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()
        self.db.outbox_written.set()
