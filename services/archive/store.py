"""The archive service's tables.

- collected_events: every ticket event as it arrives, until its ticket is archived (then
  they are deleted: the frozen form is the record, the stream keeps the history, and the
  raw events hold owner details the form has redacted).
- pending_seals: closed tickets waiting for their last events before they are sealed.
- chain_heads: one row per estate, locked FOR UPDATE while a record is appended, so two
  replicas never fork the chain; it also numbers records per year.
- records: the chain itself (content, content_hash, previous_hash, record_hash) plus the
  catalogue facts. Content is NULL once destroyed; the row stays as the tombstone.
- important_marks: the important-events file, kept beside the frozen record (marking
  changes the retention class, never the content).
- monthly_sets / quarterly_runs / volumes: monthly organisation and quarterly archiving.
- loans: the lending register 借阅登记; access_log: every read attempt, allowed or not.
- destruction_log: survives the records it names; destruction_requests: the requests
  销毁申请 and the general manager's decisions (approved, refused with the reason).

Below the tables: the repositories of the write side (issue 11); those of the important-
events file and destruction (marks, destruction requests) are in registers.py, the
organisation's and the read models' queries in queries.py.
"""

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.archive.domain import Addendum, CatalogueEntry, ChainHead, Loan, PendingSeal, Record
from shared import limits
from shared.db import rows_json, service_metadata, take_numbers
from shared.lifecycle import DestructionRequestState, check_constraint

metadata = service_metadata("archive")

collected_events = sa.Table(
    "collected_events",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("envelope", JSONB, nullable=False),
    sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_collected_events_ticket", "estate", "ticket_id"),
)

# A `closed` ticket waits here until every event before its `closed` on the stream has
# been collected (the archive consumer's ack floor has passed it), then it is sealed.
pending_seals = sa.Table(
    "pending_seals",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("closed_event_id", sa.String(64), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("noted_at", sa.DateTime(timezone=True), nullable=False),
    # The consumer's last delivered stream sequence when the seal job first saw the row:
    # the `closed` message is at or below it.
    sa.Column("barrier", sa.BigInteger),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=False),
)

