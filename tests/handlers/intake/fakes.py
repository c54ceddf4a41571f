"""In-memory repositories answering like intake's SQL ones (services/intake/store.py,
duty_store.py), and a unit of work carrying them with `RecordedEvents` for `emit`.

Rows are attribute-access dicts (`Row`), as SQLAlchemy rows are read by the handlers.
`tests/integration/test_intake_fakes.py` checks the key queries answer alike."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.intake import rules
from services.intake.domain import Ticket
from shared.uow import RecordedEvents


class Row(dict):
    __getattr__ = dict.get


class DuplicateKey(Exception):
    """What the database's unique constraint would refuse."""


class FakeTickets:
    def __init__(self):
        self.rows: dict[str, dict[str, Any]] = {}

    def _ticket(self, columns):
        return Ticket.from_columns(dict(columns)) if columns else None

    async def get(self, estate, ticket_id, *, lock=False):
        columns = self.rows.get(ticket_id)
        return self._ticket(columns) if columns and columns["estate"] == estate else None

    async def get_for_update(self, estate, ticket_id):
        return await self.get(estate, ticket_id, lock=True)

    async def by_id_for_update(self, ticket_id):
        return self._ticket(self.rows.get(ticket_id))

    async def by_client_request_ids(self, estate, ids):
        return {c["client_request_id"]: self._ticket(c) for c in self.rows.values()
                if c["estate"] == estate and c.get("client_request_id") in set(ids)}

    async def add_all(self, new):
        for ticket in new:
            columns = ticket.columns()
            key = columns.get("client_request_id")
            if ticket.id in self.rows or any(
                    key and c["estate"] == ticket.estate and c.get("client_request_id") == key
                    for c in self.rows.values()):
                raise DuplicateKey(ticket.id)
            self.rows[ticket.id] = columns

    async def save(self, ticket):
        self.rows[ticket.id].update(ticket.changes())
        ticket.mark_saved()

    async def list_for_estate(self, estate, *, first_contact=None, status=None, kind=None, form_number=None,
                              signature_pending=False, notice_overdue_at=None, limit=200):
        found = [c for c in self.rows.values() if c["estate"] == estate
                 and (not first_contact or c["first_contact"] == first_contact)
                 and (not status or c["status"] == status) and (not kind or c["kind"] == kind)
                 and (not form_number or c["form_number"] == form_number)
                 and (not signature_pending or (c["owner_signature"] == "later" and c["signed_at"] is None))
                 and (notice_overdue_at is None or (
                     (c["valid"] is False or c["validity_state"] == "awaiting_confirmation")
                     and c["owner_notified_at"] is None and c["notify_owner_by"] is not None
                     and c["notify_owner_by"] < notice_overdue_at))]
        found.sort(key=lambda c: c["received_at"], reverse=True)
        return [self._ticket(c) for c in found[:limit]]

    async def registered_by(self, estate, staff, since, until):
        found = [c for c in self.rows.values() if c["estate"] == estate and c["first_contact"] in staff
                 and since <= c["received_at"] < until]
        return [self._ticket(c) for c in sorted(found, key=lambda c: c["received_at"])]

    async def signatures_due(self, now, limit=500):
        found = [c for c in self.rows.values() if c["next_reminder_at"] is not None and c["next_reminder_at"] <= now
                 and c["signed_at"] is None]
        return [self._ticket(c) for c in sorted(found, key=lambda c: c["next_reminder_at"])[:limit]]

    async def notices_owed(self):
        return [self._ticket(c) for c in self.rows.values() if c["notify_owner_by"] is not None
                and c["owner_notified_at"] is None and c["judged_at"] is not None]


class FakeFormNumbers:
    def __init__(self):
        self.last: dict[tuple[str, int], int] = {}
        self.takes = 0  # statements the SQL counter would have run

    async def take(self, estate, year, count=1):
        self.takes += 1
        first = self.last.get((estate, year), 0) + 1
        self.last[(estate, year)] = first + count - 1
        return first


