"""Dispatch's tables and repositories: forms in handling, the handover ledger (one line per transfer of a
form to a department), deadlines as rows (never in-memory timers) so they survive
restarts, escalations, nonconformity records, the owner-update log and paid-service bills."""

import copy
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import domain, effects
from services.dispatch.rules import NonconformityRecord
from shared import limits
from shared.db import rows_json, service_metadata, take_numbers
from shared.schedule import tell_after_commit
from shared.errors import RuleViolation
from shared.lifecycle import LineState, NonconformityState, TicketState, check_constraint

metadata = service_metadata("dispatch")

# The part of the ticket's life dispatch sees (shared.lifecycle's vocabulary).
FORM_STATES = (TicketState.in_handling, TicketState.awaiting_approval, TicketState.completed, TicketState.invalid,
               TicketState.closed)

forms = sa.Table(
    "forms",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("reply_method", sa.String(16), nullable=False),
    sa.Column("first_contact", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("facts", sa.JSON, nullable=False),  # the accepted payload, for re-rounds
    sa.Column("round", sa.Integer, nullable=False),
    # in_handling → completed (every department signed back) → closed (owner satisfied);
    # awaiting_nc: signed back, the nonconformity record awaits approval; invalid: a
    # complaint judged invalid ended handling (FORM_STATES).
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("validity", sa.String(8)),  # valid / invalid, complaints only
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    check_constraint("status", FORM_STATES, "ck_forms_status"),
    # The work lists (queries.work_list) are "the estate's forms, newest first, LIMIT n":
    # an index ending in accepted_at reads the n newest backwards instead of every form
    # the estate ever had (it also serves every lookup by estate alone); the open list
    # and the department queue read a partial one of the forms in handling, which does
    # not grow with history.
    sa.Index("ix_forms_estate_accepted", "estate", "accepted_at"),
    sa.Index("ix_forms_estate_open", "estate", "accepted_at",
             postgresql_where=sa.text(f"status = '{TicketState.in_handling.value}'")),
)

# The handover ledger: one line per transfer of a form to a department in a round. A
# department that hands the form on keeps its line (transferred_to is set) and the
# receiver gets a new one; only lines without transferred_at are active.
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("department", sa.String(32), nullable=False),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("assigned_by", sa.String(64), nullable=False),
    sa.Column("transferred_from", sa.String(32)),
    sa.Column("arrival_required", sa.Boolean, nullable=False, server_default=sa.false()),
    # The line's state (shared.lifecycle.LineState), written with each step.
    sa.Column("status", sa.String(16), nullable=False, server_default=LineState.assigned.value),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
    sa.Column("acknowledged_by", sa.String(64)),
    sa.Column("arrived_at", sa.DateTime(timezone=True)),
    sa.Column("arrived_by", sa.String(64)),
    # signed_at: the department signed back (opinion, result); signed_back_at: its head
    # verified, and only then the line counts as signed back for the form.
    sa.Column("signed_at", sa.DateTime(timezone=True)),
    sa.Column("signed_back_at", sa.DateTime(timezone=True)),
    sa.Column("opinion", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("signed_by", sa.String(64)),
    sa.Column("verified_by", sa.String(64)),
    sa.Column("appointment_at", sa.DateTime(timezone=True)),
    sa.Column("notes", sa.JSON, nullable=False, server_default=sa.text("'[]'")),  # notes left, reschedules
    sa.Column("transferred_at", sa.DateTime(timezone=True)),
    sa.Column("transferred_to", sa.String(32)),
    sa.Column("transferred_by", sa.String(64)),
    sa.Index("ix_assignments_ticket_round", "ticket_id", "round"),
    check_constraint("status", LineState, "ck_assignments_status"),
    # A department holds at most one active line per round.
    sa.Index(
        "uq_assignments_active_line", "ticket_id", "round", "department", unique=True,
        postgresql_where=sa.text("transferred_at IS NULL"),
    ),
)

deadlines = sa.Table(
    "deadlines",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("clock", sa.String(32), nullable=False),
    sa.Column("department", sa.String(32), nullable=False, default=""),
    # The ledger line a department clock belongs to; NULL for the ticket's own clocks.
    sa.Column("assignment_id", sa.BigInteger),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("provisional", sa.Boolean, nullable=False, default=False),
    # Day clocks keep what they count from, so a provisional one can be recomputed when
    # the company loads the missing year's calendar.
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("working_days", sa.Integer),
    sa.Column("met_at", sa.DateTime(timezone=True)),  # closed: met, or no longer owed
    sa.Column("outcome", sa.String(16)),  # met / superseded / cancelled / rescheduled
    sa.Column("breached_at", sa.DateTime(timezone=True)),
    # One live clock per line and clock; rescheduled ones stay beside it as history.
    sa.Index(
        "uq_deadlines_line_clock", "assignment_id", "clock", unique=True,
        postgresql_where=sa.text("assignment_id IS NOT NULL AND (outcome IS NULL OR outcome <> 'rescheduled')"),
    ),
    # One of each of the ticket's own clocks a round; the progress-update duty has one
    # clock per week (issue 11).
    sa.Index(
        "uq_deadlines_ticket_clock", "ticket_id", "round", "clock", unique=True,
        postgresql_where=sa.text("assignment_id IS NULL AND clock <> 'progress_update'"),
    ),
    sa.Index(
        "uq_deadlines_progress_week", "ticket_id", "round", "due_at", unique=True,
        postgresql_where=sa.text("clock = 'progress_update'"),
    ),
    # The breach scan looks only at open deadlines by due time.
    sa.Index("ix_deadlines_open_due", "due_at", postgresql_where=sa.text("met_at IS NULL AND breached_at IS NULL")),
    # The overdue work list: an estate's clocks still running (fired or not) past due.
    sa.Index("ix_deadlines_estate_open", "estate", "due_at", postgresql_where=sa.text("met_at IS NULL")),
)

# Each rung a breach (or the subject of a complaint, or an owner's loss) reached.
escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("deadline_id", sa.BigInteger),  # NULL: escalated by subject or by loss
    sa.Column("clock", sa.String(32)),
    sa.Column("department", sa.String(32)),
    sa.Column("rung", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("nonconformity", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_at", sa.DateTime(timezone=True)),  # the next rung is told then, if unresolved
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Index("uq_escalations_deadline_rung", "deadline_id", "rung", unique=True,
             postgresql_where=sa.text("deadline_id IS NOT NULL")),
    sa.Index("ix_escalations_next", "next_at", postgresql_where=sa.text("next_at IS NOT NULL AND resolved_at IS NULL")),
)

# 不合格品/服务记录处理单: one per ticket.
nonconformities = sa.Table(
    "nonconformities",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("owner_loss_cny", sa.Numeric(12, 2)),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("opened_by", sa.String(64), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("approved_by", sa.String(64)),
    sa.Column("approved_at", sa.DateTime(timezone=True)),
    sa.Column("corrective_action", sa.Text),
    sa.Column("responsible", sa.String(64)),
    sa.Column("action_started_at", sa.DateTime(timezone=True)),
    sa.Column("closed_by", sa.String(64)),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("result", sa.Text),
    sa.Column("capa_report", sa.Text),
    sa.Column("capa_reported_at", sa.DateTime(timezone=True)),
    check_constraint("state", NonconformityState, "ck_nonconformities_state"),
)

# Updates given to the owner (from intake's progress_updated): they meet the reply clock
# and count towards the week's progress_update clock (the twice-a-week rule).
progress_log = sa.Table(
    "progress_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)

# The estate's household-service catalogue (free and paid items with prices).
service_items = sa.Table(
    "service_items",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("paid", sa.Boolean, nullable=False),
    sa.Column("price_cny", sa.Numeric(12, 2)),
)

# Repair bills (three copies with the same lines); settled through finance only.
bills = sa.Table(
    "bills",
    metadata,
    sa.Column("number", sa.String(48), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.Column("total_cny", sa.Numeric(12, 2), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("settled_channel", sa.String(32)),
    sa.Column("settled_by", sa.String(64)),
    sa.Column("settled_at", sa.DateTime(timezone=True)),
)

bill_sequences = sa.Table(
    "bill_sequences",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)


# --- repositories: every statement of the service's write side (reads for screens: queries.py) ---


F, A, D, E, NC = forms, assignments, deadlines, escalations, nonconformities


def any_of(column: sa.Column, values: Iterable) -> sa.ColumnElement[bool]:
    """`column = ANY(:array)`: one statement text whatever the number of values (an `IN
    (…)` list is expanded anew at each execution and is a new prepared statement for each
    length: 8 % of dispatch's samples in the issue-12 profile)."""
    return column == sa.any_(sa.bindparam(f"{column.name}_any", list(values), type_=ARRAY(column.type), unique=True))


def _write_new_rows() -> sa.TextClause:
    """One statement for new forms, lines and clocks, each given as one JSON array
    (`:forms`, `:lines`, `:clocks`: objects by column name, a column left out is NULL),
    the same text for any number of rows (SQLAlchemy's compiled cache and asyncpg's
    prepared statement hit every time). A department's clock given without its
    `assignment_id` takes the id of the new line of its ticket, round and department
    written with it. Answers the new lines' (id, ticket_id, round, department)."""

    def name(table: sa.Table) -> str:
        return f'"{table.schema}"."{table.name}"'

    def insert(table: sa.Table, alias: str, select: str | None = None, join: str = "") -> str:
        # Identity ids come from the table, given in the arrays' order (as one by one).
        names = [f'"{c.name}"' for c in table.columns if c.name != "id"]
        return (f"INSERT INTO {name(table)} ({', '.join(names)}) SELECT {select or ', '.join(names)} "
                f"FROM json_populate_recordset(NULL::{name(table)}, CAST(:{alias} AS json)) WITH ORDINALITY "
                f"AS {alias}{join} ORDER BY {alias}.ordinality")

    clock_columns = ", ".join('coalesce(clocks."assignment_id", lines.id)' if c.name == "assignment_id"
                              else f'clocks."{c.name}"' for c in D.columns if c.name != "id")
    line_of_clock = (" LEFT JOIN lines ON clocks.assignment_id IS NULL AND clocks.department <> ''"
                     " AND (lines.ticket_id, lines.round, lines.department)"
                     " = (clocks.ticket_id, clocks.round, clocks.department)")
    return sa.text(
        f"WITH new_forms AS ({insert(F, 'forms')}), "
        f"lines AS ({insert(A, 'lines')} RETURNING id, ticket_id, round, department), "
        f"new_clocks AS ({insert(D, 'clocks', clock_columns, line_of_clock)}) "
        "SELECT id, ticket_id, round, department FROM lines")


_WRITE_NEW_ROWS = _write_new_rows()




class NewRows:
    """New forms, ledger lines and clocks, each table's written with one statement
    whatever their number (`write`): the rows travel as one JSON array, so the SQL text
    never changes (SQLAlchemy's compiled cache and asyncpg's prepared statements hit).

    `hold`: a batch of `accepted` keeps its whole batch's rows until the consumer's flush
    before the commit (consumers.py); otherwise `add` writes them at once. Held rows are
    written before any other statement of the repositories that share them (`Repository
    ._run`), so no read misses them. A new line gets its id when written; a clock of a
    department takes its line's then. `routed`: "already routed?" answers known without
    asking (a batch's prefetch, the forms added). `on_written` as `ClockRepository`'s."""

    def __init__(self, session: AsyncSession, on_written: Callable[[dt.datetime], None] | None = None, *,
                 hold: bool = False):
        self.session = session
        self.on_written = on_written
        self.hold = hold
        self.routed: dict[str, bool] = {}
        self._forms: list[dict] = []
        self._lines: list[domain.Line] = []
        self._held_lines: set[int] = set()  # id() of the held Line objects
        self._clocks: list[tuple[dict, domain.Line | None]] = []

    @property
    def pending(self) -> bool:
        return bool(self._forms or self._lines or self._clocks)

    def holds(self, line: domain.Line) -> bool:
        return id(line) in self._held_lines

    async def add(self, *, forms: Sequence[dict] = (), lines: Sequence[domain.Line] = (),
                  clocks: Sequence[tuple[dict, domain.Line | None]] = ()) -> None:
        """Forms (their columns), lines, clocks (columns but `assignment_id`, and the line
        they belong to or None)."""
        for form in forms:
            self.routed[form["ticket_id"]] = True
        self._forms.extend(forms)
        self._lines.extend(lines)
        self._held_lines.update(id(line) for line in lines)
        self._clocks.extend(clocks)
        if not self.hold:
            await self.write()

    async def write(self) -> None:
        """Forms, lines (ids set on the Line objects) and clocks in one statement."""
        forms, lines, clocks = self._forms, self._lines, self._clocks
        if not (forms or lines or clocks):
            return
        self._forms, self._lines, self._clocks, self._held_lines = [], [], [], set()
        line_rows = [line.columns() for line in lines]
        for row in line_rows:
            del row["id"]
        # Active lines are unique by (ticket, round, department) (uq_assignments_active_line):
        # the key a new line's id comes back by, and its clocks find it by.
        keys = [(line.ticket_id, line.round, line.department) for line in lines]
        if len(set(keys)) != len(keys):
            raise ValueError("new ledger lines written together must differ in ticket, round or department")
        clock_rows = [row if line is None else {**row, "assignment_id": line.id} for row, line in clocks]
        written = await self.session.execute(_WRITE_NEW_ROWS, {
            # In ticket order: two writers of the same tickets wait for each other instead of deadlocking.
            "forms": rows_json(sorted(forms, key=lambda f: f["ticket_id"])),
            "lines": rows_json(line_rows), "clocks": rows_json(clock_rows)})
        ids = {(r.ticket_id, r.round, r.department): r.id for r in written}
        for line, key in zip(lines, keys):
            line.id = ids[key]
        tell_after_commit(self.session, "clock_written", self.on_written, [row["due_at"] for row in clock_rows])


class Repository:
    """`rows`: the new rows this repository adds (and writes first before its other statements)."""

    def __init__(self, session: AsyncSession, rows: NewRows | None = None):
        self.session = session
        self.rows = rows

    async def _run(self, statement):
        if self.rows is not None and self.rows.pending:
            await self.rows.write()  # held rows first: this statement may read or change them
        return await self.session.execute(statement)


class FormLookup:
    """What every form repository (the SQL one, the handler tier's fake) answers alike
    on top of its `get`."""

    async def get(self, ticket_id: str, estate: str | None = None, lock: bool = False) -> domain.Form | None:
        raise NotImplementedError

    async def get_for_update(self, estate: str, ticket_id: str) -> domain.Form:
        """The form, locked for this transaction: 404 when the estate has none."""
        form = await self.get(ticket_id, estate, lock=True)
        if form is None:
            raise RuleViolation(f"no countersign form for ticket {ticket_id!r} in estate {estate!r}", status=404)
        return form


class FormRepository(FormLookup, Repository):
    """Forms with the active lines of their current round and their nonconformity state.
    New forms and lines go through `rows` (`NewRows`); a loaded form's save writes only the
    form's and the lines' columns that changed since it was loaded or last saved."""

    def __init__(self, session: AsyncSession, rows: NewRows):
        super().__init__(session, rows)
        # Columns as stored: ("form", ticket_id) or ("line", id) -> columns (copies).
        self._stored: dict[tuple[str, object], dict] = {}

    async def know_routed(self, ticket_ids: Sequence[str]) -> None:
        """Learn, in one statement, which of `ticket_ids` are routed already: `exists`
        then answers for them without asking (a batch's prefetch)."""
        found = set((await self._run(sa.select(F.c.ticket_id).where(any_of(F.c.ticket_id, ticket_ids)))).scalars())
        self.rows.routed.update((ticket_id, ticket_id in found) for ticket_id in ticket_ids)

    async def exists(self, ticket_id: str) -> bool:
        known = self.rows.routed.get(ticket_id)
        if known is not None:
            return known
        return (await self._run(sa.select(F.c.ticket_id).where(F.c.ticket_id == ticket_id))).first() is not None

    async def get(self, ticket_id: str, estate: str | None = None, lock: bool = False) -> domain.Form | None:
        query = sa.select(F).where(F.c.ticket_id == ticket_id)
        if estate is not None:
            query = query.where(F.c.estate == estate)
        if lock:
            query = query.with_for_update()
        row = (await self._run(query)).first()
        if row is None:
            return None
        lines = (await self._run(
            sa.select(A).where(A.c.ticket_id == ticket_id, A.c.round == row.round, A.c.transferred_at.is_(None))
            .order_by(A.c.id)
        )).all()
        state = (await self._run(sa.select(NC.c.state).where(NC.c.ticket_id == ticket_id))).scalar()
        form = domain.Form.from_row(row, [domain.Line.from_row(l) for l in lines], state)
        self._remember(form, form.lines)
        return form

    def _remember(self, form: domain.Form | None, lines: Iterable[domain.Line]) -> None:
        if form is not None:
            self._stored["form", form.ticket_id] = copy.deepcopy(form.columns())
        for line in lines:
            self._stored["line", line.id] = copy.deepcopy(line.columns())

    async def save(self, form: domain.Form) -> None:
        """Insert a new form, or write its columns when they changed; insert its new lines
        (each gets its id when written) and write the lines that changed."""
        columns = form.columns()
        new = [line for line in form.lines if line.id is None and not self.rows.holds(line)]
        if form.is_new:
            form.is_new = False
            await self.rows.add(forms=[columns], lines=new)
            return
        changed = [line for line in form.lines
                   if line.id is not None and self._stored.get(("line", line.id)) != line.columns()]
        if self._stored.get(("form", form.ticket_id)) != columns:
            await self._run(sa.update(F).where(F.c.ticket_id == form.ticket_id).values(**columns))
        if new:
            await self.rows.add(lines=new)
        for line in changed:
            values = line.columns()
            del values["id"]
            await self._run(sa.update(A).where(A.c.id == line.id).values(**values))
        self._remember(form, changed + [line for line in new if line.id is not None])


OWED = (TicketState.in_handling, TicketState.awaiting_approval, TicketState.completed)
_OWED_VALUES = [state.value for state in OWED]


class ClockRepository(Repository):
    """The deadline rows (RULES §1, §2 clocks). `on_written(earliest_due_at)` is called
    once after the commit of a transaction that wrote or moved clocks (the SLA scan's
    schedule learns of them without asking the database). New clocks go through `rows`
    (`NewRows`, which tells `on_written` of them)."""

    def __init__(self, session: AsyncSession, rows: NewRows,
                 on_written: Callable[[dt.datetime], None] | None = None):
        super().__init__(session, rows)
        self.on_written = on_written

    @staticmethod
    def _where(scope: effects.ClockScope) -> list:
        where = []
        if scope.ticket_id is not None:
            where.append(D.c.ticket_id == scope.ticket_id)
        if scope.round is not None:
            where.append(D.c.round == scope.round)
        if scope.assignment_id is not None:
            where.append(D.c.assignment_id == scope.assignment_id)
        if scope.clocks is not None:
            where.append(any_of(D.c.clock, scope.clocks))
        if scope.except_clock is not None:
            where.append(D.c.clock != scope.except_clock)
        if scope.ids is not None:
            where.append(any_of(D.c.id, scope.ids))
        return where

    async def close(self, scope: effects.ClockScope, at: dt.datetime, outcome: str) -> list:
        """Close the open clocks in `scope`; the closed rows (id, ticket_id, estate, round,
        clock, department, due_at, breached_at) in the order the clocks started (by id):
        UPDATE ... RETURNING has no order of its own, and the clock_settled events follow it."""
        return sorted((await self._run(
            sa.update(D).where(D.c.met_at.is_(None), *self._where(scope)).values(met_at=at, outcome=outcome)
            .returning(D.c.id, D.c.ticket_id, D.c.estate, D.c.round, D.c.clock, D.c.department, D.c.due_at,
                       D.c.breached_at)
        )).all(), key=lambda row: row.id)

    async def add(self, ticket_id: str, estate: str, clocks: Sequence[effects.NewClock],
                  lines: Mapping[str, domain.Line]) -> None:
        """Start `clocks`; a department's clock belongs to that department's line in
        `lines` (department -> active line; a line not written yet gives its id when it is)."""
        if clocks:
            await self.rows.add(clocks=[(
                dict(ticket_id=ticket_id, estate=estate, round=c.round, clock=c.clock, department=c.department or "",
                     assignment_id=None, due_at=c.due_at, provisional=c.provisional, started_at=c.started_at,
                     working_days=c.working_days),
                lines.get(c.department) if c.department else None) for c in clocks])

    async def open_for_line(self, assignment_id: int, clocks: Sequence[str]) -> list:
        return list((await self._run(
            sa.select(D).where(D.c.assignment_id == assignment_id, D.c.met_at.is_(None), any_of(D.c.clock, clocks))
        )).all())

    async def progress_week_at(self, ticket_id: str, at: dt.datetime):
        """The running progress-update clock whose week holds `at`, locked; None if none."""
        return (await self._run(
            sa.select(D).where(D.c.ticket_id == ticket_id, D.c.clock == domain.Clock.progress_update.value,
                               D.c.met_at.is_(None), D.c.breached_at.is_(None), D.c.started_at <= at, D.c.due_at > at)
            .with_for_update()
        )).first()

    async def claim_due(self, now: dt.datetime, limit: int) -> list:
        """Open clocks past due of forms still owed, oldest first, claimed (SKIP LOCKED) so
        replicas never fire one twice; each with its form's facts, kind, accepted_at, status."""
        return list((await self._run(
            sa.select(D, F.c.facts, F.c.kind, F.c.accepted_at, F.c.status)
            .join(F, F.c.ticket_id == D.c.ticket_id)
            .where(D.c.met_at.is_(None), D.c.breached_at.is_(None), D.c.due_at < now, any_of(F.c.status, _OWED_VALUES))
            .order_by(D.c.due_at).limit(limit).with_for_update(of=D, skip_locked=True)
        )).all())

    async def mark_breached(self, clock_id: int, at: dt.datetime) -> None:
        await self._run(sa.update(D).where(D.c.id == clock_id).values(breached_at=at))

    async def next_wake(self) -> dt.datetime | None:
        """When the SLA scan next has work: the earliest due time of a clock not fired yet
        (of a form still owed), or of an unresolved escalation's next rung; None if none."""
        # The first clock by due time whose form is owed, not min() over a join: the planner
        # then walks ix_deadlines_open_due in order and stops at the first owed one, where
        # min() over the join read every open clock (or every form) of the company.
        owed = sa.exists().where(F.c.ticket_id == D.c.ticket_id, any_of(F.c.status, _OWED_VALUES))
        due = (sa.select(D.c.due_at).where(D.c.met_at.is_(None), D.c.breached_at.is_(None), owed)
               .order_by(D.c.due_at).limit(1).scalar_subquery())
        climb = sa.select(sa.func.min(E.c.next_at)).where(E.c.next_at.is_not(None), E.c.resolved_at.is_(None)
                                                          ).scalar_subquery()
        first, second = (await self._run(sa.select(due, climb))).one()
        return min((t for t in (first, second) if t is not None), default=None)

    async def running_day_clocks(self) -> list:
        return list((await self._run(
            sa.select(D).where(D.c.met_at.is_(None), D.c.breached_at.is_(None), D.c.working_days.is_not(None),
                               D.c.started_at.is_not(None)).with_for_update(skip_locked=True)
        )).all())

    async def move(self, clock_id: int, due_at: dt.datetime, provisional: bool) -> None:
        await self._run(sa.update(D).where(D.c.id == clock_id).values(due_at=due_at, provisional=provisional))
        tell_after_commit(self.session, "clock_written", self.on_written, [due_at])


class EscalationRepository(Repository):
    async def add(self, *, ticket_id: str, estate: str, round: int, rung: str, reason: str, at: dt.datetime,
                  next_at: dt.datetime | None, deadline_id: int | None = None, clock: str | None = None,
                  department: str | None = None, nonconformity: bool = False) -> None:
        await self._run(sa.insert(E).values(
            ticket_id=ticket_id, estate=estate, round=round, deadline_id=deadline_id, clock=clock,
            department=department, rung=rung, reason=reason, nonconformity=nonconformity, escalated_at=at,
            next_at=next_at))

    async def resolve(self, scope: effects.EscalationScope, at: dt.datetime) -> None:
        where = [E.c.ticket_id == scope.ticket_id, E.c.resolved_at.is_(None)]
        if scope.round is not None:
            where.append(E.c.round == scope.round)
        if scope.nonconformity is not None:
            where.append(E.c.nonconformity.is_(scope.nonconformity))
        if scope.except_clock is not None:
            where.append(sa.or_(E.c.clock.is_(None), E.c.clock != scope.except_clock))
        await self._run(sa.update(E).where(*where).values(resolved_at=at, next_at=None))

    async def resolve_for_clocks(self, clock_ids: Sequence[int], at: dt.datetime) -> None:
        if clock_ids:
            await self._run(sa.update(E).where(any_of(E.c.deadline_id, clock_ids), E.c.resolved_at.is_(None))
                            .values(resolved_at=at, next_at=None))

    async def claim_waiting(self, now: dt.datetime, limit: int) -> list:
        """Unresolved escalations whose next rung is due, claimed (SKIP LOCKED), each with
        its clock's `deadline_met_at`."""
        return list((await self._run(
            sa.select(E, D.c.met_at.label("deadline_met_at")).join(D, D.c.id == E.c.deadline_id)
            .where(E.c.next_at.is_not(None), E.c.next_at <= now, E.c.resolved_at.is_(None))
            .order_by(E.c.next_at).limit(limit).with_for_update(of=E, skip_locked=True)
        )).all())

    async def stop_climbing(self, escalation_id: int, resolved_at: dt.datetime | None = None) -> None:
        await self._run(sa.update(E).where(E.c.id == escalation_id).values(resolved_at=resolved_at, next_at=None))


class NonconformityRepository(Repository):
    async def exists(self, ticket_id: str) -> bool:
        return (await self._run(sa.select(NC.c.ticket_id).where(NC.c.ticket_id == ticket_id))).first() is not None

    async def get_for_update(self, ticket_id: str) -> NonconformityRecord:
        row = (await self._run(sa.select(NC).where(NC.c.ticket_id == ticket_id).with_for_update())).first()
        if row is None:
            raise RuleViolation(f"ticket {ticket_id} has no nonconformity record", status=404)
        data = dict(row._mapping)
        data.pop("estate")
        data["state"] = NonconformityState(data["state"])
        return NonconformityRecord(**data)

    async def add(self, record: NonconformityRecord, estate: str) -> None:
        data = {k: getattr(record, k) for k in NC.c.keys() if k != "estate"}
        data["state"] = record.state.value
        await self._run(pg_insert(NC).values(estate=estate, **data).on_conflict_do_nothing())

    async def save(self, record: NonconformityRecord) -> None:
        data = {k: getattr(record, k) for k in NC.c.keys() if k not in ("estate", "ticket_id")}
        data["state"] = record.state.value
        await self._run(sa.update(NC).where(NC.c.ticket_id == record.ticket_id).values(**data))


class ProgressLogRepository(Repository):
    async def add(self, ticket_id: str, estate: str, at: dt.datetime, method: str, by: str) -> None:
        await self._run(sa.insert(progress_log).values(ticket_id=ticket_id, estate=estate, updated_at=at,
                                                       method=method, updated_by=by))

    async def times(self, ticket_id: str) -> list[dt.datetime]:
        return list((await self._run(
            sa.select(progress_log.c.updated_at).where(progress_log.c.ticket_id == ticket_id)
            .order_by(progress_log.c.updated_at)
        )).scalars().all())


class BillRepository(Repository):
    """The household-service catalogue and the repair bills (RULES §2 Paid services)."""

    async def catalogue(self, estate: str) -> list:
        return list((await self._run(
            sa.select(service_items).where(service_items.c.estate == estate).order_by(service_items.c.code)
        )).all())

    async def replace_catalogue(self, estate: str, items: Sequence[dict]) -> None:
        await self._run(sa.delete(service_items).where(service_items.c.estate == estate))
        if items:
            await self._run(sa.insert(service_items).values([dict(estate=estate, **item) for item in items]))

    async def next_number(self, estate: str, year: int) -> int:
        return await take_numbers(self.session, bill_sequences, estate, year)

    async def add(self, **values) -> None:
        await self._run(sa.insert(bills).values(**values))

    async def get(self, estate: str, number: str, lock: bool = False):
        query = sa.select(bills).where(bills.c.estate == estate, bills.c.number == number)
        if lock:
            query = query.with_for_update()
        return (await self._run(query)).first()

    async def list_for_estate(self, estate: str, ticket_id: str | None, limit: int = 500) -> list:
        query = sa.select(bills).where(bills.c.estate == estate).order_by(bills.c.created_at.desc()).limit(limit)
        if ticket_id:
            query = query.where(bills.c.ticket_id == ticket_id)
        return list((await self._run(query)).all())

    async def settle(self, number: str, channel: str, by: str, at: dt.datetime) -> None:
        await self._run(sa.update(bills).where(bills.c.number == number)
                        .values(settled_channel=channel, settled_by=by, settled_at=at))
