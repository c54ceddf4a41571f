"""Archive 归档 (RULES.md §5): every closed countersign form frozen into its estate's hash
chain, printable; monthly organisation, quarterly volumes and catalogues; the important-
events file; the lending register; destruction after retention with the general
manager's approval.

Imperative shell around services/archive/rules.py (the design is in its docstring):
parse, call the rules, store, emit. One consumer collects every ticket event in stream
order; a `closed` ticket is sealed by a job as soon as the consumer's ack floor shows
that nothing before its `closed` is still outstanding (a message redelivered after a
lost fetch can arrive late), so a form is never frozen with a hole in it. Anchors for `verify` are read from the stream: the
`archived` events this service published carry each record's content hash and archiving
time, and live outside the archive's own database, so rewriting the store cannot rewrite
them too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nats
import sqlalchemy as sa
from fastapi import Depends, Query
from fastapi.responses import HTMLResponse, Response
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.archive import render, rules, store
from shared.auth import Principal
from shared.errors import RuleViolation
from shared.limits import Contract
from shared.events import STREAM_NAME, AccessRefused, Archived, CloudEvent, Destroyed, Lent, Returned, subject_for
from shared.auth import STAFF_ROLES
from shared.settings import nats_servers
from shared.service import LocalTime, Service, create_http_app, known_estate, require_estate

log = logging.getLogger("estatedesk.archive")

service = Service("archive", store.metadata, title="Archive 归档",
                  description="Hash-chained archived forms, volumes and catalogues, lending and destruction.")
# Every refusal here lands in the access log (as do refusals at intake's owners' data).
service.audited_routes = ("/estates/{estate}/archive", "/estates/{estate}/tickets/{ticket_id}/timeline")

records_archived = Counter(
    "estatedesk_archive_records_archived", "Closed forms sealed into an estate's chain",
    ["estate", "retention_class"], registry=service.registry,
)
reads_refused = Counter(
    "estatedesk_archive_reads_refused", "Reads of archived records refused (no running register entry)",
    ["estate"], registry=service.registry,
)
late_events = Counter(
    "estatedesk_archive_late_events", "Ticket events that arrived after their ticket was archived",
    ["estate", "event"], registry=service.registry,
)
pending_seals_gauge = Gauge(
    "estatedesk_archive_pending_seals", "Closed tickets not sealed yet (waiting for events, or failing)", ["estate"],
    registry=service.registry,
)
overdue_loans_gauge = Gauge(
    "estatedesk_archive_overdue_loans", "Loans past their due date and not returned", ["estate"],
    registry=service.registry,
)

SCHEDULE_SECONDS = float(os.environ.get("ESTATEDESK_ARCHIVE_SCHEDULE_SECONDS", "10"))


# --- consuming ticket events ----------------------------------------------------------------


@service.consumer(description="Collect every ticket event; a `closed` ticket is queued for sealing into the chain.")
async def on_ticket_event(session: AsyncSession, event: CloudEvent) -> None:
    if event.event_name in rules.NOT_PART_OF_FORM:
        return  # the archive's own events, analytics' suggestions: never part of a form
    record = await _record_of_ticket(session, event.estate, event.subject)
    if record is not None:
        # `closed` is final: the frozen form does not change; the late event is appended
        # to the record as an addendum in its side chain, never dropped.
        number = await append_addendum(session, event.estate, record.record_number, event, service.clock.now())
        late_events.labels(event.estate, event.event_name).inc()
        log.warning("event %s arrived after its ticket was archived: appended as addendum %s to %s",
                    event.event_name, number, record.record_number,
                    extra={"estate": event.estate, "ticket": event.subject, "event_id": event.id})
        return
    now = service.clock.now()
    await session.execute(
        pg_insert(store.collected_events)
        .values(event_id=event.id, ticket_id=event.subject, estate=event.estate, time=event.time,
                event=event.event_name, envelope=event.model_dump(mode="json"), collected_at=now)
        .on_conflict_do_nothing()
    )
    if event.event_name == "closed":
        # Sealed by `seal_closed_tickets` once every earlier event is collected: a
        # redelivered message can arrive after the `closed` that followed it.
        seal_watch.work_seen = True
        await session.execute(
            pg_insert(store.pending_seals)
            .values(estate=event.estate, ticket_id=event.subject, closed_event_id=event.id, closed_at=event.time,
                    noted_at=now, attempts=0, next_try_at=now)
            .on_conflict_do_nothing()
        )


@service.consumer("access_refused", description="Keep every refusal at the door to owners' data or archived "
                  "records, from any service, in the access log.")
async def on_access_refused(session: AsyncSession, event: CloudEvent) -> None:
    """One `access_refused` event → one refused row of the estate's access log
    (what = "door"; RULES § archive access log)."""
    refused: AccessRefused = event.payload()
    await session.execute(sa.insert(store.access_log).values(
        estate=event.estate, record_number=refused.record_number, actor=event.actor[:64], roles=refused.roles,
        what="door", allowed=False, reason=f"{refused.status}: {refused.reason}", service=refused.service[:32],
        request=f"{refused.method} {refused.path}", at=event.time,
    ))


async def append_addendum(session: AsyncSession, estate: str, record_number: str, event: CloudEvent,
                          now: dt.datetime) -> int:
    """Append `event` to the archived record as its next addendum (the record row is
    locked, so addenda of one record are numbered 1, 2, ... without gaps); returns its
    number."""
    r, a = store.records, store.addenda
    record_hash = (await session.execute(
        sa.select(r.c.record_hash).where(r.c.record_number == record_number).with_for_update()
    )).scalar_one()
    last = (await session.execute(
        sa.select(a.c.number, a.c.addendum_hash).where(a.c.record_number == record_number)
        .order_by(a.c.number.desc()).limit(1)
    )).first()
    number, previous = (1, record_hash) if last is None else (last.number + 1, last.addendum_hash)
    content = rules.addendum_content(event.model_dump(mode="json"))
    digest = rules.content_hash(content)
    await session.execute(sa.insert(a).values(
        record_number=record_number, number=number, estate=estate, event_id=event.id, event=event.event_name,
        time=event.time, content=content, content_hash=digest, previous_hash=previous,
        addendum_hash=rules.addendum_hash(previous, record_number, number, digest), appended_at=now,
    ))
    return number


async def _addenda(session: AsyncSession, record_number: str) -> list:
    a = store.addenda
    return (await session.execute(
        sa.select(a).where(a.c.record_number == record_number).order_by(a.c.number)
    )).all()


def _addendum_link(row) -> rules.AddendumLink:
    return rules.AddendumLink(number=row.number, content=row.content, content_hash=row.content_hash,
                              previous_hash=row.previous_hash, stored_hash=row.addendum_hash)


async def _record_of_ticket(session: AsyncSession, estate: str, ticket_id: str):
    r = store.records
    return (await session.execute(
        sa.select(r.c.record_number).where(r.c.estate == estate, r.c.ticket_id == ticket_id)
    )).first()


async def _lock_chain_head(session: AsyncSession, estate: str, now: dt.datetime):
    """The estate's chain head, locked until commit: appends are serialised per estate."""
    heads = store.chain_heads
    await session.execute(
        pg_insert(heads)
        .values(estate=estate, last_sequence=0, last_hash=rules.genesis_hash(estate), updated_at=now)
        .on_conflict_do_nothing()
    )
    return (await session.execute(sa.select(heads).where(heads.c.estate == estate).with_for_update())).one()


