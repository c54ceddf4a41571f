"""Statistics for the quality office (RULES.md §4): every figure of the monthly report
against hand-computed fixtures built from event sequences, replay equality, ranking,
quarter, weekly review, staff assessment, repeated problems and the exported form."""

from __future__ import annotations

import datetime as dt
import io
import json
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.analytics import export
from services.analytics.rules import (
    COMPANY_TOTAL,
    UNASSIGNED,
    CorrectiveActionLine,
    Dimension,
    Figures,
    Metric,
    MonthlyReport,
    RecentTicket,
    SignOff,
    TicketFacts,
    apply_event,
    company_consolidation,
    composite_score,
    department_weekly_review,
    fold,
    monthly_report,
    period_rollups,
    quarterly_summary,
    repeat_problem,
    replay,
    staff_assessment,
)
from shared import events as ev
from shared.policy import effective_policy

TZ = ZoneInfo("Asia/Shanghai")
ESTATE = "maple"


def at(month: int, day: int, hour: int = 10, minute: int = 0, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=TZ)


def event(payload: ev.Payload, when: dt.datetime, estate: str = ESTATE, event_id: str | None = None) -> ev.CloudEvent:
    return ev.make_event(payload, estate=estate, actor="staff", source="test", time=when, event_id=event_id)


def accepted(ticket: str, kind: ev.Kind, channel: ev.Channel, category: str, received: dt.datetime,
             first_contact: str, building: str | None = None, **extra) -> ev.CloudEvent:
    return event(ev.Accepted(
        ticket_id=ticket, form_number=f"F-{ticket}", kind=kind, channel=channel, category=category,
        building=building, description="…", first_contact=first_contact, received_at=received, **extra,
    ), received)


def deadline(clock: str, due: dt.datetime, department: str | None = None) -> ev.Deadline:
    return ev.Deadline(clock=clock, due_at=due, department=department)


def settled(ticket: str, clock_id: int, clock: str, due: dt.datetime, when: dt.datetime, outcome: str = "met",
            department: str | None = None, round_: int = 1) -> ev.CloudEvent:
    """Dispatch's verdict on one clock, as it publishes it."""
    return event(ev.ClockSettled(ticket_id=ticket, clock_id=clock_id, round=round_, clock=clock,
                                 department=department, due_at=due, settled_at=when,
                                 outcome=ev.ClockOutcome(outcome)), when)


def callback_done(ticket: str, callback_id: str, round_: int, when: dt.datetime, *, result: bool,
                  attitude: bool, in_time: bool, on_time: bool = True) -> ev.CloudEvent:
    return event(ev.CallbackDone(
        ticket_id=ticket, callback_id=callback_id, round=round_, method=ev.ReplyMethod.phone,
        handled_in_time=in_time, result_satisfied=result, attitude_satisfied=attitude,
        done_by="cs01", on_time=on_time,
    ), when)


# --- the fixture: five November tickets and one December ticket -----------------------------

# T1 valid noise complaint, B1, cs01: re-opened (two rounds, two callbacks); round 2's
#    reply clock breached.
T1 = [
    accepted("T1", ev.Kind.complaint, ev.Channel.phone, "noise", at(11, 3), "cs01", "B1"),
    event(ev.ValidityJudged(ticket_id="T1", valid=True, reason="staff attitude", judged_by="sup"), at(11, 3, 11)),
    event(ev.Assigned(ticket_id="T1", round=1, departments=["security"], assigned_by="cs01", deadlines=[
        deadline("reply", at(11, 5)), deadline("acknowledge", at(11, 3, 11, 30), "security")]), at(11, 3, 10, 30)),
    event(ev.Acknowledged(ticket_id="T1", round=1, department="security", acknowledged_by="sec01"), at(11, 3, 11)),
    settled("T1", 1, "acknowledge", at(11, 3, 11, 30), at(11, 3, 11), department="security"),
    event(ev.SignedBack(ticket_id="T1", round=1, department="security", opinion="talked to guard",
                        result="apologised", signed_by="sec01", verified_by="sechead"), at(11, 4, 15)),
    event(ev.Completed(ticket_id="T1", round=1, kind=ev.Kind.complaint, category="noise",
                       departments=["security"], completed_at=at(11, 4, 16)), at(11, 4, 16)),
    settled("T1", 2, "reply", at(11, 5), at(11, 4, 16)),
    event(ev.CallbackScheduled(ticket_id="T1", callback_id="cb1", round=1, due_at=at(11, 6, 17),
                               method=ev.ReplyMethod.phone, rule="complaint"), at(11, 4, 16, 5)),
    callback_done("T1", "cb1", 1, at(11, 5), result=False, attitude=True, in_time=True),
    event(ev.Reopened(ticket_id="T1", round=2, reason="noise continues", reopened_by="cs01",
                      departments=["security"]), at(11, 5, 10, 5)),
    event(ev.ProgressUpdated(ticket_id="T1", note="guard rota changed", updated_by="cs01"), at(11, 6)),
    event(ev.Assigned(ticket_id="T1", round=2, departments=["security"], assigned_by="cs01",
                      deadlines=[deadline("reply", at(11, 7))]), at(11, 5, 10, 10)),
    event(ev.SlaBreached(ticket_id="T1", round=2, clock="reply", due_at=at(11, 7)), at(11, 7, 10, 1)),
    settled("T1", 3, "reply", at(11, 7), at(11, 7, 10, 1), "breached", round_=2),
    event(ev.SignedBack(ticket_id="T1", round=2, department="security", opinion="night patrol",
                        result="fixed", signed_by="sec01", verified_by="sechead"), at(11, 8, 9)),
    event(ev.Completed(ticket_id="T1", round=2, kind=ev.Kind.complaint, category="noise",
                       departments=["security"], completed_at=at(11, 8, 10)), at(11, 8, 10)),
    event(ev.CallbackScheduled(ticket_id="T1", callback_id="cb2", round=2, due_at=at(11, 10, 17),
                               method=ev.ReplyMethod.phone, rule="complaint"), at(11, 8, 10, 5)),
    callback_done("T1", "cb2", 2, at(11, 9), result=True, attitude=True, in_time=False),
    event(ev.Closed(ticket_id="T1", round=2, closed_by="cs01", reason="satisfied"), at(11, 9, 10, 5)),
]