class FakeHandovers:
    def __init__(self, tickets: FakeTickets):
        self.tickets = tickets
        self.items: list[Row] = []

    async def add(self, item):
        row = Row(item, id=len(self.items) + 1, taken_over_by=None, taken_over_at=None)
        self.items.append(row)
        return row.id

    async def for_ticket(self, ticket_id):
        return next((Row(i) for i in self.items if i.ticket_id == ticket_id), None)

    async def get_for_update(self, estate, item_id):
        return next((Row(i) for i in self.items if i.id == item_id and i.estate == estate), None)

    async def take_over(self, item_id, staff_id, now):
        item = next(i for i in self.items if i.id == item_id)
        item.update(taken_over_by=staff_id, taken_over_at=now)

    async def list_for_estate(self, estate, include_taken):
        found = [i for i in self.items if i.estate == estate and (include_taken or i.taken_over_at is None)]
        return [Row(i, **{k: self.tickets.rows[i.ticket_id][k] for k in ("form_number", "kind", "description")})
                for i in sorted(found, key=lambda i: i.registered_at)]

    async def count_unclaimed(self, estate):
        return sum(1 for i in self.items if i.estate == estate and i.taken_over_at is None)


class FakeProgress:
    def __init__(self):
        self.updates: list[Row] = []

    async def add(self, ticket_id, estate, note, method, staff_id, at):
        self.updates.append(Row(id=len(self.updates) + 1, ticket_id=ticket_id, estate=estate, note=note,
                                method=method, updated_by=staff_id, updated_at=at))

    async def for_ticket(self, ticket_id):
        return sorted((u for u in self.updates if u.ticket_id == ticket_id), key=lambda u: (u.updated_at, u.id))


class FakeRoster:
    def __init__(self):
        self.shifts: list[Row] = []
        self.log_entries: list[Row] = []
        self.handovers: list[Row] = []
        self.handover_items: list[Row] = []

    def add_shift(self, estate, shift: rules.RosterShift) -> int:
        row = Row(id=len(self.shifts) + 1, estate=estate, post=shift.post, day=shift.day, shift=shift.shift,
                  staff=list(shift.staff), starts_at=shift.starts_at, ends_at=shift.ends_at)
        self.shifts.append(row)
        return row.id

    @staticmethod
    def _roster(rows):
        return [rules.RosterShift(r.day, r.post, r.shift, tuple(r.staff), r.starts_at, r.ends_at) for r in rows]

    async def around(self, estate, now):
        return self._roster([s for s in self.shifts if s.estate == estate and s.ends_at > now - dt.timedelta(days=1)
                             and s.starts_at < now + dt.timedelta(days=14)])

    async def month(self, estate, month):
        return sorted((s for s in self.shifts if s.estate == estate and s.day.isoformat()[:7] == month),
                      key=lambda s: (s.starts_at, s.post))

    async def replace_month(self, estate, month, shifts, set_by, now):
        handed = {h.shift_id for h in self.handovers}
        self.shifts = [s for s in self.shifts if not (s.estate == estate and s.day.isoformat()[:7] == month
                                                      and s.id not in handed)]
        for shift in shifts:
            if not any((s.estate, s.post, s.day, s.shift) == (estate, shift.post, shift.day, shift.shift)
                       for s in self.shifts):
                self.add_shift(estate, shift)

    async def shift(self, estate, shift_id):
        return next((s for s in self.shifts if s.id == shift_id and s.estate == estate), None)

    async def post_from(self, estate, post, starts_from):
        return self._roster([s for s in self.shifts if s.estate == estate and s.post == post
                             and s.starts_at >= starts_from])

    async def starting_at(self, estate, post, starts_at):
        return next((s for s in self.shifts if (s.estate, s.post, s.starts_at) == (estate, post, starts_at)), None)

    async def log(self, shift_id, at, by, entry):
        self.log_entries.append(Row(id=len(self.log_entries) + 1, shift_id=shift_id, at=at, by=by, entry=entry))
        return len(self.log_entries)

    async def handed_over(self, shift_id):
        return any(h.shift_id == shift_id for h in self.handovers)

    async def hand_over(self, shift_id, estate, by, at, claim_due, items):
        handover = Row(id=len(self.handovers) + 1, shift_id=shift_id, estate=estate, handed_over_by=by,
                       handed_over_at=at, claim_due=claim_due)
        self.handovers.append(handover)
        for item in items:
            self.handover_items.append(Row(item, id=len(self.handover_items) + 1, handover_id=handover.id,
                                           estate=estate, claim_due=claim_due, claimed_by=None, claimed_at=None,
                                           escalated_to=None, escalated_at=None))
        return [i for i in self.handover_items if i.handover_id == handover.id]

    async def handover(self, handover_id):
        return next(h for h in self.handovers if h.id == handover_id)

    async def items(self, estate, status, now):
        found = [i for i in self.handover_items if i.estate == estate and (
            status == "all" or (i.claimed_at is None and (status == "open" or i.claim_due < now)))]
        return sorted(found, key=lambda i: (i.claim_due, i.id))[:500]

    async def item_for_update(self, estate, item_id):
        return next((i for i in self.handover_items if i.id == item_id and i.estate == estate), None)

    async def claim(self, item_id, staff_id, now):
        item = next(i for i in self.handover_items if i.id == item_id)
        item.update(claimed_by=staff_id, claimed_at=now)
        return item

    async def unclaimed_due(self, now, limit=500):
        found = [i for i in self.handover_items if i.claimed_at is None and i.escalated_at is None
                 and i.claim_due < now]
        return sorted(found, key=lambda i: i.claim_due)[:limit]

    async def escalate(self, item_id, to, now):
        next(i for i in self.handover_items if i.id == item_id).update(escalated_to=to, escalated_at=now)


