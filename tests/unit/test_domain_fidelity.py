"""Issue 10, domain fidelity: each row of the issue's table as a pure-rule test with the
issue's values (the integration twins are in tests/integration/test_domain_fidelity.py).

Calendar facts: 2026 is published (the package carries the State Council's arrangement);
2027 is not, so it is *projected*: its fixed statutory holidays (Fri 1 Jan New Year's Day,
…) are off, weekends rest, no make-up days, and every deadline reaching into it is
provisional (RULES §1 Reply deadline, §2 Tracking control time; 003 §4 3.A, 002 §4.7).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from services.dispatch.rules import Clock, TicketFacts, recompute_day_clock, start_round_clocks, working_days_of
from shared.calendar import CalendarOverrides, WorkingCalendar
from shared.events import AcceptedBy, Kind
from shared.policy import Policy

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = Policy()
PROJECTED = WorkingCalendar()


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=SHANGHAI)


def clocks(facts: TicketFacts, start: dt.datetime, calendar: WorkingCalendar = PROJECTED) -> dict:
    return {d.clock: d for d in start_round_clocks(facts, ["customer_service"], start, POLICY, calendar)
            if d.department is None}


# --- row 1: complaint accepted 2026-12-30 10:00 ---------------------------------------------


def test_row1_complaint_before_new_year_reply_and_tracking_skip_new_years_day():
    due = clocks(TicketFacts(Kind.complaint), at(2026, 12, 30, 10, 0))
    # Thu 31 Dec is day 1; Fri 1 Jan 2027 is New Year's Day (projected), weekend, Mon 4 Jan.
    assert (due["reply"].due_at, due["reply"].provisional) == (at(2027, 1, 4, 10, 0), True)
    assert (due["tracking"].due_at, due["tracking"].provisional) == (at(2027, 1, 5, 10, 0), True)


# --- row 2: company-accepted opinion 2026-12-31 10:00, 7 working days ------------------------


def test_row2_company_accepted_opinion_tracks_seven_projected_working_days():
    due = clocks(TicketFacts(Kind.suggestion, accepted_by=AcceptedBy.company), at(2026, 12, 31, 10, 0))
    # 4, 5, 6, 7, 8, 11, 12 Jan: New Year's Day is not a working day.
    assert (due["tracking"].due_at, due["tracking"].provisional) == (at(2027, 1, 12, 10, 0), True)


@pytest.mark.parametrize(
    "day, working",
    [
        (dt.date(2027, 1, 1), False),  # New Year's Day
        (dt.date(2027, 2, 5), False),  # Spring Festival Eve
        (dt.date(2027, 2, 8), False),  # Spring Festival (Mon)
        (dt.date(2027, 2, 9), True),  # the package's guessed in-lieu day: not fixed, so worked
        (dt.date(2027, 4, 5), False),  # Qingming
        (dt.date(2027, 5, 3), True),  # guessed Labour Day substitute: worked until published
        (dt.date(2027, 6, 9), False),  # Dragon Boat
        (dt.date(2027, 9, 15), False),  # Mid-Autumn
        (dt.date(2027, 10, 1), False),  # National Day
        (dt.date(2027, 1, 9), False),  # a Saturday: no make-up days are guessed
        (dt.date(2027, 1, 6), True),  # an ordinary Wednesday
    ],
)
def test_projected_calendar_days(day, working):
    assert PROJECTED.is_working_day(day) is working
    assert not PROJECTED.is_known(day)


# --- row 3: the company loads a 2027 calendar, then corrects it --------------------------------


def recount(start: dt.datetime, days: int, due: dt.datetime, provisional: bool, calendar: WorkingCalendar):
    return recompute_day_clock(start, days, due, provisional, POLICY, calendar)


def test_row3_every_calendar_change_moves_every_running_day_clock():
    start = at(2026, 12, 30, 10, 0)
    facts = TicketFacts(Kind.complaint)
    due = clocks(facts, start)
    reply_days = working_days_of(Clock.reply, facts, POLICY)
    tracking_days = working_days_of(Clock.tracking, facts, POLICY)
    # First load: 2027 as projected, now official. Same days, no longer provisional.
    loaded = WorkingCalendar(CalendarOverrides(loaded_years=frozenset({2027})))
    reply = recount(start, reply_days, due["reply"].due_at, True, loaded)
    tracking = recount(start, tracking_days, due["tracking"].due_at, True, loaded)
    assert reply == (at(2027, 1, 4, 10, 0), False)
    assert tracking == (at(2027, 1, 5, 10, 0), False)
    # The correction: 4 Jan becomes a day off, Sat 9 Jan a workday. The clocks are no
    # longer provisional, and still they follow.
    corrected = WorkingCalendar(CalendarOverrides(days_off=frozenset({dt.date(2027, 1, 4)}),
                                                  workdays=frozenset({dt.date(2027, 1, 9)}),
                                                  loaded_years=frozenset({2027})))
    assert recount(start, reply_days, reply[0], False, corrected) == (at(2027, 1, 5, 10, 0), False)
    assert recount(start, tracking_days, tracking[0], False, corrected) == (at(2027, 1, 6, 10, 0), False)
    # The company-accepted opinion of row 2 gains Sat 9 Jan and loses Mon 4 Jan: still 12 Jan.
    company_start = at(2026, 12, 31, 10, 0)
    assert recount(company_start, 7, at(2027, 1, 12, 10, 0), True, corrected) == (at(2027, 1, 12, 10, 0), False)


def test_row3_a_typhoon_day_off_tomorrow_moves_todays_open_deadlines():
    # Published 2026: Mon 23 Nov 10:00, reply 2 and tracking 3 working days.
    start = at(2026, 11, 23, 10, 0)
    due = clocks(TicketFacts(Kind.complaint), start, WorkingCalendar())
    assert due["reply"].due_at == at(2026, 11, 25, 10, 0) and not due["reply"].provisional
    typhoon = WorkingCalendar(CalendarOverrides(days_off=frozenset({dt.date(2026, 11, 24)})))
    assert recount(start, 2, due["reply"].due_at, False, typhoon) == (at(2026, 11, 26, 10, 0), False)
    assert recount(start, 3, due["tracking"].due_at, False, typhoon) == (at(2026, 11, 27, 10, 0), False)
    # Nothing changed: nothing to write.
    assert recount(start, 2, due["reply"].due_at, False, WorkingCalendar()) is None


# --- row 4: emergency water repair registered 23:50 on a holiday --------------------------------


def test_row4_emergency_arrival_is_due_at_once_even_on_a_holiday_night():
    from services.dispatch.rules import arrival_due, arrival_grace_minutes
    from shared.events import RepairClass

    registered = at(2027, 1, 1, 23, 50)  # New Year's Day
    emergency = TicketFacts(Kind.repair, category="water", repair_class=RepairClass.emergency)
    assert arrival_due(emergency, registered, POLICY) == registered  # 立即: 0 min
    assert arrival_grace_minutes(emergency, POLICY) == 0
    dept = {d.clock: d for d in start_round_clocks(emergency, ["engineering"], registered, POLICY, PROJECTED)
            if d.department == "engineering"}
    assert dept["arrival"].due_at == registered


def test_row4_a_grace_is_the_companys_policy_and_only_for_emergencies():
    from services.dispatch.rules import arrival_due, arrival_grace_minutes
    from shared.events import RepairClass
    from shared.policy import effective_policy

    policy = effective_policy({"clocks": {"arrival_grace_minutes_immediate": 10}})
    registered = at(2027, 1, 1, 23, 50)
    emergency = TicketFacts(Kind.repair, repair_class=RepairClass.emergency)
    assert arrival_grace_minutes(emergency, policy) == 10
    assert arrival_due(emergency, registered, policy) == at(2027, 1, 2, 0, 0)
    general = TicketFacts(Kind.repair, repair_class=RepairClass.general)
    assert arrival_grace_minutes(general, policy) == 0
    assert arrival_due(general, registered, policy) == at(2027, 1, 2, 0, 50)
    assert arrival_grace_minutes(TicketFacts(Kind.complaint), policy) == 0
    with pytest.raises(Exception):
        effective_policy({"clocks": {"arrival_grace_minutes_immediate": -1}})


# --- row 7: general repair breached at +61 min, then rescheduled to tomorrow 10:00 --------------


def test_row7_a_rescheduled_appointment_is_a_fresh_arrival_clock():
    from services.dispatch.rules import RESCHEDULED, clock_verdict, first_rung, reschedule_appointment
    from shared.events import RepairClass

    accepted = at(2026, 11, 23, 14, 0)
    repair = TicketFacts(Kind.repair, repair_class=RepairClass.general)
    round_clocks = start_round_clocks(repair, ["engineering"], accepted, POLICY, WorkingCalendar())
    # +61 min: the arrival clock ran out; the scan breaches it and the ladder starts at
    # the department head.
    (arrival,) = [d for d in round_clocks if d.clock == "arrival"]
    scanned = accepted + dt.timedelta(minutes=61)
    assert arrival.due_at == at(2026, 11, 23, 15, 0) and scanned > arrival.due_at
    assert clock_verdict(arrival.due_at, scanned, None, None) == "breached"
    assert first_rung(repair, POLICY) == "department_head"
    # The owner was out: a new appointment tomorrow 10:00. The old clock ends "rescheduled"
    # (the caller closes it, so its ladder stops; its breach stays counted); the new one
    # is a fresh clock instance.
    assert RESCHEDULED == "rescheduled"
    assert clock_verdict(arrival.due_at, scanned, at(2026, 11, 23, 16), RESCHEDULED) == "breached"
    fresh = [d for d in reschedule_appointment(round_clocks, at(2026, 11, 24, 10, 0), POLICY)
             if d.clock in ("arrival", "repair_slip_return")]
    assert {d.clock: d.due_at for d in fresh} == {
        "arrival": at(2026, 11, 24, 10, 0), "repair_slip_return": at(2026, 11, 25, 10, 0)}
    (new_arrival,) = [d for d in fresh if d.clock == "arrival"]
    assert clock_verdict(new_arrival.due_at, None, None, None) is None  # running afresh
    # Arriving for the new appointment meets it; a minute late is a breach.
    assert clock_verdict(new_arrival.due_at, None, at(2026, 11, 24, 10, 0), "met") == "met"
    assert clock_verdict(new_arrival.due_at, None, at(2026, 11, 24, 10, 1), "met") == "breached"


# --- row 8: anonymous online opinion (reply_method none) owes no later signature ----------------


@pytest.mark.parametrize(
    "channel, anonymous, reply_method, owed",
    [
        ("online", True, "none", "not_required"),  # the row: nobody present, nobody to ask
        ("online", False, "online", "not_required"),  # online: no person present to sign
        ("phone", True, "none", "not_required"),  # an anonymous caller cannot sign later
        ("phone", False, "none", "not_required"),  # wants no reply: nobody to remind
        ("phone", False, "phone", "later"),  # a known caller signs later (补签)
        ("letter", False, "letter", "later"),
        ("escalated_from_above", False, "phone", "not_required"),
    ],
)
def test_row8_later_signature_only_when_a_person_can_sign(channel, anonymous, reply_method, owed):
    from services.intake.rules import check_signature_at_intake

    assert check_signature_at_intake(channel, False, POLICY, anonymous=anonymous, reply_method=reply_method).value == owed


def test_row8_walk_ins_still_sign_at_the_desk():
    from services.intake.rules import RuleViolation, check_signature_at_intake

    with pytest.raises(RuleViolation, match="signature on the form now"):
        check_signature_at_intake("walk_in", False, POLICY, anonymous=True, reply_method="none")


# --- row 5: a clerk posts validity {"valid": false, "confirmed_by": "<supervisor id>"} ------------


def test_row5_an_invalid_judgement_waits_for_the_manager():
    from services.intake.rules import ValidityState, judge_validity

    judged = judge_validity(Kind.complaint, False, "开发商遗留问题，非物业责任", "cs01", "sup01",
                            at(2026, 11, 23, 15, 0), POLICY, WorkingCalendar())
    assert judged.state is ValidityState.awaiting_confirmation and judged.confirmed_by is None
    # The owner-notice deadline runs from the judgement: 1 working day.
    assert judged.notify_owner_by == at(2026, 11, 24, 15, 0)


@pytest.mark.parametrize(
    "state, judge, manager, roles, confirm, outcome",
    [
        ("awaiting_confirmation", "cs01", "sup01", ["customer_service_supervisor"], True, "confirmed"),
        ("awaiting_confirmation", "cs01", "dir01", ["estate_director"], False, "rejected"),
        ("awaiting_confirmation", "cs01", "cs02", ["customer_service"], True, 403),  # a clerk is no manager
        ("awaiting_confirmation", "sup01", "sup01", ["customer_service_supervisor"], True, 403),  # own judgement
        ("confirmed", "cs01", "sup01", ["customer_service_supervisor"], True, 409),  # already decided
        ("valid", "cs01", "sup01", ["customer_service_supervisor"], False, 409),
        (None, "cs01", "sup01", ["customer_service_supervisor"], True, 409),  # never judged
    ],
)
def test_row5_only_a_manager_with_their_own_sign_in_decides(state, judge, manager, roles, confirm, outcome):
    from services.intake.rules import RuleViolation, confirm_invalid

    if isinstance(outcome, int):
        with pytest.raises(RuleViolation) as error:
            confirm_invalid(state, judge, manager, roles, confirm, POLICY)
        assert error.value.status == outcome
    else:
        assert confirm_invalid(state, judge, manager, roles, confirm, POLICY).value == outcome


def test_row5_confirming_roles_are_policy():
    from services.intake.rules import confirm_invalid
    from shared.policy import effective_policy

    policy = effective_policy({"intake": {"invalid_confirmation_roles": ["estate_manager"]}})
    assert confirm_invalid("awaiting_confirmation", "cs01", "em01", ["estate_manager"], True, policy) == "confirmed"


def test_row5_a_late_notice_stays_late():
    from services.intake.rules import notice_late

    due = at(2026, 11, 24, 15, 0)
    assert notice_late(due, None) is False  # not given yet: overdue, not "late"
    assert notice_late(due, at(2026, 11, 24, 14, 59)) is False
    assert notice_late(due, due) is False
    assert notice_late(due, at(2026, 11, 25, 9, 0)) is True
    assert notice_late(None, at(2026, 11, 25, 9, 0)) is False


# --- row 6: an 800 CNY loss whose nonconformity record is never approved ------------------------


@pytest.mark.parametrize(
    "state, waits",
    [(None, False), ("opened", True), ("approved", False), ("corrective_action", False), ("closed", False)],
)
def test_row6_completion_waits_only_for_an_unapproved_nonconformity(state, waits):
    from services.dispatch.rules import completion_waits_for_approval

    assert completion_waits_for_approval(state) is waits


def test_row6_an_800_cny_loss_opens_a_record_that_holds_completion_until_approved():
    from services.dispatch.rules import (
        RuleViolation, approve_nonconformity, completion_waits_for_approval, needs_nonconformity, open_nonconformity)

    assert needs_nonconformity(800, POLICY) and not needs_nonconformity(500, POLICY)
    record = open_nonconformity("T-1", "维修不当泡坏地板", "em01", at(2026, 11, 23, 10, 0), 800)
    assert completion_waits_for_approval(record.state)
    with pytest.raises(RuleViolation) as error:  # only the management representative approves
        approve_nonconformity(record, "dir01", "estate_director", at(2026, 11, 23, 11, 0), POLICY)
    assert error.value.status == 403
    approved = approve_nonconformity(record, "mr01", "management_representative", at(2026, 11, 23, 11, 0), POLICY)
    assert not completion_waits_for_approval(approved.state)
    with pytest.raises(RuleViolation, match="unknown nonconformity state"):
        completion_waits_for_approval("lost")


# --- row 3 again: the callback and owner-notice deadlines follow every calendar change too ---------


def test_row3_a_pending_complaint_callback_follows_every_calendar_change():
    from services.callback.rules import recompute_complaint_due
    from shared.policy import effective_policy

    completed = at(2026, 12, 30, 10, 0)  # 2 working days: Thu 31 Dec, (1 Jan off) Mon 4 Jan
    assert recompute_complaint_due(completed, at(2027, 1, 4, 10, 0), True, POLICY, PROJECTED) is None
    loaded = WorkingCalendar(CalendarOverrides(loaded_years=frozenset({2027})))
    assert recompute_complaint_due(completed, at(2027, 1, 4, 10, 0), True, POLICY, loaded) == (
        at(2027, 1, 4, 10, 0), False)
    corrected = WorkingCalendar(CalendarOverrides(days_off=frozenset({dt.date(2027, 1, 4)}),
                                                  loaded_years=frozenset({2027})))
    assert recompute_complaint_due(completed, at(2027, 1, 4, 10, 0), False, POLICY, corrected) == (
        at(2027, 1, 5, 10, 0), False)
    # The 001 rule (3 calendar days) follows no calendar.
    calendar_days = effective_policy({"callback": {"complaint_rule": "calendar_days"}})
    assert recompute_complaint_due(completed, at(2027, 1, 2, 10, 0), False, calendar_days, corrected) is None


def test_row3_the_invalid_complaint_notice_follows_a_typhoon_day_off():
    from services.intake.rules import invalid_notice_due

    judged = at(2026, 11, 23, 15, 0)
    assert invalid_notice_due(judged, POLICY, WorkingCalendar()).value == at(2026, 11, 24, 15, 0)
    typhoon = WorkingCalendar(CalendarOverrides(days_off=frozenset({dt.date(2026, 11, 24)})))
    assert invalid_notice_due(judged, POLICY, typhoon).value == at(2026, 11, 25, 15, 0)


# --- "Also build" 2: duty roster and shift handover ------------------------------------------------


def test_three_shifts_cover_the_day_and_the_middle_shift_ends_at_midnight():
    from services.intake.rules import shift_window

    assert shift_window(dt.date(2027, 1, 1), "early", POLICY) == (at(2027, 1, 1, 8, 0), at(2027, 1, 1, 16, 0))
    assert shift_window(dt.date(2027, 1, 1), "middle", POLICY) == (at(2027, 1, 1, 16, 0), at(2027, 1, 2, 0, 0))
    assert shift_window(dt.date(2027, 1, 1), "night", POLICY) == (at(2027, 1, 1, 0, 0), at(2027, 1, 1, 8, 0))


def test_a_month_roster_holidays_included_and_its_refusals():
    from services.intake.rules import RuleViolation, roster_for_month

    entries = [{"day": "2027-01-01", "post": "security_control_centre", "shift": "night", "staff": ["sec01"]},
               {"day": "2027-01-01", "post": "customer_service_desk", "shift": "early", "staff": ["cs01"]}]
    roster = roster_for_month("2027-01", entries, POLICY)  # New Year's Day has its own duty shifts
    assert [(s.post, s.shift, s.starts_at) for s in roster] == [
        ("security_control_centre", "night", at(2027, 1, 1, 0, 0)),
        ("customer_service_desk", "early", at(2027, 1, 1, 8, 0))]
    for bad, message in [
        ({**entries[0], "day": "2027-02-01"}, "not in 2027-01"),
        ({**entries[0], "post": "canteen"}, "unknown duty post"),
        ({**entries[0], "shift": "siesta"}, "unknown shift"),
        ({**entries[0], "staff": [" "]}, "nobody on duty"),
    ]:
        with pytest.raises(RuleViolation, match=message):
            roster_for_month("2027-01", [bad], POLICY)
    with pytest.raises(RuleViolation, match="rostered twice"):
        roster_for_month("2027-01", [entries[0], entries[0]], POLICY)
    with pytest.raises(RuleViolation, match="YYYY-MM"):
        roster_for_month("January", entries, POLICY)


def test_a_holiday_night_hands_over_to_the_next_shift_not_the_next_working_morning():
    from services.intake.rules import next_shift_start, roster_for_month

    roster = roster_for_month("2027-01", [
        {"day": "2027-01-01", "post": "security_control_centre", "shift": "middle", "staff": ["sec01"]},
        {"day": "2027-01-02", "post": "security_control_centre", "shift": "night", "staff": ["sec02"]},
        {"day": "2027-01-04", "post": "customer_service_desk", "shift": "early", "staff": ["cs01"]},
    ], POLICY)
    # Fri 1 Jan (holiday) middle shift ends at midnight: Sat 2 Jan's night shift takes over
    # at 00:00, not the desk on Mon 4 Jan (the next working morning).
    assert next_shift_start(roster, "security_control_centre", at(2027, 1, 2, 0, 0)) == at(2027, 1, 2, 0, 0)
    assert next_shift_start(roster, "customer_service_desk", at(2027, 1, 2, 0, 0)) == at(2027, 1, 4, 8, 0)
    assert next_shift_start(roster, "security_control_centre", at(2027, 1, 2, 8, 0)) is None


def test_no_handover_while_a_major_or_emergency_incident_is_open():
    from services.intake.rules import ShiftIncident, handover_blockers

    emergency = ShiftIncident("T-1", "repair", "emergency", "not_serious", "not_urgent", handled=False)
    serious = ShiftIncident("T-2", "complaint", None, "serious", "not_urgent", handled=False)
    urgent = ShiftIncident("T-3", "complaint", None, "not_serious", "urgent", handled=False)
    ordinary = ShiftIncident("T-4", "inquiry", None, "not_serious", "not_urgent", handled=False)
    assert handover_blockers([emergency, serious, urgent, ordinary]) == ["T-1", "T-2", "T-3"]
    handled = ShiftIncident("T-1", "repair", "emergency", "not_serious", "not_urgent", handled=True)
    assert handover_blockers([handled, ordinary]) == []


def test_an_unclaimed_item_is_overdue_after_the_incoming_shift_starts():
    from services.intake.rules import handover_item_overdue

    start = at(2027, 1, 2, 0, 0)
    assert not handover_item_overdue(None, start, start)
    assert handover_item_overdue(None, start, at(2027, 1, 2, 0, 1))
    assert not handover_item_overdue(at(2027, 1, 1, 23, 58), start, at(2027, 1, 2, 0, 1))


def test_an_off_hours_registration_on_a_holiday_night_goes_to_the_next_rostered_shift():
    from services.intake.rules import roster_handover_due, roster_for_month

    roster = roster_for_month("2027-01", [
        {"day": "2027-01-01", "post": "security_control_centre", "shift": "middle", "staff": ["duty01"]},
        {"day": "2027-01-02", "post": "security_control_centre", "shift": "night", "staff": ["duty02"]},
    ], POLICY)
    registered = at(2027, 1, 1, 23, 50)  # New Year's Day night, emergency water repair
    assert roster_handover_due(registered, "duty01", roster, POLICY, PROJECTED) == at(2027, 1, 2, 0, 0)
    # Nobody rostered for the registrant: the next working morning (Mon 4 Jan 08:30).
    assert roster_handover_due(registered, "duty09", roster, POLICY, PROJECTED) == at(2027, 1, 4, 8, 30)
    # In office hours the day shift already has it.
    assert roster_handover_due(at(2027, 1, 5, 10, 0), "duty01", roster, POLICY, PROJECTED) == at(2027, 1, 5, 10, 0)


@pytest.mark.parametrize("month", ["2026-1", "2026-011", " 2026-1", "2026-13", "2026-00"])
def test_a_roster_month_not_written_yyyy_mm_is_refused_with_422_everywhere(month):
    """The roster routes' month (RULES-free input): a 422 from the rule and from the
    store's month bounds alike, never a bare ValueError (it answered 500 for "2026-1")."""
    from services.intake.duty_store import month_bounds
    from services.intake.rules import RuleViolation, roster_for_month
    for refuse in (lambda: roster_for_month(month, [], POLICY), lambda: month_bounds(month)):
        with pytest.raises(RuleViolation) as refused:
            refuse()
        assert refused.value.status == 422