# T2 general repair, B2, cs02: arrival late (stop after due, then the breach notice),
#    escalated, callback overdue then done late; a repeat problem was suggested on it.
T2 = [
    accepted("T2", ev.Kind.repair, ev.Channel.walk_in, "plumbing", at(11, 10, 9), "cs02", "B2",
             repair_class=ev.RepairClass.general),
    event(ev.Assigned(ticket_id="T2", round=1, departments=["engineering"], assigned_by="cs02", deadlines=[
        deadline("arrival", at(11, 10, 10), "engineering"),
        deadline("repair_slip_return", at(11, 11, 9), "engineering")]), at(11, 10, 9, 5)),
    event(ev.Arrived(ticket_id="T2", round=1, department="engineering", arrived_by="eng01",
                     arrived_at=at(11, 10, 10, 30)), at(11, 10, 10, 31)),
    settled("T2", 4, "arrival", at(11, 10, 10), at(11, 10, 10, 31), "breached", department="engineering"),  # late
    event(ev.SlaBreached(ticket_id="T2", round=1, clock="arrival", due_at=at(11, 10, 10),
                         department="engineering"), at(11, 10, 10, 32)),
    event(ev.Escalated(ticket_id="T2", round=1, rung="department_head", reason="late arrival",
                       clock="arrival"), at(11, 10, 10, 35)),
    event(ev.CorrectiveActionSuggested(ticket_id="T2", category="plumbing", scope="building", building="B2",
                                       count=3, window_days=30, tickets=["X1", "X2", "T2"]), at(11, 10, 9, 1)),
    event(ev.SignedBack(ticket_id="T2", round=1, department="engineering", opinion="valve replaced",
                        result="fixed", signed_by="eng01", verified_by="enghead"), at(11, 10, 15)),
    settled("T2", 5, "repair_slip_return", at(11, 11, 9), at(11, 10, 15), department="engineering"),
    event(ev.Completed(ticket_id="T2", round=1, kind=ev.Kind.repair, category="plumbing",
                       departments=["engineering"], completed_at=at(11, 10, 15, 30)), at(11, 10, 15, 30)),
    event(ev.CallbackScheduled(ticket_id="T2", callback_id="cb3", round=1, due_at=at(11, 13, 16),
                               method=ev.ReplyMethod.phone, rule="small_repair"), at(11, 10, 16)),
    event(ev.CallbackOverdue(ticket_id="T2", callback_id="cb3", round=1, due_at=at(11, 13, 16)), at(11, 14)),
    callback_done("T2", "cb3", 1, at(11, 15), result=True, attitude=True, in_time=True, on_time=False),
    event(ev.Closed(ticket_id="T2", round=1, closed_by="cs02", reason="satisfied"), at(11, 15, 10, 5)),
]

# T3 invalid parking complaint online, cs01: completed without a department, closed.
T3 = [
    accepted("T3", ev.Kind.complaint, ev.Channel.online, "parking", at(11, 12), "cs01"),
    event(ev.ValidityJudged(ticket_id="T3", valid=False, reason="municipal road", judged_by="cs01",
                            confirmed_by="mgr"), at(11, 12, 14)),
    event(ev.Completed(ticket_id="T3", round=1, kind=ev.Kind.complaint, category="parking",
                       departments=[], completed_at=at(11, 13)), at(11, 13)),
    event(ev.Closed(ticket_id="T3", round=1, closed_by="cs01", reason="reason told"), at(11, 13, 11)),
]

# T4 elevator repair by phone off hours (Nov 28), B1, cs02: crosses into December, where it
#    is escalated with a nonconformity record, completed, called back and closed.
T4_NOVEMBER = [
    accepted("T4", ev.Kind.repair, ev.Channel.phone, "elevator", at(11, 28, 20), "cs02", "B1",
             repair_class=ev.RepairClass.general, off_hours=True),
    event(ev.Assigned(ticket_id="T4", round=1, departments=["engineering"], assigned_by="cs02", deadlines=[
        deadline("tracking", at(12, 2, 17, 30)), deadline("acknowledge", at(11, 29, 10), "engineering")]),
        at(11, 29, 8, 45)),
    event(ev.Acknowledged(ticket_id="T4", round=1, department="engineering", acknowledged_by="eng01"),
          at(11, 29, 9, 40)),
    settled("T4", 6, "acknowledge", at(11, 29, 10), at(11, 29, 9, 40), department="engineering"),
]
T4_DECEMBER = [
    event(ev.Escalated(ticket_id="T4", round=1, rung="estate_director", reason="owner loss 800 CNY",
                       nonconformity=True), at(12, 1, 9)),
    event(ev.Completed(ticket_id="T4", round=1, kind=ev.Kind.repair, category="elevator",
                       departments=["engineering"], completed_at=at(12, 1, 16)), at(12, 1, 16)),
    event(ev.CallbackScheduled(ticket_id="T4", callback_id="cb4", round=1, due_at=at(12, 4, 16),
                               method=ev.ReplyMethod.phone, rule="small_repair"), at(12, 1, 16, 5)),
    callback_done("T4", "cb4", 1, at(12, 2, 15), result=True, attitude=True, in_time=True),
    event(ev.Closed(ticket_id="T4", round=1, closed_by="cs02", reason="satisfied"), at(12, 2, 15, 5)),
    settled("T4", 7, "tracking", at(12, 2, 17, 30), at(12, 2, 15, 5)),
]

# T5 suggestion by letter, cs03: stays open through both months.
T5 = [accepted("T5", ev.Kind.suggestion, ev.Channel.letter, "general", at(11, 20), "cs03")]

# T6 inquiry received at 16:30 UTC on Nov 30 = 00:30 on Dec 1 in Shanghai: a December figure.
T6 = [
    accepted("T6", ev.Kind.inquiry, ev.Channel.phone, "general",
             dt.datetime(2026, 11, 30, 16, 30, tzinfo=dt.timezone.utc), "cs03"),
    event(ev.Closed(ticket_id="T6", round=1, closed_by="cs03", reason="answered"), at(12, 1, 9)),
]

NOVEMBER_EVENTS = T1 + T2 + T3 + T4_NOVEMBER + T5
DECEMBER_EVENTS = T6 + T4_DECEMBER
ALL_EVENTS = NOVEMBER_EVENTS + DECEMBER_EVENTS


@pytest.fixture(scope="module")
def totals():
    _, deltas = replay(ALL_EVENTS)
    return fold(deltas)


@pytest.fixture(scope="module")
def facts():
    return replay(ALL_EVENTS)[0]


@pytest.fixture(scope="module")
def november(totals) -> MonthlyReport:
    return monthly_report(ESTATE, "2026-11", period_rollups(totals, ESTATE, "2026-11"), open_carried=0,
                          corrective_actions=[{"problem": "plumbing repeats in B2", "action": "replace risers",
                                               "owner": "enghead", "status": "planned"}])


@pytest.fixture(scope="module")
def december(totals, november) -> MonthlyReport:
    return monthly_report(ESTATE, "2026-12", period_rollups(totals, ESTATE, "2026-12"),
                          open_carried=november.open_carried_out)


# --- the November report, figure by figure ------------------------------------------------------


def test_november_intake_by_kind_and_channel(november):
    t = november.totals
    assert t.opened == 5
    assert t.off_hours_opened == 1
    assert {k: f.opened for k, f in november.by_kind.items()} == {"complaint": 2, "repair": 2, "suggestion": 1}
    assert {k: f.opened for k, f in november.by_channel.items()} == {
        "phone": 2, "walk_in": 1, "online": 1, "letter": 1}
    assert november.by_kind_channel == {
        "complaint": {"phone": 1, "online": 1}, "repair": {"walk_in": 1, "phone": 1}, "suggestion": {"letter": 1}}
    assert {k: f.opened for k, f in november.by_repair_class.items()} == {"general": 2}


