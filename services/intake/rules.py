"""Intake policy as pure functions: form numbers, office hours and shift handover,
complaint validity, the owner's signature, and masking of owners' personal data.

No I/O here. Every number comes from a `Policy`; working days come from a
`WorkingCalendar`; times are timezone-aware and working-day arithmetic happens in the
estate's local time (`policy.timezone`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from shared.calendar import WorkingCalendar
from shared.errors import RuleViolation  # one definition; these rules refuse with 422 unless a move is refused (409)
from shared.events import Channel, Kind, ReplyMethod, ValidityJudged
from shared.policy import Policy
from shared.periods import month_parts


# --- time helpers ------------------------------------------------------------------------


def _aware(moment: dt.datetime, name: str) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RuleViolation(f"{name} must be timezone-aware, got {moment.isoformat()}", 422)
    return moment


def _local(moment: dt.datetime, policy: Policy, name: str) -> dt.datetime:
    return _aware(moment, name).astimezone(ZoneInfo(policy.timezone))


def _clock_time(value: str, name: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise RuleViolation(f"policy intake.{name} {value!r} is not a HH:MM time", 422) from None


def office_hours(policy: Policy) -> tuple[dt.time, dt.time]:
    """(opens, closes) of the customer-service centre's day shift, local time."""
    opens = _clock_time(policy.intake.office_opens, "office_opens")
    closes = _clock_time(policy.intake.office_closes, "office_closes")
    if opens >= closes:
        raise RuleViolation(
            f"office hours must open before they close, got {policy.intake.office_opens}"
            f"–{policy.intake.office_closes}"
 , 422       )
    return opens, closes


# --- form numbers --------------------------------------------------------------------------

_ESTATE_IN_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def form_number(estate: str, year: int, sequence: int, policy: Policy | None = None) -> str:
    """The countersign form's number: ESTATE-YEAR-SEQUENCE, e.g. "HX01-2026-000123".

    Numbers run per estate per year without gaps; the caller allocates `sequence`
    (store.FormNumbers.take, in the registering transaction). The estate code is
    upper-cased as printed on paper.
    """
    digits = (policy or Policy()).intake.form_sequence_digits
    if not _ESTATE_IN_NUMBER.match(estate or ""):
        raise RuleViolation(f"estate code {estate!r} cannot appear in a form number", 422)
    if not 1000 <= year <= 9999:
        raise RuleViolation(f"form year {year} must have four digits", 422)
    if sequence < 1:
        raise RuleViolation(f"form sequence starts at 1, got {sequence}", 422)
    if sequence >= 10**digits:
        raise RuleViolation(
            f"form sequence {sequence} does not fit in {digits} digits; widen "
            "policy intake.form_sequence_digits", 422
        )
    return f"{estate.upper()}-{year:04d}-{sequence:0{digits}d}"


# --- office hours and shift handover (RULES §1 Opening hours) -----------------------------


def is_off_hours(received_at: dt.datetime, policy: Policy, calendar: WorkingCalendar) -> bool:
    """True outside the day shift or on a non-working day: duty staff registered it."""
    local = _local(received_at, policy, "received_at")
    opens, closes = office_hours(policy)
    if not calendar.is_working_day(local.date()):
        return True
    return not (opens <= local.time() < closes)


def handover_due(received_at: dt.datetime, policy: Policy, calendar: WorkingCalendar) -> dt.datetime:
    """When an off-hours registration must be with customer service: the next working
    day's opening (shift handover). A request received in office hours is already with
    the day shift, so its handover is the moment it was received."""
    local = _local(received_at, policy, "received_at")
    if not is_off_hours(local, policy, calendar):
        return local
    opens, _ = office_hours(policy)
    return calendar.next_working_day_start(local, opens)


# --- complaint validity (RULES §1 Complaint validity, Invalid complaint) ------------------


class ValidityState(StrEnum):
    """Where a validity judgement stands (RULES §1 Complaint validity)."""

    valid = "valid"  # final at once: a valid complaint needs nobody's confirmation
    awaiting_confirmation = "awaiting_confirmation"  # judged invalid; the manager has not acted
    confirmed = "confirmed"  # the manager confirmed it invalid: handling ends
    rejected = "rejected"  # the manager rejected the invalid judgement: the complaint is valid


