"""The countersign form (会签单) as an aggregate: the form owns its status and the active
ledger lines of its current round, makes every transition itself (acknowledge, arrive,
sign back, verify, return, transfer, reschedule, complete, judge invalid, reopen, close)
and records what must follow as effects (clocks to close or start, escalations to
resolve, events to raise), which the handlers carry out through the unit of work.

Pure: no I/O, no clock reads (times are arguments), policies and calendars are data.
The line moves are `rules.apply_*` over `shared.lifecycle`'s table; a refused move raises
`shared.errors.RuleViolation` (409 out of order, 422 bad input, 404 unknown).
Sources: RULES §1 (reply clock), §2 (handover ledger, sign-back, transfer, nonconformity,
progress updates, clocks); seeds 000 §四, 002 §4.3–4.4, 004 篇3 §4.2.5.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, fields, replace
from typing import Any, Sequence

from services.dispatch import rules
from services.dispatch.rules import Clock, Step, TicketFacts
from shared.calendar import WorkingCalendar
from shared.errors import RuleViolation
from shared.events import (
    Accepted, Acknowledged, Arrived, Assigned, Completed, Deadline, RepairClass, SignedBack,
)
from services.dispatch.effects import (
    ClockScope, CloseClocks, Effect, EscalationScope, NewClock, Raise, ResolveEscalations, StartClocks, met_by,
)
from shared.lifecycle import LineState, TicketState, require_transition
from shared.policy import Policy

log = logging.getLogger("estatedesk.dispatch")
S = TicketState
SYSTEM = "system"


# --- the ledger line ----------------------------------------------------------------------


@dataclass
class Line:
    """One line of the handover ledger (the `assignments` row, by column name)."""

    ticket_id: str
    round: int
    department: str
    estate: str
    assigned_at: dt.datetime
    assigned_by: str
    arrival_required: bool = False
    transferred_from: str | None = None
    status: LineState = LineState.assigned
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    arrived_at: dt.datetime | None = None
    arrived_by: str | None = None
    signed_at: dt.datetime | None = None
    signed_back_at: dt.datetime | None = None
    opinion: str | None = None
    result: str | None = None
    signed_by: str | None = None
    verified_by: str | None = None
    appointment_at: dt.datetime | None = None
    notes: list[dict] = field(default_factory=list)
    transferred_at: dt.datetime | None = None
    transferred_to: str | None = None
    transferred_by: str | None = None
    id: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> "Line":
        data = {f.name: getattr(row, f.name) for f in fields(cls)}
        data["status"] = LineState(data["status"])
        data["notes"] = list(data["notes"] or [])
        return cls(**data)

    def columns(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["status"] = self.status.value
        return data

    def progress(self) -> rules.DepartmentProgress:
        return rules.DepartmentProgress(
            department=self.department, status=self.status, arrival_required=self.arrival_required,
            acknowledged_by=self.acknowledged_by, acknowledged_at=self.acknowledged_at, arrived_by=self.arrived_by,
            arrived_at=self.arrived_at, opinion=self.opinion, result=self.result, signed_by=self.signed_by,
            verified_by=self.verified_by, signed_at=self.signed_at, verified_at=self.signed_back_at,
        )

    def take(self, entry: rules.DepartmentProgress) -> None:
        """Adopt the rules' new state of this line."""
        self.status = entry.status
        self.acknowledged_by, self.acknowledged_at = entry.acknowledged_by, entry.acknowledged_at
        self.arrived_by, self.arrived_at = entry.arrived_by, entry.arrived_at
        self.opinion, self.result, self.signed_by = entry.opinion, entry.result, entry.signed_by
        self.signed_at, self.verified_by, self.signed_back_at = entry.signed_at, entry.verified_by, entry.verified_at

    def note(self, at: dt.datetime, by: str, text: str, **extra) -> None:
        self.notes = self.notes + [{"at": at.isoformat(), "by": by, "note": text, **extra}]


# --- clocks of a round (pure, with their fallbacks) ----------------------------------------


