"""Callback 回访 rules (RULES.md §3): due times, sampling, outcome, recurrence, visits,
progress updates and metrics. Pure: no I/O, no clock, no database."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.callback.rules import (
    CallbackPurpose,
    CallbackRule,
    CompletionFacts,
    OpinionFact,
    PendingCallback,
    callback_id_for,
    callback_rate,
    callback_submission_key,
    decide_outcome,
    in_activity_sample,
    is_overdue,
    order_worklist,
    plan_callbacks,
    plan_midway_callback,
    recurrence_decision,
    recurrence_verdict,
    recurring_opinions,
    satisfaction_by_recurrence,
    satisfaction_rate,
    visit_shortfall,
    weekly_update_status,
    window_end,
)
from shared.calendar import CalendarOverrides, WorkingCalendar
from shared.events import Completed, Kind, RepairClass, ReplyMethod
from shared.periods import progress_week
from shared.policy import DEFAULT_POLICY, effective_policy

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.timezone.utc
CALENDAR = WorkingCalendar()
REPO_ROOT = Path(__file__).resolve().parents[2]


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)


def facts(kind: Kind = Kind.complaint, completed_at: dt.datetime | None = None, **kw) -> CompletionFacts:
    return CompletionFacts(
        ticket_id=kw.pop("ticket_id", "T-0001"),
        kind=kind,
        completed_at=completed_at or local(2026, 3, 10, 15, 0),
        **kw,
    )


def plan(f: CompletionFacts, policy=DEFAULT_POLICY, calendar=CALENDAR):
    return plan_callbacks(f, policy, calendar)


def only(planned):
    assert len(planned) == 1, planned
    return planned[0]


# --- complaint: 2 working days (002 §4.4.2 b) ---------------------------------------------


@pytest.mark.parametrize(
    ("completed", "due"),
    [
        # Tuesday → Thursday, same time of day.
        (local(2026, 3, 10, 15, 0), local(2026, 3, 12, 15, 0)),
        # Friday → Tuesday: the weekend does not count.
        (local(2026, 3, 13, 16, 30), local(2026, 3, 17, 16, 30)),
        # Completed on a Saturday: Monday is day 1, Tuesday day 2.
        (local(2026, 3, 14, 10, 0), local(2026, 3, 17, 10, 0)),
        # Last working day before National Day 2026 (Wed 30 Sep): Oct 1–7 are off,
        # Oct 8 is day 1 and Oct 9 day 2.
        (local(2026, 9, 30, 15, 0), local(2026, 10, 9, 15, 0)),
        # Tue 29 Sep: day 1 is Sep 30, day 2 jumps the whole holiday to Oct 8.
        (local(2026, 9, 29, 9, 0), local(2026, 10, 8, 9, 0)),
        # Fri 9 Oct 2026: Sat 10 Oct is a make-up workday (调休), so it is day 1.
        (local(2026, 10, 9, 11, 0), local(2026, 10, 12, 11, 0)),
        # Spring Festival 2026: Sat 14 Feb is a make-up workday, Feb 15–23 are off.
        # Thu 12 Feb → Fri 13 (day 1) → Sat 14 (day 2).
        (local(2026, 2, 12, 10, 0), local(2026, 2, 14, 10, 0)),
        # Fri 13 Feb → Sat 14 (day 1) → Tue 24 (day 2), across the whole festival.
        (local(2026, 2, 13, 10, 0), local(2026, 2, 24, 10, 0)),
        # Completed during the festival (Wed 18 Feb): Tue 24 and Wed 25.
        (local(2026, 2, 18, 20, 0), local(2026, 2, 25, 20, 0)),
        # Completed on make-up Saturday 28 Feb: Mon 2 Mar, Tue 3 Mar.
        (local(2026, 2, 28, 9, 0), local(2026, 3, 3, 9, 0)),
    ],
)
def test_valid_complaint_called_back_within_two_working_days(completed, due):
    callback = only(plan(facts(Kind.complaint, completed, complaint_valid=True)))
    assert callback.rule is CallbackRule.complaint
    assert callback.purpose is CallbackPurpose.satisfaction
    assert callback.due_at == due
    assert callback.due_at.utcoffset() == dt.timedelta(hours=8)
    assert callback.provisional is False


def test_working_days_are_counted_in_the_estate_local_time():
    # Fri 13 Mar 18:00 UTC is already Sat 14 Mar 02:00 in Shanghai: Monday is day 1.
    callback = only(plan(facts(Kind.complaint, dt.datetime(2026, 3, 13, 18, 0, tzinfo=UTC))))
    assert callback.due_at == local(2026, 3, 17, 2, 0)
    # Counted in UTC it would have been Tue 17 18:00 UTC = Wed 18 02:00 local.
    assert callback.due_at != dt.datetime(2026, 3, 17, 18, 0, tzinfo=UTC)


def test_estate_timezone_comes_from_policy():
    urumqi = effective_policy(estate_overrides={"timezone": "Asia/Urumqi"})  # UTC+6
    # Fri 13 Mar 17:00 UTC is Fri 23:00 in Urumqi (still Friday) but Sat 01:00 in Shanghai.
    completed = dt.datetime(2026, 3, 13, 17, 0, tzinfo=UTC)
    in_urumqi = only(plan(facts(Kind.complaint, completed), policy=urumqi))
    in_shanghai = only(plan(facts(Kind.complaint, completed)))
    assert in_urumqi.due_at == dt.datetime(2026, 3, 17, 17, 0, tzinfo=UTC)  # Tue 23:00 local
    assert in_shanghai.due_at == dt.datetime(2026, 3, 16, 17, 0, tzinfo=UTC)  # Tue 01:00 local


def test_unjudged_complaint_is_called_back_like_a_valid_one():
    # Invalidity needs a manager's confirmation (RULES §1).
    assert only(plan(facts(Kind.complaint, complaint_valid=None))).rule is CallbackRule.complaint


def test_invalid_complaint_needs_no_callback():
    assert plan(facts(Kind.complaint, complaint_valid=False)) == []
    assert plan(facts(Kind.complaint, complaint_valid=True)) != []


def test_complaint_working_days_follow_the_estate_policy():
    three = effective_policy(company_overrides={"callback": {"complaint_working_days": 3}})
    # Oct 8, Oct 9, then make-up Saturday Oct 10 is day 3.
    assert only(plan(facts(Kind.complaint, local(2026, 9, 30, 15, 0)), policy=three)).due_at == local(2026, 10, 10, 15, 0)


def test_calendar_days_estate_uses_three_calendar_days_ignoring_holidays():
    policy = effective_policy(estate_overrides={"callback": {"complaint_rule": "calendar_days"}})
    callback = only(plan(facts(Kind.complaint, local(2026, 9, 30, 15, 0)), policy=policy))
    assert callback.due_at == local(2026, 10, 3, 15, 0)  # inside the National Day holiday
    assert callback.provisional is False
    # Also in an unpublished year: calendar days never depend on the working calendar.
    assert only(plan(facts(Kind.complaint, local(2027, 3, 10, 9, 0)), policy=policy)).provisional is False


def test_company_days_off_move_the_complaint_deadline():
    calendar = WorkingCalendar(CalendarOverrides(days_off=frozenset({dt.date(2026, 3, 11)})))
    assert only(plan(facts(Kind.complaint, local(2026, 3, 10, 15, 0)), calendar=calendar)).due_at == local(2026, 3, 13, 15, 0)


def test_completion_in_unpublished_2027_is_provisional():
    callback = only(plan(facts(Kind.complaint, local(2027, 3, 10, 15, 0))))
    assert callback.provisional is True
    assert callback.due_at == local(2027, 3, 12, 15, 0)  # projected calendar meanwhile


def test_deadline_reaching_into_2027_is_provisional():
    # Wed 30 Dec 2026: Thu 31 Dec is day 1; 2027 is not published, but its projected
    # calendar already has New Year's Day off: Mon 4 Jan is day 2 — provisional until loaded.
    callback = only(plan(facts(Kind.complaint, local(2026, 12, 30, 10, 0))))
    assert callback.due_at == local(2027, 1, 4, 10, 0)
    assert callback.provisional is True


def test_company_loaded_2027_calendar_is_not_provisional():
    calendar = WorkingCalendar(
        CalendarOverrides(days_off=frozenset({dt.date(2027, 1, 1)}), loaded_years=frozenset({2027}))
    )
    callback = only(plan(facts(Kind.complaint, local(2026, 12, 30, 10, 0)), calendar=calendar))
    assert callback.due_at == local(2027, 1, 4, 10, 0)
    assert callback.provisional is False


@settings(max_examples=200, deadline=None)
@given(
    day=st.dates(min_value=dt.date(2026, 1, 1), max_value=dt.date(2026, 12, 20)),
    minute=st.integers(min_value=0, max_value=24 * 60 - 1),
    working_days=st.integers(min_value=1, max_value=5),
)
def test_complaint_deadline_is_exactly_n_working_days_later(day, minute, working_days):
    policy = effective_policy(estate_overrides={"callback": {"complaint_working_days": working_days}})
    completed = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=SHANGHAI)
    callback = only(plan(facts(Kind.complaint, completed), policy=policy))
    assert CALENDAR.is_working_day(callback.due_at.date())
    assert CALENDAR.working_days_between(completed.date(), callback.due_at.date()) == working_days
    assert callback.due_at.time() == completed.time()
    assert callback.provisional is False


# --- repairs (001 第9篇 一.2; 004 篇2 六.3) -------------------------------------------------


@pytest.mark.parametrize(
    "repair_class",
    [
        RepairClass.simple,
        RepairClass.general,
        RepairClass.emergency,
        RepairClass.appointment,
        RepairClass.commissioned_immediate,
        None,  # unclassified repair: a household small repair
    ],
)
def test_small_repair_gets_owner_callback_and_supervisor_call(repair_class):
    completed = local(2026, 9, 30, 15, 0)
    planned = plan(facts(Kind.repair, completed, repair_class=repair_class))
    assert [p.rule for p in planned] == [CallbackRule.engineering_supervisor, CallbackRule.small_repair]
    supervisor, owner = planned
    assert supervisor.due_at == local(2026, 10, 1, 15, 0)  # 24 h, holiday or not
    assert supervisor.purpose is CallbackPurpose.repair_check
    assert owner.due_at == local(2026, 10, 3, 15, 0)  # 3 calendar days
    assert owner.purpose is CallbackPurpose.satisfaction
    assert not supervisor.provisional and not owner.provisional


def test_repair_project_called_back_within_a_month():
    callback = only(plan(facts(Kind.repair, local(2026, 1, 31, 10, 0), repair_class=RepairClass.project)))
    assert callback.rule is CallbackRule.repair_project
    assert callback.due_at == local(2026, 3, 2, 10, 0)  # 30 days


def test_repair_windows_follow_policy():
    policy = effective_policy(
        company_overrides={"callback": {"small_repair_days": 2, "engineering_supervisor_hours": 12}},
        estate_overrides={"callback": {"repair_project_days": 14}},
    )
    completed = local(2026, 5, 6, 20, 0)
    supervisor, owner = plan(facts(Kind.repair, completed, repair_class=RepairClass.general), policy=policy)
    assert supervisor.due_at == local(2026, 5, 7, 8, 0)
    assert owner.due_at == local(2026, 5, 8, 20, 0)
    project = only(plan(facts(Kind.repair, completed, repair_class=RepairClass.project), policy=policy))
    assert project.due_at == local(2026, 5, 20, 20, 0)


def test_supervisor_hours_are_elapsed_time_shown_locally():
    supervisor, _ = plan(facts(Kind.repair, dt.datetime(2026, 5, 6, 23, 30, tzinfo=UTC), repair_class=RepairClass.simple))
    assert supervisor.due_at == dt.datetime(2026, 5, 7, 23, 30, tzinfo=UTC)
    assert supervisor.due_at.tzinfo == SHANGHAI


# --- special services (001 第9篇 一.3) ------------------------------------------------------


def test_special_service_end_callback():
    callback = only(plan(facts(Kind.special_service, local(2026, 4, 28, 18, 0))))
    assert callback.rule is CallbackRule.special_service_end
    assert callback.due_at == local(2026, 5, 1, 18, 0)
    longer = effective_policy(estate_overrides={"callback": {"special_service_end_days": 5}})
    assert only(plan(facts(Kind.special_service, local(2026, 4, 28, 18, 0)), policy=longer)).due_at == local(2026, 5, 3, 18, 0)


def test_midway_callback_half_way_through_the_service():
    callback = plan_midway_callback(
        "S-1", local(2026, 6, 1, 8, 0), local(2026, 6, 11, 18, 0), ReplyMethod.visit, DEFAULT_POLICY
    )
    assert callback is not None
    assert callback.rule is CallbackRule.special_service_midway
    assert callback.purpose is CallbackPurpose.midway_check
    assert callback.due_at == local(2026, 6, 6, 13, 0)
    assert callback.method is ReplyMethod.visit
    assert callback.callback_id == callback_id_for("S-1", 1, CallbackRule.special_service_midway)


def test_midway_callback_without_known_end_uses_default_days():
    callback = plan_midway_callback("S-1", local(2026, 6, 1, 8, 0), None, ReplyMethod.phone, DEFAULT_POLICY)
    assert callback is not None and callback.due_at == local(2026, 6, 8, 8, 0)


def test_short_service_has_no_midway_callback():
    start = local(2026, 6, 1, 8, 0)
    assert plan_midway_callback("S-1", start, start + dt.timedelta(days=1, hours=23), ReplyMethod.phone, DEFAULT_POLICY) is None
    assert plan_midway_callback("S-1", start, start + dt.timedelta(days=2), ReplyMethod.phone, DEFAULT_POLICY) is not None


def test_midway_callback_needs_a_callback_path():
    assert plan_midway_callback("S-1", local(2026, 6, 1, 8, 0), None, ReplyMethod.none, DEFAULT_POLICY) is None


def test_midway_callback_of_a_later_round_has_its_own_id():
    first = plan_midway_callback("S-1", local(2026, 6, 1), None, ReplyMethod.phone, DEFAULT_POLICY)
    second = plan_midway_callback("S-1", local(2026, 6, 1), None, ReplyMethod.phone, DEFAULT_POLICY, round=2)
    assert first.callback_id != second.callback_id and second.round == 2


# --- activities: 70 % (001 第9篇 二.4) --------------------------------------------------------


def test_activity_sampling_lands_near_seventy_percent():
    sampled = sum(in_activity_sample(f"ACT-{n:05d}", 70) for n in range(10_000))
    assert 6_800 <= sampled <= 7_200


def test_activity_sampling_is_deterministic_across_processes():
    ids = [f"ACT-{n}" for n in range(200)]
    here = [in_activity_sample(i, 70) for i in ids]
    code = (
        "from services.callback.rules import in_activity_sample;"
        f"print(''.join('1' if in_activity_sample(i, 70) else '0' for i in {ids!r}))"
    )
    # A different PYTHONHASHSEED proves the sample does not ride on the salted hash().
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT,
    ).stdout.strip()
    assert out == "".join("1" if s else "0" for s in here)
    # Pinned values: a change of hashing would silently re-draw every estate's sample.
    assert [n for n in range(20) if in_activity_sample(f"ACT-{n}", 70)] == [1, 3, 4, 6, 9, 11, 12, 13, 15, 16, 17, 18, 19]


def test_activity_rate_edges_and_nesting():
    ids = [f"A{n}" for n in range(2_000)]
    assert not any(in_activity_sample(i, 0) for i in ids)
    assert all(in_activity_sample(i, 100) for i in ids)
    # Raising the rate only adds tickets.
    assert all(in_activity_sample(i, 70) for i in ids if in_activity_sample(i, 50))


def test_activity_callback_only_for_sampled_tickets():
    sampled = next(f"ACT-{n}" for n in range(100) if in_activity_sample(f"ACT-{n}", 70))
    skipped = next(f"ACT-{n}" for n in range(100) if not in_activity_sample(f"ACT-{n}", 70))
    callback = only(plan(facts(Kind.activity, local(2026, 1, 31, 10, 0), ticket_id=sampled)))
    assert callback.rule is CallbackRule.activity
    assert callback.due_at == local(2026, 3, 2, 10, 0)
    assert plan(facts(Kind.activity, ticket_id=skipped)) == []
    everyone = effective_policy(estate_overrides={"callback": {"activity_rate_percent": 100}})
    assert only(plan(facts(Kind.activity, ticket_id=skipped), policy=everyone)).rule is CallbackRule.activity


# --- other kinds ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Kind.inquiry, Kind.suggestion, Kind.situation_report])
def test_other_services_called_back_within_a_week(kind):
    callback = only(plan(facts(kind, local(2026, 12, 28, 9, 15))))
    assert callback.rule is CallbackRule.other_service
    assert callback.due_at == local(2027, 1, 4, 9, 15)
    assert callback.provisional is False


def test_praise_needs_no_callback_unless_the_estate_wants_a_thank_you_call():
    assert plan(facts(Kind.praise)) == []
    thanking = effective_policy(estate_overrides={"callback": {"praise_callback": True}})
    callback = only(plan(facts(Kind.praise, local(2026, 3, 10, 15, 0)), policy=thanking))
    assert callback.rule is CallbackRule.praise
    assert callback.purpose is CallbackPurpose.thanks
    assert callback.due_at == local(2026, 3, 17, 15, 0)


# --- method and ids -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_no_callback_path_plans_nothing(kind):
    f = facts(kind, reply_method=ReplyMethod.none, repair_class=RepairClass.general, ticket_id="ACT-1")
    assert plan(f, policy=effective_policy(estate_overrides={"callback": {"praise_callback": True}})) == []
    assert plan(f) == []


@pytest.mark.parametrize("method", [ReplyMethod.phone, ReplyMethod.visit, ReplyMethod.letter, ReplyMethod.online])
def test_callback_uses_the_owner_chosen_method(method):
    planned = plan(facts(Kind.repair, reply_method=method, repair_class=RepairClass.simple))
    assert {p.method for p in planned} == {method}


def test_recurrence_judges_online_and_pathless_opinions_only():
    assert satisfaction_by_recurrence(ReplyMethod.none)
    assert satisfaction_by_recurrence(ReplyMethod.online)
    assert not any(satisfaction_by_recurrence(m) for m in (ReplyMethod.phone, ReplyMethod.visit, ReplyMethod.letter))


def test_callback_ids_are_stable_and_distinct_per_round_and_rule():
    f = facts(Kind.repair, repair_class=RepairClass.simple)
    first, again = plan(f), plan(f)
    assert [p.callback_id for p in first] == [p.callback_id for p in again]
    assert len({p.callback_id for p in first}) == 2
    round_two = plan(facts(Kind.repair, repair_class=RepairClass.simple, round=2))
    assert not {p.callback_id for p in first} & {p.callback_id for p in round_two}
    assert all(p.round == 2 and p.ticket_id == "T-0001" for p in round_two)
    assert callback_id_for("T-1", 1, CallbackRule.complaint) == callback_id_for("T-1", 1, "complaint")


def test_facts_from_completed_event():
    event = Completed(
        ticket_id="T-9", round=2, kind=Kind.repair, repair_class=RepairClass.project,
        departments=["engineering"], reply_method=ReplyMethod.letter,
        completed_at=local(2026, 7, 1, 10, 0),
    )
    f = CompletionFacts.from_event(event)
    assert (f.ticket_id, f.round, f.kind, f.repair_class, f.reply_method) == (
        "T-9", 2, Kind.repair, RepairClass.project, ReplyMethod.letter
    )
    callback = only(plan(f))
    assert callback.method is ReplyMethod.letter and callback.due_at == local(2026, 7, 31, 10, 0)
    invalid = CompletionFacts.from_event(
        Completed(ticket_id="T-8", kind=Kind.complaint, departments=["security"], completed_at=local(2026, 7, 1)),
        complaint_valid=False,
    )
    assert plan(invalid) == []


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(facts(Kind.complaint, dt.datetime(2026, 3, 10, 15, 0)))
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_midway_callback("S", dt.datetime(2026, 3, 10), None, ReplyMethod.phone, DEFAULT_POLICY)


# --- worklist -----------------------------------------------------------------------------


def pending(callback_id: str, due: dt.datetime, ticket: str = "T-1") -> PendingCallback:
    return PendingCallback(callback_id=callback_id, ticket_id=ticket, due_at=due, method=ReplyMethod.phone, rule="complaint")


def test_worklist_sorted_by_due_time_with_overdue_marked():
    now = local(2026, 3, 12, 12, 0)
    items = [
        pending("c", local(2026, 3, 13, 9, 0)),
        pending("a", local(2026, 3, 11, 9, 0)),
        pending("b", dt.datetime(2026, 3, 12, 4, 0, tzinfo=UTC)),  # = 12:00 local: due now
        pending("d", local(2026, 3, 12, 11, 59)),
    ]
    entries = order_worklist(items, now)
    assert [e.item.callback_id for e in entries] == ["a", "d", "b", "c"]
    assert [e.overdue for e in entries] == [True, True, False, False]
    assert entries[0].overdue_by == dt.timedelta(hours=27)
    assert entries[1].overdue_by == dt.timedelta(minutes=1)
    assert entries[2].overdue_by == dt.timedelta(0) and entries[3].overdue_by == dt.timedelta(0)


def test_worklist_ties_are_ordered_the_same_everywhere():
    due = local(2026, 3, 12, 9, 0)
    items = [pending("z", due, "T-2"), pending("y", due, "T-1"), pending("x", due, "T-2")]
    assert [e.item.callback_id for e in order_worklist(items, due)] == ["y", "x", "z"]
    assert [e.item.callback_id for e in order_worklist(reversed(items), due)] == ["y", "x", "z"]
    assert order_worklist([], due) == []


def test_is_overdue_boundary():
    item = pending("a", local(2026, 3, 12, 9, 0))
    assert not is_overdue(item, local(2026, 3, 12, 8, 59))
    assert not is_overdue(item, local(2026, 3, 12, 9, 0))
    assert is_overdue(item, local(2026, 3, 12, 9, 0, 1))


# --- outcome (RULES §3 Not satisfied) -----------------------------------------------------

REOPEN_POLICY = effective_policy(company_overrides={"callback": {"attitude_dissatisfied": "reopen"}})


def test_satisfied_owner_closes_the_ticket():
    outcome = decide_outcome(True, True, 1, policy=DEFAULT_POLICY)
    assert (outcome.event, outcome.round, outcome.call_back_again, outcome.open_attitude_complaint) == ("closed", 1, False, False)


@pytest.mark.parametrize("attitude", [True, False])
@pytest.mark.parametrize("round_", [1, 2, 5])
def test_result_dissatisfaction_reopens_with_the_next_round(attitude, round_):
    outcome = decide_outcome(False, attitude, round_, policy=DEFAULT_POLICY)
    assert outcome.event == "reopened"
    assert outcome.round == round_ + 1
    assert outcome.call_back_again is True
    assert outcome.open_attitude_complaint is (not attitude)
    assert "result" in outcome.reason


def test_attitude_dissatisfaction_alone_closes_and_opens_an_attitude_complaint_by_default():
    outcome = decide_outcome(True, False, 3, policy=DEFAULT_POLICY)
    assert outcome.event == "closed" and outcome.round == 3
    assert outcome.open_attitude_complaint is True
    assert outcome.call_back_again is False
    assert "attitude" in outcome.reason


def test_estate_may_reopen_for_attitude_instead():
    outcome = decide_outcome(True, False, 1, policy=REOPEN_POLICY)
    assert (outcome.event, outcome.round, outcome.call_back_again, outcome.open_attitude_complaint) == ("reopened", 2, True, False)
    assert decide_outcome(True, True, 1, policy=REOPEN_POLICY).event == "closed"
    both = decide_outcome(False, False, 2, policy=REOPEN_POLICY)
    assert (both.event, both.round, both.open_attitude_complaint) == ("reopened", 3, False)


def test_rounds_start_at_one():
    with pytest.raises(ValueError):
        decide_outcome(True, True, 0, policy=DEFAULT_POLICY)


def test_policy_refuses_unknown_attitude_mode():
    with pytest.raises(ValidationError):
        effective_policy(estate_overrides={"callback": {"attitude_dissatisfied": "ignore"}})


def test_double_submit_of_the_same_callback_has_the_same_key():
    key = callback_submission_key("T-1", "cb-1", 1)
    assert key == callback_submission_key("T-1", "cb-1", 1)
    # Pinned: replicas and restarts must compute the same key for the same callback.
    assert key == "df40a57da9e4a0aedb9b9f8265cff23bcf8590af22e30b59812275e70ecc7c8a"
    others = {
        callback_submission_key("T-1", "cb-2", 1),
        callback_submission_key("T-1", "cb-1", 2),
        callback_submission_key("T-2", "cb-1", 1),
        # Field boundaries are unambiguous: no concatenation collisions.
        callback_submission_key("T-1c", "b-1", 1),
    }
    assert key not in others and len(others) == 4


# --- recurrence rule (002 §4.4.2 (6), §4.6.5) ----------------------------------------------


def opinion(ticket: str, completed: dt.datetime | None = None, raised: dt.datetime | None = None, **kw) -> OpinionFact:
    return OpinionFact(
        ticket_id=ticket,
        category=kw.pop("category", "water_leak"),
        department=kw.pop("department", "engineering"),
        estate=kw.pop("estate", "garden"),
        completed_at=completed,
        raised_at=raised,
        **kw,
    )


@pytest.mark.parametrize(
    ("completed", "end"),
    [
        # Jan 31 + 30 days in a non-leap year: Feb has 28 days → Mar 2.
        (local(2026, 1, 31, 10, 0), local(2026, 3, 2, 10, 0)),
        (local(2027, 1, 31, 10, 0), local(2027, 3, 2, 10, 0)),
        # Leap year 2028: Feb has 29 days → Mar 1.
        (local(2028, 1, 31, 10, 0), local(2028, 3, 1, 10, 0)),
        # Feb 1: Mar 3 (non-leap) vs Mar 2 (leap).
        (local(2027, 2, 1, 10, 0), local(2027, 3, 3, 10, 0)),
        (local(2028, 2, 1, 10, 0), local(2028, 3, 2, 10, 0)),
        # Feb 28/29 → end of March.
        (local(2027, 2, 28, 10, 0), local(2027, 3, 30, 10, 0)),
        (local(2028, 2, 29, 10, 0), local(2028, 3, 30, 10, 0)),
        # December into January: the year changes.
        (local(2026, 12, 15, 10, 0), local(2027, 1, 14, 10, 0)),
        (local(2026, 12, 31, 23, 30), local(2027, 1, 30, 23, 30)),
        # Completed at 01:00 local, which is still the previous day in UTC.
        (dt.datetime(2026, 12, 31, 17, 0, tzinfo=UTC), local(2027, 1, 31, 1, 0)),
    ],
)
def test_recurrence_window_end_at_month_boundaries(completed, end):
    assert window_end(opinion("T-1", completed), DEFAULT_POLICY) == end


def test_recurrence_window_length_follows_policy():
    policy = effective_policy(estate_overrides={"callback": {"recurrence_window_days": 31}})
    assert window_end(opinion("T-1", local(2026, 1, 31, 10, 0)), policy) == local(2026, 3, 3, 10, 0)
    with pytest.raises(ValidationError):
        effective_policy(estate_overrides={"callback": {"recurrence_window_days": 0}})


def test_same_category_same_department_within_window_is_not_satisfied():
    first = opinion("T-1", local(2026, 1, 31, 10, 0))
    later = opinion("T-2", raised=local(2026, 3, 2, 9, 59))  # last minute of the window
    assert recurrence_decision(first, [later], local(2026, 3, 2, 9, 59), DEFAULT_POLICY) == "not_satisfied"
    # Decided at once, long before the window ends.
    early = opinion("T-3", raised=local(2026, 2, 1, 8, 0))
    assert recurrence_decision(first, [early], local(2026, 2, 1, 8, 0), DEFAULT_POLICY) == "not_satisfied"


def test_recurrence_at_window_end_is_outside_in_non_leap_and_inside_in_leap_year():
    # Mar 1 10:00 is inside a Jan 31 window in 2026 (ends Mar 2) ...
    first_2026 = opinion("T-1", local(2026, 1, 31, 10, 0))
    assert recurrence_decision(first_2026, [opinion("T-2", raised=local(2026, 3, 1, 10, 0))], local(2026, 3, 1, 10, 0), DEFAULT_POLICY) == "not_satisfied"
    # ... but exactly the (exclusive) end in leap 2028 (ends Mar 1).
    first_2028 = opinion("T-1", local(2028, 1, 31, 10, 0))
    late = opinion("T-2", raised=local(2028, 3, 1, 10, 0))
    assert recurring_opinions(first_2028, [late], DEFAULT_POLICY) == []
    assert recurrence_decision(first_2028, [late], local(2028, 3, 1, 10, 0), DEFAULT_POLICY) == "satisfied"


def test_recurrence_across_the_year_change():
    first = opinion("T-1", local(2026, 12, 15, 10, 0))
    inside = opinion("T-2", raised=local(2027, 1, 14, 9, 0))
    outside = opinion("T-3", raised=local(2027, 1, 14, 10, 0))
    assert recurrence_decision(first, [inside], local(2027, 1, 20), DEFAULT_POLICY) == "not_satisfied"
    assert recurrence_decision(first, [outside], local(2027, 1, 20), DEFAULT_POLICY) == "satisfied"


def test_no_recurrence_is_undecided_until_the_window_elapses():
    first = opinion("T-1", local(2026, 1, 31, 10, 0))
    unrelated = [
        opinion("T-2", raised=local(2026, 2, 5), category="noise"),
        opinion("T-3", raised=local(2026, 2, 5), department="security"),
        opinion("T-4", raised=local(2026, 2, 5), estate="riverside"),
        opinion("T-1", raised=local(2026, 2, 5)),  # the first opinion itself
        opinion("T-5", raised=local(2026, 1, 30)),  # raised while the first was in hand
        opinion("T-6", raised=local(2026, 2, 5), kind=Kind.praise),  # praise is no dissatisfaction
    ]
    assert recurring_opinions(first, unrelated, DEFAULT_POLICY) == []
    assert recurrence_decision(first, unrelated, local(2026, 2, 10), DEFAULT_POLICY) is None
    assert recurrence_decision(first, unrelated, local(2026, 3, 2, 9, 59, 59), DEFAULT_POLICY) is None
    assert recurrence_decision(first, unrelated, local(2026, 3, 2, 10, 0), DEFAULT_POLICY) == "satisfied"
    assert recurrence_decision(first, [], local(2026, 4, 1), DEFAULT_POLICY) == "satisfied"


@settings(max_examples=200, deadline=None)
@given(
    completed_hours=st.lists(st.integers(min_value=0, max_value=24 * 90), min_size=1, max_size=4),
    raised_hours=st.lists(st.integers(min_value=-24 * 400, max_value=24 * 120), max_size=8),
    now_hours=st.integers(min_value=0, max_value=24 * 150),
)
def test_an_opinion_raised_before_every_open_window_never_counts(completed_hours, raised_hours, now_hours):
    """The shell reads later opinions raised since the earliest undecided watch's
    completion only (`Tickets.opinions`): every watch's verdict and recurring opinions
    are the same as with the estate's whole history."""
    origin = local(2026, 1, 10, 9, 0)
    at = [origin + dt.timedelta(hours=h) for h in completed_hours]
    watches = [[opinion(f"W-{n}", completed, department=d) for d in ("engineering", "security")]
               for n, completed in enumerate(at)]
    history = [opinion(f"T-{n}", raised=origin + dt.timedelta(hours=h), department=("engineering", "security")[n % 2])
               for n, h in enumerate(raised_hours)]
    since = min(at)
    read = [o for o in history if o.appeared_at >= since]
    now = origin + dt.timedelta(hours=now_hours)
    for firsts in watches:
        assert recurrence_verdict(firsts, read, now, DEFAULT_POLICY) == recurrence_verdict(
            firsts, history, now, DEFAULT_POLICY)