@dataclass(frozen=True)
class ValidityJudgement:
    valid: bool
    reason: str
    judged_by: str
    confirmed_by: str | None
    judged_at: dt.datetime
    # Invalid only: the owner must hear the reason by then (working days, local time).
    notify_owner_by: dt.datetime | None
    provisional: bool = False
    state: ValidityState = ValidityState.valid

    def to_payload(self, ticket_id: str) -> ValidityJudged:
        return ValidityJudged(
            ticket_id=ticket_id,
            valid=self.valid,
            reason=self.reason,
            judged_by=self.judged_by,
            confirmed_by=self.confirmed_by,
            notify_owner_by=self.notify_owner_by,
        )


def judge_validity(
    kind: Kind | str,
    valid: bool,
    reason: str,
    judged_by: str,
    confirmed_by: str | None,
    judged_at: dt.datetime,
    policy: Policy,
    calendar: WorkingCalendar,
) -> ValidityJudgement:
    """Judge a complaint valid or invalid.

    Only complaints are judged. Every judgement states its reason. A valid judgement is
    final. An invalid one is never final here: it waits `awaiting_confirmation` (with
    `confirmed_by` None, whatever the judge wrote there) until a manager other than the
    judge confirms or rejects it with their own sign-in (`confirm_invalid`). The clock to
    tell the owner why (policy.intake.invalid_complaint_notice_working_days) runs from
    this judgement, not from the confirmation. Source: RULES §1 Complaint validity,
    Invalid complaint; 002 §4.2.2, §4.2.4; 003 §4 3.B.
    """
    try:
        kind = Kind(kind)
    except ValueError:
        raise RuleViolation(f"unknown kind {kind!r}", 422) from None
    if kind is not Kind.complaint:
        raise RuleViolation(f"only complaints are judged valid or invalid, not a {kind.value}", 409)
    if not (reason or "").strip():
        raise RuleViolation("a validity judgement must state its reason", 422)
    if not (judged_by or "").strip():
        raise RuleViolation("a validity judgement must name who judged it", 422)
    local = _local(judged_at, policy, "judged_at")
    if valid:
        return ValidityJudgement(True, reason.strip(), judged_by, None, local, None)
    notice = invalid_notice_due(local, policy, calendar)
    return ValidityJudgement(
        False, reason.strip(), judged_by, None, local, notice.value, notice.provisional,
        ValidityState.awaiting_confirmation,
    )


def invalid_notice_due(judged_at: dt.datetime, policy: Policy, calendar: WorkingCalendar):
    """When the owner must hear why the complaint is invalid: policy.intake.
    invalid_complaint_notice_working_days working days after the judgement, on the
    estate's calendar (a WorkingDayResult: value and provisional flag). Counted again on
    every calendar change while the notice is owed. Source: RULES §1 Invalid complaint;
    003 §4 3.B."""
    return calendar.add_working_days(_local(judged_at, policy, "judged_at"),
                                     policy.intake.invalid_complaint_notice_working_days)


def confirm_invalid(
    state: ValidityState | str | None,
    judged_by: str,
    manager: str,
    manager_roles: set[str] | frozenset[str] | list[str] | tuple[str, ...],
    confirm: bool,
    policy: Policy,
) -> ValidityState:
    """The manager's answer to an invalid judgement: `confirmed` (handling ends, the owner
    is told why) or `rejected` (the complaint is valid after all).

    `manager` and `manager_roles` come from the caller's own sign-in, never from the
    judge's form. Raises RuleViolation 409 when nothing awaits confirmation, 403 when the
    caller holds none of policy.intake.invalid_confirmation_roles or is the judge.
    Source: RULES §1 Complaint validity ("invalid needs a manager's confirmation");
    002 §4.2.2, §4.2.4."""
    try:
        state = ValidityState(state) if state is not None else None
    except ValueError:
        raise RuleViolation(f"unknown validity state {state!r}", 422) from None
    if state is not ValidityState.awaiting_confirmation:
        raise RuleViolation("no invalid judgement of this complaint awaits confirmation", 409)
    if not any(role in policy.intake.invalid_confirmation_roles for role in manager_roles):
        raise RuleViolation(
            "an invalid complaint is confirmed or rejected only by a manager "
            f"({', '.join(policy.intake.invalid_confirmation_roles)}) with their own sign-in", 403
        )
    if (manager or "").strip() == (judged_by or "").strip():
        raise RuleViolation(
            f"an invalid complaint must be confirmed by a manager other than its judge {judged_by!r}", 403
        )
    return ValidityState.confirmed if confirm else ValidityState.rejected


