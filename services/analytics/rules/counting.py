"""Counting the ticket events (RULES.md §4): `apply_event` folds one event into the ticket's facts
and decides which counters it moves, on which day and under which dimensions (the periods are
in the package docstring); `replay`, `fold` and `period_rollups` sum the increments."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from shared import events as ev
from shared.periods import canonical_category
from shared.policy import DEFAULT_POLICY, Policy
from services.analytics.rules.common import CLOSED, OPEN, RUNNING, Dimension, Metric, RollupDelta, RollupKey
from services.analytics.rules.facts import CallbackFacts, ClockFacts, TicketFacts


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
        estate, month, name, append = self.estate, day[:7], metric._value_, self.deltas.append
        for dimension, key in dims:
            append(_new_delta(RollupDelta, (estate, day, dimension, key, name, delta)))
            append(_new_delta(RollupDelta, (estate, month, dimension, key, name, delta)))


_new_delta = tuple.__new__
# The dimensions' names as plain strings, read once: an enum member's `.value` is a
# descriptor call, and the fold asks for about ten of them an event.
_DIM = SimpleNamespace(**{dimension.name: dimension.value for dimension in Dimension})


def _ticket_dims(facts: TicketFacts) -> list[tuple[str, str]]:
    dims = [(_DIM.estate, facts.estate)]
    if facts.kind:
        dims.append((_DIM.kind, facts.kind))
    if facts.channel:
        dims.append((_DIM.channel, facts.channel))
    if facts.kind and facts.channel:
        dims.append((_DIM.kind_channel, f"{facts.kind}|{facts.channel}"))
    if facts.category:
        dims.append((_DIM.category, facts.category))
    if facts.repair_class:
        dims.append((_DIM.repair_class, facts.repair_class))
    if facts.building:
        dims.append((_DIM.building, facts.building))
    if facts.first_contact:
        dims.append((_DIM.staff, facts.first_contact))
    return dims


def _department_dims(departments: Iterable[str]) -> list[tuple[str, str]]:
    return [(_DIM.department, d) for d in sorted(set(departments))]


def _round_dims(facts: TicketFacts, round_: int) -> list[tuple[str, str]]:
    return _ticket_dims(facts) + _department_dims(facts.round_departments.get(round_, []))


def _clock_dims(facts: TicketFacts, clock: ClockFacts) -> list[tuple[str, str]]:
    departments = [clock.department] if clock.department else facts.round_departments.get(clock.round, [])
    return _ticket_dims(facts) + [(_DIM.clock, clock.clock)] + _department_dims(departments)


def _settled_clock(facts: TicketFacts, p: ev.ClockSettled) -> ClockFacts | None:
    """The instance a verdict is about: seen by id before (None: already counted), else
    the running instance `Assigned` declared, else a new one."""
    if any(c.clock_id == p.clock_id for c in facts.clocks):
        return None
    index = next((i for i, c in enumerate(facts.clocks) if c.clock_id is None and c.outcome == RUNNING
                  and (c.round, c.clock, c.department) == (p.round, p.clock, p.department)), None)
    if index is None:
        clock = ClockFacts(round=p.round, clock=p.clock, department=p.department)
        facts.clocks.append(clock)
    else:
        clock = facts.own(facts.clocks, index)
    clock.clock_id = p.clock_id
    clock.due_at = p.due_at
    return clock


def _callback(facts: TicketFacts, callback_id: str, round_: int, day: str, out: _Counter) -> CallbackFacts:
    for index, callback in enumerate(facts.callbacks):
        if callback.callback_id == callback_id:
            return facts.own(facts.callbacks, index)
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
        out.add(day, [(_DIM.estate, facts.estate), (_DIM.department, department)],
                Metric.assigned)
    in_round = facts.round_departments.setdefault(p.round, [])
    in_round.extend(d for d in dict.fromkeys(p.departments) if d not in in_round)
    facts.round = max(facts.round, p.round)
    for deadline in p.deadlines:
        index = next((i for i, c in enumerate(facts.clocks) if (c.round, c.clock, c.department)
                      == (p.round, deadline.clock, deadline.department)), None)
        if index is None:
            facts.clocks.append(ClockFacts(round=p.round, clock=deadline.clock,
                                           department=deadline.department, due_at=deadline.due_at))
        elif facts.clocks[index].outcome == RUNNING:
            facts.own(facts.clocks, index).due_at = deadline.due_at  # re-declared: the latest deadline holds


def _department_step(metric: Metric):
    def handler(facts: TicketFacts, p, event, day, tz, out: _Counter) -> None:
        out.add(day, [(_DIM.estate, facts.estate), (_DIM.department, p.department)], metric)
        if isinstance(p, ev.SignedBack):
            out.add(day, [(_DIM.staff, p.signed_by)], Metric.forms_signed)
    return handler


def _on_progress_updated(facts: TicketFacts, p: ev.ProgressUpdated, event, day, tz, out: _Counter) -> None:
    facts.progress_updates.append(event.time)
    out.add(day, _ticket_dims(facts), Metric.progress_updates)


def _on_escalated(facts: TicketFacts, p: ev.Escalated, event, day, tz, out: _Counter) -> None:
    facts.escalation_count += 1
    facts.last_rung = p.rung
    dims = _round_dims(facts, p.round) + [(_DIM.rung, p.rung)]
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
    dims = [(_DIM.estate, facts.estate), (_DIM.category, p.category)]
    if p.scope == "building" and p.building:
        dims.append((_DIM.building, p.building))
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