def test_recurrence_matching_ignores_case_and_spacing_of_codes():
    first = opinion("T-1", local(2026, 5, 1), category="Water_Leak", department="Engineering ")
    later = opinion("T-2", raised=local(2026, 5, 3), category="water_leak", department="engineering")
    assert recurring_opinions(first, [later], DEFAULT_POLICY) == [later]


def test_later_opinion_counts_from_when_it_was_raised():
    first = opinion("T-1", local(2026, 5, 1, 10, 0))
    # Raised inside the window, completed after it: still a recurrence.
    later = opinion("T-2", completed=local(2026, 6, 10), raised=local(2026, 5, 30))
    assert recurrence_decision(first, [later], local(2026, 6, 10), DEFAULT_POLICY) == "not_satisfied"
    # Only completed_at known: that is used.
    only_completed = opinion("T-3", completed=local(2026, 5, 20))
    assert recurring_opinions(first, [only_completed], DEFAULT_POLICY) == [only_completed]
    with pytest.raises(ValueError):
        recurring_opinions(first, [opinion("T-4")], DEFAULT_POLICY)


def test_recurrence_needs_a_completed_first_opinion():
    with pytest.raises(ValueError, match="not completed"):
        window_end(opinion("T-1"), DEFAULT_POLICY)
    with pytest.raises(ValueError, match="not completed"):
        recurrence_decision(opinion("T-1"), [], local(2026, 5, 1), DEFAULT_POLICY)