async def _next_in_year(session: AsyncSession, estate: str, year: int) -> int:
    years = store.record_years
    result = await session.execute(
        pg_insert(years).values(estate=estate, year=year, last=1)
        .on_conflict_do_update(index_elements=[years.c.estate, years.c.year], set_={"last": years.c.last + 1})
        .returning(years.c.last)
    )
    return result.scalar_one()


def _ticket_of(body: bytes) -> str | None:
    """The ticket id (CloudEvents `subject`) of a stored event body, None when the body is
    not a JSON object. Parsed here, not cast in SQL: a body PostgreSQL cannot hold as
    JSONB (a NUL character, say) must not fail the query for every other ticket."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    return envelope.get("subject") if isinstance(envelope, dict) else None


async def _check_no_dead_letters(session: AsyncSession, estate: str, ticket_id: str) -> None:
    """An event of the ticket this consumer gave up on would leave a hole in the frozen
    form: the ticket waits (pending, with the reason) until the event is replayed.
    Raises ValueError naming the event and its dead-letter reason."""
    d = store.metadata.tables["archive.dead_letters"]
    rows = (await session.execute(
        sa.select(d.c.event_id, d.c.reason, d.c.body).where(
            # A dead letter carries its estate whenever its envelope could be read (a handler
            # failure, or a payload the contract refuses): those are attributable to a ticket.
            d.c.consumer == service.consumers[0].durable, d.c.estate == estate,
        )
    )).all()
    for row in rows:
        if _ticket_of(row.body) == ticket_id:
            raise ValueError(f"event {row.event_id} of ticket {ticket_id} is a dead letter of the archive "
                             f"({row.reason[:200]}): replay it before the form can be sealed")


async def archive_ticket(session: AsyncSession, estate: str, ticket_id: str, closed_at: dt.datetime) -> str | None:
    """Assemble, freeze and chain the ticket's form; emit `archived`. Idempotent per
    ticket: a second call finds the record and does nothing."""
    now = service.clock.now()
    policy = service.directory.policy_for(estate)
    head = await _lock_chain_head(session, estate, now)
    if await _record_of_ticket(session, estate, ticket_id) is not None:
        return None
    await _check_no_dead_letters(session, estate, ticket_id)
    c = store.collected_events
    # Events stamped after the closure (a clock scan racing the close) are not the form's.
    envelopes = (await session.execute(
        sa.select(c.c.envelope).where(c.c.estate == estate, c.c.ticket_id == ticket_id, c.c.time <= closed_at)
        .order_by(c.c.time, c.c.event_id)
    )).scalars().all()
    # A ValueError here (no intake: the form cannot be made yet) is retried by the job.
    form = rules.assemble_form((CloudEvent.model_validate(e) for e in envelopes), timezone=policy.timezone)
    rules.check_archivable(form)
    content = rules.canonical_bytes(form)
    month = rules.closed_month(form.closed_at, form.timezone)
    number = rules.record_number(estate, int(month[:4]), await _next_in_year(session, estate, int(month[:4])))
    link = rules.seal_record(head.last_hash, head.last_sequence + 1, number, content)
    retention = rules.retention_class(
        form, marked_important=False, handled_by_company=rules.handled_by_company(form, policy), policy=policy
    )
    record = rules.archived_record(
        form, sequence=link.sequence, record_number=number, retention_class=retention, archived_at=now,
        content_hash=link.content_hash,
    )
    await session.execute(
        sa.insert(store.records).values(
            estate=estate, sequence=link.sequence, record_number=number, ticket_id=ticket_id,
            form_number=form.form_number, kind=record.kind.value, title=record.title, closed_at=form.closed_at,
            closed_month=record.closed_month, archived_class=retention.value, retention_class=retention.value,
            archived_at=now, content=content, content_hash=link.content_hash, previous_hash=link.previous_hash,
            record_hash=link.stored_hash, destroyed=False,
        )
    )
    await session.execute(
        sa.update(store.chain_heads).where(store.chain_heads.c.estate == estate)
        .values(last_sequence=link.sequence, last_hash=link.stored_hash, updated_at=now)
    )
    await session.execute(sa.delete(c).where(c.c.estate == estate, c.c.ticket_id == ticket_id))
    await service.emit(
        session,
        Archived(ticket_id=ticket_id, record_number=number, content_hash=link.content_hash,
                 previous_hash=link.previous_hash, closed_month=record.closed_month,
                 sequence=link.sequence, record_hash=link.stored_hash, retention_class=retention.value),
        estate=estate, actor="system", time=now,
    )
    records_archived.labels(estate, retention.value).inc()
    return number


SEAL_SECONDS = float(os.environ.get("ESTATEDESK_ARCHIVE_SEAL_SECONDS", "0.5"))
SEAL_RETRY = dt.timedelta(seconds=30)  # a form that cannot be made yet (no intake) waits this long
# With nothing pending the sealing job looks only this often (another replica may have
# collected a `closed`); pending work is looked at every SEAL_SECONDS.
SEAL_IDLE_LOOK_SECONDS = 10.0


@dataclass
class SealWatch:
    """Whether the sealing job has anything to look at: a `closed` collected here, or
    pending rows left by its last look; else it looks every `SEAL_IDLE_LOOK_SECONDS`
    (silence when idle: no database query, no consumer-info request)."""

    work_seen: bool = True  # at start: look
    last_look: float = float("-inf")

    def should_look(self, now: float) -> bool:
        if not self.work_seen and now - self.last_look < SEAL_IDLE_LOOK_SECONDS:
            return False
        self.work_seen, self.last_look = False, now
        return True


seal_watch = SealWatch()


async def _consumer_position() -> tuple[int, int] | None:
    """(last delivered, ack floor) stream sequences of the archive's own durable consumer:
    every message at or below the ack floor has been processed and committed."""
    connection = getattr(service.broker, "_connection", None)
    if connection is None or not connection.is_connected:
        return None
    info = await connection.jetstream().consumer_info(STREAM_NAME, service.consumers[0].durable)
    return info.delivered.stream_seq, info.ack_floor.stream_seq


@service.periodic("seal", SEAL_SECONDS)
async def seal_closed_tickets() -> int:
    """Seal closed tickets whose every earlier event has been collected. A pending row
    first gets a barrier (the consumer's delivered position, at or after its `closed`);
    once the ack floor passes the barrier nothing before `closed` is outstanding, even a
    message redelivered out of order. Rows are claimed FOR UPDATE SKIP LOCKED."""
    if not seal_watch.should_look(time.monotonic()):
        return 0
    p = store.pending_seals
    async with service.db.transaction() as session:
        if not (await session.execute(sa.select(sa.exists(sa.select(p.c.ticket_id))))).scalar():
            return 0
    seal_watch.work_seen = True  # pending rows: look again next time
    position = await _consumer_position()
    if position is None:
        return 0
    delivered, floor = position
    now = service.clock.now()
    async with service.db.transaction() as session:
        await session.execute(sa.update(p).where(p.c.barrier.is_(None)).values(barrier=delivered))
        due = (await session.execute(
            sa.select(p.c.estate, p.c.ticket_id).where(p.c.barrier <= floor, p.c.next_try_at <= now)
            .order_by(p.c.noted_at).limit(100)
        )).all()
    sealed = 0
    for estate, ticket_id in due:
        async with service.db.transaction() as session:
            row = (await session.execute(
                sa.select(p).where(p.c.estate == estate, p.c.ticket_id == ticket_id)
                .with_for_update(skip_locked=True)
            )).first()
            if row is None:
                continue  # another replica has it
            try:
                async with session.begin_nested():
                    number = await archive_ticket(session, estate, ticket_id, row.closed_at)
            except Exception as error:  # ValueError (incl. RuleViolation): not yet; anything else: this ticket only
                log.warning("ticket cannot be sealed yet: %s", error, extra={"estate": estate, "ticket": ticket_id},
                            exc_info=not isinstance(error, ValueError))
                await session.execute(
                    sa.update(p).where(p.c.estate == estate, p.c.ticket_id == ticket_id)
                    .values(attempts=p.c.attempts + 1, last_error=str(error)[:2000],
                            next_try_at=service.clock.now() + SEAL_RETRY)
                )
                continue
            await session.execute(sa.delete(p).where(p.c.estate == estate, p.c.ticket_id == ticket_id))
            sealed += number is not None
    return sealed


# --- rows to rule objects ------------------------------------------------------------------


def _catalogue(row) -> rules.ArchivedRecord:
    return rules.ArchivedRecord(
        estate=row.estate, sequence=row.sequence, record_number=row.record_number, ticket_id=row.ticket_id,
        form_number=row.form_number, kind=row.kind, title=row.title, closed_month=row.closed_month,
        retention_class=row.retention_class, archived_at=row.archived_at, content_hash=row.content_hash,
        destroyed=row.destroyed,
    )


def _chain_link(row) -> rules.ChainRecord:
    return rules.ChainRecord(
        sequence=row.sequence, record_number=row.record_number, content=row.content, content_hash=row.content_hash,
        previous_hash=row.previous_hash, stored_hash=row.record_hash, destroyed=row.destroyed,
    )


def _register_entry(row) -> rules.RegisterEntry:
    return rules.RegisterEntry(
        loan_id=row.loan_id, record_number=row.record_number, record_estate=row.estate, borrower=row.borrower,
        borrower_external=row.borrower_external, borrower_organisation=row.borrower_organisation,
        purpose=row.purpose, mode=row.mode, basis=row.basis, registered_at=row.registered_at,
        valid_until=row.valid_until, due_back=row.due_back, approved_by=row.approved_by,
        approval_reference=row.approval_reference, returned_at=row.returned_at,
    )


def _destruction_entry(row) -> rules.DestructionLogEntry:
    return rules.DestructionLogEntry(
        estate=row.estate, record_number=row.record_number, sequence=row.sequence, ticket_id=row.ticket_id,
        form_number=row.form_number, retention_class=row.retention_class, archived_at=row.archived_at,
        retention_expired_at=row.retention_expired_at, destroyed_at=row.destroyed_at, approved_by=row.approved_by,
        approval_reference=row.approval_reference, content_hash=row.content_hash, method=row.method,
    )


def _person(who: Principal, estate: str) -> rules.Person:
    # require_estate has already checked the token covers the estate ("*" included).
    return rules.Person(who.staff_id, who.roles, frozenset({estate}) if who.may_act_for(estate) else who.estates)


def _directory_person(estate: str, staff_id: str) -> rules.Person:
    """An approver named in a request, with the roles the directory gives them in that
    estate (the director, and staff by their roles); unknown people have none."""
    found = service.directory.estate(estate)
    roles: set[str] = set()
    if found is not None:
        if found.director == staff_id:
            roles.add("estate_director")
        for member in found.staff:
            if member.id == staff_id:
                roles |= set(member.roles)
    return rules.Person(staff_id, frozenset(roles), frozenset({estate}) if roles else frozenset())


# --- verify ----------------------------------------------------------------------------------


async def published_anchors(nats_url: str, estate: str, timeout: float = 5.0) -> dict[str, rules.Anchor]:
    """record_number → what the archive's `archived` event said about it, first one wins
    (read from the stream with an ephemeral consumer on the estate's subject)."""
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
                        if event.source != f"estatedesk/{service.name}" or event.estate != estate:
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


async def verify_estate(estate: str) -> dict:
    """Check the estate's whole chain, with the stream's anchors when NATS answers."""
    r, d = store.records, store.destruction_log
    async with service.db.transaction() as session:
        rows = (await session.execute(sa.select(r).where(r.c.estate == estate).order_by(r.c.sequence))).all()
        head = (await session.execute(
            sa.select(store.chain_heads.c.last_sequence, store.chain_heads.c.last_hash)
            .where(store.chain_heads.c.estate == estate)
        )).first()
        destroyed = (await session.execute(sa.select(d).where(d.c.estate == estate))).all()
    anchors_note = "anchored to the archived events on the stream"
    try:
        anchors: dict[str, rules.Anchor] | None = await published_anchors(service.settings.nats_url, estate)
    except Exception as error:  # verify still checks the chain itself without the stream
        anchors, anchors_note = None, f"stream unavailable, chain checked without anchors: {error!r}"
    chain, catalogue = [], []
    for row in rows:
        try:
            chain.append(_chain_link(row))
            catalogue.append(_catalogue(row))
        except ValueError as error:  # a stored value the model refuses is itself a break
            return dict(estate=estate, ok=False, first_broken=row.record_number,
                        reason=f"stored record is malformed: {error}", records_checked=len(chain) + 1,
                        anchors=None if anchors is None else len(anchors), anchors_note=anchors_note)
    result = rules.verify_archive(
        chain, catalogue, estate=estate, head=None if head is None else (head.last_sequence, head.last_hash),
        destruction_log=[_destruction_entry(row) for row in destroyed], anchors=anchors,
    )
    ok, first_broken, reason = result.ok, result.first_broken, result.reason
    if ok:  # then each record's addenda, linked to the record's stored hash
        a = store.addenda
        async with service.db.transaction() as session:
            addenda = (await session.execute(
                sa.select(a).where(a.c.estate == estate).order_by(a.c.record_number, a.c.number))).all()
        by_record: dict[str, list] = {}
        for row in addenda:
            by_record.setdefault(row.record_number, []).append(_addendum_link(row))
        hashes = {row.record_number: row.record_hash for row in rows}
        for number, links in by_record.items():
            broken = rules.verify_addenda(number, hashes.get(number, ""), links)
            if broken:
                ok, first_broken, reason = False, number, broken
                break
    return dict(estate=estate, ok=ok, first_broken=first_broken, reason=reason,
                records_checked=result.records_checked, anchors=None if anchors is None else len(anchors),
                anchors_note=anchors_note)


# --- monthly organisation and quarterly archiving ------------------------------------------


async def _lock_estate_organisation(session: AsyncSession, estate: str) -> None:
    # Replicas and the command may run at once: one organises, the other then finds it done.
    await session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"archive-organise:{estate}"})


