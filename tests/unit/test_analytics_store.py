"""The analytics shell's pure pieces: the company counters kept beside the estates', the
ticket-facts columns the dashboard filters on, the feed and repeat rows, the department
heads' section of the form, and the refusal of malformed input."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from services.analytics import rebuild, reports, rules, store
from services.analytics.rules import COMPANY_TOTAL, fold, monthly_report, period_rollups, replay
from shared import events as ev
from shared.errors import RuleViolation
from shared.policy import DEFAULT_POLICY
from tests.unit.test_analytics_rules import ALL_EVENTS, at, event

TZ = ZoneInfo("Asia/Shanghai")


def other_estate_events() -> list[ev.CloudEvent]:
    """A second estate's month: a complaint with its own staff and buildings."""
    return [
        event(ev.Accepted(ticket_id="B1", form_number="F-B1", kind=ev.Kind.complaint, channel=ev.Channel.phone,
                          category="noise", building="9", description="…", first_contact="birch-cs",
                          received_at=at(11, 4)), at(11, 4), estate="birch"),
        event(ev.Assigned(ticket_id="B1", departments=["security"], assigned_by="birch-cs",
                          deadlines=[ev.Deadline(clock="reply", due_at=at(11, 5))]), at(11, 4, 11), estate="birch"),
        event(ev.SlaBreached(ticket_id="B1", clock="reply", due_at=at(11, 5)), at(11, 5, 10, 1), estate="birch"),
        event(ev.ClockSettled(ticket_id="B1", clock_id=1, clock="reply", due_at=at(11, 5), settled_at=at(11, 5, 10, 1),
                              outcome=ev.ClockOutcome.breached), at(11, 5, 10, 1), estate="birch"),
        event(ev.Closed(ticket_id="B1", closed_by="birch-cs", reason="ok"), at(11, 6), estate="birch"),
    ]


@pytest.mark.parametrize("month", ["2026-11", "2026-12"])
def test_company_counters_equal_the_merge_of_every_estate_report(month):
    _, deltas = replay(ALL_EVENTS + other_estate_events())
    totals = fold(deltas + store.company_deltas(deltas))
    estates = [monthly_report(e, month, period_rollups(totals, e, month), 0) for e in ("maple", "birch")]
    merged = rules.company_consolidation(estates).company
    kept = monthly_report(COMPANY_TOTAL, month, period_rollups(totals, COMPANY_TOTAL, month), 0)
    assert kept.totals == merged.totals and kept.totals.opened > 0
    for table in ("by_kind", "by_channel", "by_kind_channel", "by_department", "by_category", "by_clock",
                  "by_rung", "by_repair_class"):
        assert getattr(kept, table) == getattr(merged, table), table
    assert kept.by_staff == {} and kept.by_building == {}  # meaningless across estates
    assert all(len(period) == 7 for (estate, period, *_) in totals if estate == COMPANY_TOTAL)


def test_company_deltas_fold_the_estate_key_and_skip_days_staff_and_buildings():
    deltas = [
        rules.RollupDelta("maple", "2026-11", "estate", "maple", "opened", 1),
        rules.RollupDelta("maple", "2026-11-03", "estate", "maple", "opened", 1),
        rules.RollupDelta("maple", "2026-11", "staff", "cs01", "opened", 1),
        rules.RollupDelta("maple", "2026-11", "building", "B1", "opened", 1),
        rules.RollupDelta("maple", "2026-11", "category", "noise", "clocks_met", -1),
    ]
    assert store.company_deltas(deltas) == [
        rules.RollupDelta("*", "2026-11", "estate", "*", "opened", 1),
        rules.RollupDelta("*", "2026-11", "category", "noise", "clocks_met", -1),
    ]