# --- walk-around visits (002 §4.5.1) ------------------------------------------------------


def test_visit_shortfall_per_staff_member():
    visits = {
        "li": [dt.date(2026, 2, 3), dt.date(2026, 2, 17)],
        "wang": [dt.date(2026, 2, 27)],
        "zhao": [dt.date(2026, 2, d) for d in (2, 9, 16, 23)],
        "chen": [dt.date(2026, 2, 2), dt.date(2026, 2, 9), dt.date(2026, 2, 28)],
        "sun": [dt.date(2026, 1, 31), dt.date(2026, 3, 1), dt.date(2025, 2, 10)],  # none in Feb 2026
        "guard": [dt.date(2026, 2, 5)],  # not a customer-service staff member
    }
    staff = ["li", "wang", "zhao", "chen", "sun", "zhou"]
    tally = visit_shortfall(visits, (2026, 2), staff, DEFAULT_POLICY)
    assert set(tally) == set(staff)
    assert {s: t.missing for s, t in tally.items()} == {"li": 0, "wang": 1, "zhao": 0, "chen": 0, "sun": 2, "zhou": 2}
    assert {s for s, t in tally.items() if t.over_max} == {"zhao"}
    assert tally["zhao"].excess == 1 and tally["chen"].excess == 0
    assert tally["chen"].visits == 3 and tally["sun"].visits == 0


