"""In-memory repositories with the methods of services/callback/store.py's SQL ones, and a
unit of work carrying them. They hand out copies, so a handler that changes an aggregate
and forgets to save it changes nothing here either (as with the database)."""

from __future__ import annotations

import copy
import datetime as dt
from types import SimpleNamespace

from services.callback.domain import Callback, Round, Ticket, Watch
from shared.uow import RecordedEvents


def _copy(item):
    return copy.deepcopy(item)


class FakeTickets:
    def __init__(self):
        self.rows: dict[str, Ticket] = {}
        self.opinions_since: list[dt.datetime] = []  # the bound of each `opinions` read, in order

    async def lock(self, ticket_id, estate, seen_at, now) -> Ticket:
        self.rows.setdefault(ticket_id, Ticket.first_news(ticket_id, estate, seen_at, now))
        return _copy(self.rows[ticket_id])

    async def hold(self, first_news, now, locks) -> dict[str, Ticket]:
        for ticket_id, estate, seen_at in first_news:
            await self.lock(ticket_id, estate, seen_at, now)
        return {ticket_id: _copy(self.rows[ticket_id]) for ticket_id, _, _ in first_news}

    async def flush(self) -> None:
        pass  # saved at once

    async def get(self, estate, ticket_id, *, lock=False):
        found = self.rows.get(ticket_id)
        return _copy(found) if found and found.estate == estate else None

    async def save(self, ticket: Ticket) -> None:
        assert ticket.ticket_id in self.rows, "save of a ticket never locked"
        self.rows[ticket.ticket_id] = _copy(ticket)

    async def opinions(self, estate, category_key, since):
        self.opinions_since.append(since)
        return [_copy(t) for t in self.rows.values()
                if t.estate == estate and t.category_key == category_key and t.departments and t.raised_at >= since]

    async def long_running_complaints(self, estate, first_contact, started_before, limit=200):
        found = [t for t in self.rows.values() if t.estate == estate and t.kind == "complaint"
                 and t.status.value == "in_handling" and t.raised_at <= started_before
                 and (not first_contact or t.first_contact == first_contact)]
        return [_copy(t) for t in sorted(found, key=lambda t: t.raised_at)[:limit]]


class FakeRounds:
    def __init__(self):
        self.rows: dict[tuple[str, int], Round] = {}

    async def add(self, round_: Round) -> bool:
        if (round_.ticket_id, round_.round) in self.rows:
            return False
        self.rows[(round_.ticket_id, round_.round)] = _copy(round_)
        return True

    async def get(self, ticket_id, round_):
        found = self.rows.get((ticket_id, round_))
        return _copy(found) if found else None

    async def unsettled(self, ticket_id):
        return [_copy(r) for k, r in sorted(self.rows.items()) if k[0] == ticket_id and r.outcome is None]

    async def of_ticket(self, ticket_id):
        return [_copy(r) for k, r in sorted(self.rows.items()) if k[0] == ticket_id]

    async def save(self, round_: Round) -> None:
        self.rows[(round_.ticket_id, round_.round)] = _copy(round_)


class FakeCallbacks:
    def __init__(self):
        self.rows: dict[str, Callback] = {}

    async def add(self, callback: Callback) -> bool:
        if callback.callback_id in self.rows:
            return False
        self.rows[callback.callback_id] = _copy(callback)
        return True

    async def get(self, estate, callback_id, *, lock=False):
        found = self.rows.get(callback_id)
        return _copy(found) if found and found.estate == estate else None

    async def save(self, callback: Callback) -> None:
        self.rows[callback.callback_id] = _copy(callback)

    async def pending_of(self, ticket_id):
        return [_copy(c) for _, c in sorted(self.rows.items()) if c.ticket_id == ticket_id and c.pending]

    async def of_ticket(self, ticket_id, purpose=None):
        found = [c for c in self.rows.values() if c.ticket_id == ticket_id and (purpose is None or c.purpose == purpose)]
        return [_copy(c) for c in sorted(found, key=lambda c: (c.round, c.due_at, c.callback_id))]

    async def claim_overdue(self, now, limit):
        found = [c for c in self.rows.values() if c.pending and c.overdue_at is None and c.due_at < now]
        return [_copy(c) for c in sorted(found, key=lambda c: c.due_at)[:limit]]

    async def next_overdue(self):
        return min((c.due_at for c in self.rows.values() if c.pending and c.overdue_at is None), default=None)

    async def claim_complaint_windows(self, rule):
        return [_copy(c) for c in self.rows.values()
                if c.pending and c.overdue_at is None and c.rule == rule and c.completed_at is not None]

    async def worklist(self, estate, status, assigned_to, now, limit=1000):
        raise NotImplementedError  # a read model: checked against PostgreSQL only

    async def counted(self, estate, start, end):
        return [_copy(c) for c in self.rows.values() if c.estate == estate and c.counts_in_rate
                and c.status.value != "cancelled" and (start is None or start <= (c.completed_at or start) < end)]