def test_a_batch_sums_the_company_twins_once_per_counter_as_they_would_be_per_increment():
    batch, facts, every_delta = store.Batch(), {}, []
    for e in ALL_EVENTS + other_estate_events():
        after, deltas = rules.apply_event(facts.get((e.estate, e.subject)), e)
        facts[(e.estate, e.subject)] = after
        batch.add(e, after, deltas, DEFAULT_POLICY)
        every_delta += deltas
    expected = {k: v for k, v in fold(every_delta + store.company_deltas(every_delta)).items() if v}
    assert {k: v for k, v in batch.totals().items() if v} == {
        (period, estate, dimension, key, metric): value
        for (estate, period, dimension, key, metric), value in expected.items()}
    assert any(estate == COMPANY_TOTAL for _, estate, *_ in batch.totals())
    assert not any(estate == COMPANY_TOTAL for _, estate, *_ in batch.counters)


def test_facts_row_carries_what_the_dashboard_filters_on():
    facts, _ = replay([e for e in ALL_EVENTS if e.subject == "T2"][:4])  # accepted, assigned, arrived late, breached
    row = store.facts_row(facts["T2"], at(11, 10, 11), form_number="F-T2")
    assert (row["estate"], row["ticket_id"], row["form_number"], row["state"]) == ("maple", "T2", "F-T2", "open")
    assert row["departments"] == ["engineering"]
    assert row["has_breach"] is True  # dispatch's verdict: the arrival came after its due time
    assert row["next_due_at"] == at(11, 11, 9)  # the repair slip is still running
    assert row["facts"]["ticket_id"] == "T2" and row["kind"] == "repair"
    done, _ = replay([e for e in ALL_EVENTS if e.subject == "T2"])
    closed = store.facts_row(done["T2"], at(11, 20))
    assert (closed["state"], closed["next_due_at"], closed["escalations"]) == ("closed", None, 1)


def test_extra_rows_for_breaches_escalations_and_repeats():
    breach = event(ev.SlaBreached(ticket_id="T1", round=2, clock="reply", due_at=at(11, 7), department="security"),
                   at(11, 7, 10, 1))
    assert store.extra_rows(breach, DEFAULT_POLICY) == (None, {
        "event_id": breach.id, "estate": "maple", "ticket_id": "T1", "event": "sla_breached", "clock": "reply",
        "department": "security", "rung": None, "at": at(11, 7, 10, 1)})
    # a suggestion made at 00:30 on Dec 1 local time is December's
    suggested = event(ev.CorrectiveActionSuggested(ticket_id="T9", category="noise", scope="estate", count=3,
                                                   window_days=30, tickets=["T7", "T8", "T9"]),
                      dt.datetime(2026, 11, 30, 16, 30, tzinfo=dt.timezone.utc))
    suggestion, alert = store.extra_rows(suggested, DEFAULT_POLICY)
    assert (suggestion["month"], suggestion["payload"]["tickets"], alert["event"]) == (
        "2026-12", ["T7", "T8", "T9"], "corrective_action_suggested")
    closed = event(ev.Closed(ticket_id="T1", closed_by="cs", reason="ok"), at(11, 9))
    assert store.extra_rows(closed, DEFAULT_POLICY) == (None, None)


def test_corrective_section_lists_repeats_then_each_heads_signed_lines():
    repeat = SimpleNamespace(payload=ev.CorrectiveActionSuggested(
        ticket_id="T9", category="noise", scope="building", building="3", count=3, window_days=30,
        tickets=["T7", "T8", "T9"]).model_dump(mode="json"))
    signed = [
        SimpleNamespace(department="engineering", problems="水管老化", corrective_actions="更换立管",
                        signed_by="eng-head", signer_name="王工", signed_at=at(12, 3, 9)),
        SimpleNamespace(department="security", problems="夜班巡逻不足", corrective_actions="增加巡逻",
                        signed_by="sec-head", signer_name=None, signed_at=dt.datetime(2026, 12, 4, 17, tzinfo=dt.timezone.utc)),
    ]
    lines, sign_off = reports.corrective_section([repeat], signed, TZ)
    report = monthly_report("maple", "2026-11", {}, 0, lines, sign_off=sign_off)
    assert [line.problem for line in report.corrective_actions] == [
        "noise: 3 opinions within 30 days (building 3)", "水管老化", "夜班巡逻不足"]
    assert report.corrective_actions[0].tickets == ("T7", "T8", "T9")
    assert report.corrective_actions[1].action == "更换立管"
    assert report.sign_off.department_head == "engineering: 王工; security: sec-head"
    assert report.sign_off.summary == "[engineering] 水管老化\n[security] 夜班巡逻不足"
    assert report.sign_off.signed_on == dt.date(2026, 12, 5)  # 17:00 UTC is the next day in Shanghai
    assert reports.corrective_section([], [], TZ) == ([], None)


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-11", "2026-11-01", "november"])
def test_malformed_months_are_refused(text):
    with pytest.raises(RuleViolation) as refused:
        reports.parse_month(text)
    assert refused.value.status == 422 and text in str(refused.value)