def test_visit_month_boundaries_and_year_change():
    visits = {"li": [dt.date(2026, 12, 31), dt.date(2027, 1, 1), dt.date(2027, 1, 31), dt.date(2027, 2, 1)]}
    assert visit_shortfall(visits, (2027, 1), ["li"], DEFAULT_POLICY)["li"].visits == 2
    assert visit_shortfall(visits, (2026, 12), ["li"], DEFAULT_POLICY)["li"].missing == 1


def test_visit_targets_follow_policy():
    policy = effective_policy(company_overrides={"callback": {"visits_per_month_min": 4, "visits_per_month_max": 6}})
    tally = visit_shortfall({"li": [dt.date(2026, 5, 1)] * 3}, (2026, 5), ["li"], policy)["li"]
    assert (tally.missing, tally.over_max) == (1, False)
    with pytest.raises(ValidationError):
        effective_policy(company_overrides={"callback": {"visits_per_month_min": 4}})  # above max 3


def test_visit_dates_must_be_local_dates_and_months_valid():
    with pytest.raises(TypeError):
        visit_shortfall({"li": [local(2026, 5, 1)]}, (2026, 5), ["li"], DEFAULT_POLICY)
    with pytest.raises(ValueError):
        visit_shortfall({}, (2026, 13), ["li"], DEFAULT_POLICY)


