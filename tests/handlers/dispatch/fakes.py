"""In-memory repositories with the methods of `services/dispatch/store.py`'s SQL ones,
and a unit of work carrying them plus `RecordedEvents` for `emit` (issue 11).

Rows are plain dataclasses with the tables' column names; `get` hands out copies, so a
handler sees only what it saved, as with the database. The scopes' `matches` are the
conditions the SQL repositories write as WHERE; `test_fakes_match_sql.py` checks both
answer alike for the key queries."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

from services.dispatch import domain, effects
from services.dispatch.store import FormLookup
from services.dispatch.rules import Clock, NonconformityRecord
from shared.errors import RuleViolation
from shared.lifecycle import TicketState as S
from shared.uow import RecordedEvents

_ids = itertools.count(1)


@dataclass
class ClockRow:
    ticket_id: str
    estate: str
    round: int
    clock: str
    department: str
    assignment_id: int | None
    due_at: dt.datetime
    provisional: bool = False
    started_at: dt.datetime | None = None
    working_days: int | None = None
    met_at: dt.datetime | None = None
    outcome: str | None = None
    breached_at: dt.datetime | None = None
    id: int = field(default_factory=lambda: next(_ids))


@dataclass
class EscalationRow:
    ticket_id: str
    estate: str
    round: int
    rung: str
    reason: str
    escalated_at: dt.datetime
    next_at: dt.datetime | None
    deadline_id: int | None = None
    clock: str | None = None
    department: str | None = None
    nonconformity: bool = False
    resolved_at: dt.datetime | None = None
    id: int = field(default_factory=lambda: next(_ids))


class FakeForms(FormLookup):
    def __init__(self, uow: "FakeUnitOfWork"):
        self.uow = uow
        self.rows: dict[str, dict] = {}  # ticket_id -> form columns
        self.lines: dict[int, domain.Line] = {}

    async def exists(self, ticket_id: str) -> bool:
        return ticket_id in self.rows

    async def get(self, ticket_id: str, estate: str | None = None, lock: bool = False) -> domain.Form | None:
        row = self.rows.get(ticket_id)
        if row is None or (estate is not None and row["estate"] != estate):
            return None
        lines = [copy.deepcopy(l) for l in sorted(self.lines.values(), key=lambda l: l.id)
                 if l.ticket_id == ticket_id and l.round == row["round"] and l.transferred_at is None]
        record = self.uow.nonconformities.records.get(ticket_id)
        return domain.Form.from_row(SimpleNamespace(**row), lines, record.state.value if record else None)

    async def save(self, form: domain.Form) -> None:
        if form.is_new:
            assert form.ticket_id not in self.rows, "duplicate key forms_pkey"
            form.is_new = False
        self.rows[form.ticket_id] = form.columns()
        for line in form.lines:
            if line.id is None:
                line.id = next(_ids)
            self.lines[line.id] = copy.deepcopy(line)

    # for assertions
    def all_lines(self, ticket_id: str) -> list[domain.Line]:
        return [l for l in sorted(self.lines.values(), key=lambda l: l.id) if l.ticket_id == ticket_id]


class FakeClocks:
    def __init__(self, uow: "FakeUnitOfWork"):
        self.uow = uow
        self.rows: list[ClockRow] = []

    def _open(self):
        return [r for r in self.rows if r.met_at is None]

    async def close(self, scope: effects.ClockScope, at: dt.datetime, outcome: str) -> list[ClockRow]:
        closed = []
        for row in self._open():
            if scope.matches(row):
                row.met_at, row.outcome = at, outcome
                closed.append(copy.copy(row))
        return closed

    async def add(self, ticket_id, estate, clocks, lines) -> None:
        for c in clocks:
            line = lines.get(c.department) if c.department else None
            self.rows.append(ClockRow(ticket_id=ticket_id, estate=estate, round=c.round, clock=c.clock,
                                      department=c.department or "",
                                      assignment_id=line.id if line is not None else None,
                                      due_at=c.due_at, provisional=c.provisional, started_at=c.started_at,
                                      working_days=c.working_days))

    async def open_for_line(self, assignment_id, clocks) -> list[ClockRow]:
        return [copy.copy(r) for r in self._open() if r.assignment_id == assignment_id and r.clock in clocks]

    async def progress_week_at(self, ticket_id, at):
        for r in self._open():
            if (r.ticket_id == ticket_id and r.clock == Clock.progress_update.value and r.breached_at is None
                    and r.started_at <= at < r.due_at):
                return copy.copy(r)
        return None

    async def claim_due(self, now, limit) -> list:
        owed = (S.in_handling, S.awaiting_approval, S.completed)
        due = []
        for r in sorted(self._open(), key=lambda r: r.due_at):
            form = self.uow.forms.rows.get(r.ticket_id)
            if r.breached_at is None and r.due_at < now and form and form["status"] in owed:
                due.append(SimpleNamespace(**vars(r), **{k: form[k] for k in ("facts", "kind", "accepted_at",
                                                                                "status")}))
        return due[:limit]

    async def mark_breached(self, clock_id, at) -> None:
        self._by_id(clock_id).breached_at = at

    async def next_wake(self):
        owed = (S.in_handling, S.awaiting_approval, S.completed)
        due = [r.due_at for r in self._open() if r.breached_at is None
               and self.uow.forms.rows.get(r.ticket_id, {}).get("status") in owed]
        climbs = [e.next_at for e in self.uow.escalations.rows if e.next_at is not None and e.resolved_at is None]
        return min(due + climbs, default=None)

    async def running_day_clocks(self) -> list:
        return [copy.copy(r) for r in self._open()
                if r.breached_at is None and r.working_days is not None and r.started_at is not None]

    async def move(self, clock_id, due_at, provisional) -> None:
        row = self._by_id(clock_id)
        row.due_at, row.provisional = due_at, provisional

    def _by_id(self, clock_id) -> ClockRow:
        return next(r for r in self.rows if r.id == clock_id)

    # for assertions
    def of(self, ticket_id: str, **where) -> list[ClockRow]:
        return [r for r in self.rows if r.ticket_id == ticket_id and all(getattr(r, k) == v for k, v in where.items())]


class FakeEscalations:
    def __init__(self, uow: "FakeUnitOfWork"):
        self.rows: list[EscalationRow] = []
        self.uow = uow

    async def add(self, *, ticket_id, estate, round, rung, reason, at, next_at, deadline_id=None, clock=None,
                  department=None, nonconformity=False) -> None:
        self.rows.append(EscalationRow(ticket_id=ticket_id, estate=estate, round=round, rung=rung, reason=reason,
                                       escalated_at=at, next_at=next_at, deadline_id=deadline_id, clock=clock,
                                       department=department, nonconformity=nonconformity))

    async def resolve(self, scope: effects.EscalationScope, at) -> None:
        for row in self.rows:
            if row.resolved_at is None and scope.matches(row):
                row.resolved_at, row.next_at = at, None

    async def resolve_for_clocks(self, clock_ids, at) -> None:
        for row in self.rows:
            if row.resolved_at is None and row.deadline_id in clock_ids:
                row.resolved_at, row.next_at = at, None

    async def claim_waiting(self, now, limit) -> list:
        clocks = {r.id: r for r in self.uow.clocks.rows}
        waiting = sorted((r for r in self.rows if r.next_at is not None and r.next_at <= now
                          and r.resolved_at is None and r.deadline_id in clocks), key=lambda r: r.next_at)
        return [SimpleNamespace(**vars(r), deadline_met_at=clocks[r.deadline_id].met_at) for r in waiting[:limit]]

    async def stop_climbing(self, escalation_id, resolved_at=None) -> None:
        row = next(r for r in self.rows if r.id == escalation_id)
        row.resolved_at, row.next_at = resolved_at, None


class FakeNonconformities:
    def __init__(self):
        self.records: dict[str, NonconformityRecord] = {}

    async def exists(self, ticket_id) -> bool:
        return ticket_id in self.records

    async def get_for_update(self, ticket_id) -> NonconformityRecord:
        if ticket_id not in self.records:
            raise RuleViolation(f"ticket {ticket_id} has no nonconformity record", status=404)
        return self.records[ticket_id]

    async def add(self, record, estate) -> None:
        self.records.setdefault(record.ticket_id, record)

    async def save(self, record) -> None:
        self.records[record.ticket_id] = replace(record)


class FakeProgressLog:
    def __init__(self):
        self.rows: list[tuple[str, dt.datetime]] = []

    async def add(self, ticket_id, estate, at, method, by) -> None:
        self.rows.append((ticket_id, at))

    async def times(self, ticket_id) -> list[dt.datetime]:
        return sorted(at for t, at in self.rows if t == ticket_id)


class FakeBills:
    """The catalogue, the bill numbers per estate and year, and the bills as rows."""

    def __init__(self):
        self.items: dict[str, list[dict]] = {}
        self.last: dict[tuple[str, int], int] = {}
        self.rows: dict[str, SimpleNamespace] = {}

    async def catalogue(self, estate) -> list:
        return [SimpleNamespace(**i) for i in sorted(self.items.get(estate, []), key=lambda i: i["code"])]

    async def replace_catalogue(self, estate, items) -> None:
        self.items[estate] = [dict(i) for i in items]

    async def next_number(self, estate, year) -> int:
        self.last[estate, year] = self.last.get((estate, year), 0) + 1
        return self.last[estate, year]

    async def add(self, **values) -> None:
        assert values["number"] not in self.rows, "duplicate key bills_pkey"
        self.rows[values["number"]] = SimpleNamespace(settled_channel=None, settled_by=None, settled_at=None, **values)

    async def get(self, estate, number, lock=False):
        row = self.rows.get(number)
        return copy.copy(row) if row is not None and row.estate == estate else None

    async def list_for_estate(self, estate, ticket_id, limit=500) -> list:
        rows = [r for r in self.rows.values() if r.estate == estate and (not ticket_id or r.ticket_id == ticket_id)]
        return sorted(rows, key=lambda r: r.created_at, reverse=True)[:limit]

    async def settle(self, number, channel, by, at) -> None:
        row = self.rows[number]
        row.settled_channel, row.settled_by, row.settled_at = channel, by, at


class RecordedMetrics:
    def __init__(self):
        self.breaches: list[tuple[str, str]] = []
        self.escalations: list[tuple[str, str]] = []

    def breach(self, estate, clock) -> None:
        self.breaches.append((estate, clock))

    def escalation(self, estate, rung) -> None:
        self.escalations.append((estate, rung))


class FakeUnitOfWork:
    """The same attributes as `DispatchUnitOfWork`; `emit` records into `sink`."""

    def __init__(self, sink: RecordedEvents):
        self.sink = sink
        self.metrics = RecordedMetrics()
        self.nonconformities = FakeNonconformities()
        self.forms = FakeForms(self)
        self.clocks = FakeClocks(self)
        self.escalations = FakeEscalations(self)
        self.progress = FakeProgressLog()
        self.bills = FakeBills()

    async def emit(self, payload, *, estate, actor, time=None):
        return await self.sink.emit(payload, estate=estate, actor=actor, time=time)
