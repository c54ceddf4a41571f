"""The callback service's tables: what it learned about each ticket from the lifecycle's
events, each completed round, the callback schedule and records, recurrence watches,
progress updates and walk-around visits. Filled only from events and its own API: it
never reads another service's tables."""

import datetime as dt
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback.domain import Callback, Round, Ticket, Watch
from shared import limits
from shared.events import Kind
from shared.uow import SqlUnitOfWork
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from shared.db import rows_json, service_metadata
from shared.schedule import tell_after_commit
from shared.lifecycle import CallbackState, TicketState, check_constraint

metadata = service_metadata("callback")

# The part of the ticket's life callback sees (shared.lifecycle's vocabulary).
TICKET_STATES = (TicketState.in_handling, TicketState.awaiting_callback, TicketState.awaiting_verdict,
                 TicketState.closed)

Departments = ARRAY(sa.String(limits.DEPARTMENT_CODE_MAX))

# One row per ticket, assembled from accepted / validity_judged / assigned / completed in
# whatever order they arrive (every consumer is independent). Handlers lock this row first
# so that events of one ticket are applied one at a time.
tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN)),
    sa.Column("kind", sa.String(32)),
    sa.Column("category", sa.String(limits.CATEGORY_MAX)),
    # Category as the recurrence rule compares it (rules.recurrence_key).
    sa.Column("category_key", sa.String(limits.CATEGORY_MAX)),
    sa.Column("channel", sa.String(32)),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("reply_method", sa.String(16)),
    sa.Column("first_contact", sa.String(limits.ID_MAX)),
    sa.Column("owner_id", sa.String(limits.ID_MAX)),
    # The unit the request is about (accepted.unit): an owner answers only their unit's callbacks.
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX)),
    sa.Column("appointment_at", sa.DateTime(timezone=True)),
    # When the opinion was raised (accepted.received_at; until that is seen, the time of
    # the first event that mentioned the ticket).
    sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("accepted_seen", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("valid", sa.Boolean),  # complaints: None until judged
    sa.Column("validity_reason", sa.Text),
    # Every department the form was sent to (the recurrence rule's "same department").
    sa.Column("departments", Departments, nullable=False, server_default="{}"),
    sa.Column("first_assigned_at", sa.DateTime(timezone=True)),
    sa.Column("current_round", sa.Integer, nullable=False, server_default="1"),
    # in_handling / awaiting_callback / awaiting_verdict / closed
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("closed_round", sa.Integer),
    sa.Column("closed_reason", sa.Text),
    sa.Column("closed_satisfied", sa.Boolean),
    # Weeks of the progress-update duty dispatch settled as missed (its clock_settled
    # verdicts on the progress_update clock; RULES §2 Progress updates, issue 11).
    sa.Column("progress_weeks_missed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The recurrence rule's reads (`Tickets.opinions`): an estate's category, raised since a moment.
    sa.Index("ix_callback_tickets_opinions", "estate", "category_key", "raised_at"),
    sa.Index("ix_callback_tickets_long_running", "estate", "raised_at",
             postgresql_where=sa.text("kind = 'complaint' AND status = 'in_handling'")),
    check_constraint("status", TICKET_STATES, "ck_tickets_status"),
)

# One row per completed round: a redelivered or re-emitted `completed` finds it and does
# nothing. The outcome is what the round's callback (or the recurrence rule) decided.
rounds = sa.Table(
    "rounds",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("departments", Departments, nullable=False),
    sa.Column("reply_method", sa.String(16), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("completed_event_id", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16)),  # closed / reopened
    sa.Column("outcome_reason", sa.Text),
    sa.Column("outcome_at", sa.DateTime(timezone=True)),
    sa.Column("outcome_by", sa.String(64)),
)

# The schedule and the record: one row per planned callback, id from rules.callback_id_for.
callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("callback_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("departments", Departments, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),  # the owner's chosen method
    sa.Column("counts_in_rate", sa.Boolean, nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True)),  # the round's completion (metrics month)
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("provisional", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("assigned_to", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),  # pending / done / cancelled
    sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("overdue_at", sa.DateTime(timezone=True)),  # callback_overdue emitted (once)
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    sa.Column("cancel_reason", sa.Text),
    # The record (002 §4.4.2 d).
    sa.Column("done_at", sa.DateTime(timezone=True)),
    sa.Column("done_by", sa.String(64)),
    sa.Column("record_method", sa.String(16)),
    sa.Column("handled_in_time", sa.Boolean),
    sa.Column("result_satisfied", sa.Boolean),
    sa.Column("attitude_satisfied", sa.Boolean),
    sa.Column("suggestions", sa.Text),
    sa.Column("owner_confirmed", sa.Boolean),
    sa.Column("on_time", sa.Boolean),
    sa.Column("submission_key", sa.String(64), unique=True),
    sa.Column("outcome", sa.String(16)),  # closed / reopened, when this record decided one
    sa.Column("outcome_round", sa.Integer),
    sa.Column("outcome_reason", sa.Text),
    sa.Column("attitude_complaint", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_callbacks_worklist", "estate", "due_at", postgresql_where=sa.text("status = 'pending'")),
    # The done worklist, most recently done first (its LIMIT reads only what it shows).
    sa.Index("ix_callbacks_done", "estate", "done_at", postgresql_where=sa.text("status = 'done'")),
    # A month's callback metrics (`Callbacks.counted`): the estate's rounds completed in the month.
    sa.Index("ix_callbacks_completed", "estate", "completed_at"),
    # The overdue scan looks only at pending callbacks not yet reported overdue.
    sa.Index("ix_callbacks_overdue_scan", "due_at",
             postgresql_where=sa.text("status = 'pending' AND overdue_at IS NULL")),
    check_constraint("status", CallbackState, "ck_callbacks_status"),
)

# RULES §3 No callback path: an opinion waiting for the recurrence rule's verdict.
recurrence_watches = sa.Table(
    "recurrence_watches",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("category_key", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("departments", Departments, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("verdict", sa.String(16)),  # satisfied / not_satisfied
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("recurring_ticket_id", sa.String(64)),
    sa.Index("ix_recurrence_open", "estate", "category_key", postgresql_where=sa.text("verdict IS NULL")),
    sa.Index("ix_recurrence_due", "window_ends_at", postgresql_where=sa.text("verdict IS NULL")),
    # A month's callback metrics (`Watches.decided`): the estate's verdicts on rounds completed in the month.
    sa.Index("ix_recurrence_decided", "estate", "completed_at", postgresql_where=sa.text("verdict IS NOT NULL")),
)

# RULES §2 Progress updates, as `progress_updated` reports them.
progress_updates = sa.Table(
    "progress_updates",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)

# RULES §3 Walk-around visits 走访.
visits = sa.Table(
    "visits",
    metadata,
    sa.Column("visit_id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("staff_id", sa.String(64), nullable=False),
    sa.Column("visited_on", sa.Date, nullable=False),  # estate-local date
    sa.Column("owner_id", sa.String(limits.ID_MAX)),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX)),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("raised_request", JSONB),  # the request handed to intake, if the visit raised one
    sa.Column("client_visit_id", sa.String(128)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("estate", "staff_id", "client_visit_id", name="uq_visits_client_visit"),
    sa.Index("ix_visits_estate_day", "estate", "visited_on"),
)


# --- repositories (issue 11): every SQL statement of the callback service ------------------------




T, R, C, W, P, V = tickets, rounds, callbacks, recurrence_watches, progress_updates, visits




def _from_json(table: sa.Table) -> str:
    return f"jsonb_populate_recordset(NULL::{table.schema}.{table.name}, CAST(CAST(:rows AS text) AS jsonb))"


# A batch's tickets created-or-locked in one statement: first the advisory locks named in
# :locks, in name order (the SELECT reference: output expressions not referenced by ORDER BY
# are evaluated after the sort), all of them before any row (the filter is a constant one,
# checked before the first row is read, and the sort reads every row before the first is
# inserted); then the rows, inserted (and, where they exist, locked) in ticket-id order, so
# two batches touching the same tickets never deadlock. A conflicting insert that "updates"
# the key to itself takes the row's lock and returns the row as last committed, even one
# committed while the statement waited for a lock (READ COMMITTED's rule for ON CONFLICT).
_LOCK_TICKETS = sa.text(
    "WITH locks AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest(CAST(:locks AS text[])) AS k "
    f"ORDER BY k) INSERT INTO {T.schema}.{T.name} AS t SELECT r.* FROM {_from_json(T)} AS r "
    "WHERE (SELECT count(*) FROM locks) >= 0 ORDER BY r.ticket_id "
    "ON CONFLICT (ticket_id) DO UPDATE SET ticket_id = excluded.ticket_id RETURNING t.*")
# A batch's changed tickets written in one statement (every column but the key).
_TICKET_FIELDS = [c.name for c in T.c if c.name != "ticket_id"]
_SAVE_TICKETS = sa.text(
    f"UPDATE {T.schema}.{T.name} AS t SET ({', '.join(_TICKET_FIELDS)}) = "
    f"({', '.join(f'r.{name}' for name in _TICKET_FIELDS)}) FROM {_from_json(T)} AS r WHERE t.ticket_id = r.ticket_id")


def _copied(row: dict) -> dict:
    """A row with its lists copied (a held row never shares them with an aggregate)."""
    return {name: list(value) if isinstance(value, list) else value for name, value in row.items()}


def _row_of(item) -> dict:
    """An aggregate's column values, as a row of its own."""
    return _copied(item.values())


class Tickets:
    """Callback's view of each ticket, always changed under the ticket's row lock.

    Statements run at once (routes, jobs, an event handled alone), except for the tickets
    a consumer's batch `hold`s: those are created-or-locked together in one statement and
    kept here as rows; `lock`, `get` and `opinions` answer from them, `save` changes them,
    and `flush` writes the ones that changed in one statement before the batch commits.
    Held or not, a caller gets its own copy: an aggregate changed and not saved changes
    nothing, as in the database."""

    def __init__(self, session: AsyncSession):
        self.session = session
        # ticket id -> its row as last saved in this batch (None: nothing held).
        self._held: dict[str, dict] | None = None
        # ticket id -> its held row as the database has it (what `flush` compares with).
        self._stored: dict[str, dict] = {}

    def _keep(self, ticket: Ticket) -> Ticket:
        row = _row_of(ticket)
        self._held[ticket.ticket_id], self._stored[ticket.ticket_id] = row, dict(row)
        return ticket

    async def hold(self, first_news: Iterable[tuple[str, str, dt.datetime]], now: dt.datetime,
                   locks: list[str]) -> dict[str, Ticket]:
        """Create-or-lock a batch's tickets in one statement and keep them until `flush`.
        `first_news`: (ticket id, estate, when first seen) per event, in the batch's order
        (a ticket new to callback is created as its first event there would create it);
        `locks`: advisory locks (names, keys of `hashtext`) the same statement takes first,
        in name order, before any row lock (a batch's recurrence locks, `Watches.taking`).
        Returns ticket id -> the ticket (a copy)."""
        if self._held is None:
            self._held = {}
        fresh: dict[str, dict] = {}
        for ticket_id, estate, seen_at in first_news:
            if ticket_id not in self._held and ticket_id not in fresh:
                fresh[ticket_id] = Ticket.first_news(ticket_id, estate, seen_at, now).values()
        if fresh or locks:
            rows = await self.session.execute(_LOCK_TICKETS, {"rows": rows_json(list(fresh.values())), "locks": locks})
            for row in rows.all():
                self._keep(Ticket.from_row(row))
        return {ticket_id: Ticket.from_row(row) for ticket_id, row in self._held.items()}

    async def lock(self, ticket_id: str, estate: str, seen_at: dt.datetime, now: dt.datetime) -> Ticket:
        """The ticket's row, locked for this transaction; created on the first news of it.
        Every handler of a ticket's events takes this lock first (one at a time per ticket)."""
        if self._held is not None and ticket_id in self._held:
            return Ticket.from_row(self._held[ticket_id])
        fresh = Ticket.first_news(ticket_id, estate, seen_at, now)
        # One round trip: a conflicting insert that "updates" the key to itself takes the
        # row's lock and returns the stored row (a plain DO NOTHING returns nothing).
        insert = pg_insert(T).values(**fresh.values())
        ticket = Ticket.from_row((await self.session.execute(
            insert.on_conflict_do_update(index_elements=[T.c.ticket_id], set_={"ticket_id": insert.excluded.ticket_id})
            .returning(*T.c))).one())
        return self._keep(ticket) if self._held is not None else ticket

    async def get(self, estate: str, ticket_id: str, *, lock: bool = False) -> Ticket | None:
        if self._held is not None and ticket_id in self._held:
            row = self._held[ticket_id]
            return Ticket.from_row(row) if row["estate"] == estate else None
        query = sa.select(T).where(T.c.estate == estate, T.c.ticket_id == ticket_id)
        row = (await self.session.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            return None
        ticket = Ticket.from_row(row)
        return self._keep(ticket) if lock and self._held is not None else ticket

    async def save(self, ticket: Ticket) -> None:
        if self._held is not None and ticket.ticket_id in self._held:
            self._held[ticket.ticket_id] = _row_of(ticket)
            return
        values = ticket.values()
        await self.session.execute(sa.update(T).where(T.c.ticket_id == values.pop("ticket_id")).values(**values))

    async def flush(self) -> None:
        """Write the held tickets that changed since they were read, in one statement (none
        when nothing changed)."""
        changed = [row for ticket_id, row in sorted((self._held or {}).items()) if row != self._stored[ticket_id]]
        if changed:
            await self.session.execute(_SAVE_TICKETS, {"rows": rows_json(changed)})
            self._stored.update({row["ticket_id"]: dict(row) for row in changed})

    async def opinions(self, estate: str, category_key: str, since: dt.datetime) -> list[Ticket]:
        """The estate's tickets of this category already sent to a department and raised at
        or after `since` (the recurrence rule's later opinions: none raised before the
        earliest undecided watch's round was completed can recur in any window, and
        `since` keeps the read to the open windows however long the estate's history)."""
        rows = (await self.session.execute(sa.select(T).where(
            T.c.estate == estate, T.c.category_key == category_key, T.c.raised_at >= since,
            sa.func.cardinality(T.c.departments) > 0))).all()
        found = {row.ticket_id: Ticket.from_row(row) for row in rows}
        for ticket_id, row in (self._held or {}).items():  # the batch's own, as it left them
            found.pop(ticket_id, None)
            if (row["estate"] == estate and row["category_key"] == category_key and row["departments"]
                    and row["raised_at"] >= since):
                found[ticket_id] = Ticket.from_row(row)
        return list(found.values())

    async def long_running_complaints(self, estate: str, first_contact: str | None, started_before: dt.datetime,
                                      limit: int = 200) -> list[Ticket]:
        query = sa.select(T).where(T.c.estate == estate, T.c.kind == Kind.complaint.value,
                                   T.c.status == TicketState.in_handling, T.c.raised_at <= started_before)
        if first_contact:
            query = query.where(T.c.first_contact == first_contact)
        return [Ticket.from_row(row) for row in (await self.session.execute(query.order_by(T.c.raised_at).limit(limit))).all()]


class Rounds:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, round_: Round) -> bool:
        """Store a completed round once; False when it was already there (a re-emitted event)."""
        return (await self.session.execute(pg_insert(R).values(**round_.values()).on_conflict_do_nothing()
                                           .returning(R.c.round))).first() is not None

    async def get(self, ticket_id: str, round_: int) -> Round | None:
        row = (await self.session.execute(sa.select(R).where(R.c.ticket_id == ticket_id, R.c.round == round_))).first()
        return Round.from_row(row) if row else None

    async def unsettled(self, ticket_id: str) -> list[Round]:
        rows = (await self.session.execute(sa.select(R).where(R.c.ticket_id == ticket_id, R.c.outcome.is_(None))
                                           .order_by(R.c.round))).all()
        return [Round.from_row(row) for row in rows]

    async def of_ticket(self, ticket_id: str) -> list[Round]:
        rows = (await self.session.execute(sa.select(R).where(R.c.ticket_id == ticket_id).order_by(R.c.round))).all()
        return [Round.from_row(row) for row in rows]

    async def save(self, round_: Round) -> None:
        values = round_.values()
        await self.session.execute(sa.update(R).where(R.c.ticket_id == values.pop("ticket_id"),
                                                      R.c.round == values.pop("round")).values(**values))


# After a commit that wrote a time the jobs wait for: `on_due(earliest time)` (ScanSchedule.noted).
OnDue = Callable[[dt.datetime], None] | None


class Callbacks:
    def __init__(self, session: AsyncSession, on_due: OnDue = None):
        self.session = session
        self.on_due = on_due  # a pending callback's due time written: the overdue scan's schedule

    async def add(self, callback: Callback) -> bool:
        """Store a planned callback once (ids are deterministic); False when it was there."""
        added = (await self.session.execute(pg_insert(C).values(**callback.values()).on_conflict_do_nothing()
                                            .returning(C.c.callback_id))).first() is not None
        if added and callback.status == "pending":
            tell_after_commit(self.session, "callback_due", self.on_due, [callback.due_at])
        return added

    async def get(self, estate: str, callback_id: str, *, lock: bool = False) -> Callback | None:
        query = sa.select(C).where(C.c.estate == estate, C.c.callback_id == callback_id)
        row = (await self.session.execute(query.with_for_update() if lock else query)).first()
        return Callback.from_row(row) if row else None

    async def save(self, callback: Callback) -> None:
        values = callback.values()
        await self.session.execute(sa.update(C).where(C.c.callback_id == values.pop("callback_id")).values(**values))
        if callback.status == "pending" and callback.overdue_at is None:
            tell_after_commit(self.session, "callback_due", self.on_due, [callback.due_at])

    async def next_overdue(self) -> dt.datetime | None:
        """When the next pending callback not yet reported falls due (None: none is
        pending); `ix_callbacks_overdue_scan` answers it from its first entry."""
        return (await self.session.execute(
            sa.select(sa.func.min(C.c.due_at)).where(C.c.status == "pending", C.c.overdue_at.is_(None)))).scalar()

    async def pending_of(self, ticket_id: str) -> list[Callback]:
        rows = (await self.session.execute(sa.select(C).where(C.c.ticket_id == ticket_id,
                                                              C.c.status == "pending").order_by(C.c.callback_id))).all()
        return [Callback.from_row(row) for row in rows]

    async def of_ticket(self, ticket_id: str, purpose: str | None = None) -> list[Callback]:
        query = sa.select(C).where(C.c.ticket_id == ticket_id)
        if purpose:
            query = query.where(C.c.purpose == purpose)
        rows = (await self.session.execute(query.order_by(C.c.round, C.c.due_at, C.c.callback_id))).all()
        return [Callback.from_row(row) for row in rows]

    async def claim_overdue(self, now: dt.datetime, limit: int) -> list[Callback]:
        """Pending callbacks past due and not yet reported, claimed (SKIP LOCKED: replicas
        never report one twice)."""
        rows = (await self.session.execute(
            sa.select(C).where(C.c.status == "pending", C.c.overdue_at.is_(None), C.c.due_at < now)
            .order_by(C.c.due_at).limit(limit).with_for_update(skip_locked=True))).all()
        return [Callback.from_row(row) for row in rows]

    async def claim_complaint_windows(self, rule: str) -> list[Callback]:
        """Pending complaint callbacks whose working-day window may move with the calendar."""
        rows = (await self.session.execute(
            sa.select(C).where(C.c.status == "pending", C.c.overdue_at.is_(None), C.c.rule == rule,
                               C.c.completed_at.is_not(None)).with_for_update(skip_locked=True))).all()
        return [Callback.from_row(row) for row in rows]

    async def worklist(self, estate: str, status: str, assigned_to: str | None, now: dt.datetime,
                       limit: int = 1000) -> list[tuple[Callback, str | None]]:
        """The estate's callbacks in `status` (pending / overdue / done), each with its form
        number, at most `limit`: pending and overdue ones earliest due first, done ones most
        recently done first (ties by callback id, descending: one order on every replica)."""
        query = (sa.select(C, T.c.form_number).join(T, T.c.ticket_id == C.c.ticket_id, isouter=True)
                 .where(C.c.estate == estate))
        if status == "done":
            query = query.where(C.c.status == "done").order_by(C.c.done_at.desc(), C.c.callback_id.desc())
        else:
            query = query.where(C.c.status == "pending").order_by(C.c.due_at)
            if status == "overdue":
                query = query.where(C.c.due_at < now)
        if assigned_to:
            query = query.where(C.c.assigned_to == assigned_to)
        rows = (await self.session.execute(query.limit(limit))).all()
        return [(Callback.from_row(row), row.form_number) for row in rows]

    async def counted(self, estate: str, start: dt.datetime | None, end: dt.datetime | None) -> list[Callback]:
        """The callbacks the rates count (RULES §3 Who), completed in [start, end) if given."""
        where = [C.c.estate == estate, C.c.counts_in_rate.is_(True), C.c.status != "cancelled"]
        if start is not None:
            where += [C.c.completed_at >= start, C.c.completed_at < end]
        return [Callback.from_row(row) for row in (await self.session.execute(sa.select(C).where(*where))).all()]


# The recurrence lock of each estate (`Watches.lock_estate`): one key per estate.
def _recurrence_lock_key(estate: str) -> str:
    return f"callback-recurrence/{estate}"


# The undecided watches of several (estate, category key) pairs, locked, in one statement.
_UNDECIDED_OF = sa.text(
    f"SELECT w.* FROM {W.schema}.{W.name} AS w WHERE w.verdict IS NULL AND (w.estate, w.category_key) IN "
    "(SELECT * FROM unnest(CAST(:estates AS text[]), CAST(:keys AS text[]))) "
    "ORDER BY w.completed_at, w.ticket_id, w.round FOR UPDATE OF w")


class Watches:
    """RULES §3 No callback path: the watches waiting for the recurrence rule's verdict.

    A consumer's batch takes its estates' recurrence locks at once (`taking`) and
    names the (estate, category key) pairs its handlers will ask about (`expect`): the first
    `undecided` of such a pair loads (and locks) every named pair's watches in one statement,
    and later ones answer from them: the estates' locks keep other batches and the scan from
    adding or deciding one meanwhile, the rows' locks an owner's answer, and this unit of
    work's own `add` and `save` keep them up to date."""

    def __init__(self, session: AsyncSession, on_window_end: OnDue = None):
        self.session = session
        self.on_window_end = on_window_end  # an undecided watch written: the recurrence scan's schedule
        self._locked: set[str] = set()  # estates whose recurrence lock the batch took (`taking`)
        self._expected: set[tuple[str, str]] = set()
        # (estate, category key) -> (ticket id, round) -> the undecided watch's row.
        self._loaded: dict[tuple[str, str], dict[tuple[str, int], dict]] = {}

    def expect(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(estate, category key) pairs `undecided` will be asked about in this batch."""
        self._expected.update(pairs)

    async def add(self, watch: Watch) -> None:
        inserted = (await self.session.execute(pg_insert(W).values(**watch.values()).on_conflict_do_nothing()
                                               .returning(W.c.round))).first() is not None
        loaded = self._loaded.get((watch.estate, watch.category_key))
        if inserted and loaded is not None and watch.verdict is None:
            loaded[(watch.ticket_id, watch.round)] = _row_of(watch)
        if inserted and watch.verdict is None:
            tell_after_commit(self.session, "window_ends", self.on_window_end, [watch.window_ends_at])

    async def next_window_end(self) -> dt.datetime | None:
        """When the next undecided watch's recurrence window ends (None: none is undecided)."""
        return (await self.session.execute(
            sa.select(sa.func.min(W.c.window_ends_at)).where(W.c.verdict.is_(None)))).scalar()

    async def get(self, ticket_id: str, round_: int) -> Watch | None:
        row = (await self.session.execute(sa.select(W).where(W.c.ticket_id == ticket_id, W.c.round == round_))).first()
        return Watch.from_row(row) if row else None

    async def undecided(self, estate: str, category_key: str) -> list[Watch]:
        pair = (estate, category_key)
        if pair in self._expected and pair not in self._loaded:
            await self._load(sorted(self._expected - self._loaded.keys()))
        if pair in self._loaded:
            rows = sorted(self._loaded[pair].values(), key=lambda r: (r["completed_at"], r["ticket_id"], r["round"]))
            return [Watch.from_row(_copied(row)) for row in rows]
        rows = (await self.session.execute(
            sa.select(W).where(W.c.estate == estate, W.c.category_key == category_key, W.c.verdict.is_(None))
            .order_by(W.c.completed_at, W.c.ticket_id, W.c.round).with_for_update())).all()
        return [Watch.from_row(row) for row in rows]

    async def _load(self, pairs: list[tuple[str, str]]) -> None:
        rows = (await self.session.execute(_UNDECIDED_OF, {"estates": [estate for estate, _ in pairs],
                                                           "keys": [key for _, key in pairs]})).all()
        for pair in pairs:
            self._loaded[pair] = {}
        for row in rows:
            self._loaded[(row.estate, row.category_key)][(row.ticket_id, row.round)] = _row_of(Watch.from_row(row))

    async def due_keys(self, now: dt.datetime, limit: int = 100) -> list[tuple[str, str]]:
        """(estate, category key) pairs with a watch whose window has elapsed."""
        rows = (await self.session.execute(
            sa.select(W.c.estate, W.c.category_key).where(W.c.verdict.is_(None), W.c.window_ends_at <= now)
            .distinct().limit(limit))).all()
        return [(row.estate, row.category_key) for row in rows]

    async def of_ticket(self, ticket_id: str) -> list[Watch]:
        rows = (await self.session.execute(sa.select(W).where(W.c.ticket_id == ticket_id).order_by(W.c.round))).all()
        return [Watch.from_row(row) for row in rows]

    async def decided(self, estate: str, start: dt.datetime | None, end: dt.datetime | None) -> list[Watch]:
        where = [W.c.estate == estate, W.c.verdict.is_not(None)]
        if start is not None:
            where += [W.c.completed_at >= start, W.c.completed_at < end]
        return [Watch.from_row(row) for row in (await self.session.execute(sa.select(W).where(*where))).all()]

    async def save(self, watch: Watch) -> None:
        values = watch.values()
        await self.session.execute(sa.update(W).where(W.c.ticket_id == values.pop("ticket_id"),
                                                      W.c.round == values.pop("round")).values(**values))
        loaded = self._loaded.get((watch.estate, watch.category_key))
        if loaded is not None and (watch.ticket_id, watch.round) in loaded:
            if watch.verdict is None:
                loaded[(watch.ticket_id, watch.round)] = _row_of(watch)
            else:
                del loaded[(watch.ticket_id, watch.round)]

    async def lock_estate(self, estate: str, wait: bool = True) -> bool:
        """Serialise, per estate, the handlers that feed the recurrence rule (accepted,
        assigned, completed) and its scan: a first opinion's watch and a later opinion's
        facts committed concurrently would otherwise each miss the other. Taken before any
        row lock, so it never deadlocks; it costs one estate's events a few ms each.
        Nothing to do when the batch took it already (`taking`)."""
        if estate in self._locked:
            return True
        key = sa.func.hashtext(_recurrence_lock_key(estate))
        if wait:
            await self.session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
            return True
        return bool((await self.session.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key)))).scalar())

    def taking(self, estates: Iterable[str]) -> list[str]:
        """The recurrence locks of `estates` this transaction does not hold yet, as lock
        names for the statement that takes them (`Tickets.hold`: all of a batch's, in one
        order, before any row lock), counted as held from now: `lock_estate` then costs
        nothing. Not for a savepoint that may roll back (the locks would go with it)."""
        wanted = sorted(set(estates) - self._locked)
        self._locked.update(wanted)
        return [_recurrence_lock_key(estate) for estate in wanted]


class ProgressUpdates:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, event_id: str, *, ticket_id: str, estate: str, updated_at: dt.datetime, method: str,
                  note: str, updated_by: str) -> None:
        await self.session.execute(pg_insert(P).values(
            event_id=event_id, ticket_id=ticket_id, estate=estate, updated_at=updated_at, method=method, note=note,
            updated_by=updated_by).on_conflict_do_nothing())

    async def of_tickets(self, ticket_ids: list[str]) -> dict[str, list]:
        """Each ticket's updates (rows with updated_at, method, note, updated_by), oldest first."""
        found: dict[str, list] = {}
        if not ticket_ids:
            return found
        rows = (await self.session.execute(sa.select(P).where(P.c.ticket_id.in_(ticket_ids)).order_by(P.c.updated_at))).all()
        for row in rows:
            found.setdefault(row.ticket_id, []).append(row)
        return found


class Visits:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def by_client_id(self, estate: str, staff_id: str, client_visit_id: str):
        return (await self.session.execute(sa.select(V).where(
            V.c.estate == estate, V.c.staff_id == staff_id, V.c.client_visit_id == client_visit_id))).first()

    async def add(self, **values):
        """The stored visit, or None when a concurrent repeat of its client_visit_id won."""
        return (await self.session.execute(pg_insert(V).values(**values).on_conflict_do_nothing().returning(V))).first()

    async def days_by_staff(self, estate: str, first_day: dt.date, next_month: dt.date) -> dict[str, list[dt.date]]:
        rows = (await self.session.execute(sa.select(V.c.staff_id, V.c.visited_on).where(
            V.c.estate == estate, V.c.visited_on >= first_day, V.c.visited_on < next_month))).all()
        by_staff: dict[str, list[dt.date]] = {}
        for row in rows:
            by_staff.setdefault(row.staff_id, []).append(row.visited_on)
        return by_staff


class CallbackUnitOfWork(SqlUnitOfWork):
    """The repositories of one callback transaction, plus `emit` (outbox) and `count`
    (a metric counted once the transaction commits, so a retried handler counts once)."""

    def __init__(self, session: AsyncSession, emit, count: Callable[[str, str, str, list[str]], None] | None = None,
                 on_callback_due: OnDue = None, on_window_end: OnDue = None):
        super().__init__(session, emit)
        self.tickets = Tickets(session)
        self.rounds = Rounds(session)
        self.callbacks = Callbacks(session, on_callback_due)
        self.watches = Watches(session, on_window_end)
        self.progress = ProgressUpdates(session)
        self.visits = Visits(session)
        self._count = count

    async def hold(self, estates: Iterable[str], first_news: Iterable[tuple[str, str, dt.datetime]],
                   now: dt.datetime) -> dict[str, Ticket]:
        """A consumer's batch: the recurrence locks of `estates`, then its tickets created-or-
        locked and held until `flush`, in one statement (`Tickets.hold`)."""
        return await self.tickets.hold(first_news, now, self.watches.taking(estates))

    async def flush(self) -> None:
        """Write what the batch's repositories held (its changed tickets), before it commits."""
        await self.tickets.flush()

    def count(self, metric: str, estate: str, kind: str, departments: list[str]) -> None:
        if self._count is None:
            return
        count = self._count
        sa.event.listen(self.session.sync_session, "after_commit",
                        lambda _session: count(metric, estate, kind, departments), once=True)