# --- progress updates for long-running complaints (002 §4.4.1 b) ---------------------------


OPENED = local(2026, 3, 2, 9, 0)  # the weekly rhythm starts 7 days later: Mar 9 09:00


def test_no_update_rhythm_during_the_first_week():
    status = weekly_update_status(OPENED, [], local(2026, 3, 9, 8, 59), DEFAULT_POLICY)
    assert status.required is False
    assert status.applies_from == local(2026, 3, 9, 9, 0)
    assert status.next_update_due_at is None and not status.overdue


def test_two_updates_a_week_spread_evenly():
    # Week 1 runs Mar 9 09:00 – Mar 16 09:00; first slot due half-way, Mar 12 21:00.
    status = weekly_update_status(OPENED, [local(2026, 3, 5, 10, 0)], local(2026, 3, 10, 9, 0), DEFAULT_POLICY)
    assert status.required is True
    assert (status.week_start, status.week_end) == (local(2026, 3, 9, 9, 0), local(2026, 3, 16, 9, 0))
    assert (status.done_this_week, status.missing_this_week) == (0, 2)  # the update before the rhythm does not count
    assert status.next_update_due_at == local(2026, 3, 12, 21, 0)
    assert status.overdue is False
    late = weekly_update_status(OPENED, [], local(2026, 3, 13, 9, 0), DEFAULT_POLICY)
    assert late.overdue is True

    one = weekly_update_status(OPENED, [local(2026, 3, 11, 10, 0)], local(2026, 3, 13, 9, 0), DEFAULT_POLICY)
    assert (one.done_this_week, one.missing_this_week) == (1, 1)
    assert one.next_update_due_at == local(2026, 3, 16, 9, 0) and not one.overdue

    both = weekly_update_status(OPENED, [local(2026, 3, 11, 10, 0), local(2026, 3, 15, 10, 0)], local(2026, 3, 15, 12, 0), DEFAULT_POLICY)
    assert both.missing_this_week == 0
    assert both.next_update_due_at == local(2026, 3, 19, 21, 0)  # next week's first slot