def test_quarters():
    assert reports.parse_quarter("2026Q4") == ("2026Q4", ("2026-10", "2026-11", "2026-12"))
    assert reports.parse_quarter("2027Q1") == ("2027Q1", ("2027-01", "2027-02", "2027-03"))
    for text in ("2026Q5", "2026Q0", "Q4", "2026-4"):
        with pytest.raises(RuleViolation):
            reports.parse_quarter(text)


def test_rebuild_skips_what_the_live_consumer_would_dead_letter():
    good = ALL_EVENTS[0]
    assert rebuild.parse(good.nats_subject, good.model_dump_json().encode()).event.id == good.id
    with pytest.raises(ValueError, match="arrived on"):
        rebuild.parse("estatedesk.birch.ticket.accepted", good.model_dump_json().encode())
    unknown = good.model_copy(update={"type": "estatedesk.ticket.teleported"})
    with pytest.raises(ValueError, match="unknown event type"):
        rebuild.parse("estatedesk.maple.ticket.teleported", unknown.model_dump_json().encode())
    with pytest.raises(ValueError):
        rebuild.parse(good.nats_subject, b'{"specversion": "1.0"')


def test_grafana_dashboard_is_built_on_exported_metrics():
    import json
    import re
    from pathlib import Path

    from prometheus_client import generate_latest

    from services.analytics.app import service

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "estatedesk.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(total|bucket)$", "", name) for q in queries for name in re.findall(r"\b(estatedesk_[a-z_]+)", q)}
    exported = set(re.findall(r"^# TYPE (\S+)", generate_latest(service.registry).decode(), re.M))
    exported |= {name.removesuffix("_total") for name in exported}
    assert used and used <= exported, used - exported
    assert {"estatedesk_open_forms", "estatedesk_sla_breaches", "estatedesk_callback_rate",
            "estatedesk_satisfaction"} <= used
    assert any("faststream_received_processed_messages" in q for q in queries)


def test_the_live_cut_is_the_ack_floor_only_when_nothing_above_it_was_acknowledged():
    from services.analytics.rebuild import cut_of

    assert cut_of(delivered=120, ack_floor=120, ack_pending=0) == 120  # idle
    assert cut_of(delivered=150, ack_floor=120, ack_pending=30) == 120  # a batch waits on the lock
    assert cut_of(delivered=150, ack_floor=120, ack_pending=5) is None  # 121 retried, later ones acked


def test_worksheet_cells_never_hold_control_characters():
    # Older events may carry text the API now refuses; the xlsx export must not fail on it.
    from services.analytics.export import _cell_value

    assert _cell_value("漏水\x0b严重\x01") == "漏水\ufffd严重\ufffd"
    assert _cell_value("行1\n行2\t") == "行1\n行2\t"


def test_the_replay_collects_garbage_less_often_and_restores_the_thresholds():
    import gc

    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with rebuild.fewer_collections(123_456):
            assert gc.get_threshold()[0] == 123_456
            raise RuntimeError("a failed replay")
    assert gc.get_threshold() == before