def notice_late(notify_owner_by: dt.datetime | None, owner_notified_at: dt.datetime | None) -> bool:
    """True when the owner heard an invalid judgement's reason after its deadline; stays
    true once the notice is given (RULES §1 Invalid complaint; 003 §4 3.B)."""
    return notify_owner_by is not None and owner_notified_at is not None and owner_notified_at > notify_owner_by


# --- the owner's signature (RULES §1 Record content) ---------------------------------------


class SignatureRequirement(StrEnum):
    now = "now"  # walk-in: signs the form at the desk
    later = "later"  # phone / letter: record now, 补签 later
    not_required = "not_required"


def signature_requirement(
    channel: Channel | str,
    policy: Policy,
    *,
    anonymous: bool = False,
    reply_method: ReplyMethod | str | None = None,
) -> SignatureRequirement:
    """What the owner's signature on the form needs (RULES §1 Record content; 000 §五.1–2).

    By channel (policy.intake.signature_now_channels / signature_later_channels). A later
    signature (补签) needs a person to ask: an anonymous request, or one whose owner wants
    no reply (`reply_method` none), owes none — nobody would ever be reminded to sign.
    Raises RuleViolation for an unknown channel or reply method."""
    try:
        channel = Channel(channel)
    except ValueError:
        raise RuleViolation(f"unknown channel {channel!r}", 422) from None
    try:
        reply_method = ReplyMethod(reply_method) if reply_method is not None else None
    except ValueError:
        raise RuleViolation(f"unknown reply method {reply_method!r}", 422) from None
    if channel.value in policy.intake.signature_now_channels:
        return SignatureRequirement.now
    if channel.value in policy.intake.signature_later_channels:
        if anonymous or reply_method is ReplyMethod.none:
            return SignatureRequirement.not_required
        return SignatureRequirement.later
    return SignatureRequirement.not_required


def check_signature_at_intake(
    channel: Channel | str,
    owner_signed: bool,
    policy: Policy,
    *,
    anonymous: bool = False,
    reply_method: ReplyMethod | str | None = None,
) -> SignatureRequirement:
    """Refuse a walk-in registration without the owner's signature; otherwise say what
    is still owed (`later` means: schedule reminders until the owner signs)."""
    requirement = signature_requirement(channel, policy, anonymous=anonymous, reply_method=reply_method)
    if requirement is SignatureRequirement.now and not owner_signed:
        raise RuleViolation(f"a {Channel(channel).value} request needs the owner's signature on the form now", 422)
    if owner_signed:
        return SignatureRequirement.not_required
    return requirement


def next_signature_reminder(
    registered_at: dt.datetime,
    last_reminded_at: dt.datetime | None,
    now: dt.datetime,
    policy: Policy,
    *,
    signed_at: dt.datetime | None = None,
) -> dt.datetime | None:
    """When to remind the desk to get the owner's later signature; None once signed.

    Reminders fall every policy.intake.signature_reminder_hours after the last one (or
    after registration). A reminder that is already overdue (nobody sent it) is due now,
    once, rather than as a burst of catch-up reminders.
    """
    _aware(registered_at, "registered_at")
    _aware(now, "now")
    if signed_at is not None:
        _aware(signed_at, "signed_at")
        return None
    if policy.intake.signature_reminder_hours <= 0:
        raise RuleViolation("policy intake.signature_reminder_hours must be positive", 422)
    anchor = registered_at
    if last_reminded_at is not None:
        _aware(last_reminded_at, "last_reminded_at")
        if last_reminded_at < registered_at:
            raise RuleViolation("a signature reminder cannot precede the registration", 422)
        anchor = last_reminded_at
    due = anchor + dt.timedelta(hours=policy.intake.signature_reminder_hours)
    return max(due, now).astimezone(ZoneInfo(policy.timezone))


