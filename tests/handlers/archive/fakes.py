"""In-memory repositories with the methods of services/archive/store.py's and queries.py's
SQL ones, and a unit of work carrying them. They hand out copies, so an aggregate changed
and not saved stays unchanged here too (as in the database)."""

from __future__ import annotations

import copy
import datetime as dt
from types import SimpleNamespace

from services.archive.domain import Addendum, CatalogueEntry, ChainHead, DestructionRequest, Loan, PendingSeal, Record
from shared.uow import RecordedEvents


def _copy(item):
    return copy.deepcopy(item)


def _entry(record: Record) -> CatalogueEntry:
    """The record's catalogue line, without its content (as the SQL catalogue reads it)."""
    return CatalogueEntry.from_row({k: v for k, v in record.values().items() if k != "content"})


class FakeCollected:
    def __init__(self):
        self.rows: dict[str, SimpleNamespace] = {}

    async def add(self, event_id, *, ticket_id, estate, time, event, envelope, collected_at):
        self.rows.setdefault(event_id, SimpleNamespace(event_id=event_id, ticket_id=ticket_id, estate=estate, time=time,
                                                       event=event, envelope=envelope, collected_at=collected_at))

    async def flush(self):
        pass  # rows are stored as they are added

    async def envelopes(self, estate, ticket_id, up_to):
        found = [r for r in self.rows.values() if r.estate == estate and r.ticket_id == ticket_id and r.time <= up_to]
        return [r.envelope for r in sorted(found, key=lambda r: (r.time, r.event_id))]

    async def timeline(self, estate, ticket_id):
        found = [r for r in self.rows.values() if r.estate == estate and r.ticket_id == ticket_id]
        return sorted(found, key=lambda r: (r.time, r.collected_at))

    async def forget(self, estate, ticket_id):
        self.rows = {k: r for k, r in self.rows.items() if (r.estate, r.ticket_id) != (estate, ticket_id)}


class FakePending:
    def __init__(self):
        self.rows: dict[tuple[str, str], PendingSeal] = {}

    async def add(self, seal: PendingSeal):
        self.rows.setdefault((seal.estate, seal.ticket_id), _copy(seal))

    async def any(self):
        return bool(self.rows)

    async def set_barriers(self, delivered):
        for seal in self.rows.values():
            if seal.barrier is None:
                seal.barrier = delivered

    async def due(self, ack_floor, now, limit=100):
        found = [s for s in self.rows.values() if s.barrier is not None and s.barrier <= ack_floor
                 and s.next_try_at <= now]
        return [(s.estate, s.ticket_id) for s in sorted(found, key=lambda s: s.noted_at)][:limit]

    async def claim(self, estate, ticket_id):
        found = self.rows.get((estate, ticket_id))
        return _copy(found) if found else None

    async def save(self, seal):
        self.rows[(seal.estate, seal.ticket_id)] = _copy(seal)

    async def remove(self, estate, ticket_id):
        self.rows.pop((estate, ticket_id), None)

    async def of_estate(self, estate):
        return [_copy(s) for s in self.rows.values() if s.estate == estate]

    async def counts(self):
        counts: dict[str, int] = {}
        for estate, _ in self.rows:
            counts[estate] = counts.get(estate, 0) + 1
        return counts


class FakeChain:
    def __init__(self):
        self.heads: dict[str, ChainHead] = {}
        self.years: dict[tuple[str, int], int] = {}
        self.rows: dict[str, Record] = {}
        self.addenda_rows: dict[tuple[str, int], Addendum] = {}
        self.dead_letters: list[SimpleNamespace] = []
        self.loaded: dict[tuple[str, str], str | None] = {}  # as the SQL one: what load_numbers read

    async def lock_head(self, estate, now):
        self.heads.setdefault(estate, ChainHead.genesis(estate, now))
        return _copy(self.heads[estate])

    async def head(self, estate):
        return _copy(self.heads.get(estate))

    async def save_head(self, head):
        self.heads[head.estate] = _copy(head)

    async def next_in_year(self, estate, year):
        self.years[(estate, year)] = self.years.get((estate, year), 0) + 1
        return self.years[(estate, year)]

    async def load_numbers(self, tickets):
        for key in set(tickets) - self.loaded.keys():
            self.loaded[key] = self._number(*key)

    async def number_of_ticket(self, estate, ticket_id):
        if (estate, ticket_id) in self.loaded:
            return self.loaded[(estate, ticket_id)]
        return self._number(estate, ticket_id)

    def _number(self, estate, ticket_id):
        return next((r.record_number for r in self.rows.values() if (r.estate, r.ticket_id) == (estate, ticket_id)),
                    None)

    async def record(self, estate, record_number, *, lock=False):
        found = self.rows.get(record_number)
        return _copy(found) if found and found.estate == estate else None

    async def lock_record(self, record_number):
        return _copy(self.rows[record_number])

    async def catalogue(self, estate, *, month=None, retention_class=None, before=None, limit):
        return [_entry(r) for r in sorted(self.rows.values(), key=lambda r: r.sequence, reverse=True)
                if r.estate == estate and (before is None or r.sequence < before)
                and (not month or r.closed_month == month)
                and (not retention_class or r.retention_class == retention_class)][:limit]

    async def entry_of_ticket(self, estate, ticket_id):
        return next((_entry(r) for r in self.rows.values() if (r.estate, r.ticket_id) == (estate, ticket_id)), None)

    async def add(self, record):
        assert record.record_number not in self.rows
        self.rows[record.record_number] = _copy(record)

    async def save(self, record):
        self.rows[record.record_number] = _copy(record)

    async def last_addendum(self, record_number):
        found = [a for (n, _), a in self.addenda_rows.items() if n == record_number]
        return _copy(max(found, key=lambda a: a.number)) if found else None

    async def add_addendum(self, addendum):
        key = (addendum.record_number, addendum.number)
        assert key not in self.addenda_rows and all(a.event_id != addendum.event_id for a in self.addenda_rows.values())
        self.addenda_rows[key] = _copy(addendum)

    async def addenda(self, record_number):
        return [_copy(a) for (n, _), a in sorted(self.addenda_rows.items()) if n == record_number]

    async def addenda_of_estate(self, estate):
        return [_copy(a) for _, a in sorted(self.addenda_rows.items()) if a.estate == estate]

    async def dead_letter_bodies(self, consumer, estate):
        return [d for d in self.dead_letters if (d.consumer, d.estate) == (consumer, estate)]


