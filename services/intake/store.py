"""Intake's tables: requests as registered, countersign-form numbering, shift handover,
progress updates to owners, and the owners/units directory with its disclosure log; and
the repositories of the request desk (tickets, form numbers, night-shift handover items,
progress updates, staff accounts). `uow.IntakeUnitOfWork` carries them for one transaction; the duty
roster's repository is in `duty_store.py`, the owners' tables in `owner_store.py`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import limits
from shared.lifecycle import TicketState, check_constraint

from shared.db import rows_json, service_metadata, take_numbers

metadata = service_metadata("intake")

# The part of the ticket's life intake sees (shared.lifecycle's vocabulary; "open" was
# intake's own spelling of in_handling until issue 11).
REQUEST_STATES = (TicketState.in_handling, TicketState.completed, TicketState.invalid, TicketState.closed)
# The open list's filter, as SQL text: the partial index below has it as its predicate,
# and the list puts the same text in its WHERE (not a bound parameter, which a generic
# prepared plan could not match against the predicate).
OPEN_PREDICATE = f"status = '{TicketState.in_handling.value}'"

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("urgency", sa.String(16), nullable=False),
    sa.Column("accepted_by", sa.String(16), nullable=False),
    sa.Column("building", sa.String(limits.BUILDING_MAX)),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX)),
    sa.Column("location", sa.Text),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("first_contact", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("first_contact_name", sa.String(limits.NAME_MAX)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reply_method", sa.String(16), nullable=False),
    sa.Column("reply_agreed_by", sa.DateTime(timezone=True)),
    sa.Column("appointment_at", sa.DateTime(timezone=True)),
    sa.Column("off_hours", sa.Boolean, nullable=False, default=False),
    sa.Column("anonymous", sa.Boolean, nullable=False, default=False),
    sa.Column("owner_id", sa.String(limits.ID_MAX)),
    sa.Column("about_role", sa.String(64)),
    sa.Column("owner_loss_cny", sa.Numeric(12, 2)),
    sa.Column("status", sa.String(16), nullable=False, default=TicketState.in_handling.value),
    sa.Column("round", sa.Integer, nullable=False, default=1),
    sa.Column("client_request_id", sa.String(limits.CLIENT_ID_MAX)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Record content (RULES §1): when, why, who was involved, attachments by reference.
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("cause", sa.Text),
    sa.Column("people", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("attachments", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    # The owner's signature: signed / later (补签, reminded until supplied) / not_required.
    sa.Column("owner_signature", sa.String(16), nullable=False, server_default="not_required"),
    sa.Column("signed_at", sa.DateTime(timezone=True)),
    sa.Column("reminders_sent", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_reminded_at", sa.DateTime(timezone=True)),
    sa.Column("next_reminder_at", sa.DateTime(timezone=True)),
    # Who holds it now; handing it on never changes first_contact.
    sa.Column("current_handler", sa.String(64)),
    # Complaint validity.
    sa.Column("valid", sa.Boolean),
    sa.Column("validity_reason", sa.Text),
    sa.Column("judged_by", sa.String(64)),
    sa.Column("confirmed_by", sa.String(64)),  # the manager who confirmed or rejected an invalid judgement
    sa.Column("judged_at", sa.DateTime(timezone=True)),
    # rules.ValidityState; an invalid judgement is final only once a manager confirms it.
    sa.Column("validity_state", sa.String(24)),
    sa.Column("validity_decided_at", sa.DateTime(timezone=True)),
    sa.Column("notify_owner_by", sa.DateTime(timezone=True)),
    sa.Column("notify_provisional", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("owner_notified_at", sa.DateTime(timezone=True)),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("estate", "client_request_id", name="uq_tickets_client_request"),
    sa.Index("ix_tickets_signature_due", "next_reminder_at", postgresql_where=sa.text("next_reminder_at IS NOT NULL")),
    # The request lists are "the estate's rows, filtered, newest first, LIMIT n": each
    # index ends in received_at so the list reads n entries backwards instead of every
    # ticket the estate ever had (docs/performance.md, "How the cost grows"). The first
    # also serves every other `estate =` lookup (it replaced the index on estate alone).
    sa.Index("ix_tickets_estate_received", "estate", "received_at"),
    # The open list: in-handling tickets are a few days' worth whatever the history.
    sa.Index("ix_tickets_estate_open", "estate", "received_at", postgresql_where=sa.text(OPEN_PREDICATE)),
    sa.Index("ix_tickets_estate_kind", "estate", "kind", "received_at"),
    # "My requests" and registered_by. The planner only walks it newest first with the
    # statistics `st_tickets_estate_first_contact` declared in its migration (a staff
    # member belongs to one estate); metadata cannot declare extended statistics and
    # alembic's comparison ignores them, so tests/integration/test_schema.py stays exact.
    sa.Index("ix_tickets_estate_first_contact", "estate", "first_contact", "received_at"),
    check_constraint("status", REQUEST_STATES, "ck_tickets_status"),
)

# Gapless numbering: one row per estate and year, incremented under its row lock.
form_sequences = sa.Table(
    "form_sequences",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)

# Off-hours registrations by duty staff wait here until the next shift takes each over.
handover_items = sa.Table(
    "handover_items",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, unique=True),
    sa.Column("registered_by", sa.String(64), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("handover_due", sa.DateTime(timezone=True), nullable=False),
    sa.Column("taken_over_by", sa.String(64)),
    sa.Column("taken_over_at", sa.DateTime(timezone=True)),
    sa.Index("ix_handover_unclaimed", "estate", postgresql_where=sa.text("taken_over_at IS NULL")),
)

progress_updates = sa.Table(
    "progress_updates",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Units are building-entrance-room ("1-2-301") in one of the estate's buildings.
units = sa.Table(
    "units",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("building", sa.String(limits.BUILDING_MAX), nullable=False),
    sa.Column("entrance", sa.String(16), nullable=False),
    sa.Column("room", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Owners and residents (level-1 confidential: phone and ID numbers are shown masked).
owners = sa.Table(
    "owners",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("relation", sa.String(16), nullable=False),  # owner / resident
    sa.Column("phone", sa.String(limits.PHONE_MAX)),
    sa.Column("id_number", sa.String(limits.ID_NUMBER_MAX)),
    sa.Column("contacts", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_owners_estate_unit", "estate", "unit"),
)

# Every time someone saw an owner's phone or ID number unmasked.
disclosures = sa.Table(
    "disclosures",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("owner_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("viewer", sa.String(64), nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("purpose", sa.String(200)),
    sa.Column("disclosed_at", sa.DateTime(timezone=True), nullable=False),
)

# Staff sign-in (issue 16): the password hash lives here, never in the directory bucket.
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("staff_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
    sa.Column("disabled_at", sa.DateTime(timezone=True)),
    sa.Column("password_set_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("password_set_by", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("last_login_at", sa.DateTime(timezone=True)),
)

# One row per sign-in (the token's `jti`): renewal needs a live session; sign-out ends it.
auth_sessions = sa.Table(
    "auth_sessions",
    metadata,
    sa.Column("id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("staff_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

# Duty roster (排班表): one row per rostered shift of a post (001 第7篇 1.1.4, 1.2.1).
roster_shifts = sa.Table(
    "roster_shifts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("post", sa.String(32), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("shift", sa.String(16), nullable=False),
    sa.Column("staff", sa.JSON, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("set_by", sa.String(64), nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("estate", "post", "day", "shift", name="uq_roster_shift"),
)

# Duty log (值班记录): what happened on a shift and how it was handled (第2篇 1.3).
duty_log = sa.Table(
    "duty_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("shift_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("entry", sa.Text, nullable=False),
)

# A shift's handover to the next one, and its items, each claimed by the incoming shift.
shift_handovers = sa.Table(
    "shift_handovers",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("shift_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("handed_over_by", sa.String(64), nullable=False),
    sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claim_due", sa.DateTime(timezone=True), nullable=False),
)

shift_handover_items = sa.Table(
    "shift_handover_items",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("handover_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX)),
    sa.Column("kind", sa.String(32)),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("urgency", sa.String(16)),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("claim_due", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("escalated_to", sa.String(64)),
    sa.Column("escalated_at", sa.DateTime(timezone=True)),
    sa.Index("ix_shift_items_unclaimed", "claim_due",
             postgresql_where=sa.text("claimed_at IS NULL AND escalated_at IS NULL")),
)
from services.intake import owner_store  # noqa: E402,F401  (owners self-service tables, issue 15)
from services.intake.domain import Ticket  # noqa: E402


# --- repositories -----------------------------------------------------------------------------


# New tickets, every column by name from one JSON array (Tickets.add_all).
_INSERT_TICKETS = sa.text(
    f'INSERT INTO "{metadata.schema}".tickets SELECT * FROM jsonb_populate_recordset('
    f'NULL::"{metadata.schema}".tickets, CAST(CAST(:rows AS text) AS jsonb))')


class Tickets:
    """Requests as the `Ticket` aggregate: load (optionally locked), add, save the changes."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, estate: str, ticket_id: str, *, lock: bool = False) -> Ticket | None:
        query = sa.select(tickets).where(tickets.c.estate == estate, tickets.c.id == ticket_id)
        row = (await self.session.execute(query.with_for_update() if lock else query)).first()
        return Ticket.from_columns(dict(row._mapping)) if row else None

    async def get_for_update(self, estate: str, ticket_id: str) -> Ticket | None:
        return await self.get(estate, ticket_id, lock=True)

    async def by_id_for_update(self, ticket_id: str) -> Ticket | None:
        """A ticket of any estate by its id (events name the ticket only), locked."""
        row = (await self.session.execute(sa.select(tickets).where(tickets.c.id == ticket_id)
                                          .with_for_update())).first()
        return Ticket.from_columns(dict(row._mapping)) if row else None

    async def by_client_request_ids(self, estate: str, ids: list[str]) -> dict[str, Ticket]:
        """The tickets these idempotency keys already registered, by key (one query)."""
        if not ids:
            return {}
        # `= ANY(array)`: one prepared statement whatever the number of keys.
        rows = (await self.session.execute(sa.select(tickets).where(
            tickets.c.estate == estate, tickets.c.client_request_id == sa.any_(
                sa.bindparam("keys", list(ids), type_=ARRAY(tickets.c.client_request_id.type)))))).all()
        return {row.client_request_id: Ticket.from_columns(dict(row._mapping)) for row in rows}

    async def add_all(self, new: list[Ticket]) -> None:
        """Insert registered tickets in one statement: the rows travel as one JSON array,
        so the server runs one statement for a batch of any size (an executemany is one
        per row) and the SQL text never changes (one prepared statement)."""
        if new:
            await self.session.execute(_INSERT_TICKETS, {"rows": rows_json([t.columns() for t in new])})

    async def save(self, ticket: Ticket) -> None:
        changes = ticket.changes()
        if changes:
            await self.session.execute(sa.update(tickets).where(tickets.c.id == ticket.id).values(**changes))
        ticket.mark_saved()

    async def list_for_estate(self, estate: str, *, first_contact: str | None = None, status: str | None = None,
                              kind: str | None = None, form_number: str | None = None,
                              signature_pending: bool = False, notice_overdue_at: dt.datetime | None = None,
                              limit: int = 200) -> list[Ticket]:
        """Newest first, filtered by first-contact owner, status, kind, form number (unique:
        at most one), a later signature still owed, or an invalid complaint's notice
        overdue at `notice_overdue_at`."""
        T = tickets
        query = sa.select(T).where(T.c.estate == estate).order_by(T.c.received_at.desc()).limit(limit)
        if first_contact:
            query = query.where(T.c.first_contact == first_contact)
        if status == TicketState.in_handling:
            query = query.where(sa.text(OPEN_PREDICATE))
        elif status:
            query = query.where(T.c.status == status)
        if kind:
            query = query.where(T.c.kind == kind)
        if form_number:
            query = query.where(T.c.form_number == form_number)
        if signature_pending:
            query = query.where(T.c.owner_signature == "later", T.c.signed_at.is_(None))
        if notice_overdue_at is not None:
            query = query.where(sa.or_(T.c.valid.is_(False), T.c.validity_state == "awaiting_confirmation"),
                                T.c.owner_notified_at.is_(None), T.c.notify_owner_by < notice_overdue_at)
        return [Ticket.from_columns(dict(r._mapping)) for r in (await self.session.execute(query)).all()]

    async def registered_by(self, estate: str, staff: list[str], since: dt.datetime,
                            until: dt.datetime) -> list[Ticket]:
        """What these staff registered as first contact in [since, until), oldest first."""
        T = tickets
        rows = (await self.session.execute(sa.select(T).where(
            T.c.estate == estate, T.c.first_contact.in_(staff), T.c.received_at >= since, T.c.received_at < until,
        ).order_by(T.c.received_at))).all()
        return [Ticket.from_columns(dict(r._mapping)) for r in rows]

    async def signatures_due(self, now: dt.datetime, limit: int = 500) -> list[Ticket]:
        """Later signatures whose reminder is due, locked (skipping rows another replica holds)."""
        T = tickets
        rows = (await self.session.execute(
            sa.select(T).where(T.c.next_reminder_at.is_not(None), T.c.next_reminder_at <= now, T.c.signed_at.is_(None))
            .order_by(T.c.next_reminder_at).limit(limit).with_for_update(skip_locked=True))).all()
        return [Ticket.from_columns(dict(r._mapping)) for r in rows]

    async def notices_owed(self) -> list[Ticket]:
        """Invalid-complaint notices still owed to the owner, locked (skip locked)."""
        T = tickets
        rows = (await self.session.execute(sa.select(T).where(
            T.c.notify_owner_by.is_not(None), T.c.owner_notified_at.is_(None), T.c.judged_at.is_not(None),
        ).with_for_update(skip_locked=True))).all()
        return [Ticket.from_columns(dict(r._mapping)) for r in rows]