# --- duty roster and shift handover (001 第1、2、7、11、14篇; 002 §4.2.4; 004 篇3 §3.4) ------


@dataclass(frozen=True)
class RosterShift:
    """One rostered shift of one post: who is on duty from `starts_at` to `ends_at`."""

    day: dt.date
    post: str
    shift: str
    staff: tuple[str, ...]
    starts_at: dt.datetime
    ends_at: dt.datetime


def shift_window(day: dt.date, shift: str, policy: Policy) -> tuple[dt.datetime, dt.datetime]:
    """(starts, ends) of `shift` on `day`, aware local times; a shift whose end is not
    after its start ends the next day (the middle shift 16:00–00:00). Raises RuleViolation
    for a shift the policy does not define."""
    for name, starts, ends in policy.intake.duty_shifts:
        if name == shift:
            tz = ZoneInfo(policy.timezone)
            start = dt.datetime.combine(day, _clock_time(starts, f"shift {name} start"), tzinfo=tz)
            end_day = day if _clock_time(ends, f"shift {name} end") > start.time() else day + dt.timedelta(days=1)
            return start, dt.datetime.combine(end_day, _clock_time(ends, f"shift {name} end"), tzinfo=tz)
    known = ", ".join(name for name, _, _ in policy.intake.duty_shifts)
    raise RuleViolation(f"unknown shift {shift!r} (the estate's shifts: {known})", 422)


def roster_for_month(month: str, entries: list[dict], policy: Policy) -> list[RosterShift]:
    """A month's roster (排班表) from `entries` of {"day", "post", "shift", "staff"}:
    every day in the month (holidays included: they have their own duty shifts, 第2篇
    1.9, 001 第7篇 1.1.6), a known post and shift, at least one staff id, each (day,
    post, shift) once. Raises RuleViolation naming the first bad entry."""
    year, number = month_parts(month)  # strict YYYY-MM, else RuleViolation(422)
    first = dt.date(year, number, 1)
    shifts, seen = [], set()
    for entry in entries:
        try:
            day = dt.date.fromisoformat(str(entry["day"]))
            post, shift = str(entry["post"]), str(entry["shift"])
            staff = tuple(s.strip() for s in entry["staff"] if s and s.strip())
        except (KeyError, TypeError, ValueError):
            raise RuleViolation(f"roster entry {entry!r} needs day (YYYY-MM-DD), post, shift and staff", 422) from None
        if (day.year, day.month) != (first.year, first.month):
            raise RuleViolation(f"roster entry for {day} is not in {month}", 422)
        if post not in policy.intake.duty_posts:
            raise RuleViolation(f"unknown duty post {post!r} (posts: {', '.join(policy.intake.duty_posts)})", 422)
        if not staff:
            raise RuleViolation(f"the {shift} shift of {post} on {day} has nobody on duty", 422)
        if (day, post, shift) in seen:
            raise RuleViolation(f"the {shift} shift of {post} on {day} is rostered twice", 422)
        seen.add((day, post, shift))
        starts_at, ends_at = shift_window(day, shift, policy)
        shifts.append(RosterShift(day, post, shift, staff, starts_at, ends_at))
    return sorted(shifts, key=lambda s: (s.starts_at, s.post))


def next_shift_start(roster: list[RosterShift], post: str, after: dt.datetime) -> dt.datetime | None:
    """When the next rostered shift of `post` starts at or after `after` (the incoming
    shift), or None when the roster has none yet. A holiday night hands over to the next
    rostered shift, not to the next working morning."""
    _aware(after, "after")
    starts = [s.starts_at for s in roster if s.post == post and s.starts_at >= after]
    return min(starts) if starts else None