class FakeLoans:
    def __init__(self):
        self.rows: dict[str, Loan] = {}

    async def add(self, loan):
        self.rows[loan.loan_id] = _copy(loan)

    async def get(self, estate, loan_id, *, lock=False):
        found = self.rows.get(loan_id)
        return _copy(found) if found and found.estate == estate else None

    async def save(self, loan):
        self.rows[loan.loan_id] = _copy(loan)

    async def for_reader(self, estate, record_number, staff_id):
        found = [loan for loan in self.rows.values() if (loan.estate, loan.record_number) == (estate, record_number)
                 and ((loan.borrower == staff_id and not loan.borrower_external)
                      or (loan.borrower_external and loan.registered_by == staff_id))]
        return [_copy(loan) for loan in sorted(found, key=lambda loan: loan.registered_at, reverse=True)]

    async def open_of_record(self, record_number):
        return [_copy(loan) for loan in self.rows.values()
                if loan.record_number == record_number and loan.returned_at is None]

    async def register(self, estate, record_number=None, borrower=None):
        found = [loan for loan in self.rows.values() if loan.estate == estate
                 and (not record_number or loan.record_number == record_number)
                 and (not borrower or loan.borrower == borrower)]
        return [_copy(loan) for loan in sorted(found, key=lambda loan: loan.registered_at)]

    async def overdue_counts(self, now, mode):
        counts: dict[str, int] = {}
        for loan in self.rows.values():
            if loan.returned_at is None and loan.mode == mode and loan.due_back and loan.due_back < now:
                counts[loan.estate] = counts.get(loan.estate, 0) + 1
        return counts


class FakeMarks:
    def __init__(self):
        self.important_rows: dict[str, SimpleNamespace] = {}
        self.destroyed: dict[str, SimpleNamespace] = {}

    async def important(self, record_number):
        return self.important_rows.get(record_number)

    async def add_important(self, **values):
        assert values["record_number"] not in self.important_rows
        self.important_rows[values["record_number"]] = SimpleNamespace(**values)

    async def add_destruction(self, entry: dict):
        assert entry["record_number"] not in self.destroyed
        self.destroyed[entry["record_number"]] = SimpleNamespace(**entry)

    async def destructions(self, estate):
        return sorted((d for d in self.destroyed.values() if d.estate == estate), key=lambda d: d.destroyed_at)


class FakeDestructionRequests:
    def __init__(self):
        self.rows: dict[str, DestructionRequest] = {}

    async def add(self, request: DestructionRequest):
        assert request.request_id not in self.rows
        self.rows[request.request_id] = _copy(request)

    async def get(self, estate, request_id, *, lock=False):
        found = self.rows.get(request_id)
        return _copy(found) if found and found.estate == estate else None

    async def save(self, request: DestructionRequest):
        assert request.request_id in self.rows
        self.rows[request.request_id] = _copy(request)

    async def list_for_estate(self, estate, status=None):
        found = [r for r in self.rows.values() if r.estate == estate and (status is None or r.status == status)]
        found.sort(key=lambda r: r.request_id)
        found.sort(key=lambda r: r.requested_at, reverse=True)
        return [_copy(r) for r in found]

    async def lock_estate(self, estate):
        self.locked = estate  # one process, no concurrency: the lock is PostgreSQL's

    async def open_record_numbers(self, estate):
        return {n for r in self.rows.values() if r.estate == estate and r.status == "requested" for n in r.record_numbers}


class FakeAccess:
    def __init__(self):
        self.rows: list[SimpleNamespace] = []

    async def add(self, **values):
        self.rows.append(SimpleNamespace(id=len(self.rows) + 1, **{"service": None, "request": None,
                                                                   "loan_id": None, **values}))

    async def entries(self, estate, record_number, refused_only):
        return [r for r in self.rows if r.estate == estate and (not record_number or r.record_number == record_number)
                and (not refused_only or not r.allowed)]


class FakeArchiveUnitOfWork:
    def __init__(self, sink: RecordedEvents):
        self.sink = sink
        self.collected = FakeCollected()
        self.pending = FakePending()
        self.chain = FakeChain()
        self.loans = FakeLoans()
        self.marks = FakeMarks()
        self.destruction_requests = FakeDestructionRequests()
        self.access = FakeAccess()

    async def emit(self, payload, *, estate, actor, time: dt.datetime | None = None):
        return await self.sink.emit(payload, estate=estate, actor=actor, time=time)

    async def flush(self):
        await self.collected.flush()