def _export_month(manifest: rules.MonthManifest, digest: str, contents: dict[str, bytes | None]) -> str | None:
    """The month's backup under the data directory: manifest plus every record's content."""
    if service.settings is None:
        return None
    folder = Path(service.settings.data_dir) / "archive" / manifest.estate
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{manifest.month}-part{manifest.part:02d}.json"
    document = {
        "manifest": manifest.model_dump(mode="json"),
        "manifest_hash": digest,
        # Content as stored (canonical JSON text), so its sha256 checks against the manifest.
        "contents": {n: None if c is None else c.decode("utf-8") for n, c in contents.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1))
    tmp.chmod(0o600)  # owner files are level-1 confidential
    os.replace(tmp, path)
    return str(path)


def _set_out(row) -> dict:
    return dict(estate=row.estate, month=row.month, part=row.part, organised_at=row.organised_at,
                organised_by=row.organised_by, record_count=row.record_count, manifest_hash=row.manifest_hash,
                export_path=row.export_path, records=row.manifest["records"])


async def organise_month(estate: str, month: str, by: str) -> dict:
    """Organise a finished month (RULES §5 monthly): the records closed in it that no set
    holds yet become the month's set (part 1, or a supplement). Running it again changes
    nothing."""
    now = service.clock.now()
    tz = service.directory.timezone_for(estate)
    rules.quarter_of(month)  # validates the month's shape
    rules.check_period_over(month, now, tz)
    r, m = store.records, store.monthly_sets
    async with service.db.transaction() as session:
        await _lock_estate_organisation(session, estate)
        existing = (await session.execute(
            sa.select(m).where(m.c.estate == estate, m.c.month == month).order_by(m.c.part)
        )).all()
        rows = (await session.execute(
            sa.select(r).where(r.c.estate == estate, r.c.closed_month == month, r.c.month_part.is_(None))
            .order_by(r.c.sequence)
        )).all()
        if existing and not rows:
            return dict(estate=estate, month=month, changed=False, sets=[_set_out(s) for s in existing])
        part = len(existing) + 1
        manifest = rules.month_manifest(estate, month, part, now, [
            rules.ManifestLine(
                record_number=row.record_number, sequence=row.sequence, ticket_id=row.ticket_id,
                form_number=row.form_number, title=row.title, retention_class=row.retention_class,
                archived_at=row.archived_at, content_hash=row.content_hash, record_hash=row.record_hash,
            )
            for row in rows
        ])
        digest = manifest.digest()
        path = await asyncio.to_thread(_export_month, manifest, digest, {row.record_number: row.content for row in rows})
        await session.execute(sa.insert(m).values(
            estate=estate, month=month, part=part, organised_at=now, organised_by=by, record_count=len(rows),
            manifest=manifest.model_dump(mode="json"), manifest_hash=digest, export_path=path,
        ))
        if rows:
            await session.execute(
                sa.update(r).where(r.c.estate == estate, r.c.record_number.in_([row.record_number for row in rows]))
                .values(month_part=part)
            )
        sets = (await session.execute(
            sa.select(m).where(m.c.estate == estate, m.c.month == month).order_by(m.c.part)
        )).all()
    log.info("organised %s part %d: %d records", month, part, len(rows), extra={"estate": estate})
    return dict(estate=estate, month=month, changed=True, sets=[_set_out(s) for s in sets])


