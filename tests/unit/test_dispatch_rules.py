"""Dispatch rules: routing, clocks, breaches, escalation, nonconformity, the form's round,
progress updates and paid-service bills.

Calendar facts used below (2026 arrangement published by the State Council, as carried
by the `holidays` package): National Day 1–7 Oct off, make-up workdays Sun 20 Sep and
Sat 10 Oct; Mid-Autumn Fri 25 Sep off. 2027 is not published yet (projected: its fixed
statutory holidays such as Fri 1 Jan are off, weekends rest, no make-up days; provisional).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from decimal import Decimal
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.dispatch.rules import routing
from services.dispatch.rules import (
    DEFAULT_ROUTING_RULES,
    Bill,
    BillCopy,
    Clock,
    FormStatus,
    LineKind,
    NonconformityState,
    RoutingRule,
    RuleViolation,
    ServiceItem,
    SettlementChannel,
    TicketFacts,
    apply_acknowledge,
    apply_arrive,
    apply_return,
    apply_sign_back,
    apply_verify,
    approve_nonconformity,
    arrival_due,
    assign_round,
    clock_verdict,
    attach_capa_report,
    close_nonconformity,
    first_rung,
    make_bill,
    material_line,
    progress_clock,
    progress_week_met,
    needs_nonconformity,
    next_escalation_at,
    next_rung,
    open_nonconformity,
    pending_departments,
    reschedule_appointment,
    round_complete,
    route,
    routing_rules_from_data,
    service_line,
    settle_bill,
    start_corrective_action,
    start_round_clocks,
)
from shared.calendar import CalendarOverrides, WorkingCalendar
from shared.events import (
    Accepted,
    AcceptedBy,
    Channel,
    Deadline,
    Kind,
    RepairClass,
    ReplyMethod,
    Urgency,
)
from shared.policy import Policy, effective_policy

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = Policy()
CALENDAR = WorkingCalendar()


def at(y, m, d, h=0, mi=0, tz=SHANGHAI):
    return dt.datetime(y, m, d, h, mi, tzinfo=tz)


def clocks_by_name(deadlines, department=None):
    return {d.clock: d for d in deadlines if d.department == department}


def facts(kind=Kind.complaint, **kw):
    return TicketFacts(kind=kind, **kw)


def test_calendar_facts_these_tests_rely_on():
    cn = holidays.country_holidays("CN", years=2026)
    assert dt.date(2026, 9, 20) in cn.weekend_workdays
    assert dt.date(2026, 10, 10) in cn.weekend_workdays
    assert [CALENDAR.is_working_day(dt.date(2026, 10, d)) for d in range(1, 13)] == [
        False, False, False, False, False, False, False, True, True, True, False, True,
    ]
    assert not CALENDAR.is_known(dt.date(2027, 1, 4))


# --- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ticket, departments",
    [
        (facts(Kind.repair, category="water leak"), ["engineering"]),
        (facts(Kind.repair, category="general"), ["engineering"]),
        (facts(Kind.repair, category="lawn sprinkler", location="garden"), ["greening"]),
        (facts(Kind.complaint, category="noise"), ["security"]),
        (facts(Kind.complaint, category="Noise at night"), ["security"]),
        (facts(Kind.complaint, category="security patrol"), ["security"]),
        (facts(Kind.complaint, category="楼上噪音"), ["security"]),
        (facts(Kind.situation_report, category="stranger in the lobby"), ["security"]),
        (facts(Kind.complaint, category="garbage not collected"), ["cleaning"]),
        (facts(Kind.complaint, category="stairwell hygiene"), ["cleaning"]),
        (facts(Kind.suggestion, category="cleaning schedule"), ["cleaning"]),
        (facts(Kind.complaint, category="垃圾清运"), ["cleaning"]),
        (facts(Kind.complaint, category="greening"), ["greening"]),
        (facts(Kind.situation_report, category="fallen tree"), ["greening"]),
        (facts(Kind.complaint, category="management fees"), ["finance"]),
        (facts(Kind.complaint, category="物业费"), ["finance"]),
        (facts(Kind.complaint, category="elevator breakdown"), ["engineering"]),
        (facts(Kind.inquiry, category="fees"), ["customer_service"]),
        (facts(Kind.inquiry, category="noise"), ["customer_service"]),
        (facts(Kind.praise, category="cleaning"), ["customer_service"]),
        (facts(Kind.complaint, category="staff attitude"), ["customer_service"]),  # no rule: default
        (facts(Kind.suggestion, category="general"), ["customer_service"]),
        (facts(Kind.special_service, category="install a lamp"), ["engineering"]),
    ],
)
def test_default_routing(ticket, departments):
    assert route(ticket, DEFAULT_ROUTING_RULES, ["customer_service"]) == departments


ESTATE_RULES = (
    RoutingRule(Kind.repair, None, None, ("engineering",), 10),
    RoutingRule(Kind.repair, None, "clubhouse|会所", ("engineering", "customer_service"), 10),
    RoutingRule(Kind.complaint, "noise*", "B*", ("security",), 20),
    RoutingRule(Kind.complaint, "noise*", None, ("security", "customer_service"), 20),
    RoutingRule(None, "leak", None, ("engineering",), 20),
    RoutingRule(None, "leak", None, ("cleaning",), 20),  # same rank, later line: loses
)


@pytest.mark.parametrize(
    "ticket, departments",
    [
        # More specific wins at equal priority (location set).
        (facts(Kind.repair, location="clubhouse"), ["engineering", "customer_service"]),
        (facts(Kind.repair, building="会所"), ["engineering", "customer_service"]),
        (facts(Kind.repair, location="B3-1201"), ["engineering"]),
        # Location pattern against the building when the location does not match.
        (facts(Kind.complaint, category="noise", building="B7"), ["security"]),
        (facts(Kind.complaint, category="noise", location="b7 roof"), ["security"]),
        (facts(Kind.complaint, category="noise", building="A1"), ["security", "customer_service"]),
        (facts(Kind.complaint, category="noise"), ["security", "customer_service"]),
        (facts(Kind.inquiry, category="leak"), ["engineering"]),
        (facts(Kind.inquiry, category="leaking"), ["front_desk"]),  # pattern is whole-string
        (facts(Kind.praise), ["front_desk"]),
    ],
)
def test_estate_routing_rules(ticket, departments):
    assert route(ticket, ESTATE_RULES, ["front_desk"]) == departments


def test_higher_priority_beats_specificity():
    rules = (
        RoutingRule(Kind.complaint, "noise", "B*", ("security",), 1),
        RoutingRule(None, None, None, ("customer_service",), 2),
    )
    assert route(facts(category="noise", building="B1"), rules, ["x"]) == ["customer_service"]


def test_duplicate_departments_are_listed_once():
    rules = (RoutingRule(None, None, None, ("security", "security", "cleaning"), 0),)
    assert route(facts(), rules, []) == ["security", "cleaning"]


def test_no_rule_and_no_default_refused():
    with pytest.raises(RuleViolation, match="no default department"):
        route(facts(Kind.praise), (), [])


def test_rule_without_department_refused():
    with pytest.raises(RuleViolation, match="at least one department"):
        RoutingRule(Kind.repair, None, None, (), 0)


def test_routing_rules_are_data():
    rows = [rule.to_data() for rule in DEFAULT_ROUTING_RULES]
    assert routing_rules_from_data(rows) == DEFAULT_ROUTING_RULES


@pytest.mark.parametrize(
    "row",
    [{"kind": "repair"}, {"kind": "gossip", "departments": ["x"]}, {"kind": None, "departments": []},
     {"departments": ["x"], "priority": "high"}],
)
def test_bad_routing_data_refused(row):
    with pytest.raises(RuleViolation, match="routing rule"):
        routing_rules_from_data([row])


def test_facts_from_accepted_event():
    accepted = Accepted(
        ticket_id="T-1", form_number="HX01-2026-000001", kind=Kind.repair, channel=Channel.phone,
        category="water leak", repair_class=RepairClass.appointment, urgency=Urgency.urgent,
        accepted_by=AcceptedBy.company, building="B2", location="B2-301 kitchen", description="leak",
        first_contact="cs01", received_at=at(2026, 9, 30, 10), appointment_at=at(2026, 9, 30, 15),
        about_role=None, owner_loss_cny=120.5,
    )
    ticket = TicketFacts.from_accepted(accepted)
    assert (ticket.kind, ticket.repair_class, ticket.urgency, ticket.accepted_by) == (
        Kind.repair, RepairClass.appointment, Urgency.urgent, AcceptedBy.company,
    )
    assert (ticket.building, ticket.location, ticket.appointment_at, ticket.owner_loss_cny) == (
        "B2", "B2-301 kitchen", at(2026, 9, 30, 15), 120.5,
    )


# --- clocks: the mandatory calendar cases --------------------------------------------------------


def test_general_repair_at_2350_on_a_holiday():
    """Arrival is wall-clock (60 min → 00:50 next day); reply is 2 working days and skips
    the rest of the National Day holiday."""
    accepted = at(2026, 10, 1, 23, 50)
    deadlines = start_round_clocks(
        facts(Kind.repair, repair_class=RepairClass.general), ["engineering"], accepted, POLICY, CALENDAR
    )
    dept = clocks_by_name(deadlines, "engineering")
    ticket = clocks_by_name(deadlines)
    assert dept["arrival"].due_at == at(2026, 10, 2, 0, 50)
    assert dept["arrival"].due_at - accepted == dt.timedelta(minutes=60)
    assert dept["acknowledge"].due_at == at(2026, 10, 2, 0, 20)
    assert dept["repair_slip_return"].due_at == at(2026, 10, 2, 23, 50)
    assert ticket["reply"].due_at == at(2026, 10, 9, 23, 50)  # 8 Oct, 9 Oct
    assert ticket["tracking"].due_at == at(2026, 10, 10, 23, 50)  # 8, 9, make-up Sat 10 Oct
    assert not any(d.provisional for d in deadlines)


def test_non_urgent_complaint_the_working_day_before_national_day():
    deadlines = start_round_clocks(facts(category="noise"), ["security"], at(2026, 9, 30, 10), POLICY, CALENDAR)
    ticket = clocks_by_name(deadlines)
    assert ticket["reply"].due_at == at(2026, 10, 9, 10)
    assert ticket["tracking"].due_at == at(2026, 10, 10, 10)  # make-up Saturday is day 3
    assert "arrival" not in clocks_by_name(deadlines, "security")


@pytest.mark.parametrize(
    "accepted, clock, days_policy, due",
    [
        # Make-up Saturday 10 Oct is a working day: Fri 9 Oct + 1 → Sat; + 2 → Mon 12 Oct.
        (at(2026, 10, 9, 10), "reply", {}, at(2026, 10, 12, 10)),
        (at(2026, 10, 9, 10), "reply", {"reply_working_days_not_urgent": 1}, at(2026, 10, 10, 10)),
        # Make-up Sunday 20 Sep: Fri 18 Sep + 1 → Sun 20 Sep.
        (at(2026, 9, 18, 10), "reply", {"reply_working_days_not_urgent": 1}, at(2026, 9, 20, 10)),
        # Mid-Autumn Fri 25 Sep is off: Thu 24 Sep + 2 → Mon 28, Tue 29.
        (at(2026, 9, 24, 10), "reply", {}, at(2026, 9, 29, 10)),
        # Accepted on a weekend: the first working day after it is day 1.
        (at(2026, 9, 26, 10), "reply", {}, at(2026, 9, 29, 10)),
        (at(2026, 9, 30, 10), "tracking", {}, at(2026, 10, 10, 10)),
    ],
)
def test_working_day_clocks_follow_the_calendar(accepted, clock, days_policy, due):
    policy = effective_policy(estate_overrides={"clocks": days_policy})
    deadlines = start_round_clocks(facts(), ["customer_service"], accepted, policy, CALENDAR)
    assert clocks_by_name(deadlines)[clock].due_at == due


def test_deadline_into_2027_is_provisional():
    ticket = facts(category="fees", accepted_by=AcceptedBy.company)
    deadlines = clocks_by_name(start_round_clocks(ticket, ["finance"], at(2026, 12, 28, 10), POLICY, CALENDAR))
    assert deadlines["reply"].due_at == at(2026, 12, 30, 10)
    assert deadlines["reply"].provisional is False
    # 29, 30, 31 Dec, then the projected 2027 (1 Jan off): 4, 5, 6, 7 Jan.
    assert deadlines["tracking"].due_at == at(2027, 1, 7, 10)
    assert deadlines["tracking"].provisional is True


def test_company_loaded_2027_calendar_clears_the_provisional_flag():
    calendar = WorkingCalendar(
        CalendarOverrides(days_off=frozenset({dt.date(2027, 1, 1)}), loaded_years=frozenset({2027}))
    )
    ticket = facts(category="fees", accepted_by=AcceptedBy.company)
    deadlines = clocks_by_name(start_round_clocks(ticket, ["finance"], at(2026, 12, 28, 10), POLICY, calendar))
    assert deadlines["tracking"].due_at == at(2027, 1, 7, 10)
    assert deadlines["tracking"].provisional is False


def test_provisional_reply_clock_in_2027():
    deadlines = clocks_by_name(start_round_clocks(facts(), ["customer_service"], at(2026, 12, 31, 9), POLICY, CALENDAR))
    assert deadlines["reply"].due_at == at(2027, 1, 5, 9)  # 1 Jan off, Mon 4 and Tue 5
    assert deadlines["reply"].provisional is True


def test_working_days_are_counted_in_the_estates_local_time():
    # 17:00 UTC on 30 Sep is 01:00 on 1 Oct in Shanghai: a holiday, not the working day before.
    accepted = dt.datetime(2026, 9, 30, 17, 0, tzinfo=dt.timezone.utc)
    deadlines = clocks_by_name(start_round_clocks(facts(), ["customer_service"], accepted, POLICY, CALENDAR))
    assert deadlines["reply"].due_at == at(2026, 10, 9, 1, 0)
    assert deadlines["reply"].due_at.utcoffset() == dt.timedelta(hours=8)


# --- clocks: by repair class, reply and tracking rules -------------------------------------------


@pytest.mark.parametrize(
    "repair_class, minutes",
    [
        (RepairClass.emergency, 0),  # immediately (立即): no grace unless the policy gives one
        (RepairClass.general, 60),
        (None, 60),  # unclassified repair is a general repair
        (RepairClass.simple, 20),
        (RepairClass.commissioned_immediate, 15),
    ],
)
def test_arrival_by_repair_class(repair_class, minutes):
    accepted = at(2026, 9, 30, 10)
    deadlines = start_round_clocks(facts(Kind.repair, repair_class=repair_class), ["engineering"], accepted, POLICY, CALENDAR)
    dept = clocks_by_name(deadlines, "engineering")
    assert dept["arrival"].due_at == accepted + dt.timedelta(minutes=minutes)
    assert dept["repair_slip_return"].due_at == accepted + dt.timedelta(hours=24)


def test_arrival_minutes_are_policy():
    policy = effective_policy(
        company_overrides={"clocks": {"arrival_minutes_general": 45}},
        estate_overrides={"clocks": {"arrival_grace_minutes_immediate": 5, "repair_slip_return_hours": 12}},
    )
    accepted = at(2026, 9, 30, 10)
    general = clocks_by_name(start_round_clocks(facts(Kind.repair), ["engineering"], accepted, policy, CALENDAR), "engineering")
    assert general["arrival"].due_at == at(2026, 9, 30, 10, 45)
    assert general["repair_slip_return"].due_at == at(2026, 9, 30, 22)
    emergency = facts(Kind.repair, repair_class=RepairClass.emergency)
    assert arrival_due(emergency, accepted, policy) == at(2026, 9, 30, 10, 5)


def test_appointment_repair_arrives_at_the_appointment():
    ticket = facts(Kind.repair, repair_class=RepairClass.appointment, appointment_at=at(2026, 10, 2, 14))
    dept = clocks_by_name(start_round_clocks(ticket, ["engineering"], at(2026, 9, 30, 10), POLICY, CALENDAR), "engineering")
    assert dept["arrival"].due_at == at(2026, 10, 2, 14)
    assert dept["repair_slip_return"].due_at == at(2026, 10, 3, 14)


def test_repair_project_has_no_arrival_or_slip_clock():
    ticket = facts(Kind.repair, repair_class=RepairClass.project)
    deadlines = start_round_clocks(ticket, ["engineering"], at(2026, 9, 30, 10), POLICY, CALENDAR)
    assert {d.clock for d in deadlines} == {"acknowledge", "reply", "tracking"}
    assert arrival_due(ticket, at(2026, 9, 30, 10), POLICY) is None


def test_non_repairs_have_no_arrival():
    assert arrival_due(facts(Kind.complaint), at(2026, 9, 30, 10), POLICY) is None


@pytest.mark.parametrize(
    "ticket, message",
    [
        (facts(Kind.repair, repair_class=RepairClass.appointment), "needs the appointment time"),
        (facts(Kind.repair, repair_class=RepairClass.appointment, appointment_at=at(2026, 9, 30, 9)), "before the round started"),
        (facts(Kind.repair, repair_class=RepairClass.appointment, appointment_at=dt.datetime(2026, 10, 1)), "timezone-aware"),
        (facts(reply_agreed_by=at(2026, 9, 29, 10)), "before acceptance"),
    ],
)
def test_bad_clock_facts_refused(ticket, message):
    with pytest.raises(RuleViolation, match=message):
        start_round_clocks(ticket, ["engineering"], at(2026, 9, 30, 10), POLICY, CALENDAR)


@pytest.mark.parametrize(
    "departments, accepted, round, message",
    [
        ([], at(2026, 9, 30, 10), 1, "at least one department"),
        (["security", "security"], at(2026, 9, 30, 10), 1, "assigned twice"),
        (["security"], at(2026, 9, 30, 10), 0, "numbered from 1"),
        (["security"], dt.datetime(2026, 9, 30, 10), 1, "timezone-aware"),
    ],
)
def test_bad_round_refused(departments, accepted, round, message):
    with pytest.raises(RuleViolation, match=message):
        start_round_clocks(facts(), departments, accepted, POLICY, CALENDAR, round)


@pytest.mark.parametrize(
    "ticket, round, due",
    [
        # An agreed reply time wins, even over urgency.
        (facts(reply_agreed_by=at(2026, 10, 8, 16)), 1, at(2026, 10, 8, 16)),
        (facts(urgency=Urgency.urgent, reply_agreed_by=at(2026, 9, 30, 17)), 1, at(2026, 9, 30, 17)),
        # A reopened round owes a fresh answer by the default rule.
        (facts(reply_agreed_by=at(2026, 9, 30, 17)), 2, at(2026, 10, 9, 10)),
        (facts(urgency=Urgency.urgent), 1, at(2026, 9, 30, 12)),
        (facts(urgency=Urgency.urgent, severity="serious"), 1, at(2026, 9, 30, 12)),
        (facts(urgency=Urgency.not_urgent, severity="serious"), 1, at(2026, 10, 9, 10)),
        (facts(Kind.inquiry), 1, at(2026, 10, 9, 10)),
        (facts(Kind.repair), 1, at(2026, 10, 9, 10)),
    ],
)
def test_reply_clock(ticket, round, due):
    deadlines = clocks_by_name(start_round_clocks(ticket, ["customer_service"], at(2026, 9, 30, 10), POLICY, CALENDAR, round))
    assert deadlines["reply"].due_at == due
    assert deadlines["reply"].provisional is False


def test_urgent_reply_is_wall_clock_across_a_holiday_night():
    deadlines = clocks_by_name(
        start_round_clocks(facts(urgency=Urgency.urgent), ["security"], at(2026, 10, 1, 23, 0), POLICY, CALENDAR)
    )
    assert deadlines["reply"].due_at == at(2026, 10, 2, 1, 0)


@pytest.mark.parametrize(
    "ticket",
    [facts(Kind.praise), facts(Kind.activity), facts(Kind.complaint, reply_method=ReplyMethod.none)],
)
def test_no_reply_clock_without_an_answer_owed(ticket):
    deadlines = start_round_clocks(ticket, ["customer_service"], at(2026, 9, 30, 10), POLICY, CALENDAR)
    assert "reply" not in {d.clock for d in deadlines}
    assert "tracking" in {d.clock for d in deadlines}


def test_reply_kinds_are_policy():
    policy = effective_policy(estate_overrides={"clocks": {"reply_kinds": ["complaint"]}})
    deadlines = start_round_clocks(facts(Kind.inquiry), ["customer_service"], at(2026, 9, 30, 10), policy, CALENDAR)
    assert "reply" not in {d.clock for d in deadlines}


@pytest.mark.parametrize(
    "accepted_by, due",
    [
        (AcceptedBy.department, at(2026, 10, 10, 10)),  # 8, 9, 10 Oct
        (AcceptedBy.company, at(2026, 10, 15, 10)),  # 8, 9, 10, 12, 13, 14, 15 Oct
    ],
)
def test_tracking_clock_by_who_accepted(accepted_by, due):
    deadlines = clocks_by_name(
        start_round_clocks(facts(accepted_by=accepted_by), ["customer_service"], at(2026, 9, 30, 10), POLICY, CALENDAR)
    )
    assert deadlines["tracking"].due_at == due


def test_every_department_gets_its_own_clocks():
    ticket = facts(Kind.repair, repair_class=RepairClass.simple)
    deadlines = start_round_clocks(ticket, ["engineering", "cleaning"], at(2026, 9, 30, 10), POLICY, CALENDAR)
    keys = sorted((d.clock, d.department or "") for d in deadlines)
    assert keys == sorted(
        [(c, dep) for c in ("acknowledge", "arrival", "repair_slip_return") for dep in ("engineering", "cleaning")]
        + [("reply", ""), ("tracking", "")]
    )
    assert all(d.due_at == at(2026, 9, 30, 10, 30) for d in deadlines if d.clock == "acknowledge")


def test_acknowledge_minutes_are_policy():
    policy = effective_policy(estate_overrides={"clocks": {"acknowledge_minutes": 15}})
    deadlines = clocks_by_name(start_round_clocks(facts(), ["security"], at(2026, 9, 30, 10), policy, CALENDAR), "security")
    assert deadlines["acknowledge"].due_at == at(2026, 9, 30, 10, 15)


def test_minute_clocks_are_elapsed_time_across_dst():
    # New York springs forward on 8 Mar 2026 at 02:00: 60 elapsed minutes from 01:30 EST is 03:30 EDT.
    new_york = ZoneInfo("America/New_York")
    policy = effective_policy(estate_overrides={"timezone": "America/New_York"})
    accepted = dt.datetime(2026, 3, 8, 1, 30, tzinfo=new_york)
    arrival = arrival_due(facts(Kind.repair), accepted, policy)
    assert arrival == dt.datetime(2026, 3, 8, 3, 30, tzinfo=new_york)
    # (same-zone subtraction in Python is wall-clock, so compare in UTC)
    assert arrival.astimezone(dt.timezone.utc) - accepted.astimezone(dt.timezone.utc) == dt.timedelta(minutes=60)


# --- rescheduling ---------------------------------------------------------------------------------


def _appointment_round():
    ticket = facts(Kind.repair, repair_class=RepairClass.appointment, appointment_at=at(2026, 10, 2, 14))
    return start_round_clocks(ticket, ["engineering", "cleaning"], at(2026, 9, 30, 10), POLICY, CALENDAR)


def test_owner_not_at_home_moves_arrival_and_slip():
    before = _appointment_round()
    after = reschedule_appointment(before, at(2026, 10, 8, 9))
    for dep in ("engineering", "cleaning"):
        clocks = clocks_by_name(after, dep)
        assert clocks["arrival"].due_at == at(2026, 10, 8, 9)
        assert clocks["repair_slip_return"].due_at == at(2026, 10, 9, 9)
        assert clocks["acknowledge"] == clocks_by_name(before, dep)["acknowledge"]
    assert clocks_by_name(after) == clocks_by_name(before)
    assert before != after  # the input is not mutated


def test_reschedule_one_department():
    after = reschedule_appointment(_appointment_round(), at(2026, 10, 8, 9), department="cleaning")
    assert clocks_by_name(after, "cleaning")["arrival"].due_at == at(2026, 10, 8, 9)
    assert clocks_by_name(after, "engineering")["arrival"].due_at == at(2026, 10, 2, 14)


def test_reschedule_slip_hours_are_policy():
    policy = effective_policy(estate_overrides={"clocks": {"repair_slip_return_hours": 6}})
    after = reschedule_appointment(_appointment_round(), at(2026, 10, 8, 9), policy)
    assert clocks_by_name(after, "engineering")["repair_slip_return"].due_at == at(2026, 10, 8, 15)


@pytest.mark.parametrize(
    "deadlines, new_at, department, message",
    [
        (start_round_clocks(facts(), ["security"], at(2026, 9, 30, 10), POLICY, CALENDAR), at(2026, 10, 8, 9), None, "no arrival clock"),
        (_appointment_round(), at(2026, 10, 8, 9), "security", "no arrival clock for department security"),
        (_appointment_round(), dt.datetime(2026, 10, 8, 9), None, "timezone-aware"),
    ],
)
def test_reschedule_refused(deadlines, new_at, department, message):
    with pytest.raises(RuleViolation, match=message):
        reschedule_appointment(deadlines, new_at, department=department)


# --- escalation ------------------------------------------------------------------------------------


def test_escalation_ladder_order():
    rungs, rung = [], None
    while (rung := next_rung(rung, POLICY)) is not None:
        rungs.append(rung)
    assert rungs == ["department_head", "estate_director", "company_general_management", "general_manager"]


@pytest.mark.parametrize(
    "current, expected",
    [
        (None, "department_head"),
        ("department_head", "estate_director"),
        ("estate_director", "company_general_management"),
        ("company_general_management", "general_manager"),
        ("general_manager", None),
    ],
)
def test_next_rung(current, expected):
    assert next_rung(current, POLICY) == expected


def test_unknown_rung_refused():
    with pytest.raises(RuleViolation, match="not a rung"):
        next_rung("chairman", POLICY)


def test_ladder_is_policy():
    policy = effective_policy(company_overrides={"escalation": {"ladder": ["supervisor", "general_manager"], "subject_rung": "supervisor"}})
    assert next_rung(None, policy) == "supervisor"
    assert next_rung("supervisor", policy) == "general_manager"
    assert next_rung("general_manager", policy) is None
    with pytest.raises(RuleViolation, match="not a rung"):
        next_rung("estate_director", policy)


@pytest.mark.parametrize(
    "ticket, rung",
    [
        (facts(Kind.complaint, about_role="supervisor_or_above"), "estate_director"),
        (facts(Kind.complaint, about_role="customer_service_staff"), "estate_director"),
        (facts(Kind.complaint, about_role="company_staff"), "estate_director"),
        (facts(Kind.complaint, about_role=None), "department_head"),
        (facts(Kind.complaint, about_role="cleaner"), "department_head"),
        (facts(Kind.suggestion, about_role="supervisor_or_above"), "department_head"),
        (facts(Kind.repair), "department_head"),
    ],
)
def test_first_rung(ticket, rung):
    assert first_rung(ticket, POLICY) == rung


def test_direct_to_estate_director_then_up_the_ladder():
    rung = first_rung(facts(Kind.complaint, about_role="customer_service_staff"), POLICY)
    assert (rung, next_rung(rung, POLICY)) == ("estate_director", "company_general_management")


def test_subject_rung_must_be_on_the_ladder():
    # Refused when the policy is set, so no rule ever meets such a ladder.
    with pytest.raises(ValidationError, match="subject_rung must be one of the ladder's rungs"):
        effective_policy(estate_overrides={"escalation": {"subject_rung": "chairman"}})


def test_empty_ladder_refused():
    with pytest.raises(ValidationError, match="subject_rung must be one of the ladder's rungs"):
        effective_policy(estate_overrides={"escalation": {"ladder": []}})


def test_next_escalation_at():
    assert next_escalation_at(at(2026, 10, 1, 23, 0), POLICY) == at(2026, 10, 2, 1, 0)
    policy = effective_policy(estate_overrides={"escalation": {"minutes_per_rung": 30}})
    assert next_escalation_at(at(2026, 10, 1, 23, 0), policy) == at(2026, 10, 1, 23, 30)


@pytest.mark.parametrize(
    "loss, needed",
    [
        (None, False), (0, False), (499.99, False), (500, False), ("500.00", False), (Decimal("500"), False),
        (500.01, True), (Decimal("500.01"), True), ("500.01", True), (501, True), (12000, True),
    ],
)
def test_nonconformity_threshold_is_strictly_above_500(loss, needed):
    assert needs_nonconformity(loss, POLICY) is needed


def test_nonconformity_threshold_is_policy():
    policy = effective_policy(company_overrides={"escalation": {"nonconformity_loss_cny": 1000}})
    assert needs_nonconformity(1000, policy) is False
    assert needs_nonconformity(1000.01, policy) is True


@pytest.mark.parametrize("loss", [-1, "-0.01", "a lot", float("nan"), float("inf")])
def test_bad_loss_refused(loss):
    with pytest.raises(RuleViolation):
        needs_nonconformity(loss, POLICY)


# --- nonconformity record ---------------------------------------------------------------------------


def _opened():
    return open_nonconformity("T-1", "water damage from a burst pipe left unrepaired", "estate_manager_01", at(2026, 10, 8, 9), 1200)


def _approved():
    return approve_nonconformity(_opened(), "mr01", "management_representative", at(2026, 10, 8, 11), POLICY)


def _acting():
    return start_corrective_action(_approved(), "replace riser valve; compensate owner", "eng_head", at(2026, 10, 8, 14))


def _closed():
    return close_nonconformity(_acting(), "estate_manager_01", "valve replaced, owner compensated", at(2026, 10, 12, 10))


def test_nonconformity_happy_path():
    record = attach_capa_report(_closed(), "quarterly riser valve inspection added", at(2026, 10, 13, 16))
    assert record.state is NonconformityState.closed
    assert record.owner_loss_cny == Decimal("1200")
    assert (record.approved_by, record.responsible, record.closed_by) == ("mr01", "eng_head", "estate_manager_01")
    assert record.capa_report == "quarterly riser valve inspection added"


def test_nonconformity_closes_without_capa_report():
    assert _closed().capa_report is None


TRANSITIONS = {
    "approve": lambda r: approve_nonconformity(r, "mr01", "management_representative", at(2026, 12, 1), POLICY),
    "start corrective action on": lambda r: start_corrective_action(r, "fix", "eng_head", at(2026, 12, 1)),
    "close": lambda r: close_nonconformity(r, "estate_manager_01", "done", at(2026, 12, 1)),
    "attach a CAPA report to": lambda r: attach_capa_report(r, "report", at(2026, 12, 1)),
}
ALLOWED_FROM = {
    NonconformityState.opened: "approve",
    NonconformityState.approved: "start corrective action on",
    NonconformityState.corrective_action: "close",
    NonconformityState.closed: "attach a CAPA report to",
}
RECORDS = {
    NonconformityState.opened: _opened,
    NonconformityState.approved: _approved,
    NonconformityState.corrective_action: _acting,
    NonconformityState.closed: _closed,
}


@pytest.mark.parametrize(
    "state, action",
    [(s, a) for s in NonconformityState for a in TRANSITIONS if ALLOWED_FROM[s] != a],
)
def test_every_invalid_nonconformity_transition_refused(state, action):
    record = RECORDS[state]()
    assert record.state is state
    with pytest.raises(RuleViolation, match=f"cannot {action} a nonconformity record that is {state.value}"):
        TRANSITIONS[action](record)


@pytest.mark.parametrize("state", list(NonconformityState))
def test_every_valid_nonconformity_transition_accepted(state):
    TRANSITIONS[ALLOWED_FROM[state]](RECORDS[state]())


def test_capa_report_only_once():
    record = attach_capa_report(_closed(), "report", at(2026, 10, 13))
    with pytest.raises(RuleViolation, match="already has its CAPA report"):
        attach_capa_report(record, "second report", at(2026, 10, 14))


@pytest.mark.parametrize("role", ["estate_manager", "general_manager", "department_head", ""])
def test_only_the_management_representative_approves(role):
    with pytest.raises(RuleViolation, match="approved by the management_representative"):
        approve_nonconformity(_opened(), "someone", role, at(2026, 10, 8, 11), POLICY)


def test_approver_role_is_policy():
    policy = effective_policy(company_overrides={"escalation": {"nonconformity_approver_role": "general_manager"}})
    assert approve_nonconformity(_opened(), "gm", "general_manager", at(2026, 10, 8, 11), policy).state is NonconformityState.approved


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: approve_nonconformity(_opened(), "mr01", "management_representative", at(2026, 10, 8, 8), POLICY), "before the record's previous step"),
        (lambda: start_corrective_action(_approved(), "fix", "eng", at(2026, 10, 8, 10)), "before the record's previous step"),
        (lambda: close_nonconformity(_acting(), "m", "done", at(2026, 10, 8, 13)), "before the record's previous step"),
        (lambda: attach_capa_report(_closed(), "r", at(2026, 10, 11)), "before the record's previous step"),
        (lambda: approve_nonconformity(_opened(), "", "management_representative", at(2026, 10, 9), POLICY), "approver is required"),
        (lambda: start_corrective_action(_approved(), " ", "eng", at(2026, 10, 9)), "corrective action is required"),
        (lambda: start_corrective_action(_approved(), "fix", "", at(2026, 10, 9)), "person responsible is required"),
        (lambda: close_nonconformity(_acting(), "m", "", at(2026, 10, 9)), "result is required"),
        (lambda: attach_capa_report(_closed(), "", at(2026, 10, 13)), "CAPA report is required"),
        (lambda: open_nonconformity("T-1", "", "m", at(2026, 10, 8)), "content is required"),
        (lambda: open_nonconformity("T-1", "x", "m", at(2026, 10, 8), -5), "cannot be negative"),
        (lambda: open_nonconformity("T-1", "x", "m", dt.datetime(2026, 10, 8)), "timezone-aware"),
        (lambda: approve_nonconformity(_opened(), "mr01", "management_representative", dt.datetime(2026, 10, 9), POLICY), "timezone-aware"),
    ],
)
def test_bad_nonconformity_steps_refused(make, message):
    with pytest.raises(RuleViolation, match=message):
        make()


# --- the countersign form's round -----------------------------------------------------------------------


ASSIGNED_AT = at(2026, 9, 30, 10)


def _round(arrival_required=()):
    return assign_round(["engineering", "security"], ASSIGNED_AT, 1, arrival_required)


def _ack(state, dep, minute=5):
    return apply_acknowledge(state, dep, f"{dep}_clerk", at(2026, 9, 30, 10, minute))


def _arrive(state, dep, minute=30):
    return apply_arrive(state, dep, f"{dep}_tech", at(2026, 9, 30, 10, minute))


def _sign(state, dep, hour=15, verified_by="head"):
    return apply_sign_back(state, dep, "checked the pipe", "fixed", f"{dep}_tech", verified_by, at(2026, 9, 30, hour))


def test_form_round_happy_path():
    state = _round(arrival_required=["engineering"])
    assert pending_departments(state) == ["engineering", "security"]
    state = _ack(state, "engineering")
    state = _ack(state, "security")
    state = _arrive(state, "engineering")
    state = _sign(state, "engineering")
    assert not round_complete(state)
    assert pending_departments(state) == ["security"]
    state = _sign(state, "security")  # arrival is optional where not required
    assert round_complete(state)
    engineering = state.progress("engineering")
    assert (engineering.status, engineering.arrived_by, engineering.verified_by) == (FormStatus.signed_back, "engineering_tech", "head")


def test_transitions_do_not_mutate_the_state():
    state = _round()
    _ack(state, "engineering")
    assert state.progress("engineering").status is FormStatus.assigned


# (steps already taken for "engineering", action attempted, message)
FORM_INVALID = [
    ([], "arrive", "arrival before acknowledgement by department engineering"),
    ([], "sign", "sign-back before acknowledgement by department engineering"),
    (["ack"], "ack", "department engineering already acknowledged this form"),
    (["ack", "arrive"], "ack", "already acknowledged"),
    (["ack", "arrive"], "arrive", "department engineering already arrived"),
    (["ack", "sign"], "ack", "already acknowledged"),
    (["ack", "sign"], "arrive", "department engineering already signed back"),
    (["ack", "sign"], "sign", "department engineering already signed back"),
    (["ack", "arrive", "sign"], "sign", "already signed back"),
    (["ack", "arrive", "sign"], "arrive", "already signed back"),
    (["ack", "tech"], "ack", "already acknowledged"),
    (["ack", "tech"], "arrive", "already waits for its head's verification"),
    (["ack", "arrive", "tech"], "sign", "already waits for its head's verification"),
]
ACTIONS = {
    "ack": lambda s: _ack(s, "engineering"),
    "arrive": lambda s: _arrive(s, "engineering"),
    "sign": lambda s: _sign(s, "engineering"),
}
# Steps that set up a state: "tech" is a technician's sign-back, which waits for the head.
STEPS = {**ACTIONS, "tech": lambda s: _sign(s, "engineering", verified_by=None)}


@pytest.mark.parametrize("steps, action, message", FORM_INVALID)
def test_every_invalid_form_transition_refused(steps, action, message):
    state = _round()
    for step in steps:
        state = STEPS[step](state)
    with pytest.raises(RuleViolation, match=message):
        ACTIONS[action](state)


def test_form_invalid_table_covers_every_status_and_action():
    reached = {(): FormStatus.assigned, ("ack",): FormStatus.acknowledged, ("ack", "arrive"): FormStatus.arrived,
               ("ack", "sign"): FormStatus.signed_back, ("ack", "arrive", "sign"): FormStatus.signed_back,
               ("ack", "tech"): FormStatus.awaiting_verification,
               ("ack", "arrive", "tech"): FormStatus.awaiting_verification}
    valid = {(FormStatus.assigned, "ack"), (FormStatus.acknowledged, "arrive"), (FormStatus.acknowledged, "sign"),
             (FormStatus.arrived, "sign")}
    covered = {(reached[tuple(steps)], action) for steps, action, _ in FORM_INVALID}
    # a transferred line is no longer active: the shell finds no line to act on
    assert covered == {(s, a) for s in FormStatus if s is not FormStatus.transferred for a in ACTIONS} - valid


@pytest.mark.parametrize("action", ["ack", "arrive", "sign"])
def test_department_not_assigned_refused(action):
    state = _ack(_round(), "engineering")
    call = {
        "ack": lambda: _ack(state, "greening"),
        "arrive": lambda: _arrive(state, "greening"),
        "sign": lambda: _sign(state, "greening"),
    }[action]
    with pytest.raises(RuleViolation, match="department greening is not assigned to this form"):
        call()


def test_sign_back_before_required_arrival_refused():
    state = _ack(_round(arrival_required=["engineering"]), "engineering")
    with pytest.raises(RuleViolation, match="sign-back before arrival on site by department engineering"):
        _sign(state, "engineering")


@pytest.mark.parametrize("verified_by", [None, "", "   "])
def test_a_technicians_sign_back_waits_for_the_head(verified_by):
    state = _sign(_ack(_round(), "engineering"), "engineering", verified_by=verified_by)
    line = state.progress("engineering")
    assert (line.status, line.signed_by, line.verified_by, line.verified_at) == (
        FormStatus.awaiting_verification, "engineering_tech", None, None)
    assert pending_departments(state) == ["engineering", "security"]  # not signed back until verified
    with pytest.raises(RuleViolation, match="already waits for its head's verification"):
        _sign(state, "engineering", hour=16, verified_by=None)


def test_the_head_verifies_and_the_round_completes():
    state = _sign(_sign(_ack(_ack(_round(), "engineering"), "security"), "engineering", verified_by=None),
                  "security", verified_by="security_head")  # a head's own sign-back is verified at once
    assert pending_departments(state) == ["engineering"]
    state = apply_verify(state, "engineering", "engineering_head", at(2026, 9, 30, 16))
    line = state.progress("engineering")
    assert (line.status, line.opinion, line.verified_by, line.verified_at) == (
        FormStatus.signed_back, "checked the pipe", "engineering_head", at(2026, 9, 30, 16))
    assert round_complete(state)
    with pytest.raises(RuleViolation, match="not waiting for its head's verification"):
        apply_verify(state, "engineering", "engineering_head", at(2026, 9, 30, 17))


def test_verification_before_the_sign_back_refused():
    state = _sign(_ack(_round(), "engineering"), "engineering", verified_by=None)
    with pytest.raises(RuleViolation, match="verification .* precedes the sign-back"):
        apply_verify(state, "engineering", "engineering_head", at(2026, 9, 30, 14))
    with pytest.raises(RuleViolation, match="who verified is required"):
        apply_verify(state, "engineering", " ", at(2026, 9, 30, 16))


@pytest.mark.parametrize("arrival_required, back_to", [((), FormStatus.acknowledged),
                                                        (("engineering",), FormStatus.arrived)])
def test_the_head_returns_a_sign_back_to_work(arrival_required, back_to):
    state = _ack(_round(arrival_required=list(arrival_required)), "engineering")
    if arrival_required:
        state = _arrive(state, "engineering")
    state = _sign(state, "engineering", verified_by=None)
    state = apply_return(state, "engineering", "照片不清，请补拍", at(2026, 9, 30, 16))
    line = state.progress("engineering")
    assert (line.status, line.opinion, line.result, line.signed_by, line.signed_at) == (back_to, None, None, None, None)
    assert not round_complete(state)
    state = _sign(state, "engineering", hour=17, verified_by=None)  # signed back again, verified again
    assert apply_verify(state, "engineering", "h", at(2026, 9, 30, 18)).progress("engineering").status is FormStatus.signed_back


def test_a_return_needs_a_reason_and_a_waiting_line():
    state = _ack(_round(), "engineering")
    with pytest.raises(RuleViolation, match="not waiting for its head's verification"):
        apply_return(state, "engineering", "redo", at(2026, 9, 30, 16))
    state = _sign(state, "engineering", verified_by=None)
    with pytest.raises(RuleViolation, match="reason for returning the sign-back is required"):
        apply_return(state, "engineering", "  ", at(2026, 9, 30, 16))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: apply_sign_back(s, "engineering", "", "fixed", "tech", "head", at(2026, 9, 30, 15)), "handling opinion is required"),
        (lambda s: apply_sign_back(s, "engineering", "op", " ", "tech", "head", at(2026, 9, 30, 15)), "handling result is required"),
        (lambda s: apply_sign_back(s, "engineering", "op", "res", "", "head", at(2026, 9, 30, 15)), "who signed back is required"),
        (lambda s: apply_sign_back(s, "engineering", "op", "res", "tech", "head", at(2026, 9, 30, 10, 1)), "precedes the previous step"),
        (lambda s: apply_arrive(s, "engineering", "tech", at(2026, 9, 30, 10, 1)), "precedes the acknowledgement"),
        (lambda s: apply_arrive(s, "engineering", "", at(2026, 9, 30, 11)), "who arrived is required"),
        (lambda s: apply_acknowledge(s, "security", "clerk", at(2026, 9, 30, 9, 59)), "precedes the assignment"),
        (lambda s: apply_acknowledge(s, "security", "", at(2026, 9, 30, 11)), "who acknowledged is required"),
        (lambda s: apply_acknowledge(s, "security", "clerk", dt.datetime(2026, 9, 30, 11)), "timezone-aware"),
    ],
)
def test_bad_form_steps_refused(call, message):
    state = _ack(_round(), "engineering")
    with pytest.raises(RuleViolation, match=message):
        call(state)


@pytest.mark.parametrize(
    "departments, round, arrival_required, message",
    [
        ([], 1, (), "at least one department"),
        (["engineering", "engineering"], 1, (), "assigned twice"),
        (["engineering", ""], 1, (), "department is required"),
        (["engineering"], 0, (), "numbered from 1"),
        (["engineering"], 1, ["security"], "not assigned"),
    ],
)
def test_bad_assignment_refused(departments, round, arrival_required, message):
    with pytest.raises(RuleViolation, match=message):
        assign_round(departments, ASSIGNED_AT, round, arrival_required)


# --- progress updates ------------------------------------------------------------------------------


OPENED = at(2026, 9, 1, 9)


def day(n, h=9):
    return OPENED + dt.timedelta(days=n, hours=h - 9)


@pytest.mark.parametrize(
    "at_, week",
    [
        (OPENED, (day(7), day(14))),  # before the duty applies: its first week
        (day(6), (day(7), day(14))),
        (day(7), (day(7), day(14))),  # week start inclusive
        (day(13, 23), (day(7), day(14))),
        (day(14), (day(14), day(21))),  # week end exclusive
        (day(30), (day(28), day(35))),
    ],
)
def test_the_progress_update_clock_of_the_week_holding_a_moment(at_, week):
    start, deadline = progress_clock(Kind.complaint, OPENED, at_, POLICY)
    assert (start, deadline.due_at) == week
    assert (deadline.clock, deadline.department, deadline.provisional) == (Clock.progress_update, None, False)


def test_only_complaints_owe_weekly_updates_and_only_when_the_policy_asks():
    assert progress_clock(Kind.repair, OPENED, day(8), POLICY) is None
    off = effective_policy(estate_overrides={"clocks": {"progress_updates_per_week": 0}})
    assert progress_clock(Kind.complaint, OPENED, day(8), off) is None


@pytest.mark.parametrize(
    "updates, met",
    [
        ([], False),
        ([day(8)], False),
        ([day(8), day(11)], True),
        ([day(1), day(2), day(3)], False),  # early updates do not count later
        ([day(7), day(13, 23)], True),  # week start inclusive
        ([day(8), day(14)], False),  # week end exclusive
    ],
)
def test_a_week_is_met_with_its_updates(updates, met):
    assert progress_week_met(day(7), day(14), updates, POLICY) is met


def test_progress_update_counts_are_policy():
    policy = effective_policy(estate_overrides={"clocks": {"progress_updates_after_days": 3, "progress_updates_per_week": 3}})
    start, deadline = progress_clock(Kind.complaint, OPENED, day(4), policy)
    assert (start, deadline.due_at) == (day(3), day(10))
    assert not progress_week_met(start, deadline.due_at, [day(4), day(5)], policy)
    assert progress_week_met(start, deadline.due_at, [day(4), day(5), day(9)], policy)


def test_progress_updates_need_aware_times():
    with pytest.raises(RuleViolation, match="timezone-aware"):
        progress_week_met(day(7), day(14), [dt.datetime(2026, 9, 9)], POLICY)
    with pytest.raises(RuleViolation, match="timezone-aware"):
        progress_clock(Kind.complaint, OPENED, dt.datetime(2026, 9, 9), POLICY)


# --- paid household services ----------------------------------------------------------------------


TAP = ServiceItem("P07", "replace a tap washer", Decimal("15.00"), True)
CUSTOM = ServiceItem("P60", "custom plumbing", None, True)
SAFE_KEEPING = ServiceItem("F10", "keep a small parcel", None, False)


def test_bill_lines_and_total():
    bill = make_bill(
        "B-0001", "T-1",
        [
            service_line(TAP, 2),
            service_line(CUSTOM, agreed_price_cny="80", agreed_by=("eng_supervisor", "cs_supervisor")),
            service_line(SAFE_KEEPING),
            material_line("tap washer", 2, "1.35"),
        ],
    )
    assert [line.amount_cny for line in bill.lines] == [Decimal("30.00"), Decimal("80.00"), Decimal("0.00"), Decimal("2.70")]
    assert bill.services_cny == Decimal("110.00")
    assert bill.materials_cny == Decimal("2.70")
    assert bill.total_cny == Decimal("112.70")
    assert bill.copies == (BillCopy.owner, BillCopy.finance, BillCopy.stub)
    assert bill.lines[3].kind is LineKind.material
    assert bill.lines[1].price_agreed_by == ("eng_supervisor", "cs_supervisor")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: service_line(SAFE_KEEPING, agreed_price_cny=5), "free service"),
        (lambda: service_line(TAP, agreed_price_cny=10), "published price"),
        (lambda: service_line(CUSTOM), "no published price"),
        (lambda: service_line(CUSTOM, agreed_price_cny=80), "both the engineering and the customer-service supervisor"),
        (lambda: service_line(CUSTOM, agreed_price_cny=80, agreed_by=("eng", "eng")), "both the engineering"),
        (lambda: service_line(CUSTOM, agreed_price_cny=80, agreed_by=("eng", " ")), "both the engineering"),
        (lambda: service_line(CUSTOM, agreed_price_cny=-1, agreed_by=("eng", "cs")), "cannot be negative"),
        (lambda: service_line(TAP, 0), "positive quantity"),
        (lambda: service_line(TAP, -1), "positive quantity"),
        (lambda: material_line("washer", 1, -2), "cannot be negative"),
        (lambda: material_line("", 1, 2), "name is required"),
        (lambda: material_line("washer", "x", 2), "not an amount"),
        (lambda: ServiceItem("F01", "free thing", Decimal("3"), False), "free service and cannot carry a price"),
        (lambda: ServiceItem("P01", "paid thing", Decimal("-3"), True), "cannot be negative"),
        (lambda: make_bill("B-1", "T-1", []), "at least one line"),
        (lambda: make_bill("", "T-1", [service_line(TAP)]), "bill number is required"),
    ],
)
def test_bad_bills_refused(make, message):
    with pytest.raises(RuleViolation, match=message):
        make()


def test_published_price_may_be_restated():
    assert service_line(TAP, agreed_price_cny="15").unit_price_cny == Decimal("15.00")


@pytest.mark.parametrize("channel", [SettlementChannel.finance_counter, SettlementChannel.bank_collection, "bank_collection"])
def test_settlement_through_finance(channel):
    bill = make_bill("B-1", "T-1", [service_line(TAP)])
    settled = settle_bill(bill, channel, "fin01", "finance", at(2026, 10, 8, 10))
    assert settled.settlement.received_by == "fin01"
    assert bill.settlement is None


@pytest.mark.parametrize(
    "channel, role, message",
    [
        (SettlementChannel.technician_cash, "finance", "technicians take no cash"),
        (SettlementChannel.technician_cash, "technician", "technicians take no cash"),
        (SettlementChannel.finance_counter, "technician", "only finance settles a bill"),
        (SettlementChannel.bank_collection, "engineering", "only finance settles a bill"),
        ("cash_in_hand", "finance", "unknown settlement channel"),
    ],
)
def test_settlement_outside_finance_refused(channel, role, message):
    bill = make_bill("B-1", "T-1", [service_line(TAP)])
    with pytest.raises(RuleViolation, match=message):
        settle_bill(bill, channel, "someone", role, at(2026, 10, 8, 10))


def test_bill_settles_once():
    bill = settle_bill(make_bill("B-1", "T-1", [service_line(TAP)]), "finance_counter", "fin01", "finance", at(2026, 10, 8, 10))
    with pytest.raises(RuleViolation, match="already settled"):
        settle_bill(bill, "finance_counter", "fin01", "finance", at(2026, 10, 8, 11))


def test_bill_is_plain_data():
    assert isinstance(make_bill("B-1", "T-1", [service_line(TAP)]), Bill)


def test_facts_accept_stored_string_values():
    ticket = TicketFacts(kind="repair", repair_class="simple", urgency="urgent", accepted_by="company", reply_method="none")
    assert (ticket.kind, ticket.repair_class, ticket.urgency, ticket.accepted_by, ticket.reply_method) == (
        Kind.repair, RepairClass.simple, Urgency.urgent, AcceptedBy.company, ReplyMethod.none,
    )
    assert arrival_due(ticket, at(2026, 9, 30, 10), POLICY) == at(2026, 9, 30, 10, 20)


@pytest.mark.parametrize("field", ["kind", "repair_class", "severity", "urgency", "accepted_by", "reply_method"])
def test_facts_refuse_unknown_values(field):
    values = {"kind": "complaint", field: "bogus"}
    with pytest.raises(RuleViolation, match="unknown"):
        TicketFacts(**values)


# --- the verdict dispatch publishes as clock_settled (issue 11) ---------------------------------


def test_a_clock_met_before_its_due_time_is_met_whatever_comes_after():
    due = at(2026, 11, 4, 17)
    assert clock_verdict(due, None, at(2026, 11, 3, 10), "met") == "met"
    assert clock_verdict(due, None, due, "met") == "met"  # on the minute is in time


def test_a_clock_breached_or_settled_late_is_breached():
    due = at(2026, 11, 4, 17)
    assert clock_verdict(due, at(2026, 11, 4, 17, 1), None, None) == "breached"
    assert clock_verdict(due, at(2026, 11, 4, 17, 1), at(2026, 11, 3), "met") == "breached"  # the scan fired
    assert clock_verdict(due, None, at(2026, 11, 4, 17, 1), "met") == "breached"  # stopped late
    assert clock_verdict(due, None, at(2026, 11, 5), "superseded") == "breached"


def test_a_running_clock_has_no_verdict_and_an_early_end_keeps_its_outcome():
    due = at(2026, 11, 4, 17)
    assert clock_verdict(due, None, None, None) is None
    for outcome in ("superseded", "cancelled", "rescheduled"):
        assert clock_verdict(due, None, at(2026, 11, 3), outcome) == outcome
    with pytest.raises(ValueError):
        clock_verdict(due, None, at(2026, 11, 3), "lost")
    with pytest.raises(RuleViolation):
        clock_verdict(due, None, dt.datetime(2026, 11, 3), "met")


# --- routing patterns: compiled once, the same answers as shell-style matching per alternative


def _matches_per_alternative(pattern: str | None, value: str | None) -> bool:
    """The definition: any `|`-separated alternative, stripped, matches the whole value
    (fnmatch, case-insensitive); no pattern matches anything, no value nothing."""
    if pattern is None:
        return True
    if not value:
        return False
    return any(fnmatch.fnmatchcase(value.casefold(), alternative.strip().casefold())
               for alternative in pattern.split("|") if alternative.strip())


_PATTERN_TEXT = st.text(alphabet=st.sampled_from(list("ab*?[]!| -噪音Ab.\\^$(")), max_size=12)


@given(_PATTERN_TEXT | st.none(), st.text(alphabet=st.sampled_from(list("abAB -噪音.\n(")), max_size=8) | st.none())
@settings(max_examples=500, deadline=None)
def test_routing_patterns_answer_as_matching_each_alternative_does(pattern, value):
    assert routing._pattern_matches(pattern, value) == _matches_per_alternative(pattern, value)


@pytest.mark.parametrize("pattern, value, expected", [
    ("*noise*|*噪音*", "楼上噪音扰民", True),
    ("*noise*|*噪音*", "Late-night NOISE", True),
    ("*clean*", "water leak", False),
    (" | ", "anything", False),  # no alternative: matches nothing
    ("*", "", False),  # no value: nothing matches
])
def test_routing_patterns_examples(pattern, value, expected):
    assert routing._pattern_matches(pattern, value) is expected