def test_november_validity(november):
    t = november.totals
    assert (t.valid_complaints, t.invalid_complaints) == (1, 1)
    assert t.valid_complaint_rate == 0.5
    assert november.by_category["noise"].valid_complaints == 1
    assert november.by_category["parking"].invalid_complaints == 1


def test_november_handling_and_carry_over(november):
    t = november.totals
    assert t.completed == 4  # T1 twice (two rounds), T2, T3
    assert t.closed == 3  # T1, T2, T3
    assert t.closed_first_round == 2  # T2, T3
    assert t.first_round_close_rate == 2 / 3
    assert t.reactivated == 0
    assert november.open_carried_in == 0
    assert november.open_carried_out == 2  # T4 and T5
    assert t.progress_updates == 1
    assert (t.assigned, t.acknowledged, t.arrived, t.signed_back) == (3, 2, 1, 3)


def test_november_on_time_rate_for_every_clock(november):
    t = november.totals
    assert (t.clocks_met, t.clocks_breached) == (4, 2)
    assert t.on_time_rate == 4 / 6
    clocks = {k: (f.clocks_met, f.clocks_breached) for k, f in november.by_clock.items()}
    assert clocks == {"acknowledge": (2, 0), "reply": (1, 1), "arrival": (0, 1), "repair_slip_return": (1, 0)}
    assert november.by_clock["reply"].on_time_rate == 0.5
    assert november.by_clock["arrival"].on_time_rate == 0.0


def test_november_callbacks_and_satisfaction(november):
    t = november.totals
    assert (t.callbacks_required, t.callbacks_done, t.callbacks_on_time, t.callbacks_overdue) == (3, 3, 2, 1)
    assert t.callback_rate == 1.0
    assert t.callback_on_time_rate == 2 / 3
    assert (t.satisfaction_answers, t.result_satisfied, t.attitude_satisfied, t.handled_in_time) == (3, 2, 3, 2)
    assert t.result_satisfaction_rate == 2 / 3
    assert t.attitude_satisfaction_rate == 1.0
    assert t.handled_in_time_rate == 2 / 3


def test_november_escalations_reopens_repeats(november):
    t = november.totals
    assert (t.escalations, t.nonconformities) == (1, 0)
    assert november.by_rung == {"department_head": 1}
    assert (t.reopened, t.reopened_tickets) == (1, 1)
    assert (t.repeat_problems, t.repeat_problem_tickets) == (1, 3)
    assert november.by_building["B2"].repeat_problems == 1
    assert november.by_category["plumbing"].repeat_problem_tickets == 3


def test_november_by_department(november):
    security = november.by_department["security"]
    assert (security.assigned, security.acknowledged, security.signed_back, security.completed) == (1, 1, 2, 2)
    assert (security.clocks_met, security.clocks_breached) == (2, 1)
    assert (security.reopened, security.reopened_tickets, security.escalations) == (1, 1, 0)
    assert (security.callbacks_required, security.callbacks_on_time) == (2, 2)
    assert (security.satisfaction_answers, security.result_satisfied, security.attitude_satisfied) == (2, 1, 2)
    engineering = november.by_department["engineering"]
    assert (engineering.assigned, engineering.acknowledged, engineering.arrived) == (2, 1, 1)
    assert (engineering.signed_back, engineering.completed) == (1, 1)
    assert (engineering.clocks_met, engineering.clocks_breached) == (2, 1)
    assert engineering.escalations == 1
    assert (engineering.callbacks_required, engineering.callbacks_on_time, engineering.callbacks_overdue) == (1, 0, 1)
    assert set(november.by_department) == {"security", "engineering"}


def test_november_by_category(november):
    noise = november.by_category["noise"]
    assert (noise.opened, noise.completed, noise.closed, noise.reopened) == (1, 2, 1, 1)
    assert (noise.clocks_met, noise.clocks_breached, noise.satisfaction_answers, noise.result_satisfied) == (2, 1, 2, 1)
    plumbing = november.by_category["plumbing"]
    assert (plumbing.opened, plumbing.completed, plumbing.closed, plumbing.escalations) == (1, 1, 1, 1)
    assert (plumbing.clocks_met, plumbing.clocks_breached) == (1, 1)
    parking = november.by_category["parking"]
    assert (parking.opened, parking.completed, parking.closed, parking.clocks_met) == (1, 1, 1, 0)
    assert (november.by_category["elevator"].opened, november.by_category["elevator"].clocks_met) == (1, 1)
    assert november.by_category["general"].opened == 1
    assert november.by_building["B1"].opened == 2


def test_november_due_date_and_actions(november):
    assert november.month == "2026-11"
    assert november.due_on == dt.date(2026, 12, 5)
    assert november.corrective_actions == (CorrectiveActionLine(
        problem="plumbing repeats in B2", action="replace risers", owner="enghead", status="planned"),)


def test_december_cross_month_ticket(december):
    t = december.totals
    assert december.open_carried_in == 2
    assert t.opened == 1  # T6: 00:30 on Dec 1 local time
    assert {k: f.opened for k, f in december.by_kind.items() if f.opened} == {"inquiry": 1}
    assert t.completed == 1  # T4, accepted in November
    assert t.closed == 2 and t.closed_first_round == 2
    assert december.open_carried_out == 1  # T5
    assert (t.escalations, t.nonconformities) == (1, 1)
    assert december.by_rung == {"estate_director": 1}
    assert (t.clocks_met, t.clocks_breached) == (1, 0)
    assert set(december.by_clock) == {"tracking"}
    assert (t.callbacks_required, t.callbacks_done, t.callbacks_on_time) == (1, 1, 1)
    assert (t.satisfaction_answers, t.result_satisfied, t.attitude_satisfied) == (1, 1, 1)
    assert december.by_kind["repair"].completed == 1
    assert december.by_category["elevator"].completed == 1
    assert december.by_department["engineering"].completed == 1
    assert december.by_channel["phone"].closed == 2
    assert december.by_staff["cs02"].completed == 1
    assert t.valid_complaints == t.invalid_complaints == 0
    assert t.reopened == 0
    assert december.due_on == dt.date(2027, 1, 5)


def test_rates_without_denominator_are_none(december):
    t = december.totals
    assert t.valid_complaint_rate is None
    empty = monthly_report(ESTATE, "2027-01", {}, open_carried=1)
    assert empty.totals == Figures()
    for rate in Figures.RATES:
        assert getattr(empty.totals, rate) is None
    assert empty.open_carried_out == 1


def test_day_periods_use_estate_local_time(totals):
    assert totals[(ESTATE, "2026-11-28", "estate", ESTATE, "opened")] == 1
    assert totals[(ESTATE, "2026-12-01", "estate", ESTATE, "opened")] == 1
    assert (ESTATE, "2026-11-30", "estate", ESTATE, "opened") not in totals
    # tracking (acceptance to callback) is stopped by the callback, not by completion
    assert totals[(ESTATE, "2026-12-02", "clock", "tracking", "clocks_met")] == 1
    # a breach counts on the day the clock ran out
    assert totals[(ESTATE, "2026-11-07", "clock", "reply", "clocks_breached")] == 1