class FormNumbers:
    """The gapless countersign-form counter, one row per estate and year."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def take(self, estate: str, year: int, count: int = 1) -> int:
        """Take `count` numbers in one statement; returns the first. The row stays locked
        until the registering transaction ends, so a rollback gives the numbers back and
        the sequence has no gaps (RULES §1 Registration)."""
        return await take_numbers(self.session, form_sequences, estate, year, count)


class HandoverItems:
    """Off-hours registrations waiting for the next shift to take each over."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, item: dict[str, Any]) -> int:
        return (await self.session.execute(
            sa.insert(handover_items).values(**item).returning(handover_items.c.id))).scalar_one()

    async def for_ticket(self, ticket_id: str):
        return (await self.session.execute(
            sa.select(handover_items).where(handover_items.c.ticket_id == ticket_id))).first()

    async def get_for_update(self, estate: str, item_id: int):
        H = handover_items
        return (await self.session.execute(
            sa.select(H).where(H.c.estate == estate, H.c.id == item_id).with_for_update())).first()

    async def take_over(self, item_id: int, staff_id: str, now: dt.datetime) -> None:
        await self.session.execute(sa.update(handover_items).where(handover_items.c.id == item_id)
                                   .values(taken_over_by=staff_id, taken_over_at=now))

    async def list_for_estate(self, estate: str, include_taken: bool) -> list:
        """Items with their ticket's form number, kind and description, oldest first."""
        H, T = handover_items, tickets
        query = (sa.select(H, T.c.form_number, T.c.kind, T.c.description).join(T, T.c.id == H.c.ticket_id)
                 .where(H.c.estate == estate).order_by(H.c.registered_at))
        if not include_taken:
            query = query.where(H.c.taken_over_at.is_(None))
        return (await self.session.execute(query)).all()

    async def count_unclaimed(self, estate: str) -> int:
        H = handover_items
        return (await self.session.execute(sa.select(sa.func.count()).select_from(H).where(
            H.c.estate == estate, H.c.taken_over_at.is_(None)))).scalar_one()