def test_the_current_week_is_dispatchs_week_and_finished_weeks_are_not_judged_here():
    updates = [
        local(2026, 3, 10), local(2026, 3, 14),  # week 1: two
        local(2026, 3, 18),  # week 2: one (missed: dispatch's verdict, counted from clock_settled)
    ]
    status = weekly_update_status(OPENED, updates, local(2026, 4, 1, 12, 0), DEFAULT_POLICY)
    assert status.week_start == local(2026, 3, 30, 9, 0)  # week 4
    assert (status.week_start, status.week_end) == progress_week(OPENED, local(2026, 4, 1, 12, 0), 7)
    assert not hasattr(status, "missed_weeks")
    assert status.done_this_week == 0


def test_update_rhythm_follows_clock_policy():
    policy = effective_policy(estate_overrides={"clocks": {"progress_updates_after_days": 3, "progress_updates_per_week": 3}})
    status = weekly_update_status(OPENED, [], local(2026, 3, 5, 10, 0), policy)
    assert status.required and status.week_start == local(2026, 3, 5, 9, 0)
    assert status.next_update_due_at == local(2026, 3, 7, 17, 0)  # a third of a week: 56 h
    off = effective_policy(estate_overrides={"clocks": {"progress_updates_per_week": 0}})
    assert weekly_update_status(OPENED, [], local(2026, 5, 1), off).required is False