class FakeWatches:
    def __init__(self):
        self.rows: dict[tuple[str, int], Watch] = {}
        self.locked: list[str] = []

    async def add(self, watch: Watch) -> None:
        self.rows.setdefault((watch.ticket_id, watch.round), _copy(watch))

    async def next_window_end(self):
        return min((w.window_ends_at for w in self.rows.values() if w.verdict is None), default=None)

    async def get(self, ticket_id, round_):
        found = self.rows.get((ticket_id, round_))
        return _copy(found) if found else None

    async def undecided(self, estate, category_key):
        found = [w for w in self.rows.values() if w.estate == estate and w.category_key == category_key
                 and w.verdict is None]
        return [_copy(w) for w in sorted(found, key=lambda w: (w.completed_at, w.ticket_id, w.round))]

    async def due_keys(self, now, limit=100):
        return sorted({(w.estate, w.category_key) for w in self.rows.values()
                       if w.verdict is None and w.window_ends_at <= now})[:limit]

    async def of_ticket(self, ticket_id):
        return [_copy(w) for k, w in sorted(self.rows.items()) if k[0] == ticket_id]

    async def decided(self, estate, start, end):
        return [_copy(w) for w in self.rows.values() if w.estate == estate and w.verdict is not None]

    async def save(self, watch: Watch) -> None:
        self.rows[(watch.ticket_id, watch.round)] = _copy(watch)

    async def lock_estate(self, estate, wait=True) -> bool:
        self.locked.append(estate)
        return True

    def expect(self, pairs) -> None:
        pass  # nothing to load


class FakeProgress:
    def __init__(self):
        self.rows: dict[str, SimpleNamespace] = {}

    async def add(self, event_id, *, ticket_id, estate, updated_at, method, note, updated_by) -> None:
        self.rows.setdefault(event_id, SimpleNamespace(
            event_id=event_id, ticket_id=ticket_id, estate=estate, updated_at=updated_at, method=method, note=note,
            updated_by=updated_by))

    async def of_tickets(self, ticket_ids):
        found: dict[str, list] = {}
        for row in sorted(self.rows.values(), key=lambda r: r.updated_at):
            if row.ticket_id in ticket_ids:
                found.setdefault(row.ticket_id, []).append(row)
        return found


class FakeVisits:
    def __init__(self):
        self.rows: list[SimpleNamespace] = []

    async def by_client_id(self, estate, staff_id, client_visit_id):
        return next((r for r in self.rows if (r.estate, r.staff_id, r.client_visit_id)
                     == (estate, staff_id, client_visit_id)), None)

    async def add(self, **values):
        if values.get("client_visit_id") and await self.by_client_id(
                values["estate"], values["staff_id"], values["client_visit_id"]):
            return None
        row = SimpleNamespace(**values)
        self.rows.append(row)
        return row

    async def days_by_staff(self, estate, first_day: dt.date, next_month: dt.date):
        by_staff: dict[str, list[dt.date]] = {}
        for r in self.rows:
            if r.estate == estate and first_day <= r.visited_on < next_month:
                by_staff.setdefault(r.staff_id, []).append(r.visited_on)
        return by_staff


class FakeCallbackUnitOfWork:
    """The fakes of one transaction; `emit` goes to `sink`, `count` to `counted`."""

    def __init__(self, sink: RecordedEvents):
        self.sink = sink
        self.tickets = FakeTickets()
        self.rounds = FakeRounds()
        self.callbacks = FakeCallbacks()
        self.watches = FakeWatches()
        self.progress = FakeProgress()
        self.visits = FakeVisits()
        self.counted: list[tuple[str, str, str, tuple[str, ...]]] = []

    async def emit(self, payload, *, estate, actor, time=None):
        return await self.sink.emit(payload, estate=estate, actor=actor, time=time)

    def count(self, metric, estate, kind, departments) -> None:
        self.counted.append((metric, estate, kind, tuple(departments)))

    async def hold(self, estates, first_news, now):
        self.watches.locked.extend(sorted(set(estates)))
        return await self.tickets.hold(first_news, now, [])

    async def flush(self) -> None:
        await self.tickets.flush()