class ProgressUpdates:
    """Updates given to owners, per ticket."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, ticket_id: str, estate: str, note: str, method: str, staff_id: str,
                  at: dt.datetime) -> None:
        await self.session.execute(sa.insert(progress_updates).values(
            ticket_id=ticket_id, estate=estate, note=note, method=method, updated_by=staff_id, updated_at=at))

    async def for_ticket(self, ticket_id: str) -> list:
        P = progress_updates
        return (await self.session.execute(
            sa.select(P).where(P.c.ticket_id == ticket_id).order_by(P.c.updated_at, P.c.id))).all()


class Accounts:
    """Staff sign-in: accounts (password hashes, lock-outs) and sign-in sessions."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, staff_id: str, *, lock: bool = False):
        query = sa.select(accounts).where(accounts.c.staff_id == staff_id)
        return (await self.session.execute(query.with_for_update() if lock else query)).first()

    async def of(self, staff_ids: list[str]) -> dict:
        rows = (await self.session.execute(sa.select(accounts).where(accounts.c.staff_id.in_(staff_ids)))).all()
        return {row.staff_id: row for row in rows}

    async def update(self, staff_id: str, **values) -> None:
        await self.session.execute(sa.update(accounts).where(accounts.c.staff_id == staff_id).values(**values))

    async def set_password(self, staff_id: str, values: dict) -> None:
        """Create the account or replace its password (re-enabling it)."""
        await self.session.execute(pg_insert(accounts).values(staff_id=staff_id, disabled_at=None, **values)
                                   .on_conflict_do_update(index_elements=[accounts.c.staff_id],
                                                          set_={**values, "disabled_at": None}))

    async def disable(self, staff_id: str, at: dt.datetime) -> bool:
        return (await self.session.execute(sa.update(accounts).where(accounts.c.staff_id == staff_id)
                                           .values(disabled_at=at).returning(accounts.c.staff_id))).first() is not None

    async def open_session(self, session_id: str, staff_id: str, at: dt.datetime, expires_at: dt.datetime) -> None:
        await self.session.execute(sa.insert(auth_sessions).values(id=session_id, staff_id=staff_id, issued_at=at,
                                                                   expires_at=expires_at))
        await self.update(staff_id, last_login_at=at)

    async def sign_in(self, session_id: str):
        return (await self.session.execute(sa.select(auth_sessions).where(auth_sessions.c.id == session_id))).first()

    async def sign_out(self, session_id: str, at: dt.datetime) -> None:
        await self.session.execute(sa.update(auth_sessions).where(auth_sessions.c.id == session_id)
                                   .values(revoked_at=at))

    async def end_sign_ins(self, staff_id: str, at: dt.datetime) -> list:
        """Revoke the staff member's live sign-ins; their (id, expires_at)."""
        S = auth_sessions
        return (await self.session.execute(sa.update(S).where(S.c.staff_id == staff_id, S.c.revoked_at.is_(None),
                                                              S.c.expires_at > at)
                                           .values(revoked_at=at).returning(S.c.id, S.c.expires_at))).all()