def test_day_periods_sum_to_month(totals):
    months: dict[tuple, int] = {}
    for (estate, period, dimension, key, metric), value in totals.items():
        if len(period) == 10:
            k = (estate, period[:7], dimension, key, metric)
            months[k] = months.get(k, 0) + value
    assert months == {k: v for k, v in totals.items() if len(k[1]) == 7}


def test_staff_assessment(totals):
    rows = {r.staff: r for r in staff_assessment(period_rollups(totals, ESTATE, "2026-11"))}
    assert set(rows) == {"cs01", "cs02", "cs03", "sec01", "eng01"}
    cs01 = rows["cs01"]
    assert (cs01.forms_accepted, cs01.completed, cs01.closed) == (2, 3, 2)
    assert (cs01.clocks_met, cs01.clocks_breached, cs01.on_time_rate) == (2, 1, 2 / 3)
    assert (cs01.callbacks_required, cs01.callbacks_on_time, cs01.callback_on_time_rate) == (2, 2, 1.0)
    assert (cs01.satisfaction_answers, cs01.result_satisfaction_rate, cs01.attitude_satisfaction_rate) == (2, 0.5, 1.0)
    assert (cs01.reopened, cs01.reopened_tickets, cs01.escalations) == (1, 1, 0)
    cs02 = rows["cs02"]
    assert (cs02.forms_accepted, cs02.clocks_met, cs02.clocks_breached, cs02.escalations) == (2, 2, 1, 1)
    assert (cs02.callbacks_required, cs02.callback_on_time_rate) == (1, 0.0)
    assert rows["cs03"].forms_accepted == 1 and rows["cs03"].on_time_rate is None
    assert rows["sec01"].forms_signed == 2 and rows["eng01"].forms_signed == 1
    assert rows["sec01"].forms_accepted == 0


def test_ticket_facts_after_the_story(facts):
    t1 = facts["T1"]
    assert (t1.kind, t1.channel, t1.category, t1.building, t1.first_contact) == ("complaint", "phone", "noise", "B1", "cs01")
    assert (t1.valid, t1.round, t1.reopen_count, t1.state) == (True, 2, 1, "closed")
    assert t1.departments == ["security"]
    assert t1.breached_clocks == ["reply"]
    assert t1.on_time == {"reply": False, "acknowledge": True}
    assert (t1.result_satisfied, t1.attitude_satisfied) == (True, True)
    assert t1.completed_at == at(11, 8, 10) and t1.closed_at == at(11, 9, 10, 5)
    t4 = facts["T4"]
    assert t4.state == "closed" and t4.escalation_count == 1 and t4.last_rung == "estate_director"
    assert t4.on_time == {"tracking": True, "acknowledge": True}
    assert facts["T5"].is_open and facts["T5"].on_time == {}


# --- replay equality and idempotence ---------------------------------------------------------------


def _as_json_row(facts: dict[str, TicketFacts]) -> dict[str, TicketFacts]:
    """What a restart reads back from the facts table."""
    return {k: TicketFacts.from_dict(json.loads(json.dumps(v.to_dict()))) for k, v in facts.items()}


def test_rebuild_equals_incremental_in_two_batches(totals):
    first_facts, first = replay(NOVEMBER_EVENTS)
    second_facts, second = replay(DECEMBER_EVENTS, _as_json_row(first_facts))
    assert fold(second, fold(first)) == totals
    assert {k: v.to_dict() for k, v in second_facts.items()} == \
        {k: v.to_dict() for k, v in replay(ALL_EVENTS)[0].items()}


@settings(max_examples=60, deadline=None)
@given(split=st.integers(min_value=0, max_value=len(ALL_EVENTS)),
       redeliver=st.lists(st.integers(min_value=0, max_value=len(ALL_EVENTS) - 1), max_size=6))
def test_any_split_and_any_redelivery_give_the_same_totals(split, redeliver):
    expected = fold(replay(ALL_EVENTS)[1])
    facts, first = replay(ALL_EVENTS[:split])
    # at-least-once delivery: already-applied events arrive again before the rest
    again = [ALL_EVENTS[i] for i in redeliver if i < split]
    facts, repeated = replay(again, _as_json_row(facts))
    assert repeated == []
    _, rest = replay(ALL_EVENTS[split:], facts)
    assert fold(rest, fold(first)) == expected


def test_apply_event_does_not_mutate_its_input():
    facts, _ = apply_event(None, T1[0])
    before = facts.to_dict()
    apply_event(facts, T1[1])
    assert facts.to_dict() == before


def test_no_event_changes_the_facts_it_was_applied_to_nor_any_earlier_ones():
    """The facts a ticket had after each event stay as they were while later events are
    applied (clocks and callbacks are shared between copies until one changes: every
    change must go to the new copy's own)."""
    kinds = set()
    # A form sent again in the same round re-declares its running clock with a later deadline.
    redeclared = [T1[0], T1[2], event(ev.Assigned(ticket_id="T1", round=1, departments=["security"],
                                                  assigned_by="cs01", deadlines=[deadline("reply", at(11, 6))]),
                                      at(11, 3, 12))]
    lives = [[e for e in ALL_EVENTS if e.subject == ticket] for ticket in sorted({e.subject for e in ALL_EVENTS})]
    for life in [*lives, redeclared]:
        history, facts = [], None
        for each in life:
            kinds.add(each.event_name)
            facts, _ = apply_event(facts, each)
            history.append((facts, facts.to_dict()))
        assert all(kept.to_dict() == snapshot for kept, snapshot in history)
    # The events that change a clock or a callback already there are among them.
    assert {"assigned", "clock_settled", "callback_done", "callback_overdue"} <= kinds


def test_facts_of_another_ticket_are_refused():
    facts, _ = apply_event(None, T1[0])
    with pytest.raises(ValueError):
        apply_event(facts, T2[0])


def test_naive_times_are_refused():
    naive = T1[0].model_copy(update={"time": dt.datetime(2026, 11, 3, 10)}, deep=True)
    naive.data["received_at"] = "2026-11-03T10:00:00"
    with pytest.raises(ValueError):
        apply_event(None, naive)


def _metric(deltas, dimension: str, key: str, metric: str, period: str | None = None) -> int:
    return sum(d.delta for d in deltas if (d.dimension, d.key, d.metric) == (dimension, key, metric)
               and (period is None or d.period == period))


def test_every_increment_is_written_for_the_day_and_the_month():
    _, deltas = apply_event(None, T1[0])
    assert {d.period for d in deltas} == {"2026-11-03", "2026-11"}
    dims = {(d.dimension, d.key) for d in deltas if d.period == "2026-11"}
    assert dims == {("estate", ESTATE), ("kind", "complaint"), ("channel", "phone"),
                    ("kind_channel", "complaint|phone"), ("category", "noise"),
                    ("building", "B1"), ("staff", "cs01")}


# --- clocks: exactly once, met or breached ----------------------------------------------------------