# --- metrics ------------------------------------------------------------------------------


def test_rates_never_divide_by_zero():
    assert callback_rate(0, 0) is None
    assert satisfaction_rate(0, 0) is None


def test_rates():
    assert callback_rate(required=10, done=7) == pytest.approx(0.7)
    assert callback_rate(required=4, done=4) == 1.0
    assert satisfaction_rate(satisfied=3, answered=4) == pytest.approx(0.75)
    assert satisfaction_rate(satisfied=0, answered=5) == 0.0


@pytest.mark.parametrize(("part", "whole"), [(-1, 3), (1, -3), (4, 3)])
def test_rates_refuse_impossible_counts(part, whole):
    with pytest.raises(ValueError):
        callback_rate(required=whole, done=part)
    with pytest.raises(ValueError):
        satisfaction_rate(satisfied=part, answered=whole)


def test_policy_refuses_out_of_range_activity_rate():
    with pytest.raises(ValidationError):
        effective_policy(estate_overrides={"callback": {"activity_rate_percent": 101}})


# --- what a completion leads to -----------------------------------------------------------

from services.callback.rules import (  # noqa: E402
    CallbackAnswers,
    callback_assignee,
    check_call_method,
    check_recordable,
    check_resubmission,
    check_visit_date,
    counts_in_rate,
    decides_outcome,
    parse_month,
    plan_completion,
    record_outcome,
    recurrence_key,
    recurrence_verdict,
)
from shared.errors import RuleViolation  # noqa: E402


def completion(f: CompletionFacts, policy=DEFAULT_POLICY):
    return plan_completion(f, policy, CALENDAR)


def test_a_valid_complaint_waits_for_its_callback():
    result = completion(facts(Kind.complaint, complaint_valid=True))
    assert [p.rule for p in result.callbacks] == [CallbackRule.complaint]
    assert (result.judged_by_recurrence, result.close_now, result.close_reason) == (False, False, None)


@pytest.mark.parametrize(
    ("f", "reason"),
    [
        (facts(Kind.complaint, complaint_valid=False), "invalid complaint"),
        (facts(Kind.praise), "praise"),
        (facts(Kind.complaint, complaint_valid=False, reply_method=ReplyMethod.none), "invalid complaint"),
        (facts(Kind.praise, reply_method=ReplyMethod.none), "praise"),
    ],
)
def test_what_needs_no_callback_closes_at_once(f, reason):
    result = completion(f)
    assert result.callbacks == [] and result.close_now is True and result.judged_by_recurrence is False
    assert reason in result.close_reason


def test_an_activity_outside_the_sample_closes_at_once():
    skipped = next(f"ACT-{n}" for n in range(100) if not in_activity_sample(f"ACT-{n}", 70))
    result = completion(facts(Kind.activity, ticket_id=skipped))
    assert result.close_now and "70 %" in result.close_reason


@pytest.mark.parametrize("kind", [Kind.complaint, Kind.repair, Kind.inquiry, Kind.special_service])
def test_a_pathless_opinion_is_judged_by_recurrence(kind):
    result = completion(facts(kind, reply_method=ReplyMethod.none, repair_class=RepairClass.general))
    assert result.callbacks == []
    assert result.judged_by_recurrence is True and result.close_now is False


def test_an_online_opinion_gets_its_one_way_reply_and_is_judged_by_recurrence():
    result = completion(facts(Kind.complaint, reply_method=ReplyMethod.online))
    assert [p.method for p in result.callbacks] == [ReplyMethod.online]
    assert result.judged_by_recurrence is True and result.close_now is False


def test_a_small_repair_waits_for_the_owner_not_the_supervisor():
    result = completion(facts(Kind.repair, repair_class=RepairClass.simple))
    deciding = [p.rule for p in result.callbacks if decides_outcome(p.purpose, p.method)]
    assert deciding == [CallbackRule.small_repair]
    assert [p.rule for p in result.callbacks if counts_in_rate(p.purpose)] == [CallbackRule.small_repair]


def test_a_thank_you_call_decides_but_does_not_count_in_the_rate():
    thanking = effective_policy(estate_overrides={"callback": {"praise_callback": True}})
    result = completion(facts(Kind.praise), policy=thanking)
    assert not result.close_now and not result.judged_by_recurrence
    assert decides_outcome(CallbackPurpose.thanks, ReplyMethod.online)
    assert not counts_in_rate(CallbackPurpose.thanks)


@pytest.mark.parametrize(
    ("purpose", "method", "decides"),
    [
        (CallbackPurpose.satisfaction, ReplyMethod.phone, True),
        (CallbackPurpose.satisfaction, ReplyMethod.visit, True),
        (CallbackPurpose.satisfaction, ReplyMethod.letter, True),
        (CallbackPurpose.satisfaction, ReplyMethod.online, False),
        (CallbackPurpose.repair_check, ReplyMethod.phone, False),
        (CallbackPurpose.midway_check, ReplyMethod.phone, False),
    ],
)
def test_which_callbacks_decide_the_outcome(purpose, method, decides):
    assert decides_outcome(purpose, method) is decides