async def _quarter_out(session: AsyncSession, estate: str, quarter: str, changed: bool) -> dict:
    q, v, r = store.quarterly_runs, store.volumes, store.records
    runs = (await session.execute(
        sa.select(q).where(q.c.estate == estate, q.c.quarter == quarter).order_by(q.c.part)
    )).all()
    vols = (await session.execute(
        sa.select(v).where(v.c.estate == estate, v.c.quarter == quarter).order_by(v.c.volume_number)
    )).all()
    destroyed = set((await session.execute(
        sa.select(r.c.record_number).where(r.c.estate == estate, r.c.destroyed, r.c.volume_number.is_not(None))
    )).scalars())
    return dict(
        estate=estate, quarter=quarter, changed=changed,
        runs=[dict(part=run.part, archived_at=run.archived_at, archived_by=run.archived_by,
                   item_count=run.item_count, general_catalogue=run.general_catalogue) for run in runs],
        volumes=[dict(volume_number=vol.volume_number, part=vol.part, title=vol.title,
                      retention_class=vol.retention_class, retention_years=vol.retention_years,
                      custodian=vol.custodian, item_count=vol.item_count, first_record=vol.first_record,
                      last_record=vol.last_record, months=vol.months,
                      items=[{**item, "destroyed": item["record_number"] in destroyed} for item in vol.items])
                 for vol in vols],
    )


async def archive_quarter(estate: str, quarter: str, by: str) -> dict:
    """Archive a finished quarter (RULES §5 quarterly): organise its months, then bind the
    records no volume holds yet into volumes with general, volume and item catalogues.
    Running it again changes nothing; forms archived late go into supplementary volumes
    numbered after the existing ones."""
    now = service.clock.now()
    tz = service.directory.timezone_for(estate)
    policy = service.directory.policy_for(estate)
    months = rules.months_of_quarter(quarter)  # validates the quarter's shape
    rules.check_period_over(quarter, now, tz)
    changed = False
    for month in months:
        changed |= (await organise_month(estate, month, by))["changed"]
    r, q, v = store.records, store.quarterly_runs, store.volumes
    async with service.db.transaction() as session:
        await _lock_estate_organisation(session, estate)
        runs = (await session.execute(
            sa.select(q.c.part).where(q.c.estate == estate, q.c.quarter == quarter)
        )).scalars().all()
        rows = (await session.execute(
            sa.select(r).where(r.c.estate == estate, r.c.closed_month.in_(months), r.c.volume_number.is_(None))
        )).all()
        if runs and not rows:
            return await _quarter_out(session, estate, quarter, changed)
        part = len(runs) + 1
        bound = (await session.execute(
            sa.select(sa.func.count()).select_from(v).where(v.c.estate == estate, v.c.quarter == quarter)
        )).scalar_one()
        plan = rules.supplementary_plan(
            rules.assign_volumes([_catalogue(row) for row in rows], quarter=quarter, policy=policy),
            first_index=bound + 1, part=part,
        )
        await session.execute(sa.insert(q).values(
            estate=estate, quarter=quarter, part=part, archived_at=now, archived_by=by, item_count=len(rows),
            general_catalogue=[g.model_dump(mode="json") for g in plan.general_catalogue],
        ))
        for volume in plan.volumes:
            cat = volume.catalogue
            await session.execute(sa.insert(v).values(
                volume_number=cat.volume_number, estate=estate, quarter=quarter, part=part, title=cat.title,
                retention_class=cat.retention_class.value, retention_years=cat.retention_years,
                custodian=cat.custodian, item_count=cat.item_count, first_record=cat.first_record,
                last_record=cat.last_record, months=list(cat.months),
                items=[i.model_dump(mode="json", exclude={"destroyed"}) for i in volume.items],
            ))
            for item in volume.items:
                await session.execute(
                    sa.update(r).where(r.c.record_number == item.record_number)
                    .values(volume_number=item.volume_number, volume_item=item.item_number)
                )
        log.info("archived %s part %d: %d records in %d volumes", quarter, part, len(rows), len(plan.volumes),
                 extra={"estate": estate})
        return await _quarter_out(session, estate, quarter, True)


