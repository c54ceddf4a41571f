"""Statistics for the quality office (RULES.md §4), as pure functions over plain data.

The analytics service keeps an incremental read model: a table of counters
``(estate, period, dimension, key, metric) -> value`` plus one small `TicketFacts` row
per ticket. `apply_event(facts, event)` folds one ticket event into the ticket's facts
and returns the counter increments (`RollupDelta`) it causes. Replaying the same events
in the same order always gives the same facts and the same totals, whether they are
applied in one go, in batches, or again after a crash (an event id already seen by the
ticket adds nothing).

Which period a figure belongs to (estate local time, `policy.timezone`):

* opened — the day the owner raised it (`Accepted.received_at`);
* completed — `Completed.completed_at`; closed / reactivated — the event time;
* a clock *met* — the day it was stopped; a clock *breached* — the day it ran out
  (its `due_at`), so a late stop and a late breach notice land on the same day;
* callbacks (required, done, on time, overdue) — the day the callback was scheduled, so
  a month's callback rate compares that month's callbacks with what became of them and
  never exceeds 100 %;
* satisfaction answers — the day of the callback; validity — the day of the judgement;
* everything else — the event time.

Open items carried into the next month:
``carried_out = carried_in + opened + reactivated - closed`` (reactivated = a closed
ticket opened again), exact because every transition is counted once.

Clocks. Dispatch owns the SLA clocks and publishes its verdict on each as one
`clock_settled` event (met, breached, superseded, cancelled, rescheduled; see
`services.dispatch.rules.clock_verdict`). This model counts those verdicts and never
re-derives them: `met` adds `clocks_met` on the day it was settled, `breached` adds
`clocks_breached` on the day the clock ran out (its `due_at`); the other outcomes ended a
clock no longer owed and count neither. A verdict counts once per dispatch clock id. The
`Assigned` deadlines only declare the clocks (for the weekly review's overdue list).
"""

from __future__ import annotations

import calendar as _calendar
import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from shared import events as ev
from shared import periods
from shared.lifecycle import TicketState
from shared.periods import canonical_category
from shared.policy import DEFAULT_POLICY, Policy

# --- vocabulary --------------------------------------------------------------------------


class Dimension(StrEnum):
    estate = "estate"
    department = "department"
    kind = "kind"
    category = "category"  # cause category 原因分类, as recorded at intake
    channel = "channel"
    staff = "staff"  # first-contact owner 首问首接责任人 (and the signer, for forms_signed)
    building = "building"
    kind_channel = "kind_channel"  # "<kind>|<channel>": the report's kind × channel table
    clock = "clock"
    rung = "rung"  # escalation rung
    repair_class = "repair_class"  # household repair review (RULES §4)


class Metric(StrEnum):
    opened = "opened"
    off_hours_opened = "off_hours_opened"
    reactivated = "reactivated"  # a closed ticket opened again
    completed = "completed"  # rounds completed (a re-opened ticket completes twice)
    closed = "closed"
    closed_first_round = "closed_first_round"  # closed without ever being re-opened
    assigned = "assigned"  # once per (ticket, department)
    acknowledged = "acknowledged"
    arrived = "arrived"
    signed_back = "signed_back"
    forms_signed = "forms_signed"  # staff dimension: forms the person signed back
    progress_updates = "progress_updates"
    valid_complaints = "valid_complaints"
    invalid_complaints = "invalid_complaints"
    escalations = "escalations"
    nonconformities = "nonconformities"
    clocks_met = "clocks_met"
    clocks_breached = "clocks_breached"
    callbacks_required = "callbacks_required"
    callbacks_done = "callbacks_done"
    callbacks_on_time = "callbacks_on_time"
    callbacks_overdue = "callbacks_overdue"
    satisfaction_answers = "satisfaction_answers"
    result_satisfied = "result_satisfied"
    attitude_satisfied = "attitude_satisfied"
    handled_in_time = "handled_in_time"
    reopened = "reopened"  # re-opening events (rounds added)
    reopened_tickets = "reopened_tickets"  # tickets re-opened at least once
    repeat_problems = "repeat_problems"  # corrective actions suggested for repeats
    repeat_problem_tickets = "repeat_problem_tickets"  # tickets behind those suggestions


_METRICS = tuple(m.value for m in Metric)  # plain strings: Enum.value lookups are slow in bulk

# A clock's outcome as analytics holds it: running until dispatch's verdict
# (`clock_settled`) arrives, then that verdict's own value (`ev.ClockOutcome`).
RUNNING = "running"
MET, BREACHED = ev.ClockOutcome.met.value, ev.ClockOutcome.breached.value
# The read model's open flag of a ticket: every `TicketState` of shared.lifecycle but
# closed is open (the weekly review and the dashboard count open forms).
CLOSED = TicketState.closed.value
OPEN = "open"
UNASSIGNED = "unassigned"  # weekly review bucket for forms not routed to a department
COMPANY_TOTAL = "*"  # estate key of company-wide sums; never a valid estate code


class RollupDelta(NamedTuple):
    estate: str
    period: str  # "2026-11-22" (day) or "2026-11" (month)
    dimension: str
    key: str
    metric: str
    delta: int


RollupKey = tuple[str, str, str, str, str]  # (estate, period, dimension, key, metric)
PeriodRollups = Mapping[tuple[str, str, str], int]  # (dimension, key, metric) -> value


# --- ticket facts ------------------------------------------------------------------------


