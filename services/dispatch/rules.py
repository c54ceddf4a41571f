"""Dispatch policy as pure functions: routing, the round's clocks, breaches, escalation,
nonconformity records, the countersign form's state machine, progress updates and paid
household-service bills.

No I/O here. Every number comes from a `Policy`; working days come from a
`WorkingCalendar`. Times are timezone-aware; minute and hour clocks are elapsed time
(plain timedelta), day clocks are working days counted in the estate's local time.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from zoneinfo import ZoneInfo

from shared.calendar import WorkingCalendar
from shared.limits import MONEY_MAX
from shared.errors import RuleViolation  # one definition; these rules refuse with 422 unless a move is refused (409)
from shared.events import (
    Accepted,
    AcceptedBy,
    ClockOutcome,
    Deadline,
    PROGRESS_UPDATE_CLOCK,
    Kind,
    RepairClass,
    ReplyMethod,
    Severity,
    Urgency,
)
from shared.lifecycle import LineState, NonconformityState, require_transition
from shared.periods import progress_week
from shared.policy import Policy

DEFAULT = Policy()
UTC = dt.timezone.utc


def _aware(moment: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise RuleViolation(f"{name} must be a timezone-aware datetime, got {moment!r}", 422)
    return moment


def _local(moment: dt.datetime, policy: Policy, name: str) -> dt.datetime:
    return _aware(moment, name).astimezone(ZoneInfo(policy.timezone))


def _elapsed(start: dt.datetime, delta: dt.timedelta, policy: Policy) -> dt.datetime:
    """`start` + real elapsed time (through UTC, so a DST change cannot bend it)."""
    return (start.astimezone(UTC) + delta).astimezone(ZoneInfo(policy.timezone))


def _required(value: str | None, what: str) -> str:
    if not (value or "").strip():
        raise RuleViolation(f"{what} is required", 422)
    return value.strip()


# --- ticket facts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketFacts:
    """What the rules need to know about a ticket, as plain data."""

    kind: Kind
    category: str = "general"
    repair_class: RepairClass | None = None
    severity: Severity = Severity.not_serious
    urgency: Urgency = Urgency.not_urgent
    accepted_by: AcceptedBy = AcceptedBy.department
    building: str | None = None
    location: str | None = None
    reply_method: ReplyMethod = ReplyMethod.phone
    reply_agreed_by: dt.datetime | None = None
    appointment_at: dt.datetime | None = None
    about_role: str | None = None
    owner_loss_cny: Decimal | float | int | None = None

    def __post_init__(self) -> None:
        # Accept the enums' string values (as stored in JSON) and compare by identity later.
        coerce = {
            "kind": Kind, "repair_class": RepairClass, "severity": Severity, "urgency": Urgency,
            "accepted_by": AcceptedBy, "reply_method": ReplyMethod,
        }
        for name, enum in coerce.items():
            value = getattr(self, name)
            if value is not None:
                try:
                    object.__setattr__(self, name, enum(value))
                except ValueError:
                    raise RuleViolation(f"unknown {name.replace('_', ' ')} {value!r}", 422) from None

    @classmethod
    def from_accepted(cls, accepted: Accepted) -> "TicketFacts":
        return cls(
            kind=accepted.kind,
            category=accepted.category,
            repair_class=accepted.repair_class,
            severity=accepted.severity,
            urgency=accepted.urgency,
            accepted_by=accepted.accepted_by,
            building=accepted.building,
            location=accepted.location,
            reply_method=accepted.reply_method,
            reply_agreed_by=accepted.reply_agreed_by,
            appointment_at=accepted.appointment_at,
            about_role=accepted.about_role,
            owner_loss_cny=accepted.owner_loss_cny,
        )


# --- routing (RULES §2 Departments) -----------------------------------------------------------


@dataclass(frozen=True)
class RoutingRule:
    """One line of an estate's routing table.

    `kind` None matches every kind. `category` and `location` are case-insensitive
    shell-style patterns (`*`, `?`), several alternatives separated by `|`; None matches
    anything. `location` is tried against the ticket's location and its building. Among
    matching rules the highest `priority` wins, then the more specific rule (more
    patterns set), then the earlier line.
    """

    kind: Kind | None
    category: str | None
    location: str | None
    departments: tuple[str, ...]
    priority: int = 0

    def __post_init__(self) -> None:
        if not self.departments:
            raise RuleViolation("a routing rule must name at least one department", 422)
        object.__setattr__(self, "departments", tuple(self.departments))
        if self.kind is not None:
            object.__setattr__(self, "kind", Kind(self.kind))

    @property
    def specificity(self) -> int:
        return sum(p is not None for p in (self.kind, self.category, self.location))

    def matches(self, facts: TicketFacts) -> bool:
        if self.kind is not None and self.kind != facts.kind:
            return False
        if not _pattern_matches(self.category, facts.category):
            return False
        if self.location is not None:
            places = [p for p in (facts.location, facts.building) if p]
            if not any(_pattern_matches(self.location, place) for place in places):
                return False
        return True

    def to_data(self) -> dict:
        return {
            "kind": self.kind.value if self.kind else None,
            "category": self.category,
            "location": self.location,
            "departments": list(self.departments),
            "priority": self.priority,
        }

    @classmethod
    def from_data(cls, data: dict) -> "RoutingRule":
        try:
            return cls(
                kind=Kind(data["kind"]) if data.get("kind") else None,
                category=data.get("category"),
                location=data.get("location"),
                departments=tuple(data["departments"]),
                priority=int(data.get("priority", 0)),
            )
        except (KeyError, ValueError) as exc:
            raise RuleViolation(f"bad routing rule {data!r}: {exc}", 422) from None


def _pattern_matches(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    if not value:
        return False
    subject = value.casefold()
    return any(
        fnmatch.fnmatchcase(subject, alternative.strip().casefold())
        for alternative in pattern.split("|")
        if alternative.strip()
    )


def routing_rules_from_data(rows: Iterable[dict]) -> tuple[RoutingRule, ...]:
    return tuple(RoutingRule.from_data(row) for row in rows)


_SECURITY = "*noise*|*security*|*theft*|*stolen*|*intrud*|*stranger*|*parking*|*fire*|*噪音*|*噪声*|*安全*|*治安*|*盗*|*停车*|*消防*"
_CLEANING = "*clean*|*garbage*|*rubbish*|*trash*|*hygiene*|*sanitation*|*pest*|*保洁*|*清洁*|*垃圾*|*卫生*"
_GREENING = "*greening*|*garden*|*tree*|*lawn*|*plant*|*绿化*|*花木*|*草坪*"
_FEES = "*fee*|*fees*|*bill*|*charge*|*payment*|*invoice*|*收费*|*物业费*|*缴费*|*发票*"
_FACILITIES = "*repair*|*maintenance*|*facility*|*elevator*|*lift*|*water*|*power*|*electric*|*维修*|*设施*|*电梯*"

# Sensible defaults for a property company (003 流程图: engineering, cleaning, security,
# finance, customer service; 000 §五 plus greening). Each estate may replace them.
DEFAULT_ROUTING_RULES: tuple[RoutingRule, ...] = (
    # Inquiries and praise are answered and recorded by customer service itself.
    RoutingRule(Kind.inquiry, None, None, ("customer_service",), 30),
    RoutingRule(Kind.praise, None, None, ("customer_service",), 30),
    # Subject matter decides for every other kind.
    RoutingRule(None, _SECURITY, None, ("security",), 20),
    RoutingRule(None, _CLEANING, None, ("cleaning",), 20),
    RoutingRule(None, _GREENING, None, ("greening",), 20),
    RoutingRule(None, _FEES, None, ("finance",), 20),
    RoutingRule(Kind.complaint, _FACILITIES, None, ("engineering",), 20),
    # A repair without a more specific subject goes to engineering.
    RoutingRule(Kind.repair, None, None, ("engineering",), 10),
    RoutingRule(Kind.special_service, None, None, ("engineering",), 5),
)
DEFAULT_DEPARTMENTS: tuple[str, ...] = ("customer_service",)


def route(
    facts: TicketFacts,
    rules: Sequence[RoutingRule] = DEFAULT_ROUTING_RULES,
    default_departments: Sequence[str] = DEFAULT_DEPARTMENTS,
) -> list[str]:
    """The departments a form goes to: the best matching rule's, else the default."""
    best: RoutingRule | None = None
    for rule in rules:
        if rule.matches(facts) and (
            best is None or (rule.priority, rule.specificity) > (best.priority, best.specificity)
        ):
            best = rule
    departments = list(dict.fromkeys(best.departments if best else default_departments))
    if not departments:
        raise RuleViolation("no routing rule matched and the estate has no default department", 422)
    return departments


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