@service.periodic("organise", SCHEDULE_SECONDS)
async def scheduled_organisation() -> None:
    """Monthly organisation and quarterly archiving on schedule: any finished period
    (plus the policy's grace) holding records not yet organised or bound is done now."""
    now = service.clock.now()
    r = store.records
    async with service.db.transaction() as session:
        unorganised = (await session.execute(
            sa.select(r.c.estate, r.c.closed_month).where(r.c.month_part.is_(None)).distinct()
        )).all()
        unbound = (await session.execute(
            sa.select(r.c.estate, r.c.closed_month).where(r.c.volume_number.is_(None)).distinct()
        )).all()
    work = [(organise_month, estate, month) for estate, month in sorted(unorganised)]
    work += [(archive_quarter, estate, quarter)
             for estate, quarter in sorted({(estate, rules.quarter_of(month)) for estate, month in unbound})]
    for run, estate, period in work:
        policy = service.directory.policy_for(estate)
        if not rules.scheduled_run_due(period, now, policy.timezone, policy):
            continue
        try:
            await run(estate, period, "schedule")
        except Exception:  # one estate's trouble must not hold up the others
            log.exception("scheduled %s of %s failed; retried next run", run.__name__, period, extra={"estate": estate})


@service.periodic("gauges", 30, each_replica=True)
async def update_gauges() -> None:
    """Keep the overdue-loan (001 第6篇 1.3.5: chase them) and pending-seal gauges current."""
    now = service.clock.now()
    loans = store.loans
    async with service.db.transaction() as session:
        counts = dict((await session.execute(
            sa.select(loans.c.estate, sa.func.count()).where(
                loans.c.returned_at.is_(None), loans.c.mode == rules.LoanMode.loan.value, loans.c.due_back < now
            ).group_by(loans.c.estate)
        )).all())
        pending = dict((await session.execute(
            sa.select(store.pending_seals.c.estate, sa.func.count()).group_by(store.pending_seals.c.estate)
        )).all())
    for estate in set(counts) | _overdue_estates:
        overdue_loans_gauge.labels(estate).set(counts.get(estate, 0))
    for estate in set(pending) | _pending_estates:
        pending_seals_gauge.labels(estate).set(pending.get(estate, 0))
    _overdue_estates.update(counts)
    _pending_estates.update(pending)


_overdue_estates: set[str] = set()
_pending_estates: set[str] = set()


# --- HTTP ------------------------------------------------------------------------------------


class RecordOut(BaseModel):
    """A catalogue line: metadata only, never the content."""

    record_number: str
    sequence: int
    ticket_id: str
    form_number: str
    kind: str
    title: str
    closed_month: str
    retention_class: str
    archived_class: str
    important: bool
    archived_at: LocalTime
    retention_expires: LocalTime
    content_hash: str
    previous_hash: str
    record_hash: str
    destroyed: bool
    destroyed_at: LocalTime | None
    month_part: int | None
    volume_number: str | None
    volume_item: int | None


def _record_out(row, policy) -> RecordOut:
    return RecordOut(
        record_number=row.record_number, sequence=row.sequence, ticket_id=row.ticket_id,
        form_number=row.form_number, kind=row.kind, title=row.title, closed_month=row.closed_month,
        retention_class=row.retention_class, archived_class=row.archived_class,
        important=row.retention_class == rules.RetentionClass.important_event.value,
        archived_at=row.archived_at,
        retention_expires=rules.retention_expires(row.archived_at, row.retention_class, policy),
        content_hash=row.content_hash, previous_hash=row.previous_hash, record_hash=row.record_hash,
        destroyed=row.destroyed, destroyed_at=row.destroyed_at, month_part=row.month_part,
        volume_number=row.volume_number, volume_item=row.volume_item,
    )


def _check_record_number(estate: str, number: str) -> None:
    try:
        owner, _, _ = rules.parse_record_number(number)
    except ValueError as error:
        raise RuleViolation(str(error), status=404) from None
    if owner != estate.upper():
        raise RuleViolation(f"record {number} does not belong to estate {estate}", status=404)


async def _record_row(session: AsyncSession, estate: str, number: str, *, lock: bool = False):
    _check_record_number(estate, number)
    query = sa.select(store.records).where(store.records.c.estate == estate, store.records.c.record_number == number)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise RuleViolation(f"no archived record {number} in estate {estate}", status=404)
    return row


@service.http.get("/estates/{estate}/archive/records", response_model=list[RecordOut], tags=["archive"])
async def list_records(
    estate: str,
    month: str | None = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
    retention_class: rules.RetentionClass | None = None,
    who: Principal = Depends(require_estate),
) -> list[RecordOut]:
    """The item catalogue of the estate's archive: numbers, titles, months, retention
    classes and hashes. No content: reading a record needs a register entry."""
    known_estate(service, estate)
    r = store.records
    query = sa.select(r).where(r.c.estate == estate).order_by(r.c.sequence)
    if month:
        query = query.where(r.c.closed_month == month)
    if retention_class:
        query = query.where(r.c.retention_class == retention_class.value)
    async with service.db.transaction() as session:
        rows = (await session.execute(query)).all()
    policy = service.directory.policy_for(estate)
    return [_record_out(row, policy) for row in rows]