def round_clocks(facts: TicketFacts, departments: Sequence[str], start: dt.datetime, policy: Policy,
                 calendar: WorkingCalendar, round: int) -> list[Deadline]:
    """The round's clocks; facts the rules refuse (an appointment or agreed reply time
    that has passed by the time the form arrives) fall back to the policy's defaults
    instead of blocking the form."""
    try:
        return rules.start_round_clocks(facts, departments, start, policy, calendar, round)
    except RuleViolation as error:
        log.warning("clock facts refused (%s); using the policy's defaults", error)
        fallback = replace(facts, reply_agreed_by=None)
        if facts.repair_class is RepairClass.appointment:
            fallback = replace(fallback, repair_class=RepairClass.general, appointment_at=None)
        return rules.start_round_clocks(fallback, departments, start, policy, calendar, round)


def first_rung(facts: TicketFacts, policy: Policy) -> str:
    """Where a breach starts climbing; a policy whose ladder the rules refuse must not
    stop the scan, so it starts at the ladder's foot (or the department head)."""
    try:
        return rules.first_rung(facts, policy)
    except RuleViolation as error:
        log.warning("escalation policy refused (%s); starting at the first rung", error)
        return policy.escalation.ladder[0] if policy.escalation.ladder else "department_head"


def progress_week(ticket_id: str, round: int, kind: str, opened_at: dt.datetime, at: dt.datetime,
                  policy: Policy) -> tuple[NewClock, Deadline] | None:
    """The progress-update clock of the week holding `at` (complaints only)."""
    week = rules.progress_clock(kind, opened_at, at, policy)
    if week is None:
        return None
    start, deadline = week
    return NewClock(deadline.clock, deadline.due_at, start, round), deadline


# --- the form -------------------------------------------------------------------------------