def departments_in_estate(routed: Sequence[str], estate_departments: Sequence[str]) -> list[str]:
    """The routed departments the estate actually has. An estate that lists no
    departments takes the routing as it is; when none of the routed ones exists there,
    the form goes to customer service (or the estate's first department), which hands it
    on — a form is never left with nobody."""
    routed = list(dict.fromkeys(routed))
    if not estate_departments:
        return routed
    present = [d for d in routed if d in estate_departments]
    if present:
        return present
    fallback = "customer_service" if "customer_service" in estate_departments else estate_departments[0]
    return [fallback]


# --- escalation (RULES §2 Escalation by subject / by authority, Economic loss) ------------


def _ladder(policy: Policy) -> tuple[str, ...]:
    ladder = policy.escalation.ladder
    if not ladder:
        raise RuleViolation("policy escalation.ladder is empty", 422)
    return ladder


def first_rung(facts: TicketFacts, policy: Policy = DEFAULT) -> str:
    """Where escalation starts: a complaint about a supervisor-or-above, customer-service
    staff or company staff goes straight to the estate director (000 §五.2(2));
    everything else starts with the department head."""
    ladder = _ladder(policy)
    if facts.kind is Kind.complaint and facts.about_role in policy.escalation.subject_roles:
        rung = policy.escalation.subject_rung
        if rung not in ladder:
            raise RuleViolation(f"policy escalation.subject_rung {rung!r} is not on the ladder", 422)
        return rung
    return ladder[0]