async def _authorise_read(estate: str, number: str, who: Principal, what: str):
    """The record row when the caller holds a running register entry for it; otherwise
    the refusal is logged (committed) and answered 403 with the reason."""
    known_estate(service, estate)
    now = service.clock.now()
    policy = service.directory.policy_for(estate)
    loans = store.loans
    async with service.db.transaction() as session:
        row = await _record_row(session, estate, number)
        entries = (await session.execute(
            sa.select(loans).where(
                loans.c.estate == estate, loans.c.record_number == number,
                sa.or_(
                    sa.and_(loans.c.borrower == who.staff_id, loans.c.borrower_external.is_(False)),
                    # An outsider has no token: the staff member who registered the
                    # outsider's entry hands the copy over under that entry.
                    sa.and_(loans.c.borrower_external.is_(True), loans.c.registered_by == who.staff_id),
                ),
            ).order_by(loans.c.registered_at.desc())
        )).all()
        allowed, reason, loan_id = False, "no register entry: every consultation must be registered first", None
        for i, entry_row in enumerate(entries):
            entry = _register_entry(entry_row)
            actor = (rules.Person(entry.borrower, frozenset(), frozenset(), external=True,
                                  organisation=entry.borrower_organisation)
                     if entry.borrower_external else _person(who, estate))
            decision = rules.may_read(actor, estate, number, entry, now, policy)
            if decision:
                allowed, reason, loan_id = True, decision.reason, entry.loan_id
                break
            if i == 0:
                reason = decision.reason  # the latest entry says best why it no longer serves
        if row.destroyed:
            allowed, reason = False, f"record {number} was destroyed on {row.destroyed_at.isoformat()}"
        await session.execute(sa.insert(store.access_log).values(
            estate=estate, record_number=number, actor=who.staff_id, roles=sorted(who.roles), what=what,
            allowed=allowed, reason=reason, loan_id=loan_id, at=now,
        ))
    if row.destroyed:
        raise RuleViolation(f"{reason}; its destruction log entry remains", status=410)
    if not allowed:
        reads_refused.labels(estate).inc()
        raise RuleViolation(f"record {number} is level-1 confidential: {reason}", status=403)
    if rules.content_hash(row.content) != row.content_hash:
        raise RuleViolation(f"record {number} failed its integrity check (content hash differs): run verify", status=409)
    return row


@service.http.get("/estates/{estate}/archive/records/{record_number}", tags=["archive"])
async def read_record(estate: str, record_number: str, who: Principal = Depends(require_estate)) -> dict:
    """The archived form's content; needs a running register entry for the caller."""
    row = await _authorise_read(estate, record_number, who, "content")
    form = rules.form_from_bytes(row.content)
    async with service.db.transaction() as session:
        addenda = await _addenda(session, row.record_number)
    return {"record": _record_out(row, service.directory.policy_for(estate)).model_dump(mode="json"),
            "form": form.model_dump(mode="json"),
            # What the frozen form covers, and what arrived after it (appended, never merged).
            "covers": {"events_up_to": form.closed_at.isoformat() if form.closed_at else None,
                       "source_events": len(form.source_events), "addenda": len(addenda)},
            "addenda": [{"number": a.number, "event": a.event, "event_id": a.event_id, "time": a.time.isoformat(),
                         "addendum_hash": a.addendum_hash, "previous_hash": a.previous_hash,
                         "envelope": json.loads(a.content)} for a in addenda]}


@service.http.get("/estates/{estate}/archive/records/{record_number}/form.html", response_class=HTMLResponse,
                  tags=["archive"])
async def record_html(estate: str, record_number: str, who: Principal = Depends(require_estate)) -> HTMLResponse:
    """The printable countersign form (HTML); needs a running register entry."""
    row = await _authorise_read(estate, record_number, who, "form.html")
    return HTMLResponse(render.form_html(rules.form_from_bytes(row.content), row.record_number, row.content_hash))


@service.http.get("/estates/{estate}/archive/records/{record_number}/form.pdf", tags=["archive"])
async def record_pdf(estate: str, record_number: str, who: Principal = Depends(require_estate)) -> Response:
    """The countersign form as an A4 PDF; needs a running register entry."""
    row = await _authorise_read(estate, record_number, who, "form.pdf")
    pdf = await asyncio.to_thread(render.form_pdf, rules.form_from_bytes(row.content), row.record_number, row.content_hash)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{row.record_number}.pdf"'})


class ExternalBorrower(Contract):
    name: str = Field(min_length=1, max_length=100)
    organisation: str | None = Field(None, max_length=200)


class LoanIn(Contract):
    """A line of the lending register: the caller borrows, unless an outsider is named."""

    record_number: str = Field(min_length=1, max_length=64)
    purpose: str = Field(max_length=2000)
    mode: str = Field("consult", description="consult, loan, copy or export")
    approver: str | None = Field(None, max_length=64, description="staff id of the approving estate director/manager")
    approval_reference: str | None = Field(None, max_length=200, description="reference of the written approval")
    external_borrower: ExternalBorrower | None = None


class LoanOut(BaseModel):
    loan_id: str
    record_number: str
    ticket_id: str
    borrower: str
    borrower_external: bool
    borrower_organisation: str | None
    purpose: str
    mode: str
    basis: str
    registered_at: LocalTime
    registered_by: str
    valid_until: LocalTime
    due_back: LocalTime | None
    approved_by: str | None
    approval_reference: str | None
    returned_at: LocalTime | None
    returned_to: str | None
    overdue: bool


def _loan_out(row, now: dt.datetime) -> LoanOut:
    overdue = bool(rules.overdue_loans([_register_entry(row)], now))
    return LoanOut(**{k: getattr(row, k) for k in LoanOut.model_fields if k != "overdue"}, overdue=overdue)


@service.http.post("/estates/{estate}/archive/loans", status_code=201, response_model=LoanOut, tags=["archive"])
async def register_loan(estate: str, body: LoanIn, who: Principal = Depends(require_estate)) -> LoanOut:
    """Register a consultation, loan, copy or export (借阅登记); emits `lent`."""
    known_estate(service, estate)
    now = service.clock.now()
    policy = service.directory.policy_for(estate)
    if body.external_borrower:
        borrower = rules.Person(body.external_borrower.name.strip(), frozenset(), frozenset(), external=True,
                                organisation=body.external_borrower.organisation)
    else:
        borrower = _person(who, estate)
    approver = _directory_person(estate, body.approver.strip()) if body.approver and body.approver.strip() else None
    async with service.db.transaction() as session:
        row = await _record_row(session, estate, body.record_number)
        entry = rules.check_loan_request(
            loan_id=str(uuid.uuid4()), record=_catalogue(row), borrower=borrower, purpose=body.purpose,
            mode=body.mode, now=now, approver=approver, approval_reference=body.approval_reference, policy=policy,
        )
        values = dict(
            loan_id=entry.loan_id, estate=estate, record_number=entry.record_number, ticket_id=row.ticket_id,
            borrower=entry.borrower, borrower_external=entry.borrower_external,
            borrower_organisation=entry.borrower_organisation, purpose=entry.purpose, mode=entry.mode.value,
            basis=entry.basis.value, registered_at=entry.registered_at, registered_by=who.staff_id,
            valid_until=entry.valid_until, due_back=entry.due_back, approved_by=entry.approved_by,
            approval_reference=entry.approval_reference, returned_at=None, returned_to=None,
        )
        await session.execute(sa.insert(store.loans).values(**values))
        await service.emit(
            session,
            Lent(ticket_id=row.ticket_id, loan_id=entry.loan_id, record_number=entry.record_number,
                 borrower=entry.borrower, purpose=entry.purpose, mode=entry.mode.value, due_back=entry.due_back),
            estate=estate, actor=who.staff_id, time=now,
        )
    return LoanOut(**values, overdue=False)


