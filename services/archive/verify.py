"""Checking an estate's whole archive (RULES §5 Integrity): the chain, the catalogue, the
destruction log and each record's addenda, anchored to the `archived` events on the
stream. Those anchors live outside the archive's own database, so rewriting the store
cannot rewrite them too. Shape of the answer: {estate, ok, first_broken, reason,
records_checked, anchors, anchors_note}."""

from __future__ import annotations

import nats

from services.archive import rules
from services.archive.domain import Addendum, Record
from services.archive.organisation import Transaction
from shared.events import STREAM_NAME, Archived, CloudEvent, subject_for
from shared.settings import nats_servers


async def published_anchors(nats_url: str, estate: str, source: str, timeout: float = 5.0) -> dict[str, rules.Anchor]:
    """record_number → what the archive's `archived` event said about it, first one wins
    (read from the stream with an ephemeral consumer on the estate's subject; only events
    from `source`, the archive itself)."""
    nc = await nats.connect(nats_servers(nats_url), connect_timeout=timeout, max_reconnect_attempts=1)
    anchors: dict[str, rules.Anchor] = {}
    try:
        js = nc.jetstream(timeout=timeout)
        sub = await js.pull_subscribe(subject_for(estate, "archived"), stream=STREAM_NAME)
        try:
            pending = (await sub.consumer_info()).num_pending
            while pending > 0:
                messages = await sub.fetch(min(pending, 256), timeout=timeout)
                for msg in messages:
                    await msg.ack()
                    pending = msg.metadata.num_pending
                    try:
                        event = CloudEvent.model_validate_json(msg.data)
                        if event.source != source or event.estate != estate:
                            continue
                        data: Archived = event.payload()
                    except ValueError:
                        continue
                    anchors.setdefault(data.record_number, rules.Anchor(
                        record_number=data.record_number, content_hash=data.content_hash, archived_at=event.time,
                    ))
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
    return anchors


def destruction_entry(row) -> rules.DestructionLogEntry:
    return rules.DestructionLogEntry(
        estate=row.estate, record_number=row.record_number, sequence=row.sequence, ticket_id=row.ticket_id,
        form_number=row.form_number, retention_class=row.retention_class, archived_at=row.archived_at,
        retention_expired_at=row.retention_expired_at, destroyed_at=row.destroyed_at, approved_by=row.approved_by,
        approval_reference=row.approval_reference, content_hash=row.content_hash, method=row.method,
    )


async def verify_estate(transaction: Transaction, estate: str, nats_url: str, source: str) -> dict:
    """Check the estate's whole chain, with the stream's anchors when NATS answers."""
    async with transaction() as uow:
        rows = await uow.chain.raw_records(estate)
        head = await uow.chain.head(estate)
        destroyed = await uow.marks.destructions(estate)
    anchors_note = "anchored to the archived events on the stream"
    try:
        anchors: dict[str, rules.Anchor] | None = await published_anchors(nats_url, estate, source)
    except Exception as error:  # verify still checks the chain itself without the stream
        anchors, anchors_note = None, f"stream unavailable, chain checked without anchors: {error!r}"
    chain, catalogue = [], []
    for row in rows:
        try:
            record = Record.from_row(row)
            chain.append(record.chain_link())
            catalogue.append(record.catalogue())
        except ValueError as error:  # a stored value the model refuses is itself a break
            return dict(estate=estate, ok=False, first_broken=row.record_number,
                        reason=f"stored record is malformed: {error}", records_checked=len(chain) + 1,
                        anchors=None if anchors is None else len(anchors), anchors_note=anchors_note)
    result = rules.verify_archive(
        chain, catalogue, estate=estate, head=None if head is None else (head.last_sequence, head.last_hash),
        destruction_log=[destruction_entry(row) for row in destroyed], anchors=anchors,
    )
    ok, first_broken, reason = result.ok, result.first_broken, result.reason
    if ok:  # then each record's addenda, linked to the record's stored hash
        async with transaction() as uow:
            addenda: list[Addendum] = await uow.chain.addenda_of_estate(estate)
        by_record: dict[str, list] = {}
        for addendum in addenda:
            by_record.setdefault(addendum.record_number, []).append(addendum.link())
        hashes = {row.record_number: row.record_hash for row in rows}
        for number, links in by_record.items():
            broken = rules.verify_addenda(number, hashes.get(number, ""), links)
            if broken:
                ok, first_broken, reason = False, number, broken
                break
    return dict(estate=estate, ok=ok, first_broken=first_broken, reason=reason,
                records_checked=result.records_checked, anchors=None if anchors is None else len(anchors),
                anchors_note=anchors_note)