chain_heads = sa.Table(
    "chain_heads",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Record numbers run per estate and year of the closing month; incremented under the
# chain head's lock, so they are gapless too.
record_years = sa.Table(
    "record_years",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)

# Events that arrived after their ticket was archived, appended (never dropped) in a
# side chain hanging from the record: see rules.addendum_hash. Content is bytes (the
# event's canonical JSON), so any event can be kept, whatever PostgreSQL's JSONB refuses.
addenda = sa.Table(
    "addenda",
    metadata,
    sa.Column("record_number", sa.String(64), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("estate", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("previous_hash", sa.String(64), nullable=False),
    sa.Column("addendum_hash", sa.String(64), nullable=False),
    sa.Column("appended_at", sa.DateTime(timezone=True), nullable=False),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("record_number", sa.String(64), nullable=False, unique=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_month", sa.String(7), nullable=False),
    # The class the record was archived with, and the class it has now (an important-
    # events mark raises it); retention runs on the current one.
    sa.Column("archived_class", sa.String(32), nullable=False),
    sa.Column("retention_class", sa.String(32), nullable=False),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("content", sa.LargeBinary),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("previous_hash", sa.String(64), nullable=False),
    sa.Column("record_hash", sa.String(64), nullable=False),
    sa.Column("destroyed", sa.Boolean, nullable=False, default=False),
    sa.Column("destroyed_at", sa.DateTime(timezone=True)),
    # Set by monthly organisation and quarterly archiving; NULL means still to do.
    sa.Column("month_part", sa.Integer),
    sa.Column("volume_number", sa.String(64)),
    sa.Column("volume_item", sa.Integer),
    sa.UniqueConstraint("estate", "ticket_id", name="uq_records_ticket"),
    # A month's catalogue page, newest first, reads its own rows only (and every look-up
    # of an estate's month goes through it).
    sa.Index("ix_records_month_sequence", "estate", "closed_month", "sequence"),
    # The scheduler looks only at what is still to organise or to bind.
    sa.Index("ix_records_unorganised", "estate", "closed_month", postgresql_where=sa.text("month_part IS NULL")),
    sa.Index("ix_records_unbound", "estate", "closed_month", postgresql_where=sa.text("volume_number IS NULL")),
)

important_marks = sa.Table(
    "important_marks",
    metadata,
    sa.Column("record_number", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("marked_by", sa.String(64), nullable=False),
    sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("previous_class", sa.String(32), nullable=False),
)

monthly_sets = sa.Table(
    "monthly_sets",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    # Part 1 is the month's organisation; later parts take forms archived after it.
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("organised_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("organised_by", sa.String(64), nullable=False),
    sa.Column("record_count", sa.Integer, nullable=False),
    sa.Column("manifest", JSONB, nullable=False),
    sa.Column("manifest_hash", sa.String(64), nullable=False),
    sa.Column("export_path", sa.Text),
)

quarterly_runs = sa.Table(
    "quarterly_runs",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("quarter", sa.String(6), primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("archived_by", sa.String(64), nullable=False),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("general_catalogue", JSONB, nullable=False),
)

volumes = sa.Table(
    "volumes",
    metadata,
    sa.Column("volume_number", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("quarter", sa.String(6), nullable=False),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("retention_class", sa.String(32), nullable=False),
    sa.Column("retention_years", sa.Integer, nullable=False),
    sa.Column("custodian", sa.String(64), nullable=False),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("first_record", sa.String(64), nullable=False),
    sa.Column("last_record", sa.String(64), nullable=False),
    sa.Column("months", JSONB, nullable=False),
    sa.Column("items", JSONB, nullable=False),  # the item catalogue 卷内目录, as bound
    sa.Index("ix_volumes_quarter", "estate", "quarter"),
)

loans = sa.Table(
    "loans",
    metadata,
    sa.Column("loan_id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("record_number", sa.String(64), nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("borrower", sa.String(128), nullable=False),
    sa.Column("borrower_external", sa.Boolean, nullable=False),
    sa.Column("borrower_organisation", sa.String(200)),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("basis", sa.String(32), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("registered_by", sa.String(64), nullable=False),
    sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_back", sa.DateTime(timezone=True)),
    sa.Column("approved_by", sa.String(64)),
    sa.Column("approval_reference", sa.String(200)),
    sa.Column("returned_at", sa.DateTime(timezone=True)),
    sa.Column("returned_to", sa.String(64)),
    sa.Index("ix_loans_record", "estate", "record_number"),
    sa.Index("ix_loans_open", "estate", "due_back", postgresql_where=sa.text("returned_at IS NULL")),
)

access_log = sa.Table(
    "access_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("record_number", sa.String(64)),  # None: a refusal at the door concerning no record
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("roles", JSONB, nullable=False),
    sa.Column("what", sa.String(32), nullable=False),  # content, form.html, form.pdf; "door": refused at the door
    sa.Column("service", sa.String(32)),  # the service that refused at the door
    sa.Column("request", sa.Text),  # "GET /v1/estates/hx01/owners/o-1"
    sa.Column("allowed", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("loan_id", sa.String(64)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_access_log_record", "estate", "record_number"),
)

destruction_log = sa.Table(
    "destruction_log",
    metadata,
    sa.Column("record_number", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN), nullable=False),
    sa.Column("retention_class", sa.String(32), nullable=False),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("retention_expired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("approved_by", sa.String(64), nullable=False),
    sa.Column("approval_reference", sa.String(200), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
)

destruction_requests = sa.Table(
    "destruction_requests",
    metadata,
    sa.Column("request_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("record_numbers", JSONB, nullable=False),  # ["HX01-DA-2026-000001", ...]
    sa.Column("requested_by", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(limits.ID_MAX)),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("refusal_reason", sa.Text),
    check_constraint("status", DestructionRequestState, "ck_destruction_requests_status"),
)


# --- repositories ---------------------------------------------------------------------------


_COLLECTED_COLUMNS = ", ".join(c.name for c in collected_events.columns)
# Held rows in one statement whatever their number: one JSON array (`jsonb_populate_recordset`),
# so the SQL text never changes and the compiled and prepared statements are reused (a
# multi-VALUES insert is a new statement per row count; an executemany is one execution per row).
_INSERT_COLLECTED = sa.text(
    f'INSERT INTO "{metadata.schema}".{collected_events.name} ({_COLLECTED_COLUMNS}) SELECT {_COLLECTED_COLUMNS} '
    f'FROM jsonb_populate_recordset(NULL::"{metadata.schema}".{collected_events.name}, '
    "CAST(CAST(:rows AS text) AS jsonb)) ON CONFLICT DO NOTHING")


class CollectedEvents:
    """The ticket events collected until their ticket is sealed. `add` holds a row in
    memory and `flush` writes every held row with one statement (a consumer's batch: one
    insert, not one per event); the reads and `forget` write what is held first, so a
    unit of work always sees its own adds. Whoever owns the transaction flushes before
    committing (`ArchiveUnitOfWork.flush`)."""

    def __init__(self, session: AsyncSession):
        self.session = session
        self._held: dict[str, dict] = {}  # event id → row, in the order added; the first add of an id wins

    async def add(self, event_id: str, *, ticket_id: str, estate: str, time: dt.datetime, event: str,
                  envelope: dict, collected_at: dt.datetime) -> None:
        self._held.setdefault(event_id, dict(
            event_id=event_id, ticket_id=ticket_id, estate=estate, time=time, event=event, envelope=envelope,
            collected_at=collected_at))

    async def flush(self) -> None:
        """Write the held rows (an event id already stored is left as it is). Nothing
        stays held, even when the statement fails (its savepoint or transaction is
        rolled back by the caller)."""
        rows, self._held = list(self._held.values()), {}
        if rows:
            await self.session.execute(_INSERT_COLLECTED, {"rows": rows_json(rows)})

    async def envelopes(self, estate: str, ticket_id: str, up_to: dt.datetime) -> list[dict]:
        """The ticket's events stamped at or before `up_to`, in time order (ties by id)."""
        await self.flush()
        c = collected_events
        return list((await self.session.execute(
            sa.select(c.c.envelope).where(c.c.estate == estate, c.c.ticket_id == ticket_id, c.c.time <= up_to)
            .order_by(c.c.time, c.c.event_id))).scalars().all())

    async def timeline(self, estate: str, ticket_id: str) -> list:
        await self.flush()
        c = collected_events
        return (await self.session.execute(
            sa.select(c.c.event_id, c.c.event, c.c.time, c.c.envelope)
            .where(c.c.estate == estate, c.c.ticket_id == ticket_id).order_by(c.c.time, c.c.collected_at))).all()

    async def forget(self, estate: str, ticket_id: str) -> None:
        """Once sealed: the frozen form is the record, and the raw events hold owner
        details the form has redacted."""
        await self.flush()
        c = collected_events
        await self.session.execute(sa.delete(c).where(c.c.estate == estate, c.c.ticket_id == ticket_id))


class PendingSeals:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, seal: PendingSeal) -> None:
        await self.session.execute(pg_insert(pending_seals).values(**seal.values()).on_conflict_do_nothing())

    async def any(self) -> bool:
        return bool((await self.session.execute(sa.select(sa.exists(sa.select(pending_seals.c.ticket_id))))).scalar())

    async def set_barriers(self, delivered: int) -> None:
        p = pending_seals
        await self.session.execute(sa.update(p).where(p.c.barrier.is_(None)).values(barrier=delivered))

    async def due(self, ack_floor: int, now: dt.datetime, limit: int = 100) -> list[tuple[str, str]]:
        p = pending_seals
        return [tuple(row) for row in (await self.session.execute(
            sa.select(p.c.estate, p.c.ticket_id).where(p.c.barrier <= ack_floor, p.c.next_try_at <= now)
            .order_by(p.c.noted_at).limit(limit))).all()]

    async def claim(self, estate: str, ticket_id: str) -> PendingSeal | None:
        """The row, locked; None when another replica holds it (SKIP LOCKED)."""
        p = pending_seals
        row = (await self.session.execute(sa.select(p).where(p.c.estate == estate, p.c.ticket_id == ticket_id)
                                          .with_for_update(skip_locked=True))).first()
        return PendingSeal.from_row(row) if row else None

    async def save(self, seal: PendingSeal) -> None:
        p = pending_seals
        await self.session.execute(sa.update(p).where(p.c.estate == seal.estate, p.c.ticket_id == seal.ticket_id)
                                   .values(**seal.values()))

    async def remove(self, estate: str, ticket_id: str) -> None:
        p = pending_seals
        await self.session.execute(sa.delete(p).where(p.c.estate == estate, p.c.ticket_id == ticket_id))

    async def of_estate(self, estate: str) -> list:
        p = pending_seals
        return (await self.session.execute(sa.select(p).where(p.c.estate == estate).order_by(p.c.noted_at))).all()

    async def counts(self) -> dict[str, int]:
        p = pending_seals
        return dict((await self.session.execute(sa.select(p.c.estate, sa.func.count()).group_by(p.c.estate))).all())


_NUMBERS_OF_TICKETS = sa.select(records.c.estate, records.c.ticket_id, records.c.record_number).where(
    records.c.estate == sa.any_(sa.bindparam("estates", type_=ARRAY(records.c.estate.type))),
    records.c.ticket_id == sa.any_(sa.bindparam("ticket_ids", type_=ARRAY(records.c.ticket_id.type))))


# A catalogue line is every column but the sealed form.
_CATALOGUE_COLUMNS = tuple(column for column in records.c if column.name != "content")


class Chain:
    """The estate's chain: its head, the per-year record numbers, the records and addenda."""

    def __init__(self, session: AsyncSession):
        self.session = session
        # (estate, ticket id) → its record number, None when not archived: what
        # `load_numbers` read for a consumer's batch.
        self._numbers: dict[tuple[str, str], str | None] = {}

    async def lock_head(self, estate: str, now: dt.datetime) -> ChainHead:
        """The estate's chain head, locked until commit: appends are serialised per estate."""
        await self.session.execute(pg_insert(chain_heads).values(**ChainHead.genesis(estate, now).values())
                                   .on_conflict_do_nothing())
        return ChainHead.from_row((await self.session.execute(
            sa.select(chain_heads).where(chain_heads.c.estate == estate).with_for_update())).one())

    async def head(self, estate: str) -> ChainHead | None:
        row = (await self.session.execute(sa.select(chain_heads).where(chain_heads.c.estate == estate))).first()
        return ChainHead.from_row(row) if row else None

    async def save_head(self, head: ChainHead) -> None:
        values = head.values()
        await self.session.execute(sa.update(chain_heads).where(chain_heads.c.estate == values.pop("estate"))
                                   .values(**values))

    async def next_in_year(self, estate: str, year: int) -> int:
        return await take_numbers(self.session, record_years, estate, year)

    async def load_numbers(self, tickets: list[tuple[str, str]]) -> None:
        """Read the record numbers of many (estate, ticket id) at once, in one statement
        whatever their number (a consumer's batch); `number_of_ticket` then answers for
        them without a query. Unlocked, as the read per event it replaces: a seal another
        transaction commits after it is not seen by this batch (a read per event had the
        same window, up to the batch's commit)."""
        wanted = sorted(set(tickets) - self._numbers.keys())
        if not wanted:
            return
        rows = await self.session.execute(_NUMBERS_OF_TICKETS, {
            "estates": sorted({estate for estate, _ in wanted}), "ticket_ids": [ticket for _, ticket in wanted]})
        found = {(row.estate, row.ticket_id): row.record_number for row in rows}
        self._numbers.update({key: found.get(key) for key in wanted})

    async def number_of_ticket(self, estate: str, ticket_id: str) -> str | None:
        """The ticket's record number, None when it is not archived; from `load_numbers`
        when it read the ticket, else read now."""
        if (estate, ticket_id) in self._numbers:
            return self._numbers[(estate, ticket_id)]
        r = records
        return (await self.session.execute(
            sa.select(r.c.record_number).where(r.c.estate == estate, r.c.ticket_id == ticket_id))).scalar()

    async def record(self, estate: str, record_number: str, *, lock: bool = False) -> Record | None:
        query = sa.select(records).where(records.c.estate == estate, records.c.record_number == record_number)
        row = (await self.session.execute(query.with_for_update() if lock else query)).first()
        return Record.from_row(row) if row else None

    async def lock_record(self, record_number: str) -> Record:
        return Record.from_row((await self.session.execute(
            sa.select(records).where(records.c.record_number == record_number).with_for_update())).one())

    async def catalogue(self, estate: str, *, month: str | None = None, retention_class: str | None = None,
                        before: int | None = None, limit: int) -> list[CatalogueEntry]:
        """One page of the estate's catalogue, newest first (sequence descending): at most
        `limit` records with a sequence below `before` (from the newest when None), of
        `month` ("YYYY-MM" closed) and `retention_class` when given. Never the content: a
        page reads `limit` rows by the primary key (estate, sequence), or by
        ix_records_month_sequence for a month, walked backwards, whatever the estate's
        history (a class filter reads on until it has `limit` lines of that class)."""
        r = records
        query = sa.select(*_CATALOGUE_COLUMNS).where(r.c.estate == estate).order_by(r.c.sequence.desc()).limit(limit)
        if before is not None:
            query = query.where(r.c.sequence < before)
        if month:
            query = query.where(r.c.closed_month == month)
        if retention_class:
            query = query.where(r.c.retention_class == retention_class)
        return [CatalogueEntry.from_row(row) for row in (await self.session.execute(query)).all()]

    async def entry_of_ticket(self, estate: str, ticket_id: str) -> CatalogueEntry | None:
        """The ticket's catalogue line (no content), None when it is not archived; by
        uq_records_ticket."""
        row = (await self.session.execute(sa.select(*_CATALOGUE_COLUMNS).where(
            records.c.estate == estate, records.c.ticket_id == ticket_id))).first()
        return CatalogueEntry.from_row(row) if row else None

    async def raw_records(self, estate: str) -> list:
        """Rows as stored, in sequence order (verify builds its models itself: a stored
        value the models refuse is a break to report, not an error)."""
        return (await self.session.execute(
            sa.select(records).where(records.c.estate == estate).order_by(records.c.sequence))).all()

    async def add(self, record: Record) -> None:
        await self.session.execute(sa.insert(records).values(**record.values()))

    async def save(self, record: Record) -> None:
        values = record.values()
        await self.session.execute(sa.update(records).where(records.c.record_number == values.pop("record_number"))
                                   .values(**values))

    async def last_addendum(self, record_number: str) -> Addendum | None:
        row = (await self.session.execute(sa.select(addenda).where(addenda.c.record_number == record_number)
                                          .order_by(addenda.c.number.desc()).limit(1))).first()
        return Addendum.from_row(row) if row else None

    async def add_addendum(self, addendum: Addendum) -> None:
        await self.session.execute(sa.insert(addenda).values(**addendum.values()))

    async def addenda(self, record_number: str) -> list[Addendum]:
        return [Addendum.from_row(row) for row in (await self.session.execute(
            sa.select(addenda).where(addenda.c.record_number == record_number).order_by(addenda.c.number))).all()]

    async def addenda_of_estate(self, estate: str) -> list[Addendum]:
        return [Addendum.from_row(row) for row in (await self.session.execute(
            sa.select(addenda).where(addenda.c.estate == estate).order_by(addenda.c.record_number,
                                                                           addenda.c.number))).all()]

    async def dead_letter_bodies(self, consumer: str, estate: str) -> list:
        """(event_id, reason, body) of the consumer's dead letters attributable to the estate."""
        d = metadata.tables["archive.dead_letters"]
        return (await self.session.execute(sa.select(d.c.event_id, d.c.reason, d.c.body).where(
            d.c.consumer == consumer, d.c.estate == estate))).all()


class Loans:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, loan: Loan) -> None:
        await self.session.execute(sa.insert(loans).values(**loan.values()))

    async def get(self, estate: str, loan_id: str, *, lock: bool = False) -> Loan | None:
        query = sa.select(loans).where(loans.c.estate == estate, loans.c.loan_id == loan_id)
        row = (await self.session.execute(query.with_for_update() if lock else query)).first()
        return Loan.from_row(row) if row else None

    async def save(self, loan: Loan) -> None:
        values = loan.values()
        await self.session.execute(sa.update(loans).where(loans.c.loan_id == values.pop("loan_id")).values(**values))

    async def for_reader(self, estate: str, record_number: str, staff_id: str) -> list[Loan]:
        """The entries under which `staff_id` may read: their own, and the outsiders' they
        registered (an outsider has no token: the registering staff member hands the copy
        over), newest first."""
        rows = (await self.session.execute(sa.select(loans).where(
            loans.c.estate == estate, loans.c.record_number == record_number,
            sa.or_(sa.and_(loans.c.borrower == staff_id, loans.c.borrower_external.is_(False)),
                   sa.and_(loans.c.borrower_external.is_(True), loans.c.registered_by == staff_id)),
        ).order_by(loans.c.registered_at.desc()))).all()
        return [Loan.from_row(row) for row in rows]

    async def open_of_record(self, record_number: str) -> list[Loan]:
        rows = (await self.session.execute(sa.select(loans).where(
            loans.c.record_number == record_number, loans.c.returned_at.is_(None)))).all()
        return [Loan.from_row(row) for row in rows]

    async def register(self, estate: str, record_number: str | None = None, borrower: str | None = None) -> list[Loan]:
        query = sa.select(loans).where(loans.c.estate == estate).order_by(loans.c.registered_at)
        if record_number:
            query = query.where(loans.c.record_number == record_number)
        if borrower:
            query = query.where(loans.c.borrower == borrower)
        return [Loan.from_row(row) for row in (await self.session.execute(query)).all()]

    async def overdue_counts(self, now: dt.datetime, mode: str) -> dict[str, int]:
        return dict((await self.session.execute(
            sa.select(loans.c.estate, sa.func.count()).where(
                loans.c.returned_at.is_(None), loans.c.mode == mode, loans.c.due_back < now)
            .group_by(loans.c.estate))).all())


class AccessLog:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, **values) -> None:
        await self.session.execute(sa.insert(access_log).values(**values))

    async def entries(self, estate: str, record_number: str | None, refused_only: bool) -> list:
        a = access_log
        query = sa.select(a).where(a.c.estate == estate).order_by(a.c.id)
        if record_number:
            query = query.where(a.c.record_number == record_number)
        if refused_only:
            query = query.where(a.c.allowed.is_(False))
        return (await self.session.execute(query)).all()