@service.http.post("/estates/{estate}/archive/loans/{loan_id}/return", response_model=LoanOut, tags=["archive"])
async def return_loan(estate: str, loan_id: str, who: Principal = Depends(require_estate)) -> LoanOut:
    """Close a register entry (the record came back); emits `returned`."""
    known_estate(service, estate)
    now = service.clock.now()
    policy = service.directory.policy_for(estate)
    loans = store.loans
    async with service.db.transaction() as session:
        row = (await session.execute(
            sa.select(loans).where(loans.c.estate == estate, loans.c.loan_id == loan_id).with_for_update()
        )).first()
        if row is None:
            raise RuleViolation(f"no register entry {loan_id!r} in estate {estate}", status=404)
        keepers = set(policy.archive.self_register_roles) | set(policy.archive.approver_roles)
        if who.staff_id not in (row.borrower if not row.borrower_external else None, row.registered_by) \
                and not who.has_role(*keepers, "company_admin"):
            raise RuleViolation(
                f"{who.staff_id} may not close register entry {loan_id}: the borrower, the person who registered "
                "it or the estate's archive keepers receive returns", status=403,
            )
        returned = rules.return_loan(_register_entry(row), now)
        await session.execute(
            sa.update(loans).where(loans.c.loan_id == loan_id)
            .values(returned_at=returned.returned_at, returned_to=who.staff_id)
        )
        await service.emit(
            session, Returned(ticket_id=row.ticket_id, loan_id=loan_id, record_number=row.record_number),
            estate=estate, actor=who.staff_id, time=now,
        )
        row = (await session.execute(sa.select(loans).where(loans.c.loan_id == loan_id))).one()
    return _loan_out(row, now)


@service.http.get("/estates/{estate}/archive/loans", response_model=list[LoanOut], tags=["archive"])
async def list_loans(
    estate: str,
    overdue: bool = False,
    outstanding: bool = False,
    record_number: str | None = None,
    borrower: str | None = None,
    who: Principal = Depends(require_estate),
) -> list[LoanOut]:
    """The lending register; `overdue=true` flags loans past due, `outstanding=true` the
    loans not returned (staff leaving must return theirs, 001 第6篇 1.2.7)."""
    known_estate(service, estate)
    now = service.clock.now()
    loans = store.loans
    query = sa.select(loans).where(loans.c.estate == estate).order_by(loans.c.registered_at)
    if record_number:
        query = query.where(loans.c.record_number == record_number)
    if borrower:
        query = query.where(loans.c.borrower == borrower)
    async with service.db.transaction() as session:
        rows = (await session.execute(query)).all()
    by_id = {row.loan_id: row for row in rows}
    entries = [_register_entry(row) for row in rows]
    if overdue:
        entries = rules.overdue_loans(entries, now)
    if outstanding:
        keep = {e.loan_id for e in entries if e.mode == rules.LoanMode.loan and e.returned_at is None}
        entries = [e for e in entries if e.loan_id in keep]
    return [_loan_out(by_id[e.loan_id], now) for e in entries]


class ImportantIn(Contract):
    reason: str = Field(min_length=1, max_length=2000)


@service.http.post("/estates/{estate}/archive/records/{record_number}/important", status_code=201, tags=["archive"])
async def mark_important(estate: str, record_number: str, body: ImportantIn,
                         who: Principal = Depends(require_estate)) -> dict:
    """Put a record into the important-events file (major complaint, liability accident,
    legal matter, major defect, contract). The mark sits beside the frozen record and
    raises its retention class; the content and its hash never change."""
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    who.require_role(*policy.archive.important_mark_roles)
    if not body.reason.strip():
        raise RuleViolation("give the reason the record is an important event", status=422)
    now = service.clock.now()
    marks, r = store.important_marks, store.records
    async with service.db.transaction() as session:
        row = await _record_row(session, estate, record_number, lock=True)
        if row.destroyed:
            raise RuleViolation(f"record {record_number} was destroyed", status=409)
        existing = (await session.execute(sa.select(marks).where(marks.c.record_number == record_number))).first()
        if existing is not None:
            raise RuleViolation(
                f"record {record_number} is already in the important-events file since "
                f"{existing.marked_at.isoformat()} ({existing.reason})", status=409,
            )
        await session.execute(sa.insert(marks).values(
            record_number=record_number, estate=estate, reason=body.reason.strip(), marked_by=who.staff_id,
            marked_at=now, previous_class=row.retention_class,
        ))
        await session.execute(
            sa.update(r).where(r.c.record_number == record_number)
            .values(retention_class=rules.RetentionClass.important_event.value)
        )
        row = await _record_row(session, estate, record_number)
    return {"record": _record_out(row, policy).model_dump(mode="json"), "reason": body.reason.strip(),
            "marked_by": who.staff_id, "marked_at": now, "previous_class": row.archived_class}


@service.http.get("/estates/{estate}/archive/important", tags=["archive"])
async def important_events_file(estate: str, who: Principal = Depends(require_estate)) -> list[dict]:
    """The important-events file 重要事件资料档案, kept apart from the ordinary records."""
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    marks, r = store.important_marks, store.records
    async with service.db.transaction() as session:
        rows = (await session.execute(
            sa.select(r, marks.c.reason, marks.c.marked_by, marks.c.marked_at, marks.c.previous_class)
            .join(marks, marks.c.record_number == r.c.record_number)
            .where(r.c.estate == estate).order_by(marks.c.marked_at)
        )).all()
    return [{"record": _record_out(row, policy).model_dump(mode="json"), "reason": row.reason,
             "marked_by": row.marked_by, "marked_at": row.marked_at, "previous_class": row.previous_class}
            for row in rows]


class DestroyIn(Contract):
    approval_reference: str = Field(max_length=200)


@service.http.post("/estates/{estate}/archive/records/{record_number}/destroy", tags=["archive"])
async def destroy_record(estate: str, record_number: str, body: DestroyIn,
                         who: Principal = Depends(require_estate)) -> dict:
    """Destroy a record after its retention period, on the general manager's approval
    (the caller's token) and its reference. The content is erased; the hashes stay as a
    tombstone so the chain still verifies, and the destruction log survives. Emits
    `destroyed`."""
    known_estate(service, estate)
    now = service.clock.now()
    policy = service.directory.policy_for(estate)
    r, loans = store.records, store.loans
    async with service.db.transaction() as session:
        row = await _record_row(session, estate, record_number, lock=True)
        open_loans = [_register_entry(x) for x in (await session.execute(
            sa.select(loans).where(loans.c.record_number == record_number, loans.c.returned_at.is_(None))
        )).all()]
        entry = rules.check_destruction(
            _catalogue(row), now, who.staff_id, who.roles, body.approval_reference, policy, open_loans
        )
        await session.execute(sa.insert(store.destruction_log).values(**entry.model_dump()))
        await session.execute(
            sa.update(r).where(r.c.record_number == record_number).values(content=None, destroyed=True, destroyed_at=now)
        )
        await service.emit(
            session,
            Destroyed(ticket_id=row.ticket_id, record_number=record_number, approved_by=entry.approved_by,
                      approval_reference=entry.approval_reference),
            estate=estate, actor=who.staff_id, time=now,
        )
    return entry.model_dump(mode="json")