def _repair_story(*tail: ev.CloudEvent):
    head = [
        accepted("R1", ev.Kind.repair, ev.Channel.phone, "plumbing", at(11, 2, 9), "cs01", "B3"),
        event(ev.Assigned(ticket_id="R1", round=1, departments=["engineering", "cleaning"], assigned_by="cs01",
                          deadlines=[deadline("arrival", at(11, 2, 10), "engineering"),
                                     deadline("acknowledge", at(11, 2, 9, 30), "engineering"),
                                     deadline("acknowledge", at(11, 2, 9, 30), "cleaning"),
                                     deadline("reply", at(11, 4, 17))]), at(11, 2, 9, 1)),
    ]
    return replay(head + list(tail))


def test_a_reply_met_by_a_progress_update_stays_met_when_completion_comes_after_its_due_time():
    """Issue 11's named defect: dispatch settles the reply clock met by the update; the
    read model counts that verdict and does not re-derive it from the late completion."""
    facts, deltas = _repair_story(
        event(ev.ProgressUpdated(ticket_id="R1", note="parts ordered", updated_by="cs01"), at(11, 3)),
        settled("R1", 11, "reply", at(11, 4, 17), at(11, 3)),
        event(ev.Completed(ticket_id="R1", round=1, kind=ev.Kind.repair, departments=["engineering", "cleaning"],
                           completed_at=at(11, 6)), at(11, 6)),
    )
    assert _metric(deltas, "clock", "reply", "clocks_met", "2026-11-03") == 1
    assert _metric(deltas, "clock", "reply", "clocks_breached") == 0
    assert facts["R1"].on_time["reply"] is True


def test_completion_progress_updates_and_closing_settle_no_clock_by_themselves():
    facts, deltas = _repair_story(
        event(ev.Arrived(ticket_id="R1", round=1, department="engineering", arrived_by="eng01",
                         arrived_at=at(11, 2, 11)), at(11, 2, 11)),
        event(ev.ProgressUpdated(ticket_id="R1", note="…", updated_by="cs01"), at(11, 3)),
        event(ev.Completed(ticket_id="R1", round=1, kind=ev.Kind.repair, departments=["engineering"],
                           completed_at=at(11, 6)), at(11, 6)),
        event(ev.SlaBreached(ticket_id="R1", round=1, clock="reply", due_at=at(11, 4, 17)), at(11, 4, 17, 1)),
        event(ev.Closed(ticket_id="R1", round=1, closed_by="cs01", reason="ok"), at(11, 7)),
    )
    assert _metric(deltas, "estate", ESTATE, "clocks_met") == _metric(deltas, "estate", ESTATE, "clocks_breached") == 0
    assert all(c.outcome == "running" for c in facts["R1"].clocks)


def test_a_verdict_counts_once_per_clock_even_under_a_new_event_id():
    verdict = settled("R1", 12, "arrival", at(11, 2, 10), at(11, 2, 10, 1), "breached", department="engineering")
    facts, deltas = _repair_story(verdict)
    again = verdict.model_copy(update={"id": ev.new_event_id()})
    _, more = replay([again], facts)
    assert more == []
    assert _metric(deltas, "clock", "arrival", "clocks_breached", "2026-11-02") == 1
    assert _metric(deltas, "department", "engineering", "clocks_breached", "2026-11") == 1
    assert facts["R1"].breached_clocks == ["arrival"]
    assert [c.clock_id for c in facts["R1"].clocks if c.clock == "arrival"] == [12]  # the declared instance


def test_a_breach_counts_on_the_day_the_clock_ran_out_however_late_the_verdict():
    _, deltas = _repair_story(settled("R1", 13, "reply", at(11, 4, 17), at(11, 9), "breached"))
    assert _metric(deltas, "clock", "reply", "clocks_breached", "2026-11-04") == 1
    # a ticket's own clock counts under the round's departments
    assert _metric(deltas, "department", "cleaning", "clocks_breached", "2026-11") == 1


@pytest.mark.parametrize("outcome", ["superseded", "cancelled", "rescheduled"])
def test_a_clock_no_longer_owed_counts_neither_met_nor_breached(outcome):
    facts, deltas = _repair_story(settled("R1", 14, "arrival", at(11, 2, 10), at(11, 2, 9, 40), outcome,
                                          department="engineering"))
    assert _metric(deltas, "estate", ESTATE, "clocks_met") == _metric(deltas, "estate", ESTATE, "clocks_breached") == 0
    assert "arrival" not in facts["R1"].on_time
    assert [c.outcome for c in facts["R1"].clocks if c.clock == "arrival"] == [outcome]


def test_a_rescheduled_clock_and_its_fresh_clock_are_two_instances():
    facts, deltas = _repair_story(
        settled("R1", 15, "arrival", at(11, 2, 10), at(11, 2, 9, 40), "rescheduled", department="engineering"),
        settled("R1", 16, "arrival", at(11, 3, 14), at(11, 3, 13), department="engineering"),
    )
    assert [c.outcome for c in facts["R1"].clocks if c.clock == "arrival"] == ["rescheduled", "met"]
    assert _metric(deltas, "clock", "arrival", "clocks_met", "2026-11-03") == 1
    assert facts["R1"].on_time["arrival"] is True


def test_a_redeclared_deadline_replaces_the_first():
    facts, deltas = _repair_story(
        event(ev.Assigned(ticket_id="R1", round=1, departments=["engineering"], assigned_by="cs01",
                          deadlines=[deadline("arrival", at(11, 2, 12), "engineering")]), at(11, 2, 9, 5)),
    )
    assert [c.due_at for c in facts["R1"].clocks if c.clock == "arrival"] == [at(11, 2, 12)]
    assert _metric(deltas, "department", "engineering", "assigned", "2026-11") == 1  # once per ticket


# --- other single-event rules ------------------------------------------------------------------------


def test_a_second_judgement_replaces_the_first():
    facts, deltas = replay(T3[:2] + [event(ev.ValidityJudged(ticket_id="T3", valid=True, reason="manager refused",
                                                             judged_by="mgr"), at(11, 12, 16))])
    assert _metric(deltas, "estate", ESTATE, "valid_complaints", "2026-11") == 1
    assert _metric(deltas, "estate", ESTATE, "invalid_complaints", "2026-11") == 0
    assert facts["T3"].valid is True


def test_the_same_judgement_again_changes_nothing():
    facts, _ = replay(T3[:2])
    _, deltas = apply_event(facts["T3"], event(ev.ValidityJudged(
        ticket_id="T3", valid=False, reason="confirmed again", judged_by="mgr"), at(12, 2)))
    assert deltas == []


def test_a_reopened_round_keeps_its_departments_unless_new_ones_are_named():
    story = T1[:10] + [
        event(ev.Reopened(ticket_id="T1", round=2, reason="again", reopened_by="cs01"), at(11, 5, 10, 5)),
        settled("T1", 3, "reply", at(11, 7), at(11, 7, 10, 1), "breached", round_=2),
    ]
    facts, deltas = replay(story)
    assert facts["T1"].current_departments == ["security"]
    assert _metric(deltas, "department", "security", "clocks_breached", "2026-11") == 1
    facts, _ = replay([event(ev.Reopened(ticket_id="T1", round=3, reason="again", reopened_by="cs01",
                                         departments=["cleaning"]), at(11, 8))], facts)
    assert facts["T1"].current_departments == ["cleaning"] and facts["T1"].round == 3