class FakeSelfService:
    """The owners' repository, as far as the owners' projection uses it."""

    def __init__(self, tickets: FakeTickets):
        self.tickets = tickets
        self.submissions: dict[str, Row] = {}
        self.stages: list[Row] = []
        self.ticket_reads = 0  # queries of tickets the SQL repository would make
        self._loaded: dict[str, Row | None] = {}

    def _ticket(self, ticket_id):
        columns = self.tickets.rows.get(ticket_id)
        return Row({k: columns.get(k) for k in ("id", "form_number", "client_request_id", "first_contact",
                                                 "first_contact_name")}) if columns else None

    async def ticket_of(self, ticket_id):
        if ticket_id in self._loaded:
            return self._loaded[ticket_id]
        self.ticket_reads += 1
        return self._ticket(ticket_id)

    async def load_tickets(self, ticket_ids):
        self.ticket_reads += 1
        self._loaded.update({ticket_id: self._ticket(ticket_id) for ticket_id in ticket_ids})

    async def submission(self, submission_id, estate=None, unit=None, *, lock=False):
        row = self.submissions.get(submission_id)
        if row is None or (estate and row.estate != estate) or (unit and row.unit != unit):
            return None
        return Row(row)

    async def add_stage(self, submission, stage, round_, event_id, at, promised_at=None, note=None):
        if any(s.event_id == event_id for s in self.stages):
            return False
        self.stages.append(Row(submission_id=submission.id, event_id=event_id, stage=stage, round=round_, at=at,
                               promised_at=promised_at, note=note))
        self.submissions[submission.id].update(stage=stage, round=round_, stage_at=at)
        return True


class FakeIntakeUnitOfWork:
    """Intake's unit of work in memory: the same repositories by name, `emit` recorded."""

    def __init__(self, sink: RecordedEvents):
        self.sink = sink
        self.tickets = FakeTickets()
        self.form_numbers = FakeFormNumbers()
        self.handovers = FakeHandovers(self.tickets)
        self.progress = FakeProgress()
        self.roster = FakeRoster()
        self.owners = FakeSelfService(self.tickets)
        self.messages: list[Row] = []

    async def notify(self, **message):
        self.messages.append(Row(message))

    async def emit(self, payload, *, estate, actor, time=None):
        return await self.sink.emit(payload, estate=estate, actor=actor, time=time)

    async def emit_many(self, drafts):
        self.emit_statements = getattr(self, "emit_statements", 0) + 1
        for payload, estate, actor, time in drafts:
            await self.sink.emit(payload, estate=estate, actor=actor, time=time)
