"""The round's clocks (RULES.md §1 Reply deadline when none agreed, Agreed reply; §2 Repair
arrival, Repair slip return, Appointment repair, Tracking control time, Progress updates):
the deadlines a round starts, an appointment moved, a clock's verdict, day clocks counted
again on a changed calendar, which steps settle which clocks, and a long-running
complaint's weekly progress-update clock. Minute and hour clocks are elapsed time, day
clocks are working days in the estate's local time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from enum import StrEnum

from shared.calendar import WorkingCalendar
from shared.errors import RuleViolation
from shared.events import (
    AcceptedBy,
    ClockOutcome,
    Deadline,
    PROGRESS_UPDATE_CLOCK,
    Kind,
    RepairClass,
    ReplyMethod,
    Urgency,
)
from shared.periods import progress_week
from shared.policy import Policy
from services.dispatch.rules.common import DEFAULT, _aware, _elapsed, _local
from services.dispatch.rules.facts import TicketFacts


# --- the round's clocks (RULES §1 Reply deadline, §2 Repair arrival, slip, tracking) -------


class Clock(StrEnum):
    acknowledge = "acknowledge"  # receiving department signs the handover ledger
    arrival = "arrival"  # technician on site (repairs)
    repair_slip_return = "repair_slip_return"  # repair slip back at customer service
    reply = "reply"  # the customer hears an answer
    tracking = "tracking"  # acceptance to callback
    progress_update = PROGRESS_UPDATE_CLOCK  # a long-running complaint's week of owner updates


def _deadline(clock: Clock, due_at: dt.datetime, department: str | None = None, provisional: bool = False) -> Deadline:
    return Deadline(clock=clock.value, due_at=due_at, department=department, provisional=provisional)


def arrival_due(facts: TicketFacts, accepted_at: dt.datetime, policy: Policy) -> dt.datetime | None:
    """When the technician must be on site; None for non-repairs and repair projects.

    A repair without a class is a general repair (000 §五.2(1) "一般的日常报修").
    """
    if facts.kind is not Kind.repair:
        return None
    start = _local(accepted_at, policy, "accepted_at")
    clocks = policy.clocks
    repair_class = facts.repair_class or RepairClass.general
    if repair_class is RepairClass.project:
        return None
    if repair_class is RepairClass.appointment:
        if facts.appointment_at is None:
            raise RuleViolation("an appointment repair needs the appointment time", 422)
        appointment = _local(facts.appointment_at, policy, "appointment_at")
        if appointment < start:
            raise RuleViolation(
                f"the appointment at {appointment.isoformat()} is before the round started at "
                f"{start.isoformat()}; agree a new appointment", 422
            )
        return appointment
    minutes = {
        RepairClass.emergency: clocks.arrival_minutes_emergency + arrival_grace_minutes(facts, policy),
        RepairClass.general: clocks.arrival_minutes_general,
        RepairClass.simple: clocks.arrival_minutes_simple,
        RepairClass.commissioned_immediate: clocks.arrival_minutes_commissioned_immediate,
    }[repair_class]
    return _elapsed(start, dt.timedelta(minutes=minutes), policy)


def arrival_grace_minutes(facts: TicketFacts, policy: Policy) -> int:
    """Minutes of grace an arrival clock allows beyond the documents' value: the policy's
    `arrival_grace_minutes_immediate` (default 0) for an emergency (立即) repair, 0 for
    every other class and kind. Shown on the form beside the arrival clock.
    Source: RULES §2 Repair arrival; 000 §五.2(1), 004 篇2 一.四."""
    if facts.kind is not Kind.repair or (facts.repair_class or RepairClass.general) is not RepairClass.emergency:
        return 0
    return policy.clocks.arrival_grace_minutes_immediate


def start_round_clocks(
    facts: TicketFacts,
    departments: Sequence[str],
    accepted_at: dt.datetime,
    policy: Policy,
    calendar: WorkingCalendar,
    round: int = 1,
) -> list[Deadline]:
    """The deadlines of one round, started at `accepted_at` (acceptance in round 1, the
    reopening in later rounds).

    - acknowledge, per department: the transfer is signed for in the handover ledger.
    - arrival and repair_slip_return, per department, repairs only (none for a repair
      project, which runs over weeks); an appointment repair's slip is due after the
      appointment.
    - reply: the time agreed with the customer at intake wins (round 1 only: a reopened
      round owes a fresh answer); else urgent → hours, not urgent → working days. No
      reply clock for kinds outside policy.clocks.reply_kinds or without a reply path.
    - tracking: acceptance to callback, working days by who accepted it.
    """
    if round < 1:
        raise RuleViolation(f"rounds are numbered from 1, got {round}", 422)
    departments = list(departments)
    if not departments:
        raise RuleViolation("a round needs at least one department", 422)
    if len(set(departments)) != len(departments):
        raise RuleViolation(f"a department is assigned twice in {departments}", 422)
    start = _local(accepted_at, policy, "accepted_at")
    clocks = policy.clocks
    deadlines: list[Deadline] = []

    acknowledge_at = _elapsed(start, dt.timedelta(minutes=clocks.acknowledge_minutes), policy)
    deadlines += [_deadline(Clock.acknowledge, acknowledge_at, d) for d in departments]

    if facts.kind is Kind.repair and (facts.repair_class or RepairClass.general) is not RepairClass.project:
        arrival = arrival_due(facts, start, policy)
        slip_from = arrival if facts.repair_class is RepairClass.appointment else start
        slip_at = _elapsed(slip_from, dt.timedelta(hours=clocks.repair_slip_return_hours), policy)
        deadlines += [_deadline(Clock.arrival, arrival, d) for d in departments]
        deadlines += [_deadline(Clock.repair_slip_return, slip_at, d) for d in departments]

    if facts.kind.value in clocks.reply_kinds and facts.reply_method is not ReplyMethod.none:
        if round == 1 and facts.reply_agreed_by is not None:
            agreed = _local(facts.reply_agreed_by, policy, "reply_agreed_by")
            if agreed < start:
                raise RuleViolation(
                    f"the agreed reply time {agreed.isoformat()} is before acceptance at {start.isoformat()}", 422
                )
            deadlines.append(_deadline(Clock.reply, agreed))
        elif facts.urgency is Urgency.urgent:
            deadlines.append(_deadline(Clock.reply, _elapsed(start, dt.timedelta(hours=clocks.reply_hours_urgent), policy)))
        else:
            reply = calendar.add_working_days(start, clocks.reply_working_days_not_urgent)
            deadlines.append(_deadline(Clock.reply, reply.value, provisional=reply.provisional))

    tracking_days = (
        clocks.tracking_working_days_company
        if facts.accepted_by is AcceptedBy.company
        else clocks.tracking_working_days_department
    )
    tracking = calendar.add_working_days(start, tracking_days)
    deadlines.append(_deadline(Clock.tracking, tracking.value, provisional=tracking.provisional))
    return deadlines


# The outcome of a clock ended by a new appointment: it fires and climbs no more.
RESCHEDULED = ClockOutcome.rescheduled.value


def reschedule_appointment(
    deadlines: Sequence[Deadline],
    new_appointment_at: dt.datetime,
    policy: Policy = DEFAULT,
    *,
    department: str | None = None,
) -> list[Deadline]:
    """The owner was not at home (004 篇2 二.一): the arrival clock follows the new
    appointment and the repair slip is due that many hours after it. Other clocks keep
    running. `department` limits the change to one department's clocks.

    The returned arrival and slip deadlines are *fresh clocks*: the caller ends the old
    ones with the outcome `RESCHEDULED` (their escalation ladder stops, breached or not)
    and starts these, which breach and escalate afresh from the first rung if the new
    appointment is missed (issue 10)."""
    new_at = _local(new_appointment_at, policy, "new_appointment_at")
    targets = {
        d.department for d in deadlines
        if d.clock == Clock.arrival and (department is None or d.department == department)
    }
    if not targets:
        who = f" for department {department}" if department else ""
        raise RuleViolation(f"there is no arrival clock{who} to reschedule", 409)
    slip_at = _elapsed(new_at, dt.timedelta(hours=policy.clocks.repair_slip_return_hours), policy)
    result = []
    for d in deadlines:
        if d.department in targets and d.clock == Clock.arrival:
            d = d.model_copy(update={"due_at": new_at, "provisional": False})
        elif d.department in targets and d.clock == Clock.repair_slip_return:
            d = d.model_copy(update={"due_at": slip_at, "provisional": False})
        result.append(d)
    return result


def clock_verdict(
    due_at: dt.datetime,
    breached_at: dt.datetime | None,
    settled_at: dt.datetime | None,
    outcome: str | None,
) -> ClockOutcome | None:
    """Dispatch's one verdict on a clock, the fact every on-time figure counts.

    - breached: the breach scan fired (`breached_at`), or the clock was settled after its
      due time (its step came late, before the scan noticed: late is late);
    - otherwise the closing outcome (met / superseded / cancelled / rescheduled);
    - None while the clock runs.

    A reply clock met by a progress update before its due time stays met, whenever the
    form completes (RULES §1 Reply deadline; 002 §4.4.1: the owner heard from us)."""
    if breached_at is not None:
        return ClockOutcome.breached
    if settled_at is None:
        return None
    if _aware(settled_at, "settled_at") > _aware(due_at, "due_at"):
        return ClockOutcome.breached
    return ClockOutcome(outcome or ClockOutcome.met)


def working_days_of(clock: Clock | str, facts: TicketFacts, policy: Policy, round: int = 1) -> int | None:
    """How many working days a day clock of `start_round_clocks` counts (None for the
    minute and hour clocks and for a reply time agreed with the customer). Stored with
    the deadline so a provisional one can be recomputed later."""
    clock = Clock(clock)
    clocks = policy.clocks
    if clock is Clock.tracking:
        return (
            clocks.tracking_working_days_company
            if facts.accepted_by is AcceptedBy.company
            else clocks.tracking_working_days_department
        )
    if clock is Clock.reply:
        if round == 1 and facts.reply_agreed_by is not None:
            return None
        if facts.urgency is Urgency.urgent:
            return None
        return clocks.reply_working_days_not_urgent
    return None


def recompute_day_clock(
    started_at: dt.datetime,
    working_days: int,
    due_at: dt.datetime,
    provisional: bool,
    policy: Policy,
    calendar: WorkingCalendar,
) -> tuple[dt.datetime, bool] | None:
    """A day clock counted again on today's calendar: the company may have loaded the
    year it reaches into, corrected a loaded year, or declared a day off (a typhoon);
    every running day clock follows every change, provisional or not (issue 10).
    Returns (due_at, provisional) when either changed, else None."""
    if working_days < 0:
        raise RuleViolation(f"a day clock counts a non-negative number of working days, got {working_days}", 422)
    result = calendar.add_working_days(_local(started_at, policy, "started_at"), working_days)
    _aware(due_at, "due_at")
    if result.value == due_at and result.provisional == provisional:
        return None
    return result.value, result.provisional


class Step(StrEnum):
    """What happened to a form, as far as its clocks are concerned."""

    acknowledged = "acknowledged"
    arrived = "arrived"
    signed = "signed"  # the department signed back; its head has not verified yet
    signed_back = "signed_back"  # verified by the head
    owner_updated = "owner_updated"  # progress_updated: the customer heard from us
    completed = "completed"
    called_back = "called_back"  # the callback's outcome: closed (satisfied) or reopened


# Which clocks a step satisfies: department steps close that department's clocks, the
# others close the ticket's own clocks of the round. A department's sign-back returns the
# repair slip; the reply is owed until the customer hears an update or the form is done;
# tracking runs from acceptance to the callback (002 §4.7).
CLOCKS_MET_BY: dict[Step, tuple[Clock, ...]] = {
    Step.acknowledged: (Clock.acknowledge,),
    Step.arrived: (Clock.arrival,),
    # The department's own sign-back settles its acknowledge/arrival clocks; the repair
    # slip returns to customer service only once the head verified.
    Step.signed: (Clock.acknowledge, Clock.arrival),
    Step.signed_back: (Clock.acknowledge, Clock.arrival, Clock.repair_slip_return),
    Step.owner_updated: (Clock.reply,),
    Step.completed: (Clock.reply,),
    Step.called_back: (Clock.tracking,),
}


def clocks_met_by(step: Step | str) -> tuple[Clock, ...]:
    try:
        return CLOCKS_MET_BY[Step(step)]
    except ValueError:
        raise RuleViolation(f"unknown step {step!r}", 422) from None


# --- progress updates (RULES §2 Progress updates) -------------------------------------------


def progress_clock(kind: Kind | str, opened_at: dt.datetime, at: dt.datetime,
                   policy: Policy = DEFAULT) -> tuple[dt.datetime, Deadline] | None:
    """The progress-update clock of the week holding `at`, as (its start, its deadline):
    a complaint still in handling owes the owner `progress_updates_per_week` updates in
    every week from `progress_updates_after_days` after it was opened (RULES §2 Progress
    updates; 002 §4.4.1 b; weeks from `shared.periods.progress_week`). The clock is met
    when its week has them all and breached when the week ends short; dispatch then
    starts the next week's. None for other kinds, or when the policy asks for none."""
    if Kind(kind) is not Kind.complaint or policy.clocks.progress_updates_per_week <= 0:
        return None
    start, end = progress_week(_aware(opened_at, "opened_at"), _aware(at, "at"),
                               policy.clocks.progress_updates_after_days)
    return start, _deadline(Clock.progress_update, end)


def progress_week_met(start: dt.datetime, end: dt.datetime, update_times: Iterable[dt.datetime],
                      policy: Policy = DEFAULT) -> bool:
    """Whether the week [start, end) has the updates it owes (RULES §2 Progress updates)."""
    updates = sum(start <= _aware(t, "update time") < end for t in update_times)
    return updates >= policy.clocks.progress_updates_per_week