def test_a_ticket_closed_twice_counts_once():
    _, deltas = replay(T3 + [event(ev.Closed(ticket_id="T3", round=1, closed_by="cs01", reason="again"), at(11, 14))])
    assert _metric(deltas, "estate", ESTATE, "closed", "2026-11") == 1


def test_a_callback_recorded_twice_counts_once():
    facts, deltas = replay(T1[:10] + [callback_done("T1", "cb1", 1, at(11, 5, 11), result=True, attitude=True,
                                                   in_time=True)])
    assert _metric(deltas, "estate", ESTATE, "satisfaction_answers", "2026-11") == 1
    assert _metric(deltas, "estate", ESTATE, "callbacks_done", "2026-11") == 1
    assert facts["T1"].result_satisfied is False


def test_a_callback_made_after_its_overdue_notice_is_not_on_time():
    _, deltas = replay(T3[:1] + [
        event(ev.CallbackScheduled(ticket_id="T3", callback_id="cby", round=1, due_at=at(11, 14),
                                   method=ev.ReplyMethod.phone, rule="complaint"), at(11, 12, 12)),
        event(ev.CallbackOverdue(ticket_id="T3", callback_id="cby", round=1, due_at=at(11, 14)), at(11, 14, 10, 1)),
        event(ev.CallbackOverdue(ticket_id="T3", callback_id="cby", round=1, due_at=at(11, 14)), at(11, 14, 10, 2)),
        callback_done("T3", "cby", 1, at(11, 15), result=True, attitude=True, in_time=True, on_time=True),
    ])
    assert _metric(deltas, "estate", ESTATE, "callbacks_overdue", "2026-11") == 1
    assert _metric(deltas, "estate", ESTATE, "callbacks_done", "2026-11") == 1
    assert _metric(deltas, "estate", ESTATE, "callbacks_on_time", "2026-11") == 0


def test_a_callback_done_without_schedule_is_also_required():
    facts, deltas = replay(T3[:1] + [callback_done("T3", "cbx", 1, at(11, 14), result=True, attitude=True,
                                                   in_time=True)])
    assert _metric(deltas, "estate", ESTATE, "callbacks_required", "2026-11") == 1
    assert _metric(deltas, "estate", ESTATE, "callbacks_on_time", "2026-11") == 1


def test_callbacks_count_in_the_month_they_were_scheduled():
    story = T4_NOVEMBER + [
        event(ev.Completed(ticket_id="T4", round=1, kind=ev.Kind.repair, departments=["engineering"],
                           completed_at=at(11, 30, 15)), at(11, 30, 15)),
        event(ev.CallbackScheduled(ticket_id="T4", callback_id="cb9", round=1, due_at=at(12, 2, 15),
                                   method=ev.ReplyMethod.phone, rule="small_repair"), at(11, 30, 15, 5)),
        callback_done("T4", "cb9", 1, at(12, 1, 10), result=True, attitude=False, in_time=True),
    ]
    _, deltas = replay(story)
    assert _metric(deltas, "estate", ESTATE, "callbacks_done", "2026-11") == 1
    assert _metric(deltas, "estate", ESTATE, "callbacks_done", "2026-12") == 0
    assert _metric(deltas, "estate", ESTATE, "satisfaction_answers", "2026-12") == 1


def test_reopening_a_closed_ticket_reactivates_it():
    story = T3 + [event(ev.Reopened(ticket_id="T3", round=2, reason="owner came back", reopened_by="cs01"),
                        at(12, 3))]
    facts, deltas = replay(story)
    assert _metric(deltas, "estate", ESTATE, "reactivated", "2026-12") == 1
    assert _metric(deltas, "estate", ESTATE, "reopened_tickets", "2026-12") == 1
    assert facts["T3"].is_open and facts["T3"].closed_at is None
    report = monthly_report(ESTATE, "2026-12", period_rollups(fold(deltas), ESTATE, "2026-12"), open_carried=0)
    assert report.open_carried_out == 1


def test_events_before_acceptance_are_counted_with_what_is_known():
    facts, deltas = apply_event(None, T1[2])  # assigned, before accepted
    assert facts.kind is None
    assert _metric(deltas, "department", "security", "assigned", "2026-11") == 1
    facts, deltas = apply_event(facts, T1[0])
    assert facts.kind == "complaint" and _metric(deltas, "estate", ESTATE, "opened", "2026-11") == 1
    _, again = apply_event(facts, event(T1[0].payload(), at(11, 3, 12)))  # registered twice
    assert again == []


def test_archive_events_count_nothing():
    facts, _ = replay(T3)
    _, deltas = apply_event(facts["T3"], event(ev.Archived(
        ticket_id="T3", record_number="A-1", content_hash="h", previous_hash="g", closed_month="2026-11"), at(12, 1)))
    assert deltas == []


def test_metric_names_are_figures_fields():
    assert [m.value for m in Metric] == [f for f in Figures.__dataclass_fields__]
    assert Dimension.kind_channel == "kind_channel"


# --- consolidation, ranking and the quarter ----------------------------------------------------------


def _report(estate: str, month: str = "2026-11", carried: int = 0, **metrics: int) -> MonthlyReport:
    rollups = {("estate", estate, m): v for m, v in metrics.items()}
    rollups.update({("category", "noise", m): v for m, v in metrics.items()})
    return monthly_report(estate, month, rollups, open_carried=carried,
                          corrective_actions=[f"{estate} problem"] if metrics else [])


def test_composite_score_is_the_documented_weighted_mean():
    # on time 9/10, callbacks on time 4/5, satisfaction (8 + 10) / 20
    figures = Figures(clocks_met=9, clocks_breached=1, callbacks_required=5, callbacks_on_time=4,
                      satisfaction_answers=10, result_satisfied=8, attitude_satisfied=10)
    assert composite_score(figures) == pytest.approx(0.4 * 0.9 + 0.3 * 0.8 + 0.3 * 0.9)
    # no clocks: the other two weights rescaled
    partial = Figures(callbacks_required=1, callbacks_on_time=1, satisfaction_answers=2, result_satisfied=1,
                      attitude_satisfied=1)
    assert composite_score(partial) == pytest.approx((30 * 1 + 30 * 0.5) / 60)
    assert composite_score(Figures()) is None
    only_on_time = effective_policy(estate_overrides={"analytics": {
        "ranking_weight_callback_percent": 0, "ranking_weight_satisfaction_percent": 0}})
    assert composite_score(figures, only_on_time) == pytest.approx(0.9)