def _dt(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _copy_with(obj, **changes):
    """A shallow copy of a dataclass instance with some attributes replaced (what
    `dataclasses.replace` does, without re-running `__init__`: the fold's hot path)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    new.__dict__.update(changes)
    return new


@dataclass
class ClockFacts:
    """One clock instance and how it was counted (to move it exactly once on a flip)."""

    round: int
    clock: str
    department: str | None
    due_at: dt.datetime | None = None
    outcome: str = RUNNING  # running, or dispatch's verdict (ev.ClockOutcome)
    clock_id: int | None = None  # dispatch's id, once its verdict has been seen
    counted_day: str | None = None
    counted_under: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "clock": self.clock, "department": self.department, "due_at": _iso(self.due_at),
                "outcome": self.outcome, "clock_id": self.clock_id, "counted_day": self.counted_day,
                "counted_under": [list(d) for d in self.counted_under]}

    def copy(self) -> "ClockFacts":
        return _copy_with(self, counted_under=list(self.counted_under))  # its pairs are tuples

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClockFacts":
        return cls(
            round=data["round"], clock=data["clock"], department=data.get("department"),
            due_at=_dt(data.get("due_at")), outcome=data.get("outcome", RUNNING), clock_id=data.get("clock_id"),
            counted_day=data.get("counted_day"),
            counted_under=[tuple(d) for d in data.get("counted_under", [])],
        )


@dataclass
class CallbackFacts:
    callback_id: str
    round: int
    counted_day: str  # the day it was scheduled: its cohort
    counted_under: list[tuple[str, str]] = field(default_factory=list)
    done: bool = False
    on_time: bool | None = None
    overdue: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"callback_id": self.callback_id, "round": self.round, "counted_day": self.counted_day,
                "counted_under": [list(d) for d in self.counted_under], "done": self.done,
                "on_time": self.on_time, "overdue": self.overdue}

    def copy(self) -> "CallbackFacts":
        return _copy_with(self, counted_under=list(self.counted_under))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CallbackFacts":
        return cls(
            callback_id=data["callback_id"], round=data["round"],
            counted_day=data["counted_day"],
            counted_under=[tuple(d) for d in data.get("counted_under", [])],
            done=data.get("done", False), on_time=data.get("on_time"),
            overdue=data.get("overdue", False),
        )


@dataclass
class TicketFacts:
    """What the read model remembers of one ticket to count its later events."""

    ticket_id: str
    estate: str
    kind: str | None = None  # None until the `accepted` event has been seen
    channel: str | None = None
    category: str | None = None
    repair_class: str | None = None
    building: str | None = None
    first_contact: str | None = None
    accepted_at: dt.datetime | None = None
    off_hours: bool = False
    departments: list[str] = field(default_factory=list)  # every department ever routed to
    round_departments: dict[int, list[str]] = field(default_factory=dict)
    valid: bool | None = None  # complaints: None until judged
    validity_counted_day: str | None = None
    validity_counted_under: list[tuple[str, str]] = field(default_factory=list)
    round: int = 1
    completed_at: dt.datetime | None = None  # the latest round's completion
    closed_at: dt.datetime | None = None
    state: str = OPEN
    reopen_count: int = 0
    escalation_count: int = 0
    last_rung: str | None = None
    clocks: list[ClockFacts] = field(default_factory=list)
    callbacks: list[CallbackFacts] = field(default_factory=list)
    result_satisfied: bool | None = None  # the latest callback's answers
    attitude_satisfied: bool | None = None
    progress_updates: list[dt.datetime] = field(default_factory=list)
    seen_event_ids: list[str] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    @property
    def current_departments(self) -> list[str]:
        return list(self.round_departments.get(self.round, []))

    @property
    def breached_clocks(self) -> list[str]:
        """Names of the clocks breached in any round (each name once)."""
        return sorted({c.clock for c in self.clocks if c.outcome == BREACHED})

    @property
    def on_time(self) -> dict[str, bool | None]:
        """Per clock name: False if any instance was breached, True if every instance was
        met, None while one is still running without a breach."""
        result: dict[str, bool | None] = {}
        for c in self.clocks:
            if c.outcome not in (RUNNING, MET, BREACHED):
                continue  # superseded, cancelled, rescheduled: no longer owed, not counted
            previous = result.get(c.clock, True)
            if c.outcome == BREACHED or previous is False:
                result[c.clock] = False
            elif c.outcome == RUNNING or previous is None:
                result[c.clock] = None
            else:
                result[c.clock] = True
        return result

    def copy(self) -> "TicketFacts":
        """A copy sharing nothing mutable with this one (what `copy.deepcopy` gives, at a
        tenth of its cost: the nested pairs are tuples and the times immutable)."""
        return _copy_with(
            self, departments=list(self.departments),
            round_departments={k: list(v) for k, v in self.round_departments.items()},
            validity_counted_under=list(self.validity_counted_under),
            clocks=[c.copy() for c in self.clocks], callbacks=[c.copy() for c in self.callbacks],
            progress_updates=list(self.progress_updates), seen_event_ids=list(self.seen_event_ids),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready row for the read model's ticket-facts table."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["accepted_at"] = _iso(self.accepted_at)
        data["completed_at"] = _iso(self.completed_at)
        data["closed_at"] = _iso(self.closed_at)
        data["round_departments"] = {str(k): list(v) for k, v in self.round_departments.items()}
        data["validity_counted_under"] = [list(d) for d in self.validity_counted_under]
        data["clocks"] = [c.to_dict() for c in self.clocks]
        data["callbacks"] = [c.to_dict() for c in self.callbacks]
        data["progress_updates"] = [_iso(t) for t in self.progress_updates]
        data["departments"] = list(self.departments)
        data["seen_event_ids"] = list(self.seen_event_ids)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TicketFacts":
        values = dict(data)
        values["accepted_at"] = _dt(values.get("accepted_at"))
        values["completed_at"] = _dt(values.get("completed_at"))
        values["closed_at"] = _dt(values.get("closed_at"))
        values["round_departments"] = {
            int(k): list(v) for k, v in (values.get("round_departments") or {}).items()
        }
        values["validity_counted_under"] = [tuple(d) for d in values.get("validity_counted_under") or []]
        values["clocks"] = [ClockFacts.from_dict(c) for c in values.get("clocks") or []]
        values["callbacks"] = [CallbackFacts.from_dict(c) for c in values.get("callbacks") or []]
        values["progress_updates"] = [_dt(t) for t in values.get("progress_updates") or []]
        values["departments"] = list(values.get("departments") or [])
        values["seen_event_ids"] = list(values.get("seen_event_ids") or [])
        return cls(**values)


# --- applying one event --------------------------------------------------------------------


def _local_day(when: dt.datetime, tz: ZoneInfo) -> str:
    if when.tzinfo is None:
        # Guessing the zone would silently move figures between days and months.
        raise ValueError(f"naive datetime {when!r}: statistics need timezone-aware times")
    return when.astimezone(tz).date().isoformat()


class _Counter:
    """Collects one event's increments, each under every dimension it belongs to, for
    the day and for the month."""

    def __init__(self, estate: str) -> None:
        self.estate = estate
        self.deltas: list[RollupDelta] = []

    def add(self, day: str, dims: Iterable[tuple[str, str]], metric: Metric, delta: int = 1) -> None:
        if delta == 0:
            return
        # The fold's innermost loop (about 20 increments an event): plain strings, and the
        # tuples built without RollupDelta's Python-level __new__.
        estate, month, name, append = self.estate, day[:7], metric.value, self.deltas.append
        for dimension, key in dims:
            append(_new_delta(RollupDelta, (estate, day, dimension, key, name, delta)))
            append(_new_delta(RollupDelta, (estate, month, dimension, key, name, delta)))


_new_delta = tuple.__new__


def _ticket_dims(facts: TicketFacts) -> list[tuple[str, str]]:
    dims = [(Dimension.estate.value, facts.estate)]
    if facts.kind:
        dims.append((Dimension.kind.value, facts.kind))
    if facts.channel:
        dims.append((Dimension.channel.value, facts.channel))
    if facts.kind and facts.channel:
        dims.append((Dimension.kind_channel.value, f"{facts.kind}|{facts.channel}"))
    if facts.category:
        dims.append((Dimension.category.value, facts.category))
    if facts.repair_class:
        dims.append((Dimension.repair_class.value, facts.repair_class))
    if facts.building:
        dims.append((Dimension.building.value, facts.building))
    if facts.first_contact:
        dims.append((Dimension.staff.value, facts.first_contact))
    return dims


def _department_dims(departments: Iterable[str]) -> list[tuple[str, str]]:
    return [(Dimension.department.value, d) for d in sorted(set(departments))]


def _round_dims(facts: TicketFacts, round_: int) -> list[tuple[str, str]]:
    return _ticket_dims(facts) + _department_dims(facts.round_departments.get(round_, []))


def _clock_dims(facts: TicketFacts, clock: ClockFacts) -> list[tuple[str, str]]:
    departments = [clock.department] if clock.department else facts.round_departments.get(clock.round, [])
    return _ticket_dims(facts) + [(Dimension.clock.value, clock.clock)] + _department_dims(departments)


def _settled_clock(facts: TicketFacts, p: ev.ClockSettled) -> ClockFacts | None:
    """The instance a verdict is about: seen by id before (None: already counted), else
    the running instance `Assigned` declared, else a new one."""
    if any(c.clock_id == p.clock_id for c in facts.clocks):
        return None
    clock = next((c for c in facts.clocks if c.clock_id is None and c.outcome == RUNNING
                  and (c.round, c.clock, c.department) == (p.round, p.clock, p.department)), None)
    if clock is None:
        clock = ClockFacts(round=p.round, clock=p.clock, department=p.department)
        facts.clocks.append(clock)
    clock.clock_id = p.clock_id
    clock.due_at = p.due_at
    return clock


def _callback(facts: TicketFacts, callback_id: str, round_: int, day: str, out: _Counter) -> CallbackFacts:
    for callback in facts.callbacks:
        if callback.callback_id == callback_id:
            return callback
    callback = CallbackFacts(callback_id=callback_id, round=round_, counted_day=day,
                             counted_under=_round_dims(facts, round_))
    facts.callbacks.append(callback)
    out.add(day, callback.counted_under, Metric.callbacks_required)
    return callback


def apply_event(
    facts: TicketFacts | None, event: ev.CloudEvent, policy: Policy = DEFAULT_POLICY,
    payload: ev.Payload | None = None,
) -> tuple[TicketFacts, list[RollupDelta]]:
    """Fold one ticket event into the ticket's facts; return the new facts and the
    counter increments. Never mutates `facts`. An event id the ticket has already seen
    returns the facts unchanged and no increments (at-least-once delivery). `payload`:
    the event's typed payload when the caller has validated it already (else
    `event.payload()`, which raises pydantic's ValidationError, a ValueError)."""
    tz = ZoneInfo(policy.timezone)
    if facts is None:
        # Events seen before `accepted` are counted under what is known so far.
        facts = TicketFacts(ticket_id=event.subject, estate=event.estate)
    elif facts.ticket_id != event.subject or facts.estate != event.estate:
        raise ValueError(
            f"event {event.id} for {event.estate}/{event.subject} applied to facts of "
            f"{facts.estate}/{facts.ticket_id}"
        )
    facts = facts.copy()
    if event.id in facts.seen_event_ids:
        return facts, []
    facts.seen_event_ids.append(event.id)
    out = _Counter(facts.estate)
    if event.event_name not in ev.PAYLOADS:
        return facts, []  # an event type this version does not count
    payload = payload if payload is not None else event.payload()
    day = _local_day(event.time, tz)
    handler = _HANDLERS.get(event.event_name)
    if handler is not None:
        handler(facts, payload, event, day, tz, out)
    return facts, out.deltas


def _on_accepted(facts: TicketFacts, p: ev.Accepted, event: ev.CloudEvent, day: str, tz: ZoneInfo, out: _Counter) -> None:
    if facts.kind is not None:
        return  # the same ticket registered twice: count it once
    facts.kind = p.kind.value
    facts.channel = p.channel.value
    facts.category = canonical_category(p.category)  # older events may carry it as typed
    facts.repair_class = p.repair_class.value if p.repair_class else None
    facts.building = p.building
    facts.first_contact = p.first_contact
    facts.accepted_at = p.received_at
    facts.off_hours = p.off_hours
    opened_day = _local_day(p.received_at, tz)
    out.add(opened_day, _ticket_dims(facts), Metric.opened)
    if p.off_hours:
        out.add(opened_day, _ticket_dims(facts), Metric.off_hours_opened)


def _on_validity_judged(facts: TicketFacts, p: ev.ValidityJudged, event, day, tz, out: _Counter) -> None:
    if facts.valid is p.valid:
        return
    if facts.valid is not None:  # judged again: the latest judgement replaces the first
        previous = Metric.valid_complaints if facts.valid else Metric.invalid_complaints
        assert facts.validity_counted_day is not None
        out.add(facts.validity_counted_day, facts.validity_counted_under, previous, -1)
    facts.valid = p.valid
    facts.validity_counted_day = day
    facts.validity_counted_under = _ticket_dims(facts)
    out.add(day, facts.validity_counted_under, Metric.valid_complaints if p.valid else Metric.invalid_complaints)


def _on_assigned(facts: TicketFacts, p: ev.Assigned, event, day, tz, out: _Counter) -> None:
    new_departments = [d for d in dict.fromkeys(p.departments) if d not in facts.departments]
    facts.departments.extend(new_departments)
    for department in new_departments:
        out.add(day, [(Dimension.estate.value, facts.estate), (Dimension.department.value, department)],
                Metric.assigned)
    in_round = facts.round_departments.setdefault(p.round, [])
    in_round.extend(d for d in dict.fromkeys(p.departments) if d not in in_round)
    facts.round = max(facts.round, p.round)
    for deadline in p.deadlines:
        existing = next((c for c in facts.clocks if (c.round, c.clock, c.department)
                         == (p.round, deadline.clock, deadline.department)), None)
        if existing is None:
            facts.clocks.append(ClockFacts(round=p.round, clock=deadline.clock,
                                           department=deadline.department, due_at=deadline.due_at))
        elif existing.outcome == RUNNING:
            existing.due_at = deadline.due_at  # re-declared: the latest deadline holds


def _department_step(metric: Metric):
    def handler(facts: TicketFacts, p, event, day, tz, out: _Counter) -> None:
        out.add(day, [(Dimension.estate.value, facts.estate), (Dimension.department.value, p.department)], metric)
        if isinstance(p, ev.SignedBack):
            out.add(day, [(Dimension.staff.value, p.signed_by)], Metric.forms_signed)
    return handler


def _on_progress_updated(facts: TicketFacts, p: ev.ProgressUpdated, event, day, tz, out: _Counter) -> None:
    facts.progress_updates.append(event.time)
    out.add(day, _ticket_dims(facts), Metric.progress_updates)


def _on_escalated(facts: TicketFacts, p: ev.Escalated, event, day, tz, out: _Counter) -> None:
    facts.escalation_count += 1
    facts.last_rung = p.rung
    dims = _round_dims(facts, p.round) + [(Dimension.rung.value, p.rung)]
    out.add(day, dims, Metric.escalations)
    if p.nonconformity:
        out.add(day, dims, Metric.nonconformities)


def _on_clock_settled(facts: TicketFacts, p: ev.ClockSettled, event, day, tz, out: _Counter) -> None:
    clock = _settled_clock(facts, p)
    if clock is None:
        return  # this clock's verdict has been counted
    clock.outcome = p.outcome.value
    if p.outcome is ev.ClockOutcome.met:
        clock.counted_day = _local_day(p.settled_at, tz)
    elif p.outcome is ev.ClockOutcome.breached:
        clock.counted_day = _local_day(p.due_at, tz)  # the day it ran out, however late the stop
    else:
        return  # no longer owed: neither met nor breached
    clock.counted_under = _clock_dims(facts, clock)
    out.add(clock.counted_day, clock.counted_under,
            Metric.clocks_met if p.outcome is ev.ClockOutcome.met else Metric.clocks_breached)


def _on_completed(facts: TicketFacts, p: ev.Completed, event, day, tz, out: _Counter) -> None:
    facts.completed_at = p.completed_at
    departments = p.departments or facts.round_departments.get(p.round, [])
    completed_day = _local_day(p.completed_at, tz)
    out.add(completed_day, _ticket_dims(facts) + _department_dims(departments), Metric.completed)


def _on_reopened(facts: TicketFacts, p: ev.Reopened, event, day, tz, out: _Counter) -> None:
    previous_round = facts.round
    out.add(day, _round_dims(facts, previous_round), Metric.reopened)
    facts.reopen_count += 1
    if facts.reopen_count == 1:
        out.add(day, _round_dims(facts, previous_round), Metric.reopened_tickets)
    if facts.state == CLOSED:
        facts.state = OPEN
        facts.closed_at = None
        out.add(day, _ticket_dims(facts), Metric.reactivated)
    facts.round = max(facts.round, p.round)
    departments = p.departments or facts.round_departments.get(previous_round, [])
    facts.round_departments.setdefault(facts.round, list(dict.fromkeys(departments)))


def _on_callback_scheduled(facts: TicketFacts, p: ev.CallbackScheduled, event, day, tz, out: _Counter) -> None:
    _callback(facts, p.callback_id, p.round, day, out)


def _on_callback_done(facts: TicketFacts, p: ev.CallbackDone, event, day, tz, out: _Counter) -> None:
    callback = _callback(facts, p.callback_id, p.round, day, out)
    if callback.done:
        return  # the same callback recorded twice: its answers count once
    callback.done = True
    callback.on_time = p.on_time and not callback.overdue
    out.add(callback.counted_day, callback.counted_under, Metric.callbacks_done)
    if callback.on_time:
        out.add(callback.counted_day, callback.counted_under, Metric.callbacks_on_time)
    facts.result_satisfied = p.result_satisfied
    facts.attitude_satisfied = p.attitude_satisfied
    dims = _round_dims(facts, p.round)
    out.add(day, dims, Metric.satisfaction_answers)
    if p.result_satisfied:
        out.add(day, dims, Metric.result_satisfied)
    if p.attitude_satisfied:
        out.add(day, dims, Metric.attitude_satisfied)
    if p.handled_in_time:
        out.add(day, dims, Metric.handled_in_time)


def _on_callback_overdue(facts: TicketFacts, p: ev.CallbackOverdue, event, day, tz, out: _Counter) -> None:
    callback = _callback(facts, p.callback_id, p.round, day, out)
    if callback.done or callback.overdue:
        return
    callback.overdue = True
    out.add(callback.counted_day, callback.counted_under, Metric.callbacks_overdue)


def _on_closed(facts: TicketFacts, p: ev.Closed, event, day, tz, out: _Counter) -> None:
    if facts.state == CLOSED:
        return
    facts.state = CLOSED
    facts.closed_at = event.time
    out.add(day, _ticket_dims(facts), Metric.closed)
    if facts.reopen_count == 0:
        out.add(day, _ticket_dims(facts), Metric.closed_first_round)


def _on_corrective_action_suggested(facts: TicketFacts, p: ev.CorrectiveActionSuggested, event, day, tz, out: _Counter) -> None:
    dims = [(Dimension.estate.value, facts.estate), (Dimension.category.value, p.category)]
    if p.scope == "building" and p.building:
        dims.append((Dimension.building.value, p.building))
    out.add(day, dims, Metric.repeat_problems)
    out.add(day, dims, Metric.repeat_problem_tickets, len(p.tickets))


_HANDLERS = {
    ev.Accepted.event_name: _on_accepted,
    ev.ValidityJudged.event_name: _on_validity_judged,
    ev.Assigned.event_name: _on_assigned,
    ev.Acknowledged.event_name: _department_step(Metric.acknowledged),
    ev.Arrived.event_name: _department_step(Metric.arrived),
    ev.SignedBack.event_name: _department_step(Metric.signed_back),
    ev.ProgressUpdated.event_name: _on_progress_updated,
    ev.Escalated.event_name: _on_escalated,
    ev.ClockSettled.event_name: _on_clock_settled,
    # sla_breached: the escalation's notice; the breach is counted from clock_settled.
    ev.Completed.event_name: _on_completed,
    ev.Reopened.event_name: _on_reopened,
    ev.CallbackScheduled.event_name: _on_callback_scheduled,
    ev.CallbackDone.event_name: _on_callback_done,
    ev.CallbackOverdue.event_name: _on_callback_overdue,
    ev.Closed.event_name: _on_closed,
    ev.CorrectiveActionSuggested.event_name: _on_corrective_action_suggested,
    # archived, lent, returned, destroyed: the archive keeps its own register.
}


# --- folding increments into totals -------------------------------------------------------


def replay(
    events: Iterable[ev.CloudEvent],
    facts_by_ticket: Mapping[str, TicketFacts] | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> tuple[dict[str, TicketFacts], list[RollupDelta]]:
    """Apply events in order, carrying each ticket's facts: the reference fold in memory
    (tests and `bench/analytics_report.py` check the read model against it; the service
    folds through `handlers.fold` into `store.Batch`)."""
    facts = dict(facts_by_ticket or {})
    deltas: list[RollupDelta] = []
    for event in events:
        facts[event.subject], produced = apply_event(facts.get(event.subject), event, policy)
        deltas.extend(produced)
    return facts, deltas


def fold(deltas: Iterable[RollupDelta], totals: Mapping[RollupKey, int] | None = None) -> dict[RollupKey, int]:
    """Sum increments into counter totals (returns a new mapping; zero totals dropped)."""
    result = dict(totals or {})
    for d in deltas:
        key = (d.estate, d.period, d.dimension, d.key, d.metric)
        result[key] = result.get(key, 0) + d.delta
        if result[key] == 0:
            del result[key]
    return result


def period_rollups(totals: Mapping[RollupKey, int], estate: str, period: str) -> dict[tuple[str, str, str], int]:
    """The (dimension, key, metric) -> value slice of one estate and one period."""
    return {
        (dimension, key, metric): value
        for (e, p, dimension, key, metric), value in totals.items()
        if e == estate and p == period
    }


# --- figures and the monthly report ---------------------------------------------------------


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Figures:
    """Every counter of one (dimension, key) in one period, with the rates built on them.
    Field names are the `Metric` values."""

    opened: int = 0
    off_hours_opened: int = 0
    reactivated: int = 0
    completed: int = 0
    closed: int = 0
    closed_first_round: int = 0
    assigned: int = 0
    acknowledged: int = 0
    arrived: int = 0
    signed_back: int = 0
    forms_signed: int = 0
    progress_updates: int = 0
    valid_complaints: int = 0
    invalid_complaints: int = 0
    escalations: int = 0
    nonconformities: int = 0
    clocks_met: int = 0
    clocks_breached: int = 0
    callbacks_required: int = 0
    callbacks_done: int = 0
    callbacks_on_time: int = 0
    callbacks_overdue: int = 0
    satisfaction_answers: int = 0
    result_satisfied: int = 0
    attitude_satisfied: int = 0
    handled_in_time: int = 0
    reopened: int = 0
    reopened_tickets: int = 0
    repeat_problems: int = 0
    repeat_problem_tickets: int = 0

    @classmethod
    def from_rollups(cls, rollups: PeriodRollups, dimension: str, key: str) -> "Figures":
        return cls(**{m: rollups.get((dimension, key, m), 0) for m in _METRICS})

    def __add__(self, other: "Figures") -> "Figures":
        return Figures(**{m: getattr(self, m) + getattr(other, m) for m in _METRICS})

    @property
    def on_time_rate(self) -> float | None:
        """Clocks met / clocks counted (met + breached)."""
        return _rate(self.clocks_met, self.clocks_met + self.clocks_breached)

    @property
    def valid_complaint_rate(self) -> float | None:
        return _rate(self.valid_complaints, self.valid_complaints + self.invalid_complaints)

    @property
    def callback_rate(self) -> float | None:
        """Callbacks done / callbacks required (same cohort)."""
        return _rate(self.callbacks_done, self.callbacks_required)

    @property
    def callback_on_time_rate(self) -> float | None:
        """Callbacks done on time / callbacks required (same cohort)."""
        return _rate(self.callbacks_on_time, self.callbacks_required)

    @property
    def result_satisfaction_rate(self) -> float | None:
        return _rate(self.result_satisfied, self.satisfaction_answers)

    @property
    def attitude_satisfaction_rate(self) -> float | None:
        return _rate(self.attitude_satisfied, self.satisfaction_answers)

    @property
    def handled_in_time_rate(self) -> float | None:
        return _rate(self.handled_in_time, self.satisfaction_answers)

    @property
    def first_round_close_rate(self) -> float | None:
        """Closed without re-opening / closed."""
        return _rate(self.closed_first_round, self.closed)

    RATES = (
        "on_time_rate", "valid_complaint_rate", "callback_rate", "callback_on_time_rate",
        "result_satisfaction_rate", "attitude_satisfaction_rate", "handled_in_time_rate",
        "first_round_close_rate",
    )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {m: getattr(self, m) for m in _METRICS}
        data.update({rate: getattr(self, rate) for rate in self.RATES})
        return data


@dataclass(frozen=True)
class CorrectiveActionLine:
    """One line of the report's "problems and corrective actions" section."""

    problem: str
    action: str = ""
    owner: str = ""
    status: str = ""
    category: str | None = None
    tickets: tuple[str, ...] = ()

    @classmethod
    def coerce(cls, item: Any) -> "CorrectiveActionLine":
        if isinstance(item, CorrectiveActionLine):
            return item
        if isinstance(item, ev.CorrectiveActionSuggested):
            where = f"building {item.building}" if item.scope == "building" else "estate"
            return cls(
                problem=f"{item.category}: {item.count} opinions within {item.window_days} days ({where})",
                category=item.category, tickets=tuple(item.tickets),
            )
        if isinstance(item, str):
            return cls(problem=item)
        if isinstance(item, Mapping):
            return cls(
                problem=str(item.get("problem", "")), action=str(item.get("action", "")),
                owner=str(item.get("owner", "")), status=str(item.get("status", "")),
                category=item.get("category"), tickets=tuple(item.get("tickets", ())),
            )
        raise TypeError(f"cannot read a corrective action from {type(item).__name__}")


@dataclass(frozen=True)
class SignOff:
    """The department head's summary and signature (RULES §4: signed by the head)."""

    summary: str = ""
    department_head: str = ""
    signed_on: dt.date | None = None


@dataclass(frozen=True)
class MonthlyReport:
    """《月客户意见统计分析表》 of one estate and one month (or, for the quarterly summary,
    the sum over a quarter: `period` "2026Q4"; for the company, estate `COMPANY_TOTAL`)."""

    estate: str
    period: str
    due_on: dt.date | None
    totals: Figures
    open_carried_in: int
    by_kind: dict[str, Figures]
    by_channel: dict[str, Figures]
    by_kind_channel: dict[str, dict[str, int]]  # kind -> channel -> opened
    by_department: dict[str, Figures]
    by_category: dict[str, Figures]
    by_building: dict[str, Figures]
    by_clock: dict[str, Figures]
    by_rung: dict[str, int]  # escalations per rung
    by_repair_class: dict[str, Figures]
    by_staff: dict[str, Figures]
    corrective_actions: tuple[CorrectiveActionLine, ...] = ()
    sign_off: SignOff = SignOff()
    rollups: Mapping[tuple[str, str, str], int] = field(default_factory=dict, repr=False)

    @property
    def month(self) -> str:
        return self.period

    @property
    def open_carried_out(self) -> int:
        """Open at the end of the period, carried into the next."""
        t = self.totals
        return self.open_carried_in + t.opened + t.reactivated - t.closed

    def to_dict(self) -> dict[str, Any]:
        def table(rows: Mapping[str, Figures]) -> dict[str, Any]:
            return {key: figures.to_dict() for key, figures in rows.items()}

        return {
            "estate": self.estate,
            "period": self.period,
            "due_on": self.due_on.isoformat() if self.due_on else None,
            "totals": self.totals.to_dict(),
            "open_carried_in": self.open_carried_in,
            "open_carried_out": self.open_carried_out,
            "by_kind": table(self.by_kind),
            "by_channel": table(self.by_channel),
            "by_kind_channel": {k: dict(v) for k, v in self.by_kind_channel.items()},
            "by_department": table(self.by_department),
            "by_category": table(self.by_category),
            "by_building": table(self.by_building),
            "by_clock": table(self.by_clock),
            "by_rung": dict(self.by_rung),
            "by_repair_class": table(self.by_repair_class),
            "by_staff": table(self.by_staff),
            "corrective_actions": [dataclasses.asdict(line) for line in self.corrective_actions],
            "sign_off": {
                "summary": self.sign_off.summary,
                "department_head": self.sign_off.department_head,
                "signed_on": self.sign_off.signed_on.isoformat() if self.sign_off.signed_on else None,
            },
        }


def _keys(rollups: PeriodRollups, dimension: str) -> list[str]:
    return sorted({key for (d, key, _), value in rollups.items() if d == dimension and value})


def _keys_by_dimension(rollups: PeriodRollups) -> dict[str, list[str]]:
    """`_keys` of every dimension in one pass over the rollups."""
    found: dict[str, set[str]] = {}
    for (dimension, key, _), value in rollups.items():
        if value:
            found.setdefault(dimension, set()).add(key)
    return {dimension: sorted(keys) for dimension, keys in found.items()}


def _breakdown(rollups: PeriodRollups, dimension: Dimension, keys: dict[str, list[str]]) -> dict[str, Figures]:
    return {key: Figures.from_rollups(rollups, dimension.value, key) for key in keys.get(dimension.value, ())}


def _due_on(month: str, policy: Policy) -> dt.date:
    year, number = (int(part) for part in month.split("-"))
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    last_day = _calendar.monthrange(year, number)[1]
    return dt.date(year, number, min(policy.analytics.monthly_report_due_day, last_day))


def _build_report(
    estate: str, period: str, rollups: PeriodRollups, open_carried: int,
    corrective_actions: Iterable[Any], due_on: dt.date | None, sign_off: SignOff | None,
) -> MonthlyReport:
    rollups = {k: v for k, v in rollups.items() if v}
    keys = _keys_by_dimension(rollups)
    kind_channel: dict[str, dict[str, int]] = {}
    for key in keys.get(Dimension.kind_channel.value, ()):
        opened = rollups.get((Dimension.kind_channel.value, key, Metric.opened.value), 0)
        if opened:
            kind, _, channel = key.partition("|")
            kind_channel.setdefault(kind, {})[channel] = opened
    return MonthlyReport(
        estate=estate,
        period=period,
        due_on=due_on,
        totals=Figures.from_rollups(rollups, Dimension.estate.value, estate),
        open_carried_in=open_carried,
        by_kind=_breakdown(rollups, Dimension.kind, keys),
        by_channel=_breakdown(rollups, Dimension.channel, keys),
        by_kind_channel=kind_channel,
        by_department=_breakdown(rollups, Dimension.department, keys),
        by_category=_breakdown(rollups, Dimension.category, keys),
        by_building=_breakdown(rollups, Dimension.building, keys),
        by_clock=_breakdown(rollups, Dimension.clock, keys),
        by_rung={key: rollups.get((Dimension.rung.value, key, Metric.escalations.value), 0)
                 for key in keys.get(Dimension.rung.value, ())},
        by_repair_class=_breakdown(rollups, Dimension.repair_class, keys),
        by_staff=_breakdown(rollups, Dimension.staff, keys),
        corrective_actions=tuple(CorrectiveActionLine.coerce(item) for item in corrective_actions),
        sign_off=sign_off or SignOff(),
        rollups=rollups,
    )


def monthly_report(
    estate: str,
    month: str,
    rollups: PeriodRollups,
    open_carried: int,
    corrective_actions: Iterable[Any] = (),
    *,
    policy: Policy = DEFAULT_POLICY,
    sign_off: SignOff | None = None,
) -> MonthlyReport:
    """The estate's 《月客户意见统计分析表》 for `month` ("2026-11") from that month's
    rollups; `open_carried` is the number of open items carried in from the month before.
    Corrective actions may be `CorrectiveActionSuggested` payloads, dicts or strings."""
    dt.date.fromisoformat(f"{month}-01")  # refuses a malformed month early
    return _build_report(estate, month, rollups, open_carried, corrective_actions,
                         _due_on(month, policy), sign_off)


def period_report(
    estate: str,
    period: str,
    rollups: PeriodRollups,
    open_carried: int,
    corrective_actions: Iterable[Any] = (),
    *,
    due_on: dt.date | None = None,
) -> MonthlyReport:
    """A report over rollups already summed for any period label (a quarter "2026Q4",
    or the company's sums computed by the database) — the same figures `company_consolidation`
    and `quarterly_summary` build by merging estate reports."""
    return _build_report(estate, period, rollups, open_carried, corrective_actions, due_on, None)


# --- company consolidation and the quarter ------------------------------------------------


@dataclass(frozen=True)
class EstateRanking:
    rank: int
    estate: str
    score: float | None
    on_time_rate: float | None
    callback_on_time_rate: float | None
    satisfaction_rate: float | None
    report: MonthlyReport


@dataclass(frozen=True)
class CompanyConsolidation:
    period: str
    rows: tuple[EstateRanking, ...]  # best first
    company: MonthlyReport  # the sums of every estate (estate COMPANY_TOTAL)
    ranking_rule: str


def _satisfaction(figures: Figures) -> Fraction | None:
    """Result and attitude answers together: satisfied answers / (2 × answers)."""
    if not figures.satisfaction_answers:
        return None
    return Fraction(figures.result_satisfied + figures.attitude_satisfied, 2 * figures.satisfaction_answers)


def _fraction(numerator: int, denominator: int) -> Fraction | None:
    return Fraction(numerator, denominator) if denominator else None


def composite_score(figures: Figures, policy: Policy = DEFAULT_POLICY) -> Fraction | None:
    """The estates' ranking score, exact: the weighted mean of
    on-time rate (clocks met / counted), callback on-time rate (on-time callbacks /
    required) and satisfaction (satisfied result + attitude answers / 2 × answers),
    weights from `policy.analytics`. A component without data is left out and the other
    weights rescaled; with no component at all the score is None (ranked last)."""
    a = policy.analytics
    components = [
        (a.ranking_weight_on_time_percent, _fraction(figures.clocks_met, figures.clocks_met + figures.clocks_breached)),
        (a.ranking_weight_callback_percent, _fraction(figures.callbacks_on_time, figures.callbacks_required)),
        (a.ranking_weight_satisfaction_percent, _satisfaction(figures)),
    ]
    weighted = [(w, c) for w, c in components if c is not None and w > 0]
    total_weight = sum(w for w, _ in weighted)
    if not total_weight:
        return None
    return sum((w * c for w, c in weighted), Fraction(0)) / total_weight


RANKING_RULE = (
    "score = weighted mean of on-time rate (clocks met / counted), callback on-time rate "
    "(callbacks on time / required) and satisfaction ((result + attitude satisfied) / "
    "(2 × answers)); weights from policy.analytics.ranking_weight_*_percent; missing "
    "components left out and the weights rescaled; higher score first, ties by estate code; "
    "estates without any data last"
)


def _merge(reports: Sequence[MonthlyReport], estate: str) -> dict[tuple[str, str, str], int]:
    """Sum the reports' rollups, the estate dimension folded onto `estate`."""
    merged: dict[tuple[str, str, str], int] = {}
    for report in reports:
        for (dimension, key, metric), value in report.rollups.items():
            if dimension == Dimension.estate.value:
                key = estate
            merged[(dimension, key, metric)] = merged.get((dimension, key, metric), 0) + value
    return merged


def _rank(reports: Sequence[MonthlyReport], policy: Policy) -> tuple[EstateRanking, ...]:
    scored = [(composite_score(r.totals, policy), r) for r in reports]
    scored.sort(key=lambda item: (item[0] is None, -(item[0] or 0), item[1].estate))
    return tuple(
        EstateRanking(
            rank=position, estate=report.estate,
            score=float(score) if score is not None else None,
            on_time_rate=report.totals.on_time_rate,
            callback_on_time_rate=report.totals.callback_on_time_rate,
            satisfaction_rate=float(s) if (s := _satisfaction(report.totals)) is not None else None,
            report=report,
        )
        for position, (score, report) in enumerate(scored, start=1)
    )


def _company_report(reports: Sequence[MonthlyReport], period: str, due_on: dt.date | None) -> MonthlyReport:
    actions = [
        dataclasses.replace(line, problem=f"[{r.estate}] {line.problem}")
        for r in reports for line in r.corrective_actions
    ]
    return _build_report(COMPANY_TOTAL, period, _merge(reports, COMPANY_TOTAL),
                         sum(r.open_carried_in for r in reports), actions, due_on, None)


def company_consolidation(reports: Sequence[MonthlyReport], policy: Policy = DEFAULT_POLICY, *,
                          company: MonthlyReport | None = None) -> CompanyConsolidation:
    """The quality manager's monthly consolidation: estates side by side, ranked by
    `composite_score`, and the company sums (rates recomputed from summed counts).
    `company`: those sums when already known (a read model that keeps them), instead of
    merging the reports."""
    if not reports:
        raise ValueError("no estate reports to consolidate")
    periods = {r.period for r in reports}
    if len(periods) != 1:
        raise ValueError(f"reports of different periods: {sorted(periods)}")
    estates = [r.estate for r in reports]
    if len(set(estates)) != len(estates):
        raise ValueError("an estate appears twice")
    period = periods.pop()
    due_on = reports[0].due_on
    return CompanyConsolidation(
        period=period, rows=_rank(reports, policy),
        company=company if company is not None else _company_report(reports, period, due_on),
        ranking_rule=RANKING_RULE,
    )


@dataclass(frozen=True)
class QuarterlySummary:
    """For the management representative (review) and the general manager (reading)."""

    quarter: str  # "2026Q4"
    months: tuple[str, str, str]
    by_estate: dict[str, MonthlyReport]  # each estate's quarter sums
    company_by_month: dict[str, MonthlyReport]  # company sums month by month (the trend)
    company: MonthlyReport  # company sums for the quarter
    ranking: tuple[EstateRanking, ...]  # estates ranked on their quarter figures
    missing: tuple[tuple[str, str], ...]  # (estate, month) with no report supplied


def quarter_of(month: str) -> tuple[str, tuple[str, str, str]]:
    """ "2026-11" → ("2026Q4", its three months)."""
    quarter = periods.quarter_of(month)
    return quarter, periods.months_of_quarter(quarter)


def quarterly_summary(reports: Sequence[MonthlyReport], policy: Policy = DEFAULT_POLICY, *,
                      company_by_month: Mapping[str, MonthlyReport] | None = None,
                      company: MonthlyReport | None = None) -> QuarterlySummary:
    """Sum the monthly reports of one quarter per estate and for the company.
    `company_by_month` / `company`: the company's sums when already known (a read model
    that keeps them), instead of merging the reports."""
    if not reports:
        raise ValueError("no monthly reports for the quarter")
    quarters = {quarter_of(r.period) for r in reports}
    if len(quarters) != 1:
        raise ValueError(f"reports of different quarters: {sorted(q for q, _ in quarters)}")
    quarter, months = quarters.pop()
    seen = [(r.estate, r.period) for r in reports]
    if len(set(seen)) != len(seen):
        raise ValueError("an estate's month appears twice")
    by_estate: dict[str, MonthlyReport] = {}
    grouped: dict[str, list[MonthlyReport]] = {}
    for report in reports:
        grouped.setdefault(report.estate, []).append(report)
    estates = sorted(grouped)
    for estate in estates:
        own = sorted(grouped[estate], key=lambda r: r.period)
        by_estate[estate] = _build_report(
            estate, quarter, _merge(own, estate), own[0].open_carried_in,
            [line for r in own for line in r.corrective_actions], None, None,
        )
    if company_by_month is None:
        company_by_month = {
            month: _company_report([r for r in reports if r.period == month], month, None)
            for month in months if any(r.period == month for r in reports)
        }
    if company is None:
        company = _build_report(
            COMPANY_TOTAL, quarter, _merge(reports, COMPANY_TOTAL),
            sum(by_estate[e].open_carried_in for e in estates),
            [line for r in company_by_month.values() for line in r.corrective_actions], None, None,
        )
    supplied = set(seen)
    missing = tuple((e, m) for e in estates for m in months if (e, m) not in supplied)
    return QuarterlySummary(
        quarter=quarter, months=months, by_estate=by_estate, company_by_month=dict(company_by_month),
        company=company, ranking=_rank(list(by_estate.values()), policy), missing=missing,
    )


# --- department weekly review and staff assessment -------------------------------------------


@dataclass(frozen=True)
class OpenItem:
    ticket_id: str
    kind: str | None
    category: str | None
    building: str | None
    round: int
    accepted_at: dt.datetime | None
    days_open: int | None
    overdue_clocks: tuple[str, ...]  # breached, or running past due at review time
    reopened: bool
    escalations: int
    needs_progress_update: bool


@dataclass(frozen=True)
class DepartmentReview:
    department: str
    open_count: int
    overdue_count: int
    items: tuple[OpenItem, ...]  # overdue first, then oldest first


def department_weekly_review(
    open_items: Iterable[TicketFacts], now: dt.datetime, policy: Policy = DEFAULT_POLICY
) -> tuple[DepartmentReview, ...]:
    """What each department head reads weekly (RULES §4): their open forms. A form sits
    with the departments of its current round (UNASSIGNED when not yet routed). A
    complaint needs an update when dispatch settled the latest week of its progress-update
    duty in the current round as breached (RULES §2 Progress updates: dispatch decides
    each week, `ev.PROGRESS_UPDATE_CLOCK`; this review counts its verdict)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    grouped: dict[str, list[OpenItem]] = {}
    for facts in open_items:
        if not facts.is_open:
            continue
        overdue = sorted({
            c.clock for c in facts.clocks
            if c.outcome == BREACHED or (c.outcome == RUNNING and c.due_at is not None and c.due_at < now)
        })
        days_open = (now - facts.accepted_at).days if facts.accepted_at else None
        weeks = sorted((c for c in facts.clocks if c.clock == ev.PROGRESS_UPDATE_CLOCK and c.round == facts.round
                        and c.outcome in (MET, BREACHED) and c.due_at is not None), key=lambda c: c.due_at)
        needs_update = bool(weeks) and weeks[-1].outcome == BREACHED
        item = OpenItem(
            ticket_id=facts.ticket_id, kind=facts.kind, category=facts.category,
            building=facts.building, round=facts.round, accepted_at=facts.accepted_at,
            days_open=days_open, overdue_clocks=tuple(overdue), reopened=facts.reopen_count > 0,
            escalations=facts.escalation_count, needs_progress_update=needs_update,
        )
        for department in facts.current_departments or [UNASSIGNED]:
            grouped.setdefault(department, []).append(item)
    epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    reviews = []
    for department in sorted(grouped):
        items = sorted(grouped[department],
                       key=lambda i: (not i.overdue_clocks, i.accepted_at or epoch, i.ticket_id))
        reviews.append(DepartmentReview(
            department=department, open_count=len(items),
            overdue_count=sum(1 for i in items if i.overdue_clocks), items=tuple(items),
        ))
    return tuple(reviews)


@dataclass(frozen=True)
class StaffAssessment:
    """Countersign forms as the evidence of a person's assessment (RULES §4): forms owned
    as first contact, forms signed back as handler, and how those forms went."""

    staff: str
    forms_accepted: int
    forms_signed: int
    completed: int
    closed: int
    clocks_met: int
    clocks_breached: int
    on_time_rate: float | None
    callbacks_required: int
    callbacks_on_time: int
    callback_on_time_rate: float | None
    satisfaction_answers: int
    result_satisfaction_rate: float | None
    attitude_satisfaction_rate: float | None
    reopened: int
    reopened_tickets: int
    escalations: int


def staff_assessment(rollups: PeriodRollups) -> tuple[StaffAssessment, ...]:
    """Per staff member of a period's rollups (the staff dimension), sorted by staff id."""
    result = []
    for staff in _keys(rollups, Dimension.staff.value):
        f = Figures.from_rollups(rollups, Dimension.staff.value, staff)
        result.append(StaffAssessment(
            staff=staff, forms_accepted=f.opened, forms_signed=f.forms_signed,
            completed=f.completed, closed=f.closed, clocks_met=f.clocks_met,
            clocks_breached=f.clocks_breached, on_time_rate=f.on_time_rate,
            callbacks_required=f.callbacks_required, callbacks_on_time=f.callbacks_on_time,
            callback_on_time_rate=f.callback_on_time_rate,
            satisfaction_answers=f.satisfaction_answers,
            result_satisfaction_rate=f.result_satisfaction_rate,
            attitude_satisfaction_rate=f.attitude_satisfaction_rate,
            reopened=f.reopened, reopened_tickets=f.reopened_tickets, escalations=f.escalations,
        ))
    return tuple(result)


# --- repeated problems -------------------------------------------------------------------------


class RecentTicket(NamedTuple):
    ticket_id: str
    category: str
    building: str | None
    accepted_at: dt.datetime


def repeat_problem(
    recent: Iterable[RecentTicket | tuple[str, str, str | None, dt.datetime]],
    new: RecentTicket | tuple[str, str, str | None, dt.datetime],
    policy: Policy = DEFAULT_POLICY,
) -> ev.CorrectiveActionSuggested | None:
    """Repeated opinions call for corrective action (RULES §2, 002 §4.3.1 b).

    `recent` are the estate's tickets; `new` the ticket just accepted. Tickets are ordered
    by (accepted_at, ticket_id); those after `new` in that order are ignored, so passing
    every ticket is safe. The trailing window is (new − window_days, new].

    The suggestion fires when `new` makes the number of same-category tickets in the
    window *exactly* `repeat_problem_threshold`: it crosses from threshold − 1 to the
    threshold, so the 4th, 5th... ticket of the same burst stays silent; once the window
    has slid below the threshold, the next crossing fires again. The same rule is applied
    to the new ticket's building; when both cross, the tickets are the same and the
    building suggestion (the more precise) is returned."""
    new = RecentTicket(*new)
    threshold = policy.analytics.repeat_problem_threshold
    window_days = policy.analytics.repeat_problem_window_days
    since = new.accepted_at - dt.timedelta(days=window_days)
    order = (new.accepted_at, new.ticket_id)
    in_window = sorted(
        {t.ticket_id: t for t in map(lambda r: RecentTicket(*r), recent)
         if t.ticket_id != new.ticket_id and t.category == new.category
         and since < t.accepted_at and (t.accepted_at, t.ticket_id) < order}.values(),
        key=lambda t: (t.accepted_at, t.ticket_id),
    ) + [new]

    def suggestion(tickets: list[RecentTicket], scope: str) -> ev.CorrectiveActionSuggested:
        return ev.CorrectiveActionSuggested(
            ticket_id=new.ticket_id, category=new.category, scope=scope,  # type: ignore[arg-type]
            building=new.building if scope == "building" else None, count=len(tickets),
            window_days=window_days, tickets=[t.ticket_id for t in tickets],
        )

    if new.building is not None:
        same_building = [t for t in in_window if t.building == new.building]
        if len(same_building) == threshold:
            return suggestion(same_building, "building")
    if len(in_window) == threshold:
        return suggestion(in_window, "estate")
    return None
