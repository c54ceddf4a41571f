"""Callback 回访 rules (RULES.md §3): who is called back, by when, by which method, what
the owner's answers mean, and how opinions without a callback path are judged.

Pure functions over plain data. Every number comes from `policy.callback` (or, for the
progress-update rhythm, the read-only `policy.clocks`); times must be timezone-aware and
day arithmetic happens in the estate's local time (`policy.timezone`). The callback
service's shell feeds these functions facts from events and stores what they return.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from shared.periods import canonical_category, month_parts, progress_week
from shared.calendar import WorkingCalendar
from shared.errors import RuleViolation
from shared.events import Completed, Kind, RepairClass, ReplyMethod
from shared.policy import Policy


class CallbackRule(StrEnum):
    """Which line of RULES §3 "When" a callback comes from (stored as CallbackScheduled.rule)."""

    complaint = "complaint"  # 002 §4.4.2 b (2 working days) or 001 第9篇 一.1 (3 days)
    small_repair = "small_repair"  # 零星维修, 001 第9篇 一.2
    engineering_supervisor = "engineering_supervisor"  # 工程主管回访, 004 篇2 六.3
    repair_project = "repair_project"  # 维修工程, 001 第9篇 一.2
    special_service_midway = "special_service_midway"  # 特约服务 中期, 001 第9篇 一.3
    special_service_end = "special_service_end"  # 特约服务 结束后, 001 第9篇 一.3
    activity = "activity"  # 文体活动, 001 第9篇 一.4 and 二.4
    other_service = "other_service"  # 其他管理服务工作, 001 第9篇 一.5
    praise = "praise"  # only when the estate switched praise_callback on


class CallbackPurpose(StrEnum):
    # In time? Satisfied with the result? With the attitude? Suggestions; thanks (002 §4.4.2 d).
    satisfaction = "satisfaction"
    # The engineering supervisor checks how the repair went (004 篇2 六.3).
    repair_check = "repair_check"
    # A running special service is asked how it is going before it ends (001 第9篇 一.3).
    midway_check = "midway_check"
    # Praise: thank the owner; there is nothing for them to rate.
    thanks = "thanks"


# Deterministic callback ids: a redelivered `completed` event plans the same ids again,
# so scheduling is idempotent across replicas and restarts.
_CALLBACK_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:estatedesk:callback")


def callback_id_for(ticket_id: str, round: int, rule: CallbackRule | str) -> str:
    """The id of the callback `rule` plans for `ticket_id` in `round` (stable everywhere)."""
    return str(uuid.uuid5(_CALLBACK_NAMESPACE, f"{ticket_id}/{round}/{rule}"))


# --- time helpers ------------------------------------------------------------------------


def _require_aware(moment: dt.datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")


def _local(moment: dt.datetime, policy: Policy, name: str = "moment") -> dt.datetime:
    _require_aware(moment, name)
    return moment.astimezone(ZoneInfo(policy.timezone))


def _days_later(local: dt.datetime, days: int) -> dt.datetime:
    # Aware + timedelta is wall-clock arithmetic in the same zone: "3 days" keeps the
    # local time of day, which is what a person promising "within 3 days" means.
    return local + dt.timedelta(days=days)


def _hours_later(local: dt.datetime, hours: int) -> dt.datetime:
    # Hours are elapsed time, so count them in UTC and show the result locally.
    return (local.astimezone(dt.timezone.utc) + dt.timedelta(hours=hours)).astimezone(local.tzinfo)


# --- planning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletionFacts:
    """What the callback rules need from a `completed` event, plus the complaint's validity
    (from `validity_judged`; None when it was never judged)."""

    ticket_id: str
    kind: Kind
    completed_at: dt.datetime
    round: int = 1
    repair_class: RepairClass | None = None
    reply_method: ReplyMethod = ReplyMethod.phone
    complaint_valid: bool | None = None

    @classmethod
    def from_event(cls, completed: Completed, *, complaint_valid: bool | None = None) -> "CompletionFacts":
        return cls(
            ticket_id=completed.ticket_id,
            kind=completed.kind,
            completed_at=completed.completed_at,
            round=completed.round,
            repair_class=completed.repair_class,
            reply_method=completed.reply_method,
            complaint_valid=complaint_valid,
        )


@dataclass(frozen=True)
class PlannedCallback:
    rule: CallbackRule
    due_at: dt.datetime  # estate-local, aware
    provisional: bool  # depends on a working-day calendar nobody has published yet
    method: ReplyMethod  # the owner's chosen method (002 §4.4.2 c)
    purpose: CallbackPurpose
    ticket_id: str
    round: int
    callback_id: str


def in_activity_sample(ticket_id: str, rate_percent: int) -> bool:
    """Whether an activity ticket falls in the `rate_percent` % that is called back.

    Buckets come from SHA-256 of the ticket id, not Python's per-process salted hash(),
    so every replica and every restart picks the same tickets; raising the rate only adds
    tickets to the sample, never swaps them."""
    digest = hashlib.sha256(ticket_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < rate_percent


def satisfaction_by_recurrence(method: ReplyMethod) -> bool:
    """Whether the owner's satisfaction is judged by the recurrence rule instead of answers.

    No callback path (anonymous, no contact): nobody can be asked (002 §4.4.2 (6)).
    Online: the callback is a one-way online reply (002 §4.4.2 c, (5)), and its
    satisfaction is counted by whether the opinion recurs (002 §4.6.5)."""
    return method in (ReplyMethod.none, ReplyMethod.online)


def _rules_for(facts: CompletionFacts, policy: Policy) -> list[tuple[CallbackRule, CallbackPurpose]]:
    """The callbacks a completion calls for, before any date is computed."""
    if facts.reply_method is ReplyMethod.none:
        # No callback path: the recurrence rule judges the opinion instead.
        return []
    cb = policy.callback
    match facts.kind:
        case Kind.complaint:
            # Only valid complaints are called back (RULES §3 Who). Invalidity needs a
            # manager's confirmation (RULES §1), so an unjudged complaint counts as valid.
            if facts.complaint_valid is False:
                return []
            return [(CallbackRule.complaint, CallbackPurpose.satisfaction)]
        case Kind.repair:
            if facts.repair_class is RepairClass.project:
                return [(CallbackRule.repair_project, CallbackPurpose.satisfaction)]
            # Every other class (and an unclassified repair) is a household 零星维修:
            # the owner's callback plus the engineering supervisor's own check.
            return [
                (CallbackRule.small_repair, CallbackPurpose.satisfaction),
                (CallbackRule.engineering_supervisor, CallbackPurpose.repair_check),
            ]
        case Kind.special_service:
            # The mid-way call is planned when the service starts (plan_midway_callback).
            return [(CallbackRule.special_service_end, CallbackPurpose.satisfaction)]
        case Kind.activity:
            if in_activity_sample(facts.ticket_id, cb.activity_rate_percent):
                return [(CallbackRule.activity, CallbackPurpose.satisfaction)]
            return []
        case Kind.praise:
            # RULES §3 Who names complaints, repairs and special services (100 %) and
            # activities (70 %); for other work 001 第9篇 二.5 leaves the rate to
            # circumstances. A praise has no handling whose timeliness, result or attitude
            # the owner could rate (002 §4.4.2 d): a satisfaction call would ask them to
            # rate their own compliment and inflate the satisfaction rate. The owner is
            # thanked when the praise is acknowledged; an estate may still switch a
            # thank-you call on with praise_callback.
            if cb.praise_callback:
                return [(CallbackRule.praise, CallbackPurpose.thanks)]
            return []
        case _:
            # Inquiry, suggestion, situation report: "other services" (001 第9篇 一.5),
            # which is also the source's catch-all for any kind added later.
            return [(CallbackRule.other_service, CallbackPurpose.satisfaction)]


def _complaint_due(local: dt.datetime, policy: Policy, calendar: WorkingCalendar) -> tuple[dt.datetime, bool]:
    cb = policy.callback
    if cb.complaint_rule == "calendar_days":
        return _days_later(local, cb.complaint_calendar_days), False
    result = calendar.add_working_days(local, cb.complaint_working_days)
    return result.value, result.provisional


def recompute_complaint_due(
    completed_at: dt.datetime,
    due_at: dt.datetime,
    provisional: bool,
    policy: Policy,
    calendar: WorkingCalendar,
) -> tuple[dt.datetime, bool] | None:
    """A pending complaint callback's window counted again on today's calendar: every
    change of the company's calendar (a year loaded or corrected, a typhoon day off)
    moves it, provisional or not (issue 10). Returns (due_at, provisional) when either
    changed, else None; None too under the calendar-days rule, which no calendar moves.
    Source: RULES §3 When (complaint); 002 §4.4.2 b."""
    _require_aware(due_at, "due_at")
    if policy.callback.complaint_rule != "working_days":
        return None
    due, now_provisional = _complaint_due(_local(completed_at, policy, "completed_at"), policy, calendar)
    if due == due_at and now_provisional == provisional:
        return None
    return due, now_provisional


def plan_callbacks(facts: CompletionFacts, policy: Policy, calendar: WorkingCalendar) -> list[PlannedCallback]:
    """The callbacks a completed round calls for (RULES §3 When), earliest first.

    Calendar-day windows keep the completion's local time of day; the complaint's
    working-day window follows `calendar` and carries its provisional flag."""
    local = _local(facts.completed_at, policy, "completed_at")
    cb = policy.callback
    planned = []
    for rule, purpose in _rules_for(facts, policy):
        provisional = False
        match rule:
            case CallbackRule.complaint:
                due, provisional = _complaint_due(local, policy, calendar)
            case CallbackRule.small_repair:
                due = _days_later(local, cb.small_repair_days)
            case CallbackRule.engineering_supervisor:
                due = _hours_later(local, cb.engineering_supervisor_hours)
            case CallbackRule.repair_project:
                due = _days_later(local, cb.repair_project_days)
            case CallbackRule.special_service_end:
                due = _days_later(local, cb.special_service_end_days)
            case CallbackRule.activity:
                due = _days_later(local, cb.activity_days)
            case CallbackRule.other_service | CallbackRule.praise:
                due = _days_later(local, cb.other_service_days)
            case _:  # pragma: no cover - _rules_for never yields another rule here
                raise AssertionError(f"no due-time rule for {rule}")
        planned.append(
            PlannedCallback(
                rule=rule,
                due_at=due,
                provisional=provisional,
                method=facts.reply_method,
                purpose=purpose,
                ticket_id=facts.ticket_id,
                round=facts.round,
                callback_id=callback_id_for(facts.ticket_id, facts.round, rule),
            )
        )
    return sorted(planned, key=lambda p: (p.due_at, p.rule))


def plan_midway_callback(
    ticket_id: str,
    starts_at: dt.datetime,
    expected_end: dt.datetime | None,
    method: ReplyMethod,
    policy: Policy,
    *,
    round: int = 1,
) -> PlannedCallback | None:
    """The mid-way callback of a special service, planned when it is accepted/assigned.

    Due half-way through the expected service period; when the end is not known yet,
    `special_service_midway_default_days` after the start. A service expected to last
    less than `special_service_midway_min_days` has no middle worth a call (its end
    callback covers it), and an owner with no callback path cannot be called: None."""
    cb = policy.callback
    if method is ReplyMethod.none:
        return None
    start = _local(starts_at, policy, "starts_at")
    if expected_end is None:
        due = _days_later(start, cb.special_service_midway_default_days)
    else:
        end = _local(expected_end, policy, "expected_end")
        period = end - start
        if period < dt.timedelta(days=cb.special_service_midway_min_days):
            return None
        due = (start + period / 2).replace(microsecond=0)
    rule = CallbackRule.special_service_midway
    return PlannedCallback(
        rule=rule,
        due_at=due,
        provisional=False,
        method=method,
        purpose=CallbackPurpose.midway_check,
        ticket_id=ticket_id,
        round=round,
        callback_id=callback_id_for(ticket_id, round, rule),
    )


# --- what a completion leads to --------------------------------------------------------------


def decides_outcome(purpose: CallbackPurpose, method: ReplyMethod, answered_by_owner: bool = False) -> bool:
    """Whether recording a callback of this purpose, made by this method, closes or
    reopens the ticket. The supervisor's repair check and the mid-way check inform but
    do not judge; an online reply is one-way, so the recurrence rule judges instead -
    unless the owner answered the questions themselves on the owners' page (issue 15):
    then the online reply is two-way and decides exactly as a desk callback does
    (002 §4.4.2 c, d)."""
    if purpose is CallbackPurpose.thanks:
        return True
    if purpose is not CallbackPurpose.satisfaction:
        return False
    return answered_by_owner or not satisfaction_by_recurrence(method)


def counts_in_rate(purpose: CallbackPurpose) -> bool:
    """Whether a callback is one of the owner callbacks RULES §3 Who counts (the callback
    rate's and the satisfaction rate's base). The engineering supervisor's check, the
    mid-way check and a thank-you call are extra calls on top of it."""
    return purpose is CallbackPurpose.satisfaction


@dataclass(frozen=True)
class CompletionPlan:
    callbacks: list[PlannedCallback]
    # No callback path (or a one-way online reply): the recurrence rule judges satisfaction.
    judged_by_recurrence: bool
    # Nothing will judge this round: the ticket closes at once.
    close_now: bool
    close_reason: str | None


def _no_callback_reason(facts: CompletionFacts, policy: Policy) -> str:
    if facts.kind is Kind.complaint and facts.complaint_valid is False:
        return "invalid complaint: no callback (RULES §3 Who)"
    if facts.kind is Kind.praise:
        return "praise: no satisfaction callback"
    if facts.kind is Kind.activity:
        return f"activity outside the {policy.callback.activity_rate_percent} % callback sample"
    return "no callback required"


def plan_completion(facts: CompletionFacts, policy: Policy, calendar: WorkingCalendar) -> CompletionPlan:
    """Everything a completed round leads to: the callbacks to schedule, whether the
    recurrence rule must judge it, or whether it closes at once because nothing will.

    The recurrence rule applies where a satisfaction callback would be owed if the owner
    could be reached (RULES §3 No callback path): an invalid complaint or a praise
    without contact details is closed, not watched for a month."""
    callbacks = plan_callbacks(facts, policy, calendar)
    by_recurrence = satisfaction_by_recurrence(facts.reply_method) and any(
        purpose is CallbackPurpose.satisfaction
        for _, purpose in _rules_for(dataclasses.replace(facts, reply_method=ReplyMethod.phone), policy)
    )
    deciding = any(decides_outcome(p.purpose, p.method) for p in callbacks)
    close_now = not deciding and not by_recurrence
    return CompletionPlan(
        callbacks=callbacks,
        judged_by_recurrence=by_recurrence,
        close_now=close_now,
        close_reason=_no_callback_reason(facts, policy) if close_now else None,
    )


def callback_assignee(purpose: CallbackPurpose, first_contact: str | None, repair_supervisor: str | None) -> str | None:
    """Who makes the call: the engineering supervisor checks a repair himself (004 篇2 六.3);
    every other callback stays with the first-contact owner, who tracks the request until
    it is resolved (RULES §1 First-contact responsibility)."""
    if purpose is CallbackPurpose.repair_check and repair_supervisor:
        return repair_supervisor
    return first_contact


# --- worklist ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingCallback:
    """A scheduled callback not yet made, as the worklist shows it."""

    callback_id: str
    ticket_id: str
    due_at: dt.datetime
    method: ReplyMethod
    rule: str
    round: int = 1
    provisional: bool = False
    assigned_to: str | None = None


@dataclass(frozen=True)
class WorklistEntry:
    item: PendingCallback
    overdue: bool
    overdue_by: dt.timedelta  # zero unless overdue


def is_overdue(item: PendingCallback, now: dt.datetime) -> bool:
    """A callback is overdue once `now` is past its due time (due exactly now is not)."""
    _require_aware(now, "now")
    return now > item.due_at


def order_worklist(items: Iterable[PendingCallback], now: dt.datetime) -> list[WorklistEntry]:
    """Pending callbacks, most urgent first (earliest due; ties by ticket and callback id
    so every replica shows the same order), each marked overdue or not."""
    _require_aware(now, "now")
    ordered = sorted(items, key=lambda i: (i.due_at, i.ticket_id, i.callback_id))
    return [
        WorklistEntry(
            item=item,
            overdue=is_overdue(item, now),
            overdue_by=max(now - item.due_at, dt.timedelta(0)),
        )
        for item in ordered
    ]


# --- recording the outcome ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    event: Literal["closed", "reopened"]
    # closed: the round the owner was satisfied in; reopened: the new round's number.
    round: int
    # A new callback follows the reopened round's completion.
    call_back_again: bool
    # Register a new complaint about the handler's attitude (a valid complaint, RULES §1).
    open_attitude_complaint: bool
    reason: str


def decide_outcome(
    result_satisfied: bool, attitude_satisfied: bool, current_round: int, *, policy: Policy
) -> Outcome:
    """What the owner's answers mean (RULES §3 Not satisfied).

    Not satisfied with the result: the form goes back to the handler for another round
    and is called back again, until the owner is satisfied (002 §4.4.2 d; 001 第9篇 五.2).

    Satisfied with the result but not with the attitude: re-doing the work cannot mend
    how the owner was treated, and staff attitude is itself a ground for a valid
    complaint (RULES §1 Complaint validity). So by default the ticket closes and a new
    attitude complaint is opened, which is routed and escalated by its subject (RULES §2)
    and called back on its own. An estate that reads 002 §4.4.2 d ("如仍存在问题 … 再一次
    的循环操作") strictly sets attitude_dissatisfied="reopen" to send the same ticket round
    again instead. Under the default an attitude complaint is also opened when both
    answers are "no"."""
    if current_round < 1:
        raise RuleViolation(f"rounds start at 1, got {current_round}", status=422)
    attitude_as_complaint = policy.callback.attitude_dissatisfied == "new_complaint"
    open_attitude_complaint = not attitude_satisfied and attitude_as_complaint
    if result_satisfied and (attitude_satisfied or attitude_as_complaint):
        reason = "owner satisfied with the result"
        if not attitude_satisfied:
            reason += "; attitude complaint opened"
        return Outcome("closed", current_round, False, open_attitude_complaint, reason)
    reasons = []
    if not result_satisfied:
        reasons.append("owner not satisfied with the result")
    if not attitude_satisfied:
        reasons.append("owner not satisfied with the attitude")
    return Outcome("reopened", current_round + 1, True, open_attitude_complaint, "; ".join(reasons))


@dataclass(frozen=True)
class CallbackAnswers:
    """What the owner said on a callback (002 §4.4.2 d) and how the call was made."""

    handled_in_time: bool
    result_satisfied: bool
    attitude_satisfied: bool
    suggestions: str
    owner_confirmed: bool
    method: ReplyMethod


def check_resubmission(recorded: CallbackAnswers, submitted: CallbackAnswers) -> None:
    """A second submit of a callback already recorded. The same answers are a double
    submit, answered with the first record; different answers are refused, because a
    signed record is never altered (RULES §5 Integrity) — a new opinion is a new request."""
    differing = [
        field.name
        for field in dataclasses.fields(CallbackAnswers)
        if _normalised(getattr(recorded, field.name)) != _normalised(getattr(submitted, field.name))
    ]
    if differing:
        raise RuleViolation(
            "this callback is already recorded with different answers "
            f"({', '.join(differing)}); a recorded callback is never altered",
            status=409,
        )


def _normalised(value):
    return value.strip() if isinstance(value, str) else value


def check_call_method(method: ReplyMethod) -> None:
    """A callback is made by phone, visit, letter or online (002 §4.4.2 c); "none" is the
    absence of a callback path, not a way of calling."""
    if method is ReplyMethod.none:
        raise RuleViolation("a callback is made by phone, visit, letter or online, not 'none'", status=422)


def check_recordable(status: str, cancel_reason: str | None = None) -> None:
    """Only a scheduled callback can be recorded (a done one is handled by check_resubmission)."""
    if status == "cancelled":
        raise RuleViolation(f"this callback was cancelled ({cancel_reason or 'no reason given'}); there is nothing to record")
    if status not in ("pending", "done"):
        raise RuleViolation(f"a callback in status {status!r} cannot be recorded")


def record_outcome(
    purpose: CallbackPurpose,
    method: ReplyMethod,
    answers: CallbackAnswers,
    callback_round: int,
    *,
    current_round: int,
    ticket_closed: bool,
    policy: Policy,
    answered_by_owner: bool = False,
) -> Outcome | None:
    """What recording this callback does to the ticket; None when it only records.

    `method` is the method the callback was planned with (the owner's choice): an online
    reply stays one-way even if the staff member noted another method. A callback of a
    round the ticket has left (or of a closed ticket) records the answers and decides
    nothing: that round was already judged. `answered_by_owner`: the owner gave the
    answers on the owners' page (see decides_outcome)."""
    if not decides_outcome(purpose, method, answered_by_owner):
        return None
    if ticket_closed or callback_round != current_round:
        return None
    if purpose is CallbackPurpose.thanks:
        return Outcome("closed", callback_round, False, False, "owner thanked for the praise")
    return decide_outcome(answers.result_satisfied, answers.attitude_satisfied, callback_round, policy=policy)


def callback_submission_key(ticket_id: str, callback_id: str, round: int) -> str:
    """Idempotency key of recording one callback: a double submit yields the same key.

    The answers are deliberately not part of it: a second submit with different answers
    is still the same callback recorded twice, and a signed record is never altered
    (RULES §5 Integrity), so the shell refuses it rather than overwriting."""
    material = "\x1f".join(("callback_done", ticket_id, callback_id, str(round)))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# --- recurrence rule (no callback path) --------------------------------------------------


@dataclass(frozen=True)
class OpinionFact:
    """One owner opinion as the recurrence rule sees it.

    `completed_at` starts the first opinion's window (一个月内 after handling). A later
    opinion counts from when it was raised (`raised_at`), falling back to `completed_at`
    when the shell knows only that."""

    ticket_id: str
    category: str
    department: str
    estate: str
    completed_at: dt.datetime | None = None
    raised_at: dt.datetime | None = None
    kind: Kind | None = None

    @property
    def appeared_at(self) -> dt.datetime:
        moment = self.raised_at or self.completed_at
        if moment is None:
            raise ValueError(f"opinion {self.ticket_id} has neither raised_at nor completed_at")
        return moment


RecurrenceVerdict = Literal["not_satisfied", "satisfied"]


def window_end(first: OpinionFact, policy: Policy) -> dt.datetime:
    """End (exclusive) of the recurrence window: `recurrence_window_days` calendar days
    after the first opinion was completed, at the same local time of day."""
    if first.completed_at is None:
        raise ValueError(f"opinion {first.ticket_id} is not completed: no recurrence window yet")
    return _days_later(_local(first.completed_at, policy, "completed_at"), policy.callback.recurrence_window_days)


def _same_key(value: str) -> str:
    return canonical_category(value)


def recurring_opinions(first: OpinionFact, later_opinions: Iterable[OpinionFact], policy: Policy) -> list[OpinionFact]:
    """Later opinions that make the first count as not satisfied: same estate, same
    department, same category (002 §4.6.5), raised in [completed, window end).

    Opinions raised while the first was still being handled are the same problem, not a
    recurrence after handling (经处理后). A praise is no sign of dissatisfaction."""
    start = first.completed_at
    if start is None:
        raise ValueError(f"opinion {first.ticket_id} is not completed: no recurrence window yet")
    _require_aware(start, "completed_at")
    end = window_end(first, policy)
    found = []
    for later in later_opinions:
        if later.ticket_id == first.ticket_id or later.kind is Kind.praise:
            continue
        if (
            _same_key(later.estate) != _same_key(first.estate)
            or _same_key(later.department) != _same_key(first.department)
            or _same_key(later.category) != _same_key(first.category)
        ):
            continue
        appeared = later.appeared_at
        _require_aware(appeared, "appeared_at")
        if start <= appeared < end:
            found.append(later)
    return sorted(found, key=lambda o: (o.appeared_at, o.ticket_id))


def recurrence_decision(
    first: OpinionFact, later_opinions: Iterable[OpinionFact], now: dt.datetime, policy: Policy
) -> RecurrenceVerdict | None:
    """RULES §3 No callback path: a same-category opinion in the same department within
    the window makes the first "not_satisfied" at once; none by the window's end makes it
    "satisfied"; until then None (undecided)."""
    _require_aware(now, "now")
    if recurring_opinions(first, later_opinions, policy):
        return "not_satisfied"
    if now >= window_end(first, policy):
        return "satisfied"
    return None


def recurrence_verdict(
    firsts: Sequence[OpinionFact], later_opinions: Iterable[OpinionFact], now: dt.datetime, policy: Policy
) -> tuple[RecurrenceVerdict | None, list[OpinionFact]]:
    """The recurrence decision for an opinion handled by several departments (one
    OpinionFact per department): a recurrence in any of them makes it "not_satisfied";
    "satisfied" only once the window has elapsed for all. Also returns the recurring
    opinions, earliest first."""
    if not firsts:
        raise ValueError("an opinion needs at least one department for the recurrence rule")
    later = list(later_opinions)
    recurring: dict[str, OpinionFact] = {}
    verdicts = []
    for first in firsts:
        verdicts.append(recurrence_decision(first, later, now, policy))
        for opinion in recurring_opinions(first, later, policy):
            recurring.setdefault(opinion.ticket_id, opinion)
    found = sorted(recurring.values(), key=lambda o: (o.appeared_at, o.ticket_id))
    if "not_satisfied" in verdicts:
        return "not_satisfied", found
    if all(v == "satisfied" for v in verdicts):
        return "satisfied", []
    return None, []


def recurrence_key(category: str) -> str:
    """The form in which categories are compared (and grouped) by the recurrence rule."""
    return _same_key(category)


# --- walk-around visits ------------------------------------------------------------------


@dataclass(frozen=True)
class VisitTally:
    visits: int  # visits made in the month
    missing: int  # visits short of visits_per_month_min
    over_max: bool  # more than visits_per_month_max (the procedure says 2–3)
    excess: int  # visits beyond visits_per_month_max


def visit_shortfall(
    visits_by_staff: Mapping[str, Iterable[dt.date]],
    month: tuple[int, int],
    staff_list: Iterable[str],
    policy: Policy,
) -> dict[str, VisitTally]:
    """Each listed customer-service staff member's walk-around visits in `month`
    (year, month) against the 2–3 a month of RULES §3 (002 §4.5.1).

    Dates are the estate's local dates: a datetime is refused, because near midnight its
    month depends on a timezone this function cannot know. Staff not on the list are
    not under the obligation and are left out."""
    year, month_number = month
    if not 1 <= month_number <= 12:
        raise RuleViolation(f"month must be 1..12, got {month_number}", status=422)
    cb = policy.callback
    tallies = {}
    for staff in staff_list:
        made = 0
        for day in visits_by_staff.get(staff, ()):
            if isinstance(day, dt.datetime):
                raise TypeError(f"visit dates must be local dates, got datetime {day!r}")
            made += (day.year, day.month) == (year, month_number)
        tallies[staff] = VisitTally(
            visits=made,
            missing=max(cb.visits_per_month_min - made, 0),
            over_max=made > cb.visits_per_month_max,
            excess=max(made - cb.visits_per_month_max, 0),
        )
    return tallies


def parse_month(text: str) -> tuple[int, int]:
    """A report month written YYYY-MM → (year, month); anything else is refused (422)."""
    return month_parts(text)


def check_visit_date(visited_on: dt.date, today: dt.date) -> None:
    """A walk-around visit is recorded after it took place: a future date is refused."""
    if isinstance(visited_on, dt.datetime):
        raise TypeError(f"visit dates must be local dates, got datetime {visited_on!r}")
    if visited_on > today:
        raise RuleViolation(f"visit date {visited_on.isoformat()} is in the future (today is {today.isoformat()})", status=422)


# --- progress updates for long-running complaints ----------------------------------------


@dataclass(frozen=True)
class ProgressUpdateStatus:
    required: bool  # open long enough for the weekly rhythm to apply
    applies_from: dt.datetime
    week_start: dt.datetime | None
    week_end: dt.datetime | None
    done_this_week: int
    missing_this_week: int
    next_update_due_at: dt.datetime | None
    overdue: bool


def weekly_update_status(
    opened_at: dt.datetime, update_times: Iterable[dt.datetime], now: dt.datetime, policy: Policy
) -> ProgressUpdateStatus:
    """Where a still-open complaint stands this week on "at least N updates a week"
    (RULES §2 Progress updates; 002 §4.4.1 b), once it has been open
    `progress_updates_after_days`: the worklist's reminder. Whether a finished week was
    met or missed is dispatch's verdict (clock_settled), counted, never judged here.

    Weeks are dispatch's (`shared.periods.progress_week`). The N updates of a week are
    spread evenly, so the next one is due at the next 1/N of the week not yet covered:
    with 2 a week, half-way and at the end; once a week has its N, the next week's first
    slot."""
    clocks = policy.clocks
    tz = ZoneInfo(policy.timezone)
    _require_aware(opened_at, "opened_at")
    _require_aware(now, "now")
    times = list(update_times)
    for moment in times:
        _require_aware(moment, "update time")
    # Elapsed-time arithmetic in UTC; results shown in local time.
    utc_opened = opened_at.astimezone(dt.timezone.utc)
    applies_from, _ = progress_week(utc_opened, utc_opened, clocks.progress_updates_after_days)
    per_week = clocks.progress_updates_per_week
    if per_week <= 0 or now < applies_from:
        return ProgressUpdateStatus(False, applies_from.astimezone(tz), None, None, 0, 0, None, False)
    week_start, week_end = progress_week(utc_opened, now, clocks.progress_updates_after_days)
    done = sum(week_start <= t < week_end and t <= now for t in times)
    slot = (week_end - week_start) / per_week
    if done < per_week:
        next_due = week_start + slot * (done + 1)
    else:
        next_due = week_end + slot
    return ProgressUpdateStatus(
        required=True,
        applies_from=applies_from.astimezone(tz),
        week_start=week_start.astimezone(tz),
        week_end=week_end.astimezone(tz),
        done_this_week=done,
        missing_this_week=max(per_week - done, 0),
        next_update_due_at=next_due.astimezone(tz),
        overdue=now > next_due,
    )


# --- callback metrics --------------------------------------------------------------------


def _ratio(part: int, whole: int, part_name: str, whole_name: str) -> float | None:
    if part < 0 or whole < 0:
        raise ValueError(f"{part_name} and {whole_name} must not be negative ({part}, {whole})")
    if part > whole:
        raise ValueError(f"{part_name} ({part}) cannot exceed {whole_name} ({whole})")
    if whole == 0:
        return None  # nothing was required: no rate, rather than 0 % or 100 %
    return part / whole


def callback_rate(required: int, done: int) -> float | None:
    """Share (0..1) of required callbacks that were made; None when none was required.
    `done` counts only callbacks that were required (an extra call to an activity outside
    the sample is not part of the rate)."""
    return _ratio(done, required, "done", "required")


def satisfaction_rate(satisfied: int, answered: int) -> float | None:
    """Share (0..1) of answered callbacks whose owner was satisfied; None when none answered."""
    return _ratio(satisfied, answered, "satisfied", "answered")


def check_owner_may_answer(purpose: CallbackPurpose, method: ReplyMethod, status: str) -> None:
    """The owners' page answers a satisfaction callback the owner chose to get online
    (issue 15; 002 §4.4.2 c): a phone or visit callback is the desk's to make."""
    if purpose is not CallbackPurpose.satisfaction:
        raise RuleViolation("only the satisfaction callback is answered on the owners' page", status=409,
                            zh="此回访由工作人员完成")
    if method is not ReplyMethod.online:
        raise RuleViolation(f"this callback will be made by {method.value}, not online", status=409,
                            zh="您选择了其他回访方式，工作人员会与您联系")
    if status not in ("pending", "done"):  # done: the same answers again are a duplicate, not an error
        raise RuleViolation(f"this callback is {status}, not waiting for answers", status=409, zh="该回访已取消")