@dataclass
class Form:
    """The countersign form and the active lines of its current round."""

    ticket_id: str
    estate: str
    form_number: str
    kind: str
    category: str
    repair_class: str | None
    reply_method: str
    first_contact: str
    facts: dict
    round: int
    status: TicketState
    accepted_at: dt.datetime
    updated_at: dt.datetime
    validity: str | None = None
    completed_at: dt.datetime | None = None
    lines: list[Line] = field(default_factory=list)
    # The nonconformity record's state (None: no record): completion waits for approval.
    nonconformity_state: str | None = None
    effects: list[Effect] = field(default_factory=list, repr=False)
    is_new: bool = field(default=False, repr=False)

    COLUMNS = ("ticket_id", "estate", "form_number", "kind", "category", "repair_class", "reply_method",
               "first_contact", "facts", "round", "status", "validity", "accepted_at", "completed_at", "updated_at")

    @classmethod
    def from_row(cls, row: Any, lines: Sequence[Line] = (), nonconformity_state: str | None = None) -> "Form":
        data = {name: getattr(row, name) for name in cls.COLUMNS}
        data["status"] = TicketState(data["status"])
        return cls(**data, lines=list(lines), nonconformity_state=nonconformity_state)

    def columns(self) -> dict:
        data = {name: getattr(self, name) for name in self.COLUMNS}
        data["status"] = self.status.value
        return data

    @property
    def ticket_facts(self) -> TicketFacts:
        return TicketFacts.from_accepted(Accepted.model_validate(self.facts))

    # -- creation ----------------------------------------------------------------------
    @classmethod
    def route(cls, accepted: Accepted, estate: str, departments: Sequence[str], now: dt.datetime,
              policy: Policy, calendar: WorkingCalendar) -> "Form":
        """A form accepted by customer service, routed to `departments`: round 1 opens
        its lines and starts its clocks from the moment the request was received."""
        form = cls(ticket_id=accepted.ticket_id, estate=estate, form_number=accepted.form_number,
                   kind=accepted.kind, category=accepted.category, repair_class=accepted.repair_class,
                   reply_method=accepted.reply_method, first_contact=accepted.first_contact,
                   facts=accepted.model_dump(mode="json"), round=1, status=S.in_handling,
                   accepted_at=accepted.received_at, updated_at=now, is_new=True)
        form._open_round(departments, 1, accepted.received_at, now, SYSTEM, policy, calendar)
        return form

    def _open_lines(self, departments: Sequence[str], round: int, deadlines: Sequence[Deadline], at: dt.datetime,
                    by: str, transferred_from: str | None = None) -> None:
        """New ledger lines as `rules.assign_round` opens them (422 for no department,
        one named twice, or a round below 1); repairs with an arrival clock need someone
        on site before sign-back."""
        arrival = {d.department for d in deadlines if d.clock == Clock.arrival}
        for entry in rules.assign_round(departments, at, round, arrival).departments:
            self.lines.append(Line(ticket_id=self.ticket_id, round=round, department=entry.department,
                                   estate=self.estate, assigned_at=at, assigned_by=by,
                                   arrival_required=entry.arrival_required, transferred_from=transferred_from))

    def _start(self, deadlines: Sequence[Deadline], round: int, started_at: dt.datetime, policy: Policy,
               facts: TicketFacts) -> None:
        self.effects.append(StartClocks(tuple(
            NewClock(d.clock, d.due_at, started_at, round, d.department, d.provisional,
                     None if d.department else rules.working_days_of(d.clock, facts, policy, round))
            for d in deadlines)))

    def _open_round(self, departments: Sequence[str], round: int, start: dt.datetime, now: dt.datetime, by: str,
                    policy: Policy, calendar: WorkingCalendar) -> None:
        facts = self.ticket_facts
        deadlines = round_clocks(facts, departments, start, policy, calendar, round)
        self._open_lines(departments, round, deadlines, now, by)
        self._start(deadlines, round, start, policy, facts)
        week = progress_week(self.ticket_id, round, self.kind, self.accepted_at, start, policy)
        if week is not None:
            self.effects.append(StartClocks((week[0],)))
        announced = deadlines + ([week[1]] if week else [])
        self.effects.append(Raise(Assigned(ticket_id=self.ticket_id, round=round, departments=list(departments),
                                           assigned_by=by, deadlines=announced), by, now))

    # -- the round's lines -----------------------------------------------------------------
    def expect_in_handling(self) -> None:
        if self.status == S.invalid:
            raise RuleViolation("handling ended: the complaint was judged invalid", status=409)
        if self.status == S.awaiting_approval:
            raise RuleViolation(f"round {self.round} is signed back and waits for the nonconformity record's "
                                "approval", status=409)
        if self.status in (S.completed, S.closed):
            raise RuleViolation(f"round {self.round} of this form is already {self.status}", status=409)

    @property
    def active_lines(self) -> list[Line]:
        return [l for l in self.lines if l.round == self.round and l.transferred_at is None]

    def line(self, department: str) -> Line:
        for line in self.active_lines:
            if line.department == department:
                return line
        raise RuleViolation(f"department {department} holds no open line of this form's current round", status=409)

    def _round_state(self, acting: str | None = None) -> rules.FormRound:
        """The round as the rules see it; `assigned_at` is the acting department's line's."""
        lines = self.active_lines
        assigned = [l.assigned_at for l in lines if acting is None or l.department == acting] or \
            [l.assigned_at for l in lines]
        return rules.FormRound(round=self.round, assigned_at=min(assigned),
                               departments=tuple(l.progress() for l in lines))

    def _step(self, department: str, apply) -> tuple[Line, rules.FormRound]:
        """Load the line, let the rules make the move, adopt it: the one shape of every
        line step."""
        self.expect_in_handling()
        line = self.line(department)
        state = apply(self._round_state(department))
        line.take(state.progress(department))
        return line, state

    def _met(self, line: Line, step: Step, at: dt.datetime) -> None:
        self.effects.append(CloseClocks(ClockScope(assignment_id=line.id, clocks=met_by(step)), "met", at))

    def acknowledge(self, department: str, by: str, at: dt.datetime) -> None:
        """The receiving department signs for the form in the handover ledger (签字确认)."""
        line, _ = self._step(department, lambda s: rules.apply_acknowledge(s, department, by, at))
        self._met(line, Step.acknowledged, at)
        self.effects.append(Raise(Acknowledged(ticket_id=self.ticket_id, round=self.round, department=department,
                                               acknowledged_by=by), by, at))

    def arrive(self, department: str, by: str, at: dt.datetime) -> None:
        """The technician or officer is on site."""
        line, _ = self._step(department, lambda s: rules.apply_arrive(s, department, by, at))
        self._met(line, Step.arrived, at)
        self.effects.append(Raise(Arrived(ticket_id=self.ticket_id, round=self.round, department=department,
                                          arrived_by=by, arrived_at=at), by, at))

    def sign_back(self, department: str, opinion: str, result: str, by: str, head: bool, at: dt.datetime) -> None:
        """The department's opinion and result (签回): awaits its head's verification, or
        is verified at once when the head signs back (RULES §2 Sign-back)."""
        line, state = self._step(department, lambda s: rules.apply_sign_back(
            s, department, opinion, result, by, by if head else None, at))
        if line.status is LineState.awaiting_verification:
            self._met(line, Step.signed, at)
        else:
            self._signed_back(line, state, at, by)

    def verify(self, department: str, by: str, at: dt.datetime) -> None:
        """The head verifies the sign-back (审核签字)."""
        line, state = self._step(department, lambda s: rules.apply_verify(s, department, by, at))
        self._signed_back(line, state, at, by)

    def return_sign_back(self, department: str, reason: str, by: str, at: dt.datetime) -> None:
        """The head returns the sign-back with a reason (退回); the reason is kept in the notes."""
        line, _ = self._step(department, lambda s: rules.apply_return(s, department, reason, at))
        line.note(at, by, reason.strip(), returned=True)

    def _signed_back(self, line: Line, state: rules.FormRound, at: dt.datetime, actor: str) -> None:
        self._met(line, Step.signed_back, at)
        self.effects.append(Raise(SignedBack(
            ticket_id=self.ticket_id, round=self.round, department=line.department, opinion=line.opinion,
            result=line.result, signed_by=line.signed_by, verified_by=line.verified_by), actor, at))
        if rules.round_complete(state):
            self.complete(at, actor, hold=rules.completion_waits_for_approval(self.nonconformity_state))

    def complete(self, at: dt.datetime, actor: str, hold: bool = False) -> None:
        """Every department signed back: the form returns to customer service; with a
        nonconformity record awaiting approval it waits (`awaiting_nc`) instead."""
        to = S.awaiting_approval if hold else S.completed
        require_transition(self.status, to, "the form")
        self.status, self.completed_at, self.updated_at = to, None if hold else at, at
        # Every clock of the round but tracking (which runs to the callback) is settled.
        round_scope = dict(ticket_id=self.ticket_id, round=self.round)
        self.effects += [
            CloseClocks(ClockScope(**round_scope, clocks=met_by(Step.completed)), "met", at),
            CloseClocks(ClockScope(**round_scope, except_clock=Clock.tracking.value), "superseded", at),
            # The nonconformity's escalation is resolved only by the approval.
            ResolveEscalations(EscalationScope(self.ticket_id, self.round, nonconformity=False,
                                               except_clock=Clock.tracking.value), at),
        ]
        if hold:
            return
        facts = self.ticket_facts
        self.effects.append(Raise(Completed(
            ticket_id=self.ticket_id, round=self.round, kind=facts.kind, repair_class=facts.repair_class,
            category=facts.category, departments=[l.department for l in self.active_lines],
            reply_method=facts.reply_method, first_contact=self.first_contact, completed_at=at), actor, at))

    def approved(self, at: dt.datetime, actor: str) -> None:
        """The nonconformity record was approved: a form held for it completes now."""
        self.effects.append(ResolveEscalations(EscalationScope(self.ticket_id, nonconformity=True), at))
        if self.status == S.awaiting_approval:
            self.complete(at, actor)

    def reschedule(self, department: str, appointment_at: dt.datetime, note: str, by: str, at: dt.datetime,
                   open_clocks: Sequence[Any], policy: Policy) -> None:
        """Owner not at home: a new appointment; the line's arrival and repair-slip clocks
        (`open_clocks`, rows with id/clock/due_at/provisional) end `rescheduled` and fresh
        ones follow the new appointment (RULES §2 Appointments)."""
        self.expect_in_handling()
        line = self.line(department)
        if line.arrived_at is not None:
            raise RuleViolation(f"department {department} already arrived on site; nothing to reschedule", status=409)
        moved = rules.reschedule_appointment(
            [Deadline(clock=r.clock, due_at=r.due_at, department=department, provisional=r.provisional)
             for r in open_clocks], appointment_at, policy, department=department)
        self.effects.append(CloseClocks(ClockScope(ids=tuple(r.id for r in open_clocks)), rules.RESCHEDULED, at))
        self.effects.append(StartClocks(tuple(NewClock(r.clock, d.due_at, at, r.round, department)
                                              for r, d in zip(open_clocks, moved))))
        line.note(at, by, note, appointment_at=appointment_at.isoformat(),
                  previous_appointment_at=line.appointment_at.isoformat() if line.appointment_at else None)
        line.appointment_at = appointment_at

    def source_line(self, from_department: str | None, caller_departments: Sequence[str]) -> str:
        """Which department hands the form on: the named one, the caller's own active
        line, or the only line (422 when it cannot be told)."""
        if from_department is not None:
            return from_department
        lines = self.active_lines
        mine = [l.department for l in lines if l.department in caller_departments]
        if len(mine) == 1:
            return mine[0]
        if len(lines) == 1:
            return lines[0].department
        raise RuleViolation("say which department hands the form on (from_department)", status=422)

    def transfer(self, source: str, to: str, note: str | None, by: str, at: dt.datetime, policy: Policy,
                 calendar: WorkingCalendar) -> None:
        """Hand the form on: the giving line is closed (its clocks superseded) and a new
        line opens with fresh department clocks, announced as `assigned` with
        `transferred_from` (RULES §2 Handover ledger)."""
        line = self.line(source)
        if line.signed_back_at is not None:
            raise RuleViolation(f"department {source} already signed back; it cannot hand the form on", status=409)
        if source == to:
            raise RuleViolation(f"department {source} cannot hand the form on to itself", status=409)
        if any(l.department == to for l in self.active_lines):
            raise RuleViolation(f"department {to} already holds this form in round {self.round}", status=409)
        require_transition(line.status, LineState.transferred, f"department {source}'s line")
        if note:
            line.note(at, by, note)
        line.status, line.transferred_at, line.transferred_to, line.transferred_by = \
            LineState.transferred, at, to, by
        self.effects.append(CloseClocks(ClockScope(assignment_id=line.id), "superseded", at))
        facts = self.ticket_facts
        deadlines = [d for d in round_clocks(facts, [to], at, policy, calendar, self.round) if d.department]
        self._open_lines([to], self.round, deadlines, at, by, transferred_from=source)
        self._start(deadlines, self.round, at, policy, facts)
        self.effects.append(Raise(Assigned(ticket_id=self.ticket_id, round=self.round, departments=[to],
                                           assigned_by=by, deadlines=deadlines, transferred_from=source), by, at))

    # -- the ticket's life beyond the departments -------------------------------------------
    def judge(self, valid: bool, at: dt.datetime) -> None:
        """A complaint judged invalid (confirmed by a manager) ends its handling: its
        clocks are cancelled and its escalations resolved."""
        self.updated_at = at
        if valid:
            self.validity = "valid"
            return
        self.validity, self.status = "invalid", S.invalid
        self.effects += [CloseClocks(ClockScope(ticket_id=self.ticket_id), "cancelled", at),
                         ResolveEscalations(EscalationScope(self.ticket_id), at)]

    def _end_round(self, called_back_at: dt.datetime, now: dt.datetime, rest: str) -> None:
        """The callback ends the tracking; every other clock gives way (`rest`)."""
        self.effects += [
            CloseClocks(ClockScope(ticket_id=self.ticket_id, clocks=met_by(Step.called_back)), "met", called_back_at),
            CloseClocks(ClockScope(ticket_id=self.ticket_id), rest, now),
            ResolveEscalations(EscalationScope(self.ticket_id), now),
        ]

    def reopen(self, round: int, departments: Sequence[str], start: dt.datetime, now: dt.datetime, by: str,
               policy: Policy, calendar: WorkingCalendar) -> bool:
        """The owner was not satisfied: a new round with fresh lines and clocks from
        `start`; False when that round has started already (a redelivery)."""
        if round <= self.round:
            return False
        self._end_round(start, now, "superseded")
        self.round, self.status, self.completed_at, self.updated_at = round, S.in_handling, None, now
        self._open_round(departments, round, start, now, by, policy, calendar)
        return True

    def close(self, closed_at: dt.datetime, now: dt.datetime) -> None:
        """Closed after the callback (owner satisfied): tracking met, nothing else owed."""
        self._end_round(closed_at, now, "cancelled")
        if self.status != S.invalid:
            self.status, self.updated_at = S.closed, now