def test_company_consolidation_ranks_and_sums():
    good = dict(clocks_met=9, clocks_breached=1, callbacks_required=5, callbacks_on_time=4,
                satisfaction_answers=10, result_satisfied=8, attitude_satisfied=10, opened=12, closed=10)
    birch = _report("birch", carried=3, **good)
    aspen = _report("aspen", carried=1, **good)  # same figures: the tie goes to the code
    cedar = _report("cedar", callbacks_required=1, callbacks_on_time=1, satisfaction_answers=2,
                    result_satisfied=1, attitude_satisfied=1, opened=2, closed=2)
    empty = _report("alder")
    result = company_consolidation([cedar, empty, birch, aspen])
    assert [(r.rank, r.estate) for r in result.rows] == [(1, "aspen"), (2, "birch"), (3, "cedar"), (4, "alder")]
    assert result.rows[0].score == pytest.approx(0.87)
    assert result.rows[2].score == pytest.approx(0.75)
    assert result.rows[3].score is None
    assert result.rows[0].on_time_rate == 0.9 and result.rows[0].callback_on_time_rate == 0.8
    assert result.rows[0].satisfaction_rate == 0.9
    company = result.company
    assert company.estate == COMPANY_TOTAL and company.period == "2026-11"
    assert company.totals.opened == 26 and company.totals.closed == 22
    assert company.totals.clocks_met == 18 and company.totals.on_time_rate == 0.9
    assert company.totals.callbacks_required == 11 and company.totals.callback_on_time_rate == 9 / 11
    assert company.by_category["noise"].opened == 26
    assert company.open_carried_in == 4 and company.open_carried_out == 8
    assert [line.problem for line in company.corrective_actions] == [
        "[cedar] cedar problem", "[birch] birch problem", "[aspen] aspen problem"]
    assert "ties by estate code" in result.ranking_rule


def test_company_consolidation_refuses_mixed_input():
    with pytest.raises(ValueError):
        company_consolidation([_report("birch"), _report("aspen", month="2026-12")])
    with pytest.raises(ValueError):
        company_consolidation([_report("birch"), _report("birch")])
    with pytest.raises(ValueError):
        company_consolidation([])


def test_quarterly_summary():
    reports = [
        _report("birch", "2026-10", carried=2, opened=5, closed=4, clocks_met=3, clocks_breached=1),
        _report("birch", "2026-11", carried=3, opened=6, closed=7, clocks_met=4, clocks_breached=0),
        _report("birch", "2026-12", carried=2, opened=1, closed=1, clocks_met=1, clocks_breached=1),
        _report("aspen", "2026-11", carried=0, opened=2, closed=1, callbacks_required=2, callbacks_on_time=1),
    ]
    q = quarterly_summary(reports)
    assert q.quarter == "2026Q4" and q.months == ("2026-10", "2026-11", "2026-12")
    birch = q.by_estate["birch"]
    assert birch.period == "2026Q4"
    assert (birch.totals.opened, birch.totals.closed) == (12, 12)
    assert (birch.totals.clocks_met, birch.totals.clocks_breached) == (8, 2)
    assert birch.totals.on_time_rate == 0.8
    assert (birch.open_carried_in, birch.open_carried_out) == (2, 2)
    assert len(birch.corrective_actions) == 3
    assert q.company.totals.opened == 14 and q.company.open_carried_in == 2
    assert q.company_by_month["2026-11"].totals.opened == 8
    assert set(q.company_by_month) == {"2026-10", "2026-11", "2026-12"}
    assert q.missing == (("aspen", "2026-10"), ("aspen", "2026-12"))
    assert [r.estate for r in q.ranking] == ["birch", "aspen"]  # 0.8 against 0.5
    with pytest.raises(ValueError):
        quarterly_summary([_report("birch", "2026-09"), _report("birch", "2026-10")])


# --- weekly review ---------------------------------------------------------------------------------


def test_department_weekly_review(facts):
    open_facts, _ = replay([
        accepted("W1", ev.Kind.complaint, ev.Channel.phone, "noise", at(11, 1), "cs01"),
        event(ev.Assigned(ticket_id="W1", round=1, departments=["security"], assigned_by="cs01",
                          deadlines=[deadline("reply", at(11, 3))]), at(11, 1, 11)),
        event(ev.ProgressUpdated(ticket_id="W1", note="checking", updated_by="cs01"), at(11, 14)),
        # dispatch: W1's first week of the duty (from Nov 8) ended with one update of two
        settled("W1", 21, ev.PROGRESS_UPDATE_CLOCK, at(11, 15), at(11, 15, 10, 1), "breached"),
        accepted("W2", ev.Kind.complaint, ev.Channel.phone, "noise", at(11, 10), "cs01"),
        event(ev.Assigned(ticket_id="W2", round=1, departments=["security", "engineering"], assigned_by="cs01",
                          deadlines=[deadline("reply", at(11, 30))]), at(11, 10, 11)),
        event(ev.ProgressUpdated(ticket_id="W2", note="a", updated_by="cs01"), at(11, 12)),
        event(ev.ProgressUpdated(ticket_id="W2", note="b", updated_by="cs01"), at(11, 14)),
        accepted("W3", ev.Kind.inquiry, ev.Channel.phone, "general", at(11, 13), "cs02"),
    ])
    items = list(open_facts.values()) + [facts["T1"]]  # T1 is closed: left out
    reviews = {r.department: r for r in department_weekly_review(items, at(11, 15, 12))}
    assert set(reviews) == {"security", "engineering", UNASSIGNED}
    security = reviews["security"]
    assert (security.open_count, security.overdue_count) == (2, 1)
    assert [i.ticket_id for i in security.items] == ["W1", "W2"]
    w1, w2 = security.items
    assert w1.overdue_clocks == ("progress_update", "reply") and w1.days_open == 14
    assert w1.needs_progress_update  # dispatch's verdict: the week was missed
    assert not w2.needs_progress_update  # no week of its duty has ended
    assert [i.ticket_id for i in reviews["engineering"].items] == ["W2"]
    assert [i.ticket_id for i in reviews[UNASSIGNED].items] == ["W3"]
    assert not reviews[UNASSIGNED].items[0].needs_progress_update  # not a complaint
    # W1's next week has its two updates: the latest verdict is met, nothing is owed
    later, _ = replay([settled("W1", 22, ev.PROGRESS_UPDATE_CLOCK, at(11, 22), at(11, 20))], open_facts)
    review = {r.department: r for r in department_weekly_review(later.values(), at(11, 21))}
    assert review["security"].items[0].ticket_id == "W1"
    assert review["security"].items[0].needs_progress_update is False


# --- repeated problems ---------------------------------------------------------------------------


def _t(ticket: str, day: int, category: str = "leak", building: str | None = None, month: int = 11) -> RecentTicket:
    return RecentTicket(ticket, category, building, at(month, day))


def test_repeat_problem_fires_once_when_the_threshold_is_crossed():
    history = [_t("A", 1, building="B1"), _t("B", 5, building="B2"), _t("X", 6, category="noise")]
    suggestion = repeat_problem(history, _t("C", 10, building="B3"))
    assert suggestion is not None
    assert (suggestion.ticket_id, suggestion.category, suggestion.scope, suggestion.building) == ("C", "leak", "estate", None)
    assert (suggestion.count, suggestion.window_days, suggestion.tickets) == (3, 30, ["A", "B", "C"])
    history.append(_t("C", 10, building="B3"))
    assert repeat_problem(history, _t("D", 12, building="B4")) is None  # 4th of the same burst
    history.append(_t("D", 12, building="B4"))
    assert repeat_problem(history, _t("E", 13, building="B5")) is None