def test_the_supervisor_makes_the_repair_check_and_the_first_contact_owner_the_rest():
    assert callback_assignee(CallbackPurpose.repair_check, "cs01", "eng-head") == "eng-head"
    assert callback_assignee(CallbackPurpose.repair_check, "cs01", None) == "cs01"
    assert callback_assignee(CallbackPurpose.satisfaction, "cs01", "eng-head") == "cs01"


# --- recording a callback -----------------------------------------------------------------


def answers(**kw) -> CallbackAnswers:
    base = dict(handled_in_time=True, result_satisfied=True, attitude_satisfied=True, suggestions="",
                owner_confirmed=True, method=ReplyMethod.phone)
    return CallbackAnswers(**{**base, **kw})


def test_recording_a_satisfied_callback_closes_and_an_unsatisfied_one_reopens():
    closed = record_outcome(CallbackPurpose.satisfaction, ReplyMethod.phone, answers(), 1,
                            current_round=1, ticket_closed=False, policy=DEFAULT_POLICY)
    assert (closed.event, closed.round) == ("closed", 1)
    reopened = record_outcome(CallbackPurpose.satisfaction, ReplyMethod.phone, answers(result_satisfied=False), 2,
                              current_round=2, ticket_closed=False, policy=DEFAULT_POLICY)
    assert (reopened.event, reopened.round, reopened.call_back_again) == ("reopened", 3, True)


def test_recording_checks_and_online_replies_decides_nothing():
    for purpose, method in [(CallbackPurpose.repair_check, ReplyMethod.phone),
                            (CallbackPurpose.midway_check, ReplyMethod.visit),
                            (CallbackPurpose.satisfaction, ReplyMethod.online)]:
        assert record_outcome(purpose, method, answers(result_satisfied=False), 1,
                              current_round=1, ticket_closed=False, policy=DEFAULT_POLICY) is None


def test_a_callback_of_a_round_already_judged_decides_nothing():
    assert record_outcome(CallbackPurpose.satisfaction, ReplyMethod.phone, answers(), 1,
                          current_round=2, ticket_closed=False, policy=DEFAULT_POLICY) is None
    assert record_outcome(CallbackPurpose.satisfaction, ReplyMethod.phone, answers(), 1,
                          current_round=1, ticket_closed=True, policy=DEFAULT_POLICY) is None


def test_a_thank_you_call_closes_whatever_was_answered():
    outcome = record_outcome(CallbackPurpose.thanks, ReplyMethod.phone, answers(result_satisfied=False), 1,
                             current_round=1, ticket_closed=False, policy=DEFAULT_POLICY)
    assert outcome.event == "closed" and not outcome.open_attitude_complaint


def test_the_same_answers_again_are_a_double_submit():
    check_resubmission(answers(suggestions="多谢"), answers(suggestions=" 多谢 "))  # no error


def test_different_answers_for_a_recorded_callback_are_refused():
    with pytest.raises(RuleViolation) as refused:
        check_resubmission(answers(), answers(result_satisfied=False, suggestions="再修一次"))
    assert refused.value.status == 409
    assert "result_satisfied" in str(refused.value) and "suggestions" in str(refused.value)


def test_a_cancelled_callback_cannot_be_recorded():
    check_recordable("pending")
    check_recordable("done")
    with pytest.raises(RuleViolation, match="cancelled .*judged invalid") as refused:
        check_recordable("cancelled", "complaint judged invalid")
    assert refused.value.status == 409
    with pytest.raises(RuleViolation):
        check_recordable("lost")


def test_none_is_no_way_to_call():
    for method in (ReplyMethod.phone, ReplyMethod.visit, ReplyMethod.letter, ReplyMethod.online):
        check_call_method(method)
    with pytest.raises(RuleViolation) as refused:
        check_call_method(ReplyMethod.none)
    assert refused.value.status == 422


def test_refusals_of_requests_are_rule_violations():
    with pytest.raises(RuleViolation) as refused:
        decide_outcome(True, True, 0, policy=DEFAULT_POLICY)
    assert refused.value.status == 422
    with pytest.raises(RuleViolation) as refused:
        visit_shortfall({}, (2026, 0), [], DEFAULT_POLICY)
    assert refused.value.status == 422


# --- recurrence over several departments ----------------------------------------------------


def test_recurrence_in_any_department_of_the_first_opinion_counts():
    firsts = [opinion("T-1", local(2026, 5, 1), department=d) for d in ("engineering", "security")]
    later = opinion("T-2", raised=local(2026, 5, 20), department="security")
    verdict, found = recurrence_verdict(firsts, [later], local(2026, 5, 20), DEFAULT_POLICY)
    assert verdict == "not_satisfied" and [o.ticket_id for o in found] == ["T-2"]


def test_recurrence_verdict_waits_for_the_window_then_is_satisfied():
    firsts = [opinion("T-1", local(2026, 1, 31, 10, 0), department=d) for d in ("engineering", "cleaning")]
    other = opinion("T-2", raised=local(2026, 2, 3), department="security")
    assert recurrence_verdict(firsts, [other], local(2026, 3, 2, 9, 59), DEFAULT_POLICY) == (None, [])
    assert recurrence_verdict(firsts, [other], local(2026, 3, 2, 10, 0), DEFAULT_POLICY) == ("satisfied", [])
    with pytest.raises(ValueError):
        recurrence_verdict([], [], local(2026, 3, 2), DEFAULT_POLICY)


def test_recurrence_key_matches_the_rule_comparison():
    assert recurrence_key(" Water_Leak ") == recurrence_key("water_leak")


# --- request parsing ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2026-1", "2026/11", "26-11", "2026-13", "2026-00", "november", ""])
def test_bad_months_are_refused_with_the_expected_form(text):
    with pytest.raises(RuleViolation) as refused:
        parse_month(text)
    assert refused.value.status == 422


def test_months_parse():
    assert parse_month("2026-11") == (2026, 11)
    assert parse_month(" 2027-01 ") == (2027, 1)


def test_visits_are_recorded_after_they_happen():
    check_visit_date(dt.date(2026, 11, 22), dt.date(2026, 11, 22))
    check_visit_date(dt.date(2026, 10, 31), dt.date(2026, 11, 1))
    with pytest.raises(RuleViolation, match="future") as refused:
        check_visit_date(dt.date(2026, 11, 23), dt.date(2026, 11, 22))
    assert refused.value.status == 422
    with pytest.raises(TypeError):
        check_visit_date(local(2026, 11, 1), dt.date(2026, 11, 22))
