"""The pure parts behind the intake and dispatch shells: which clocks count working days
(and their recomputation when the company loads a year's calendar), which steps meet
which clocks, routing onto an estate's departments, the HTTP statuses the rules carry,
and the documented HTTP API."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from services.dispatch import rules as dispatch_rules
from services.dispatch.rules import (
    Clock,
    Step,
    TicketFacts,
    clocks_met_by,
    departments_in_estate,
    recompute_day_clock,
    start_round_clocks,
    working_days_of,
)
from services.intake import rules as intake_rules
from shared.calendar import CalendarOverrides, WorkingCalendar
from shared.errors import RuleViolation as SharedRuleViolation
from shared.events import AcceptedBy, Kind, Urgency
from shared.policy import Policy, effective_policy

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = Policy()
CALENDAR = WorkingCalendar()


def at(y, m, d, h=0, mi=0):
    return dt.datetime(y, m, d, h, mi, tzinfo=SHANGHAI)


# --- day clocks and their recomputation -----------------------------------------------------


@pytest.mark.parametrize(
    "facts, round, clock, days",
    [
        (TicketFacts(Kind.complaint), 1, Clock.tracking, 3),
        (TicketFacts(Kind.complaint, accepted_by=AcceptedBy.company), 1, Clock.tracking, 7),
        (TicketFacts(Kind.complaint), 1, Clock.reply, 2),
        (TicketFacts(Kind.complaint, urgency=Urgency.urgent), 1, Clock.reply, None),
        (TicketFacts(Kind.complaint, reply_agreed_by=at(2026, 11, 30, 9)), 1, Clock.reply, None),
        # A reopened round owes a fresh answer: the agreed time no longer applies.
        (TicketFacts(Kind.complaint, reply_agreed_by=at(2026, 11, 30, 9)), 2, Clock.reply, 2),
        (TicketFacts(Kind.repair), 1, Clock.arrival, None),
        (TicketFacts(Kind.repair), 1, Clock.acknowledge, None),
        (TicketFacts(Kind.repair), 1, Clock.repair_slip_return, None),
    ],
)
def test_working_days_of(facts, round, clock, days):
    assert working_days_of(clock, facts, POLICY, round) == days


def test_working_days_of_follows_the_policy():
    policy = effective_policy(estate_overrides={"clocks": {"tracking_working_days_department": 5,
                                                           "reply_working_days_not_urgent": 4}})
    assert working_days_of("tracking", TicketFacts(Kind.repair), policy) == 5
    assert working_days_of("reply", TicketFacts(Kind.repair), policy) == 4


def test_working_days_of_agrees_with_the_round_clocks():
    """Recounting a stored day clock from its start gives the clock the round started with."""
    start = at(2026, 9, 30, 16, 0)  # the working day before National Day
    for facts in (TicketFacts(Kind.complaint), TicketFacts(Kind.suggestion, accepted_by=AcceptedBy.company)):
        for deadline in start_round_clocks(facts, ["customer_service"], start, POLICY, CALENDAR):
            days = working_days_of(deadline.clock, facts, POLICY)
            if days is None:
                continue
            recount = CALENDAR.add_working_days(start, days)
            assert (recount.value, recount.provisional) == (deadline.due_at, deadline.provisional)


def test_deadline_into_an_unpublished_year_is_recomputed_when_the_company_loads_it():
    start = at(2026, 12, 30, 10, 0)
    facts = TicketFacts(Kind.complaint)
    (tracking,) = [d for d in start_round_clocks(facts, ["engineering"], start, POLICY, CALENDAR) if d.clock == "tracking"]
    # Projected 2027: Thu 31 Dec, (Fri 1 Jan off), Mon 4, Tue 5 Jan — provisional.
    assert (tracking.due_at, tracking.provisional) == (at(2027, 1, 5, 10), True)
    # Nothing loaded yet: nothing changes.
    assert recompute_day_clock(start, 3, tracking.due_at, tracking.provisional, POLICY, CALENDAR) is None
    loaded = WorkingCalendar(CalendarOverrides(days_off=frozenset({dt.date(2027, 1, 4)}), loaded_years=frozenset({2027})))
    assert recompute_day_clock(start, 3, tracking.due_at, True, POLICY, loaded) == (at(2027, 1, 6, 10), False)
    # Loaded with nothing beyond the statutory days: the flag alone clears.
    plain = WorkingCalendar(CalendarOverrides(loaded_years=frozenset({2027})))
    assert recompute_day_clock(start, 3, tracking.due_at, True, POLICY, plain) == (at(2027, 1, 5, 10), False)


def test_recompute_counts_in_the_estates_local_time():
    # 17:00 UTC on Wed 30 Dec is 01:00 Thu 31 Dec in Shanghai: counting starts on
    # Thursday; Fri 1 Jan is New Year's Day, so one working day later is Mon 4 Jan.
    start = dt.datetime(2026, 12, 30, 17, 0, tzinfo=dt.timezone.utc)
    loaded = WorkingCalendar(CalendarOverrides(loaded_years=frozenset({2027})))
    due, provisional = recompute_day_clock(start, 1, start, True, POLICY, loaded)
    assert (due, provisional) == (at(2027, 1, 4, 1, 0), False)


def test_recompute_refuses_bad_input():
    with pytest.raises(dispatch_rules.RuleViolation, match="non-negative"):
        recompute_day_clock(at(2026, 12, 30), -1, at(2027, 1, 4), True, POLICY, CALENDAR)
    with pytest.raises(dispatch_rules.RuleViolation, match="timezone-aware"):
        recompute_day_clock(dt.datetime(2026, 12, 30), 1, at(2027, 1, 4), True, POLICY, CALENDAR)


def test_make_up_saturday_counts_for_a_recomputed_clock():
    # Sat 10 Oct 2026 is a make-up workday: 1 working day after Fri 9 Oct is that Saturday.
    due, provisional = recompute_day_clock(at(2026, 10, 9, 11), 1, at(2026, 10, 12, 11), True, POLICY, CALENDAR)
    assert (due, provisional) == (at(2026, 10, 10, 11), False)


# --- which steps meet which clocks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "step, clocks",
    [
        (Step.acknowledged, {Clock.acknowledge}),
        (Step.arrived, {Clock.arrival}),
        (Step.signed, {Clock.acknowledge, Clock.arrival}),
        (Step.signed_back, {Clock.acknowledge, Clock.arrival, Clock.repair_slip_return}),
        (Step.owner_updated, {Clock.reply}),
        (Step.completed, {Clock.reply}),
        (Step.called_back, {Clock.tracking}),
    ],
)
def test_clocks_met_by(step, clocks):
    assert set(clocks_met_by(step)) == clocks
    assert set(clocks_met_by(step.value)) == clocks


def test_every_clock_is_met_by_some_step():
    # a progress-update week is met by its count of updates (progress_week_met), not one step
    assert {c for step in Step for c in clocks_met_by(step)} == set(Clock) - {Clock.progress_update}


def test_unknown_step_refused():
    with pytest.raises(dispatch_rules.RuleViolation, match="unknown step"):
        clocks_met_by("teleported")


# --- routing onto the estate's departments ---------------------------------------------------------


@pytest.mark.parametrize(
    "routed, estate, expected",
    [
        (["engineering"], ["engineering", "customer_service"], ["engineering"]),
        (["engineering", "security"], ["engineering", "security"], ["engineering", "security"]),
        (["greening"], ["engineering", "customer_service"], ["customer_service"]),
        (["greening", "security"], ["security", "customer_service"], ["security"]),
        (["greening"], ["engineering", "security"], ["engineering"]),
        (["greening", "greening"], [], ["greening"]),
    ],
)
def test_departments_in_estate(routed, estate, expected):
    assert departments_in_estate(routed, estate) == expected


# --- HTTP statuses carried by the rules ---------------------------------------------------------------


def test_rule_violation_has_one_definition_and_input_refusals_say_422():
    assert intake_rules.RuleViolation is dispatch_rules.RuleViolation is SharedRuleViolation
    assert _status(lambda: dispatch_rules.start_round_clocks(
        dispatch_rules.TicketFacts(kind="complaint"), [], at(2026, 11, 2, 9), dispatch_rules.DEFAULT, None)) == 422


def _status(call) -> int:
    with pytest.raises(SharedRuleViolation) as caught:
        call()
    return caught.value.status


def test_invalid_transitions_answer_409():
    state = dispatch_rules.assign_round(["engineering"], at(2026, 11, 2, 9))
    assert _status(lambda: dispatch_rules.apply_sign_back(state, "engineering", "o", "r", "s", "h", at(2026, 11, 2, 10))) == 409
    assert _status(lambda: dispatch_rules.apply_arrive(state, "engineering", "s", at(2026, 11, 2, 10))) == 409
    assert _status(lambda: intake_rules.judge_validity(Kind.inquiry, True, "r", "cs", None, at(2026, 11, 2, 9),
                                                       POLICY, CALENDAR)) == 409
    record = dispatch_rules.open_nonconformity("t", "c", "m", at(2026, 11, 2, 9))
    assert _status(lambda: dispatch_rules.close_nonconformity(record, "m", "r", at(2026, 11, 2, 10))) == 409


def test_missing_approvals_answer_403():
    state = dispatch_rules.apply_acknowledge(dispatch_rules.assign_round(["engineering"], at(2026, 11, 2, 9)),
                                             "engineering", "s", at(2026, 11, 2, 9, 5))
    assert _status(lambda: intake_rules.confirm_invalid("awaiting_confirmation", "cs", "cs2", ["customer_service"],
                                                        True, POLICY)) == 403
    assert _status(lambda: intake_rules.confirm_invalid("confirmed", "cs", "mgr", ["estate_director"], True, POLICY)) == 409
    record = dispatch_rules.open_nonconformity("t", "c", "m", at(2026, 11, 2, 9))
    assert _status(lambda: dispatch_rules.approve_nonconformity(record, "x", "estate_director", at(2026, 11, 2, 10))) == 403


def test_rejected_input_answers_422():
    assert _status(lambda: intake_rules.check_signature_at_intake("walk_in", False, POLICY)) == 422
    assert _status(lambda: dispatch_rules.material_line("pipe", 0, 3)) == 422


# --- the documented HTTP API ---------------------------------------------------------------------------


def test_openapi_documents_the_lifecycle_routes():
    from services.dispatch.app import create_app as dispatch_app
    from services.intake.app import create_app as intake_app

    intake = intake_app(manage_lifecycle=False).openapi()["paths"]
    dispatch = dispatch_app(manage_lifecycle=False).openapi()["paths"]
    for path, method in [
        ("/v1/estates/{estate}/requests", "post"),
        ("/v1/estates/{estate}/requests", "get"),
        ("/v1/estates/{estate}/requests/{ticket_id}", "get"),
        ("/v1/estates/{estate}/requests/{ticket_id}/validity", "post"),
        ("/v1/estates/{estate}/requests/{ticket_id}/progress", "post"),
        ("/v1/estates/{estate}/requests/{ticket_id}/signature", "post"),
        ("/v1/estates/{estate}/handover", "get"),
        ("/v1/estates/{estate}/handover/{item_id}/take-over", "post"),
        ("/v1/estates/{estate}/units", "post"),
        ("/v1/estates/{estate}/owners", "get"),
        ("/v1/estates/{estate}/policy", "put"),
        ("/v1/estates/{estate}", "put"),
        ("/v1/company/policy", "put"),
        ("/v1/company/calendar", "put"),
    ]:
        assert method in intake[path], (method, path)
    for path, method in [
        ("/v1/estates/{estate}/forms", "get"),
        ("/v1/estates/{estate}/forms/{ticket_id}", "get"),
        ("/v1/estates/{estate}/forms/{ticket_id}/acknowledge", "post"),
        ("/v1/estates/{estate}/forms/{ticket_id}/arrive", "post"),
        ("/v1/estates/{estate}/forms/{ticket_id}/sign-back", "post"),
        ("/v1/estates/{estate}/forms/{ticket_id}/reschedule", "post"),
        ("/v1/estates/{estate}/forms/{ticket_id}/transfer", "post"),
        ("/v1/estates/{estate}/forms/{ticket_id}/nonconformity", "post"),
        ("/v1/estates/{estate}/forms/{ticket_id}/nonconformity/approve", "post"),
        ("/v1/estates/{estate}/bills", "post"),
        ("/v1/estates/{estate}/bills/{number}/settle", "post"),
    ]:
        assert method in dispatch[path], (method, path)
