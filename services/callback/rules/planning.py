"""Who is called back and by when (RULES.md §3 Who, When): the callbacks a completed round
calls for, their due times and methods, the activity sample, the special service's mid-way
call, and what a completion leads to (callbacks, the recurrence rule, or closing at once)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from enum import StrEnum

from shared.calendar import WorkingCalendar
from shared.events import Completed, Kind, RepairClass, ReplyMethod
from shared.policy import Policy
from services.callback.rules.common import _days_later, _hours_later, _local, _require_aware


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