def next_rung(current_rung: str | None, policy: Policy = DEFAULT) -> str | None:
    """The rung above `current_rung` (the first rung for None); None at the top."""
    ladder = _ladder(policy)
    if current_rung is None:
        return ladder[0]
    if current_rung not in ladder:
        raise RuleViolation(f"{current_rung!r} is not a rung of the escalation ladder {list(ladder)}", 422)
    index = ladder.index(current_rung)
    return ladder[index + 1] if index + 1 < len(ladder) else None


def next_escalation_at(escalated_at: dt.datetime, policy: Policy = DEFAULT) -> dt.datetime:
    """When the next rung is told if the breach is still unresolved."""
    return _elapsed(_aware(escalated_at, "escalated_at"), dt.timedelta(minutes=policy.escalation.minutes_per_rung), policy)


def _money(value, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise RuleViolation(f"{what} {value!r} is not an amount", 422) from None
    if not amount.is_finite():
        raise RuleViolation(f"{what} {value!r} is not an amount", 422)
    return amount


def needs_nonconformity(owner_loss_cny, policy: Policy = DEFAULT) -> bool:
    """An owner's economic loss strictly above the threshold (500 CNY) needs a
    nonconformity record approved by the management representative (004 篇3 §4.2.5)."""
    if owner_loss_cny is None:
        return False
    loss = _money(owner_loss_cny, "owner's loss")
    if loss < 0:
        raise RuleViolation(f"an owner's loss cannot be negative, got {owner_loss_cny}", 422)
    return loss > Decimal(str(policy.escalation.nonconformity_loss_cny))


# --- nonconformity record 不合格品/服务记录处理单 (RULES §2 Nonconformity & CAPA) ---------


@dataclass(frozen=True)
class NonconformityRecord:
    ticket_id: str
    content: str  # 不合格内容
    opened_by: str
    opened_at: dt.datetime
    owner_loss_cny: Decimal | None = None
    state: NonconformityState = NonconformityState.opened
    approved_by: str | None = None
    approved_at: dt.datetime | None = None
    corrective_action: str | None = None
    responsible: str | None = None
    action_started_at: dt.datetime | None = None
    closed_by: str | None = None
    closed_at: dt.datetime | None = None
    result: str | None = None
    capa_report: str | None = None  # 纠正/预防措施报告, after the review meeting
    capa_reported_at: dt.datetime | None = None

    @property
    def last_moment(self) -> dt.datetime:
        moments = [self.opened_at, self.approved_at, self.action_started_at, self.closed_at, self.capa_reported_at]
        return max(m for m in moments if m is not None)


def completion_waits_for_approval(nonconformity_state: NonconformityState | str | None) -> bool:
    """True while the form's nonconformity record (owner's loss above the threshold) still
    waits for the management representative's approval: the form may not return to
    customer service (`completed`), so no callback is planned and the ticket cannot close.
    None (no record) and every later state let it complete.
    Source: RULES §2 Economic loss; 004 篇3 §4.2.5."""
    if nonconformity_state is None:
        return False
    try:
        return NonconformityState(nonconformity_state) is NonconformityState.opened
    except ValueError:
        raise RuleViolation(f"unknown nonconformity state {nonconformity_state!r}", 422) from None


def _expect(record: NonconformityRecord, state: NonconformityState, action: str) -> None:
    if record.state is not state:
        raise RuleViolation(
            f"cannot {action} a nonconformity record that is {record.state.value} (it must be {state.value})", 409
        )


def _moved(record: NonconformityRecord, to: NonconformityState) -> NonconformityState:
    """The record's next state, as shared.lifecycle's table allows it."""
    require_transition(record.state, to, "a nonconformity record")
    return to


def _not_before(moment: dt.datetime, record: NonconformityRecord, action: str) -> None:
    _aware(moment, f"{action} time")
    if moment < record.last_moment:
        raise RuleViolation(f"cannot {action} at {moment.isoformat()}, before the record's previous step", 409)


def open_nonconformity(
    ticket_id: str, content: str, opened_by: str, opened_at: dt.datetime, owner_loss_cny=None
) -> NonconformityRecord:
    """The estate manager convenes the departments and writes the nonconformity."""
    loss = None if owner_loss_cny is None else _money(owner_loss_cny, "owner's loss")
    if loss is not None and loss < 0:
        raise RuleViolation(f"an owner's loss cannot be negative, got {owner_loss_cny}", 422)
    return NonconformityRecord(
        ticket_id=_required(ticket_id, "the ticket"),
        content=_required(content, "the nonconformity content"),
        opened_by=_required(opened_by, "who opened the record"),
        opened_at=_aware(opened_at, "opened_at"),
        owner_loss_cny=loss,
    )


def approve_nonconformity(
    record: NonconformityRecord, approved_by: str, approver_role: str, approved_at: dt.datetime, policy: Policy = DEFAULT
) -> NonconformityRecord:
    _expect(record, NonconformityState.opened, "approve")
    required_role = policy.escalation.nonconformity_approver_role
    if approver_role != required_role:
        raise RuleViolation(f"a nonconformity record is approved by the {required_role}, not by a {approver_role}", 403)
    _not_before(approved_at, record, "approve")
    return replace(
        record,
        state=_moved(record, NonconformityState.approved),
        approved_by=_required(approved_by, "the approver"),
        approved_at=approved_at,
    )


def start_corrective_action(
    record: NonconformityRecord, action: str, responsible: str, started_at: dt.datetime
) -> NonconformityRecord:
    _expect(record, NonconformityState.approved, "start corrective action on")
    _not_before(started_at, record, "start corrective action")
    return replace(
        record,
        state=_moved(record, NonconformityState.corrective_action),
        corrective_action=_required(action, "the corrective action"),
        responsible=_required(responsible, "the person responsible"),
        action_started_at=started_at,
    )


def close_nonconformity(
    record: NonconformityRecord, closed_by: str, result: str, closed_at: dt.datetime
) -> NonconformityRecord:
    _expect(record, NonconformityState.corrective_action, "close")
    _not_before(closed_at, record, "close")
    return replace(
        record,
        state=_moved(record, NonconformityState.closed),
        closed_by=_required(closed_by, "who closed the record"),
        result=_required(result, "the corrective action's result"),
        closed_at=closed_at,
    )


def attach_capa_report(record: NonconformityRecord, report: str, reported_at: dt.datetime) -> NonconformityRecord:
    """After closure a review meeting may produce a corrective/preventive action report."""
    _expect(record, NonconformityState.closed, "attach a CAPA report to")
    if record.capa_report is not None:
        raise RuleViolation("this nonconformity record already has its CAPA report", 409)
    _not_before(reported_at, record, "attach a CAPA report")
    return replace(record, capa_report=_required(report, "the CAPA report"), capa_reported_at=reported_at)


# --- the countersign form's round (RULES §2 Handover ledger, Sign-back) -------------------


# A department line's states and moves are shared.lifecycle's (one vocabulary).
FormStatus = LineState


@dataclass(frozen=True)
class DepartmentProgress:
    department: str
    status: FormStatus = FormStatus.assigned
    arrival_required: bool = False  # repairs: someone must be on site before sign-back
    acknowledged_by: str | None = None
    acknowledged_at: dt.datetime | None = None
    arrived_by: str | None = None
    arrived_at: dt.datetime | None = None
    opinion: str | None = None
    result: str | None = None
    signed_by: str | None = None
    verified_by: str | None = None
    signed_at: dt.datetime | None = None  # the department's sign-back
    verified_at: dt.datetime | None = None  # the head's verification: only then it counts


@dataclass(frozen=True)
class FormRound:
    round: int
    assigned_at: dt.datetime
    departments: tuple[DepartmentProgress, ...] = field(default_factory=tuple)

    def progress(self, department: str) -> DepartmentProgress:
        for entry in self.departments:
            if entry.department == department:
                return entry
        raise RuleViolation(f"department {department} is not assigned to this form", 409)

    def _with(self, updated: DepartmentProgress) -> "FormRound":
        return replace(
            self,
            departments=tuple(updated if e.department == updated.department else e for e in self.departments),
        )


def assign_round(
    departments: Sequence[str],
    assigned_at: dt.datetime,
    round: int = 1,
    arrival_required: Iterable[str] = (),
) -> FormRound:
    if round < 1:
        raise RuleViolation(f"rounds are numbered from 1, got {round}", 422)
    departments = [_required(d, "a department") for d in departments]
    if not departments:
        raise RuleViolation("a form must be assigned to at least one department", 422)
    if len(set(departments)) != len(departments):
        raise RuleViolation(f"a department is assigned twice in {departments}", 422)
    arrival_required = set(arrival_required)
    stray = arrival_required - set(departments)
    if stray:
        raise RuleViolation(f"arrival required of departments not assigned: {sorted(stray)}", 422)
    return FormRound(
        round=round,
        assigned_at=_aware(assigned_at, "assigned_at"),
        departments=tuple(DepartmentProgress(d, arrival_required=d in arrival_required) for d in departments),
    )


def _line_moved(entry: DepartmentProgress, to: LineState) -> LineState:
    """The line's next state, as shared.lifecycle's table allows it."""
    require_transition(entry.status, to, f"department {entry.department}'s line")
    return to


def _after(moment: dt.datetime, earlier: dt.datetime | None, what: str, before_what: str) -> None:
    _aware(moment, what)
    if earlier is not None and moment < earlier:
        raise RuleViolation(f"{what} at {moment.isoformat()} precedes {before_what} at {earlier.isoformat()}", 409)


def apply_acknowledge(state: FormRound, department: str, acknowledged_by: str, acknowledged_at: dt.datetime) -> FormRound:
    """The receiving department signs for the form in the handover ledger."""
    entry = state.progress(department)
    if entry.status is not FormStatus.assigned:
        raise RuleViolation(f"department {department} already acknowledged this form", 409)
    _after(acknowledged_at, state.assigned_at, "acknowledgement", "the assignment")
    return state._with(
        replace(
            entry,
            status=_line_moved(entry, FormStatus.acknowledged),
            acknowledged_by=_required(acknowledged_by, "who acknowledged"),
            acknowledged_at=acknowledged_at,
        )
    )


def apply_arrive(state: FormRound, department: str, arrived_by: str, arrived_at: dt.datetime) -> FormRound:
    entry = state.progress(department)
    if entry.status is FormStatus.assigned:
        raise RuleViolation(f"arrival before acknowledgement by department {department}", 409)
    if entry.status is FormStatus.arrived:
        raise RuleViolation(f"department {department} already arrived on site", 409)
    if entry.status is FormStatus.signed_back:
        raise RuleViolation(f"department {department} already signed back; arrival comes before sign-back", 409)
    if entry.status is FormStatus.awaiting_verification:
        raise RuleViolation(f"department {department}'s sign-back already waits for its head's verification; "
                            "arrival comes before sign-back", 409)
    _after(arrived_at, entry.acknowledged_at, "arrival", "the acknowledgement")
    return state._with(
        replace(entry, status=_line_moved(entry, FormStatus.arrived), arrived_by=_required(arrived_by, "who arrived"), arrived_at=arrived_at)
    )


def apply_sign_back(
    state: FormRound,
    department: str,
    opinion: str,
    result: str,
    signed_by: str,
    verified_by: str | None,
    signed_at: dt.datetime,
) -> FormRound:
    """The department writes its handling opinion and result (签回); the line then waits
    for its head's verification (`awaiting_verify`). `verified_by` is given only when the
    signer is the department's head, who verifies their own sign-back at once
    (`signed_back`). Errors: 409 before acknowledgement / arrival (repairs), or when the
    line was already signed back or awaits verification; 422 for a blank opinion or result.
    Source: RULES §2 Sign-back; seeds 000 §四, §五.2(2); 002 §4.3.1 c,e."""
    entry = state.progress(department)
    if entry.status is FormStatus.assigned:
        raise RuleViolation(f"sign-back before acknowledgement by department {department}", 409)
    if entry.status is FormStatus.signed_back:
        raise RuleViolation(f"department {department} already signed back", 409)
    if entry.status is FormStatus.awaiting_verification:
        raise RuleViolation(f"department {department}'s sign-back already waits for its head's verification", 409)
    if entry.arrival_required and entry.status is not FormStatus.arrived:
        raise RuleViolation(f"sign-back before arrival on site by department {department}", 409)
    _after(signed_at, entry.arrived_at or entry.acknowledged_at, "sign-back", "the previous step")
    head = (verified_by or "").strip() or None
    signed = replace(
        entry,
        status=_line_moved(entry, FormStatus.signed_back if head else FormStatus.awaiting_verification),
        opinion=_required(opinion, "the handling opinion"),
        result=_required(result, "the handling result"),
        signed_by=_required(signed_by, "who signed back"),
        signed_at=signed_at,
        verified_by=head,
        verified_at=signed_at if head else None,
    )
    return state._with(signed)


def _awaiting_head(state: FormRound, department: str) -> DepartmentProgress:
    entry = state.progress(department)
    if entry.status is not FormStatus.awaiting_verification:
        raise RuleViolation(f"department {department}'s line is {entry.status.value}, not waiting for its head's "
                            "verification", 409)
    return entry


def apply_verify(state: FormRound, department: str, verified_by: str, verified_at: dt.datetime) -> FormRound:
    """The department head verifies the sign-back (审核签字): the line is signed back and
    counts for the form's round. Errors: 409 unless the line awaits verification or when
    `verified_at` precedes the sign-back. Source: RULES §2 Sign-back; seeds 000 §四."""
    entry = _awaiting_head(state, department)
    _after(verified_at, entry.signed_at, "verification", "the sign-back")
    return state._with(replace(entry, status=_line_moved(entry, FormStatus.signed_back),
                               verified_by=_required(verified_by, "who verified"), verified_at=verified_at))


def apply_return(state: FormRound, department: str, reason: str, returned_at: dt.datetime) -> FormRound:
    """The head returns the sign-back to the department (退回重办): the opinion and result
    are cleared and the line is back in work (`arrived` when someone was on site, else
    `acknowledged`). Errors: 409 unless the line awaits verification; 422 for a blank
    reason. Source: RULES §2 Sign-back; seeds 002 §4.3.1 e."""
    entry = _awaiting_head(state, department)
    _required(reason, "the reason for returning the sign-back")
    _after(returned_at, entry.signed_at, "return", "the sign-back")
    back = FormStatus.arrived if entry.arrived_at is not None else FormStatus.acknowledged
    return state._with(replace(entry, status=_line_moved(entry, back), opinion=None, result=None,
                               signed_by=None, signed_at=None, verified_by=None, verified_at=None))


def pending_departments(state: FormRound) -> list[str]:
    return [e.department for e in state.departments if e.status is not FormStatus.signed_back]


def round_complete(state: FormRound) -> bool:
    """Every assigned department signed back and its head verified: the form returns to
    customer service."""
    return not pending_departments(state)


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


# --- paid household services (RULES §2 Paid services) -----------------------------------------

CENT = Decimal("0.01")
FINANCE_ROLE = "finance"


@dataclass(frozen=True)
class ServiceItem:
    """A line of the estate's household-service catalogue (free or paid). A paid item
    without a published price is charged case by case."""

    code: str
    name: str
    price_cny: Decimal | None
    paid: bool

    def __post_init__(self) -> None:
        if self.price_cny is not None:
            price = _money(self.price_cny, f"price of {self.name}")
            if price < 0:
                raise RuleViolation(f"price of {self.name} cannot be negative", 422)
            object.__setattr__(self, "price_cny", price)
        if not self.paid and self.price_cny not in (None, Decimal(0)):
            raise RuleViolation(f"{self.name} is a free service and cannot carry a price", 422)


class LineKind(StrEnum):
    service = "service"
    material = "material"  # bought on the owner's behalf (代购材料)


@dataclass(frozen=True)
class BillLine:
    kind: LineKind
    description: str
    quantity: Decimal
    unit_price_cny: Decimal
    code: str | None = None
    price_agreed_by: tuple[str, ...] = ()

    @property
    def amount_cny(self) -> Decimal:
        return (self.quantity * self.unit_price_cny).quantize(CENT)


def _quantity(value) -> Decimal:
    quantity = _money(value, "quantity")
    if quantity <= 0:
        raise RuleViolation(f"a bill line needs a positive quantity, got {value}", 422)
    return quantity


def service_line(
    item: ServiceItem,
    quantity=1,
    *,
    agreed_price_cny=None,
    agreed_by: tuple[str, str] | None = None,
) -> BillLine:
    """A catalogue service on the bill. Free items cost nothing; published prices are
    not negotiable; an unpriced paid item needs a price set together by the engineering
    supervisor and the customer-service supervisor (004 篇2 二.五.3), `agreed_by` =
    (engineering supervisor, customer-service supervisor)."""
    qty = _quantity(quantity)
    if not item.paid:
        if agreed_price_cny is not None:
            raise RuleViolation(f"{item.name} is a free service; it cannot be charged", 422)
        return BillLine(LineKind.service, item.name, qty, Decimal(0), item.code)
    if item.price_cny is not None:
        if agreed_price_cny is not None and _money(agreed_price_cny, "agreed price") != item.price_cny:
            raise RuleViolation(f"{item.name} has a published price of {item.price_cny} CNY", 422)
        return BillLine(LineKind.service, item.name, qty, item.price_cny, item.code)
    if agreed_price_cny is None:
        raise RuleViolation(
            f"{item.name} has no published price; the engineering and customer-service supervisors must set it", 422
        )
    people = tuple(p.strip() for p in (agreed_by or ()) if p and p.strip())
    if len(people) != 2 or people[0] == people[1]:
        raise RuleViolation(
            f"the price of {item.name} must be set by both the engineering and the customer-service supervisor", 422
        )
    price = _money(agreed_price_cny, "agreed price")
    if price < 0:
        raise RuleViolation(f"the agreed price of {item.name} cannot be negative", 422)
    return BillLine(LineKind.service, item.name, qty, price, item.code, people)


def material_line(name: str, quantity, unit_price_cny) -> BillLine:
    price = _money(unit_price_cny, f"price of {name}")
    if price < 0:
        raise RuleViolation(f"the price of material {name} cannot be negative", 422)
    return BillLine(LineKind.material, _required(name, "the material's name"), _quantity(quantity), price)


class BillCopy(StrEnum):
    owner = "owner"  # 业户联: handed to the owner
    finance = "finance"  # 财务联: to the finance clerk, who books and collects
    stub = "stub"  # 存根联: numbered and bound in the archive


class SettlementChannel(StrEnum):
    finance_counter = "finance_counter"
    bank_collection = "bank_collection"  # 委托银行代收 / one-card payment
    technician_cash = "technician_cash"  # never allowed: technicians take no cash


@dataclass(frozen=True)
class Settlement:
    channel: SettlementChannel
    received_by: str
    settled_at: dt.datetime


@dataclass(frozen=True)
class Bill:
    """A repair bill in three copies (owner, finance, stub), all with the same lines."""

    number: str
    ticket_id: str
    lines: tuple[BillLine, ...]
    copies: tuple[BillCopy, ...] = (BillCopy.owner, BillCopy.finance, BillCopy.stub)
    settlement: Settlement | None = None

    @property
    def total_cny(self) -> Decimal:
        return sum((line.amount_cny for line in self.lines), Decimal(0)).quantize(CENT)

    @property
    def services_cny(self) -> Decimal:
        return sum((l.amount_cny for l in self.lines if l.kind is LineKind.service), Decimal(0)).quantize(CENT)

    @property
    def materials_cny(self) -> Decimal:
        return sum((l.amount_cny for l in self.lines if l.kind is LineKind.material), Decimal(0)).quantize(CENT)


def make_bill(number: str, ticket_id: str, lines: Sequence[BillLine]) -> Bill:
    if not lines:
        raise RuleViolation("a bill needs at least one line", 422)
    total = sum((line.amount_cny for line in lines), Decimal(0))
    if total > MONEY_MAX:
        raise RuleViolation(f"a bill of {total} CNY exceeds the largest amount recorded, {MONEY_MAX} CNY", 422)
    return Bill(_required(number, "the bill number"), _required(ticket_id, "the ticket"), tuple(lines))


def settle_bill(
    bill: Bill, channel: SettlementChannel | str, received_by: str, received_by_role: str, settled_at: dt.datetime
) -> Bill:
    """Settlement goes through finance only: technicians never take cash (004 篇2 二.二.3)."""
    try:
        channel = SettlementChannel(channel)
    except ValueError:
        raise RuleViolation(f"unknown settlement channel {channel!r}", 422) from None
    if bill.settlement is not None:
        raise RuleViolation(f"bill {bill.number} is already settled", 409)
    if channel is SettlementChannel.technician_cash:
        raise RuleViolation("technicians take no cash: the bill is settled through finance", 422)
    if received_by_role != FINANCE_ROLE:
        raise RuleViolation(f"only finance settles a bill, not a {received_by_role}", 403)
    return replace(bill, settlement=Settlement(channel, _required(received_by, "who received"), _aware(settled_at, "settled_at")))