def roster_handover_due(
    received_at: dt.datetime,
    registered_by: str,
    roster: list[RosterShift],
    policy: Policy,
    calendar: WorkingCalendar,
) -> dt.datetime:
    """When an off-hours registration must be handed on: the start of the next rostered
    shift of the post the registrant is on duty for (a holiday night's emergency goes to
    the holiday's next duty shift, 第2篇 1.9), else — nobody rostered — the next working
    day's opening (`handover_due`). A request received in office hours is already with
    the day shift: due at once. Source: RULES §1 Opening hours; 002 §4.2.4; 004 篇3 §3.4."""
    local = _local(received_at, policy, "received_at")
    if not is_off_hours(local, policy, calendar):
        return local
    on_duty = [s for s in roster if registered_by in s.staff and s.starts_at <= local < s.ends_at]
    for shift in on_duty:
        following = next_shift_start(roster, shift.post, shift.ends_at)
        if following is not None:
            return following.astimezone(ZoneInfo(policy.timezone))
    return handover_due(local, policy, calendar)


@dataclass(frozen=True)
class ShiftIncident:
    """A request registered on a shift, as the handover sees it."""

    ticket_id: str
    kind: str
    repair_class: str | None
    severity: str
    urgency: str
    handled: bool  # completed, closed or judged invalid


def is_major_or_emergency(incident: ShiftIncident) -> bool:
    """重大或紧急: serious, urgent, or an emergency repair."""
    return incident.severity == "serious" or incident.urgency == "urgent" or incident.repair_class == "emergency"


def handover_blockers(incidents: list[ShiftIncident]) -> list[str]:
    """The tickets that forbid the handover: a major or emergency incident of the shift
    not yet handled (001 第1篇 2.4 ⑴ 在重大事件或紧急事件未处理完的情况下不得交接班)."""
    return [i.ticket_id for i in incidents if not i.handled and is_major_or_emergency(i)]


def handover_item_overdue(claimed_at: dt.datetime | None, claim_due: dt.datetime, now: dt.datetime) -> bool:
    """An item the incoming shift has not claimed by its start is overdue (and escalates
    to policy.intake.handover_escalation_role); a claimed one never is."""
    _aware(claim_due, "claim_due")
    _aware(now, "now")
    return claimed_at is None and now > claim_due


# --- privacy (RULES §1 Privacy) -------------------------------------------------------------


def _mask_middle(value: str, policy: Policy) -> str:
    head, tail = policy.intake.mask_keep_head, policy.intake.mask_keep_tail
    if len(value) <= head + tail:
        # Too short to show any part without revealing most of it.
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[-tail:]


_PHONE_SEPARATORS = re.compile(r"[\s\-()]")
_COUNTRY_PREFIX = re.compile(r"^(\+86|0086)")


def mask_phone(phone: str | None, policy: Policy | None = None) -> str:
    """138****5678 for 13812345678; separators dropped, a +86/0086 prefix kept."""
    if not phone:
        return ""
    policy = policy or Policy()
    compact = _PHONE_SEPARATORS.sub("", phone)
    prefix = ""
    match = _COUNTRY_PREFIX.match(compact)
    if match:
        prefix, compact = match.group(1), compact[match.end():]
    return prefix + _mask_middle(compact, policy)


def mask_id_number(id_number: str | None, policy: Policy | None = None) -> str:
    """110***********1234 for an 18-character resident ID: the birth date never shows."""
    if not id_number:
        return ""
    return _mask_middle(re.sub(r"\s", "", id_number), policy or Policy())


def may_unmask(roles: set[str] | frozenset[str] | list[str] | tuple[str, ...], policy: Policy) -> bool:
    """Only the roles in policy.intake.unmasked_roles see owners' numbers in full; other
    departments reach owners through customer service."""
    return any(role in policy.intake.unmasked_roles for role in roles)


def phone_for_viewer(phone: str | None, roles, policy: Policy) -> str:
    return (phone or "") if may_unmask(roles, policy) else mask_phone(phone, policy)


def id_number_for_viewer(id_number: str | None, roles, policy: Policy) -> str:
    return (id_number or "") if may_unmask(roles, policy) else mask_id_number(id_number, policy)
