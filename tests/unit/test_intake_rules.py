"""Intake rules: form numbers, office hours and handover, validity, signatures, masking.

Calendar facts used below (2026 arrangement published by the State Council, as carried
by the `holidays` package): National Day 1–7 Oct off, make-up workdays Sun 20 Sep and
Sat 10 Oct; Mid-Autumn Fri 25 Sep off. 2027 is not published yet (projected: fixed statutory holidays and weekends, provisional).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import holidays
import pytest
from pydantic import ValidationError

from services.intake.rules import (
    RuleViolation,
    SignatureRequirement,
    ValidityJudgement,
    check_signature_at_intake,
    form_number,
    handover_due,
    id_number_for_viewer,
    is_off_hours,
    judge_validity,
    mask_id_number,
    mask_phone,
    may_unmask,
    next_signature_reminder,
    office_hours,
    phone_for_viewer,
    signature_requirement,
)
from shared.calendar import CalendarOverrides, WorkingCalendar
from shared.events import Channel, Kind, ValidityJudged
from shared.policy import Policy, effective_policy

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = Policy()
CALENDAR = WorkingCalendar()


def at(y, m, d, h=0, mi=0, tz=SHANGHAI):
    return dt.datetime(y, m, d, h, mi, tzinfo=tz)


def test_calendar_facts_these_tests_rely_on():
    cn = holidays.country_holidays("CN", years=2026)
    assert {dt.date(2026, 9, 20), dt.date(2026, 10, 10)} <= set(cn.weekend_workdays)
    assert all(dt.date(2026, 10, d) not in cn.weekend_workdays for d in range(1, 8))
    assert not CALENDAR.is_working_day(dt.date(2026, 10, 1))
    assert not CALENDAR.is_working_day(dt.date(2026, 10, 7))
    assert CALENDAR.is_working_day(dt.date(2026, 10, 10))
    assert CALENDAR.is_working_day(dt.date(2026, 9, 20))
    assert not CALENDAR.is_working_day(dt.date(2026, 9, 25))


# --- form numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estate, year, sequence, expected",
    [
        ("HX01", 2026, 123, "HX01-2026-000123"),
        ("hx01", 2026, 123, "HX01-2026-000123"),
        ("hx01", 2026, 1, "HX01-2026-000001"),
        ("hx01", 2027, 999999, "HX01-2027-999999"),
        ("east-gate", 2026, 42, "EAST-GATE-2026-000042"),
        ("a_1", 2026, 7, "A_1-2026-000007"),
    ],
)
def test_form_number(estate, year, sequence, expected):
    assert form_number(estate, year, sequence) == expected


@pytest.mark.parametrize(
    "estate, year, sequence, message",
    [
        ("hx01", 2026, 0, "starts at 1"),
        ("hx01", 2026, -5, "starts at 1"),
        ("hx01", 2026, 1_000_000, "does not fit"),
        ("hx01", 26, 1, "four digits"),
        ("hx01", 20260, 1, "four digits"),
        ("", 2026, 1, "estate code"),
        ("hx 01", 2026, 1, "estate code"),
        ("-hx", 2026, 1, "estate code"),
        ("x" * 33, 2026, 1, "estate code"),
    ],
)
def test_form_number_refused(estate, year, sequence, message):
    with pytest.raises(RuleViolation, match=message):
        form_number(estate, year, sequence)


def test_form_number_width_is_policy():
    policy = effective_policy(estate_overrides={"intake": {"form_sequence_digits": 4}})
    assert form_number("hx01", 2026, 123, policy) == "HX01-2026-0123"
    with pytest.raises(RuleViolation):
        form_number("hx01", 2026, 10_000, policy)


# --- office hours and shift handover ---------------------------------------------------------


@pytest.mark.parametrize(
    "received_at, off",
    [
        (at(2026, 9, 30, 8, 29), True),  # before opening
        (at(2026, 9, 30, 8, 30), False),  # opening minute
        (at(2026, 9, 30, 12, 0), False),
        (at(2026, 9, 30, 17, 29), False),
        (at(2026, 9, 30, 17, 30), True),  # closing minute belongs to the night shift
        (at(2026, 9, 30, 23, 59), True),
        (at(2026, 9, 30, 0, 0), True),
        (at(2026, 10, 1, 10, 0), True),  # National Day
        (at(2026, 9, 25, 10, 0), True),  # Mid-Autumn
        (at(2026, 9, 26, 10, 0), True),  # plain Saturday
        (at(2026, 10, 10, 10, 0), False),  # make-up Saturday is a working day
        (at(2026, 9, 20, 10, 0), False),  # make-up Sunday
        (dt.datetime(2026, 9, 30, 1, 0, tzinfo=dt.timezone.utc), False),  # 09:00 in Shanghai
        (dt.datetime(2026, 9, 30, 10, 0, tzinfo=dt.timezone.utc), True),  # 18:00 in Shanghai
    ],
)
def test_is_off_hours(received_at, off):
    assert is_off_hours(received_at, POLICY, CALENDAR) is off


def test_office_hours_are_policy():
    policy = effective_policy(estate_overrides={"intake": {"office_opens": "09:00", "office_closes": "18:00"}})
    assert office_hours(policy) == (dt.time(9), dt.time(18))
    assert is_off_hours(at(2026, 9, 30, 8, 45), policy, CALENDAR)
    assert not is_off_hours(at(2026, 9, 30, 17, 45), policy, CALENDAR)


def test_company_days_off_make_a_working_day_off_hours():
    calendar = WorkingCalendar(CalendarOverrides(days_off=frozenset({dt.date(2026, 9, 30)})))
    assert is_off_hours(at(2026, 9, 30, 10), POLICY, calendar)


@pytest.mark.parametrize(
    "opens, closes, message",
    [("17:30", "08:30", "open before"), ("08:30", "08:30", "open before"), ("8h30", "17:30", "pattern"),
     ("08:30", "", "pattern"), ("24:00", "25:00", "pattern")],
)
def test_bad_office_hours_refused(opens, closes, message):
    # Refused when the policy is set (the directory API answers 422), never met by a rule.
    with pytest.raises(ValidationError, match=message):
        effective_policy(estate_overrides={"intake": {"office_opens": opens, "office_closes": closes}})


def test_naive_time_refused():
    with pytest.raises(RuleViolation, match="timezone-aware"):
        is_off_hours(dt.datetime(2026, 9, 30, 10), POLICY, CALENDAR)
    with pytest.raises(RuleViolation, match="timezone-aware"):
        handover_due(dt.datetime(2026, 9, 30, 10), POLICY, CALENDAR)


@pytest.mark.parametrize(
    "received_at, due",
    [
        (at(2026, 9, 30, 18, 0), at(2026, 10, 8, 8, 30)),  # eve of National Day → after the week off
        (at(2026, 10, 3, 14, 0), at(2026, 10, 8, 8, 30)),  # during the holiday
        (at(2026, 10, 9, 20, 0), at(2026, 10, 10, 8, 30)),  # Friday night → make-up Saturday
        (at(2026, 9, 18, 18, 0), at(2026, 9, 20, 8, 30)),  # Friday night → make-up Sunday
        (at(2026, 9, 24, 19, 0), at(2026, 9, 28, 8, 30)),  # before Mid-Autumn → Monday
        (at(2026, 9, 30, 7, 0), at(2026, 9, 30, 8, 30)),  # early morning → same day's opening
        (at(2026, 9, 30, 17, 30), at(2026, 10, 8, 8, 30)),
        (at(2026, 9, 30, 10, 0), at(2026, 9, 30, 10, 0)),  # day shift: already there
        (dt.datetime(2026, 9, 30, 23, 0, tzinfo=dt.timezone.utc), at(2026, 10, 8, 8, 30)),  # 07:00 on 1 Oct local
    ],
)
def test_handover_due(received_at, due):
    result = handover_due(received_at, POLICY, CALENDAR)
    assert result == due
    assert result.utcoffset() == dt.timedelta(hours=8)


# --- complaint validity ----------------------------------------------------------------------


def test_valid_complaint_needs_no_confirmation_and_no_notice():
    result = judge_validity(Kind.complaint, True, "staff attitude", "cs01", None, at(2026, 9, 30, 15), POLICY, CALENDAR)
    assert result == ValidityJudgement(True, "staff attitude", "cs01", None, at(2026, 9, 30, 15), None, False)


@pytest.mark.parametrize(
    "judged_at, notify_by, provisional",
    [
        (at(2026, 9, 29, 15), at(2026, 9, 30, 15), False),
        (at(2026, 9, 30, 15), at(2026, 10, 8, 15), False),  # skips National Day
        (at(2026, 10, 9, 11), at(2026, 10, 10, 11), False),  # make-up Saturday counts
        (at(2026, 9, 24, 16), at(2026, 9, 28, 16), False),  # skips Mid-Autumn and the weekend
        (at(2026, 12, 31, 10), at(2027, 1, 4, 10), True),  # 2027 projected: New Year off, provisional
    ],
)
def test_invalid_complaint_notice_deadline(judged_at, notify_by, provisional):
    result = judge_validity("complaint", False, "developer's defect, no duty", "cs01", "mgr01", judged_at, POLICY, CALENDAR)
    assert not result.valid
    # The judge's "confirmed_by" confirms nothing: the manager acts with their own sign-in.
    assert result.confirmed_by is None and result.state == "awaiting_confirmation"
    assert result.notify_owner_by == notify_by
    assert result.provisional is provisional


def test_invalid_complaint_notice_days_are_policy():
    policy = effective_policy(company_overrides={"intake": {"invalid_complaint_notice_working_days": 2}})
    result = judge_validity(Kind.complaint, False, "no duty", "cs01", "mgr01", at(2026, 9, 29, 15), policy, CALENDAR)
    assert result.notify_owner_by == at(2026, 10, 8, 15)


@pytest.mark.parametrize("kind", [k for k in Kind if k is not Kind.complaint])
def test_only_complaints_are_judged(kind):
    with pytest.raises(RuleViolation, match="only complaints"):
        judge_validity(kind, True, "reason", "cs01", None, at(2026, 9, 30, 10), POLICY, CALENDAR)


@pytest.mark.parametrize(
    "kind, valid, reason, judged_by, confirmed_by, judged_at, message",
    [
        ("gossip", True, "r", "cs01", None, at(2026, 9, 30), "unknown kind"),
        (Kind.complaint, False, "", "cs01", "mgr01", at(2026, 9, 30), "reason"),
        (Kind.complaint, True, "   ", "cs01", None, at(2026, 9, 30), "reason"),
        (Kind.complaint, True, "r", "", None, at(2026, 9, 30), "who judged"),
        (Kind.complaint, True, "r", "cs01", None, dt.datetime(2026, 9, 30), "timezone-aware"),
    ],
)
def test_judgement_refused(kind, valid, reason, judged_by, confirmed_by, judged_at, message):
    with pytest.raises(RuleViolation, match=message):
        judge_validity(kind, valid, reason, judged_by, confirmed_by, judged_at, POLICY, CALENDAR)


def test_rule_violation_is_a_value_error():
    assert issubclass(RuleViolation, ValueError)


def test_judgement_becomes_the_event_payload():
    result = judge_validity(Kind.complaint, True, "staff attitude", "cs01", None, at(2026, 9, 30, 15), POLICY, CALENDAR)
    payload = result.to_payload("T-1")
    assert isinstance(payload, ValidityJudged)
    assert (payload.valid, payload.confirmed_by, payload.notify_owner_by) == (True, None, None)


# --- the owner's signature ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "channel, requirement",
    [
        (Channel.walk_in, SignatureRequirement.now),
        (Channel.walk_around_visit, SignatureRequirement.now),
        (Channel.phone, SignatureRequirement.later),
        (Channel.letter, SignatureRequirement.later),
        (Channel.online, SignatureRequirement.not_required),  # no person present to sign
        (Channel.relayed_by_employee, SignatureRequirement.later),
        (Channel.escalated_from_above, SignatureRequirement.not_required),
        ("phone", SignatureRequirement.later),
    ],
)
def test_signature_requirement(channel, requirement):
    assert signature_requirement(channel, POLICY) is requirement


def test_every_channel_has_a_signature_rule():
    assert {signature_requirement(c, POLICY) for c in Channel} == set(SignatureRequirement)


def test_signature_channels_are_policy():
    policy = effective_policy(estate_overrides={"intake": {"signature_now_channels": ["walk_in", "phone"]}})
    assert signature_requirement(Channel.phone, policy) is SignatureRequirement.now


@pytest.mark.parametrize(
    "channel, signed, owed",
    [
        (Channel.walk_in, True, SignatureRequirement.not_required),
        (Channel.phone, False, SignatureRequirement.later),
        (Channel.phone, True, SignatureRequirement.not_required),
        (Channel.letter, False, SignatureRequirement.later),
        (Channel.escalated_from_above, False, SignatureRequirement.not_required),
    ],
)
def test_check_signature_at_intake(channel, signed, owed):
    assert check_signature_at_intake(channel, signed, POLICY) is owed


@pytest.mark.parametrize("channel", [Channel.walk_in, Channel.walk_around_visit])
def test_walk_in_without_signature_refused(channel):
    with pytest.raises(RuleViolation, match="signature on the form now"):
        check_signature_at_intake(channel, False, POLICY)


def test_unknown_channel_refused():
    with pytest.raises(RuleViolation, match="unknown channel"):
        signature_requirement("pigeon", POLICY)


@pytest.mark.parametrize(
    "registered, last, now, expected",
    [
        (at(2026, 9, 30, 10), None, at(2026, 9, 30, 11), at(2026, 10, 1, 10)),
        (at(2026, 9, 30, 10), at(2026, 10, 1, 10), at(2026, 10, 1, 10, 5), at(2026, 10, 2, 10)),
        # Overdue (nobody reminded): due at once, not a burst of catch-up reminders.
        (at(2026, 9, 30, 10), None, at(2026, 10, 5, 9), at(2026, 10, 5, 9)),
        (at(2026, 9, 30, 10), at(2026, 10, 1, 10), at(2026, 10, 3, 0), at(2026, 10, 3, 0)),
        # Exactly due.
        (at(2026, 9, 30, 10), None, at(2026, 10, 1, 10), at(2026, 10, 1, 10)),
    ],
)
def test_next_signature_reminder(registered, last, now, expected):
    assert next_signature_reminder(registered, last, now, POLICY) == expected


def test_signature_reminder_interval_is_policy():
    policy = effective_policy(estate_overrides={"intake": {"signature_reminder_hours": 4}})
    assert next_signature_reminder(at(2026, 9, 30, 10), None, at(2026, 9, 30, 10), policy) == at(2026, 9, 30, 14)


def test_no_reminder_once_signed():
    assert next_signature_reminder(at(2026, 9, 30, 10), None, at(2026, 10, 5), POLICY, signed_at=at(2026, 10, 2)) is None


@pytest.mark.parametrize(
    "registered, last, now, policy, message",
    [
        (at(2026, 9, 30, 10), at(2026, 9, 29, 10), at(2026, 10, 1), POLICY, "cannot precede"),
        (dt.datetime(2026, 9, 30, 10), None, at(2026, 10, 1), POLICY, "timezone-aware"),
        (at(2026, 9, 30, 10), dt.datetime(2026, 9, 30, 12), at(2026, 10, 1), POLICY, "timezone-aware"),
        (at(2026, 9, 30, 10), None, dt.datetime(2026, 10, 1), POLICY, "timezone-aware"),
        (at(2026, 9, 30, 10), None, at(2026, 10, 1),
         effective_policy(estate_overrides={"intake": {"signature_reminder_hours": 0}}), "positive"),
    ],
)
def test_signature_reminder_refused(registered, last, now, policy, message):
    with pytest.raises(RuleViolation, match=message):
        next_signature_reminder(registered, last, now, policy)


# --- privacy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone, masked",
    [
        ("13812345678", "138****5678"),
        ("138 1234 5678", "138****5678"),
        ("138-1234-5678", "138****5678"),
        ("+8613812345678", "+86138****5678"),
        ("+86 138 1234 5678", "+86138****5678"),
        ("008613812345678", "0086138****5678"),
        ("021-12345678", "021****5678"),
        ("(021)12345678", "021****5678"),
        ("12345678", "123*5678"),
        ("1234567", "*******"),  # too short to show anything
        ("110", "***"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone(phone, masked):
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    "id_number, masked",
    [
        ("110101199003071234", "110***********1234"),
        ("11010119900307123X", "110***********123X"),
        ("1101 0119 9003 0712 34", "110***********1234"),
        ("E1234567", "E12*4567"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_id_number(id_number, masked):
    assert mask_id_number(id_number) == masked


def test_masked_id_never_shows_the_birth_date():
    assert "19900307" not in mask_id_number("110101199003071234")


def test_mask_widths_are_policy():
    policy = effective_policy(company_overrides={"intake": {"mask_keep_head": 0, "mask_keep_tail": 2}})
    assert mask_phone("13812345678", policy) == "*********78"


@pytest.mark.parametrize(
    "roles, allowed",
    [
        ({"customer_service"}, True),
        (["customer_service_supervisor"], True),
        (("engineering", "customer_service"), True),
        ({"engineering"}, False),
        ({"security", "cleaning"}, False),
        (set(), False),
    ],
)
def test_may_unmask(roles, allowed):
    assert may_unmask(roles, POLICY) is allowed


def test_unmasked_roles_are_policy():
    policy = effective_policy(estate_overrides={"intake": {"unmasked_roles": ["estate_director"]}})
    assert may_unmask({"estate_director"}, policy)
    assert not may_unmask({"customer_service"}, policy)


def test_viewer_sees_masked_or_full_numbers():
    assert phone_for_viewer("13812345678", {"engineering"}, POLICY) == "138****5678"
    assert phone_for_viewer("13812345678", {"customer_service"}, POLICY) == "13812345678"
    assert id_number_for_viewer("110101199003071234", {"security"}, POLICY) == "110***********1234"
    assert id_number_for_viewer("110101199003071234", {"customer_service"}, POLICY) == "110101199003071234"