def test_repeat_problem_window_slides_and_fires_again():
    history = [_t("A", 1), _t("B", 2), _t("C", 3)]
    # Dec 2: A (Nov 1) and B (Nov 2) are outside (Nov 2 10:00 is not after Dec 2 − 30 days)
    assert repeat_problem(history, _t("D", 2, month=12)) is None
    history.append(_t("D", 2, month=12))
    assert repeat_problem(history, _t("E", 3, month=12)) is None  # C slid out: D, E
    history.append(_t("E", 3, month=12))
    fired = repeat_problem(history, _t("F", 4, month=12))
    assert fired is not None and fired.tickets == ["D", "E", "F"]


def test_repeat_problem_in_one_building():
    history = [_t("A", 1, building="B1"), _t("B", 2, building="B1")]
    both = repeat_problem(history, _t("C", 3, building="B1"))
    assert (both.scope, both.building, both.tickets) == ("building", "B1", ["A", "B", "C"])
    # estate already past the threshold, the building reaches it now
    history = [_t("A", 1, building="B1"), _t("B", 2, building="B2"), _t("C", 3, building="B2"),
               _t("D", 4, building="B1")]
    building = repeat_problem(history, _t("E", 5, building="B1"))
    assert (building.scope, building.tickets, building.count) == ("building", ["A", "D", "E"], 3)


def test_repeat_problem_ignores_later_tickets_and_uses_the_policy():
    later = [_t("A", 1), _t("Z", 20), _t("Y", 21)]
    assert repeat_problem(later, _t("B", 2)) is None
    # same time: the ticket-id order decides who crosses
    same = [_t("A", 1), RecentTicket("C", "leak", None, at(11, 2))]
    assert repeat_problem(same, _t("B", 2)) is None
    assert repeat_problem(same + [_t("B", 2)], RecentTicket("C", "leak", None, at(11, 2))).tickets == ["A", "B", "C"]
    tight = effective_policy(estate_overrides={"analytics": {"repeat_problem_threshold": 2,
                                                             "repeat_problem_window_days": 3}})
    assert repeat_problem([_t("A", 1)], _t("B", 3), tight).tickets == ["A", "B"]
    assert repeat_problem([_t("A", 1)], _t("B", 5), tight) is None
    assert repeat_problem([("A", "leak", None, at(11, 1))], ("B", "leak", None, at(11, 2)), tight).count == 2


def test_a_suggestion_becomes_a_corrective_action_line():
    suggestion = repeat_problem([_t("A", 1), _t("B", 2)], _t("C", 3))
    line = CorrectiveActionLine.coerce(suggestion)
    assert line.category == "leak" and line.tickets == ("A", "B", "C") and "3" in line.problem
    with pytest.raises(TypeError):
        CorrectiveActionLine.coerce(42)


# --- the exported form ----------------------------------------------------------------------------


def _rows(data: bytes):
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb[export.SHEET_TITLE]
    return wb, ws, [[c for c in row] for row in ws.iter_rows()]


def _row_of(rows, label: str):
    for row in rows:
        if row[0].value == label:
            return row
    raise AssertionError(f"no row {label!r}")


def test_xlsx_opens_and_carries_the_figures(november):
    signed = monthly_report(ESTATE, "2026-11", november.rollups, 0, november.corrective_actions,
                            sign_off=SignOff(summary="噪音投诉集中在B1", department_head="王经理",
                                             signed_on=dt.date(2026, 12, 3)))
    wb, ws, rows = _rows(export.monthly_report_xlsx(signed))
    assert wb.sheetnames == ["月客户意见统计分析表"]
    assert ws["A1"].value == "月客户意见统计分析表"
    assert _row_of(rows, "管理处")[1].value == ESTATE
    assert _row_of(rows, "本月受理")[1].value == 5
    assert _row_of(rows, "结转下月未结")[1].value == 2
    assert _row_of(rows, "有效投诉")[1].value == 1 and _row_of(rows, "无效投诉")[1].value == 1
    header = _row_of(rows, "类别")
    headings = [c.value for c in header]
    assert headings[1:8] == ["来访", "来电", "来信", "网上", "走访", "员工转达", "上级/政府转来"]
    complaint = _row_of(rows, "投诉")
    assert complaint[headings.index("来电")].value == 1 and complaint[headings.index("网上")].value == 1
    assert complaint[headings.index("合计")].value == 2
    arrival = _row_of(rows, "到场")
    assert (arrival[1].value, arrival[2].value, arrival[3].value) == (0, 1, 0)
    reply = _row_of(rows, "答复")
    assert reply[3].value == 0.5 and reply[3].number_format == "0.0%"
    assert _row_of(rows, "按时回访率")[1].value == pytest.approx(2 / 3)
    assert _row_of(rows, "保安部")[1].value == 1
    assert _row_of(rows, "总结分析")[1].value == "噪音投诉集中在B1"
    assert _row_of(rows, "部门负责人签名")[1].value == "王经理"
    assert _row_of(rows, "日期")[1].value == "2026-12-03"
    assert _row_of(rows, "plumbing repeats in B2")[1].value == "replace risers"
    titles = [row[0].value for row in rows if isinstance(row[0].value, str) and row[0].value[:2] in
              ("一、", "二、", "三、", "四、", "五、", "六、", "七、", "八、", "九、")]
    assert len(titles) == 9
    assert ws.page_setup.orientation == "landscape"


def test_xlsx_prints_a_dash_for_missing_rates(december):
    _, _, rows = _rows(export.monthly_report_xlsx(december))
    assert _row_of(rows, "有效投诉占比")[1].value == "—"
    assert _row_of(rows, "上月结转未结")[1].value == 2


def test_company_xlsx_has_the_quality_manager_line():
    result = company_consolidation([_report("birch", opened=3), _report("aspen", opened=2)])
    _, _, rows = _rows(export.monthly_report_xlsx(result.company))
    assert _row_of(rows, "管理处")[1].value == "全公司"
    assert _row_of(rows, "本月受理")[1].value == 5
    _row_of(rows, "品质主管(公司综合管理部)")


def test_html_is_printable_in_both_languages(november):
    zh = export.monthly_report_html(november)
    assert zh.startswith("<!DOCTYPE html>") and 'lang="zh-CN"' in zh
    assert "月客户意见统计分析表" in zh and "@media print" in zh and "部门负责人签名" in zh
    assert "66.7%" in zh  # on-time rate 4/6
    assert "<td>plumbing repeats in B2</td>" in zh
    en = export.monthly_report_html(november, lang="en")
    assert 'lang="en"' in en and "5. Deadlines kept" in en and "Security" in en
    hostile = monthly_report(ESTATE, "2026-11", {}, 0, ["<script>alert(1)</script>"])
    assert "<script>alert" not in export.monthly_report_html(hostile)
    with pytest.raises(ValueError):
        export.monthly_report_html(november, lang="fr")  # type: ignore[arg-type]