@service.http.get("/estates/{estate}/archive/destructions", tags=["archive"])
async def destruction_log(estate: str, who: Principal = Depends(require_estate)) -> list[dict]:
    """The destruction log 销毁登记: survives the records it names."""
    known_estate(service, estate)
    d = store.destruction_log
    async with service.db.transaction() as session:
        rows = (await session.execute(sa.select(d).where(d.c.estate == estate).order_by(d.c.destroyed_at))).all()
    return [_destruction_entry(row).model_dump(mode="json") for row in rows]


@service.http.get("/estates/{estate}/archive/access-log", tags=["archive"])
async def access_log(estate: str, record_number: str | None = None, refused: bool = False,
                     who: Principal = Depends(require_estate)) -> list[dict]:
    """Every attempt to read an archived record, allowed or refused (for the estate's
    approvers and the company)."""
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    if not who.company_wide:
        who.require_role(*policy.archive.approver_roles, *policy.archive.self_register_roles)
    a = store.access_log
    query = sa.select(a).where(a.c.estate == estate).order_by(a.c.id)
    if record_number:
        query = query.where(a.c.record_number == record_number)
    if refused:
        query = query.where(a.c.allowed.is_(False))
    async with service.db.transaction() as session:
        rows = (await session.execute(query)).all()
    return [dict(row._mapping) for row in rows]


@service.http.get("/estates/{estate}/archive/pending", tags=["archive"])
async def pending(estate: str, who: Principal = Depends(require_estate)) -> list[dict]:
    """Closed tickets not sealed yet, with the reason when sealing failed."""
    known_estate(service, estate)
    p = store.pending_seals
    async with service.db.transaction() as session:
        rows = (await session.execute(sa.select(p).where(p.c.estate == estate).order_by(p.c.noted_at))).all()
    return [dict(row._mapping) for row in rows]


@service.http.get("/estates/{estate}/archive/verify", tags=["archive"])
async def verify(estate: str, who: Principal = Depends(require_estate)) -> dict:
    """Check the estate's whole chain; names the first broken record."""
    known_estate(service, estate)
    return await verify_estate(estate)


@service.http.get("/estates/{estate}/archive/months", tags=["archive"])
async def months(estate: str, month: str | None = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
                 who: Principal = Depends(require_estate)) -> list[dict]:
    """Monthly organised sets (manifests with record numbers and hashes)."""
    known_estate(service, estate)
    m = store.monthly_sets
    query = sa.select(m).where(m.c.estate == estate).order_by(m.c.month, m.c.part)
    if month:
        query = query.where(m.c.month == month)
    async with service.db.transaction() as session:
        rows = (await session.execute(query)).all()
    return [_set_out(row) for row in rows]


@service.http.post("/estates/{estate}/archive/months/{month}/organise", tags=["archive"])
async def organise_month_now(estate: str, month: str, who: Principal = Depends(require_estate)) -> dict:
    """Organise a finished month now (the schedule does it by itself)."""
    known_estate(service, estate)
    who.require_role(*service.directory.policy_for(estate).archive.self_register_roles, "estate_director",
                     "company_general_management")
    try:
        return await organise_month(estate, month, who.staff_id)
    except RuleViolation:
        raise
    except ValueError as error:  # a malformed month
        raise RuleViolation(str(error), status=422) from None


@service.http.get("/estates/{estate}/archive/volumes", tags=["archive"])
async def volumes(estate: str, quarter: str = Query(..., pattern=r"^\d{4}Q[1-4]$"),
                  who: Principal = Depends(require_estate)) -> dict:
    """A quarter's volumes with the general, volume and item catalogues."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        return await _quarter_out(session, estate, quarter, False)


@service.http.post("/estates/{estate}/archive/quarters/{quarter}/archive", tags=["archive"])
async def archive_quarter_now(estate: str, quarter: str, who: Principal = Depends(require_estate)) -> dict:
    """Archive a finished quarter now (the schedule does it by itself)."""
    known_estate(service, estate)
    who.require_role(*service.directory.policy_for(estate).archive.self_register_roles, "estate_director",
                     "company_general_management")
    try:
        return await archive_quarter(estate, quarter, who.staff_id)
    except RuleViolation:
        raise
    except ValueError as error:  # a malformed quarter
        raise RuleViolation(str(error), status=422) from None


# --- the ticket's timeline (issue 16: the console's ticket detail) --------------------------------


class TimelineEntryOut(BaseModel):
    event_id: str
    event: str = Field(description="accepted, assigned, acknowledged, … (the event's name)")
    time: LocalTime
    source: str = Field(description="The service that emitted it")
    actor: str
    data: dict = Field(description="The event's payload as published (shared/events.py)")


class TimelineOut(BaseModel):
    ticket_id: str
    estate: str
    events: list[TimelineEntryOut] = Field(description="Every event of the ticket from every service, in time order")
    record_number: str | None = Field(description="The archived form's number once the ticket is archived")


@service.http.get("/estates/{estate}/tickets/{ticket_id}/timeline", response_model=TimelineOut, tags=["archive"])
async def ticket_timeline(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> TimelineOut:
    """One timeline of every event of a ticket across all services — archive collects them
    all to assemble the form — and the archived record's number once it is sealed."""
    known_estate(service, estate)
    c, r = store.collected_events, store.records
    async with service.db.transaction() as session:
        rows = (await session.execute(
            sa.select(c.c.event_id, c.c.event, c.c.time, c.c.envelope)
            .where(c.c.estate == estate, c.c.ticket_id == ticket_id).order_by(c.c.time, c.c.collected_at)
        )).all()
        record = (await session.execute(
            sa.select(r.c.record_number).where(r.c.estate == estate, r.c.ticket_id == ticket_id)
        )).scalar()
    if not rows and record is None:
        raise RuleViolation(f"no ticket {ticket_id!r} known to the archive in estate {estate!r}", status=404)
    events = [TimelineEntryOut(event_id=row.event_id, event=row.event, time=row.time,
                               source=row.envelope.get("source", "").removeprefix("estatedesk/"),
                               actor=row.envelope.get("actor", ""), data=row.envelope.get("data", {}))
              for row in rows]
    return TimelineOut(ticket_id=ticket_id, estate=estate, events=events, record_number=record)


# Who may call each write route (RULES §5; printed in the README by `estatedesk roles`).
# Every staff role may ask: who may consult, approve, mark or destroy is the estate's
# archive policy, checked inside against the record and the approvals given.
service.write_roles = {
    ("POST", "/estates/{estate}/archive/loans"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/loans/{loan_id}/return"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/records/{record_number}/important"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/records/{record_number}/destroy"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/months/{month}/organise"): STAFF_ROLES,
    ("POST", "/estates/{estate}/archive/quarters/{quarter}/archive"): STAFF_ROLES,
}


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
