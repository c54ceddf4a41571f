"""Analytics' handlers on fake repositories (issue 11's handler tier): every event type
routed, each ticket event counted once (redeliveries add nothing), dispatch's clock
verdicts counted as published, the ticket's open/closed state and its re-opening, the
repeat-problem suggestion (RULES §2) including tickets of the same batch, refused
payloads, and the department head's sign-off with each of its refusals (RULES §4)."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from services.analytics import handlers, rules
from services.analytics.handlers import HANDLERS, SignOffCommand, handle_sign_off
from shared import events as ev
from shared.auth import AuthError, Principal
from shared.errors import RuleViolation
from tests.handlers.conftest import ESTATE, START

DAY = START.astimezone(dt.timezone(dt.timedelta(hours=8))).date().isoformat()  # Shanghai day of START
MONTH = DAY[:7]


def event(payload: ev.Payload, minutes: float = 0, estate: str = ESTATE) -> ev.CloudEvent:
    return ev.make_event(payload, estate=estate, actor="staff", source="test",
                         time=START + dt.timedelta(minutes=minutes))


def accepted(ticket: str, category: str = "noise", kind: str = "complaint", building: str | None = "1",
             minutes: float = 0) -> ev.CloudEvent:
    return event(ev.Accepted(ticket_id=ticket, form_number=f"F-{ticket}", kind=kind, channel="phone",
                             category=category, building=building, description="…", first_contact="e1-cs01",
                             received_at=START + dt.timedelta(minutes=minutes)), minutes)


def settled(ticket: str, clock_id: int, outcome: ev.ClockOutcome, minutes: float = 60) -> ev.CloudEvent:
    return event(ev.ClockSettled(ticket_id=ticket, clock_id=clock_id, clock="reply", due_at=START + dt.timedelta(hours=1),
                                 settled_at=START + dt.timedelta(minutes=minutes), outcome=outcome), minutes)


async def handle(e: ev.CloudEvent, uow, ctx):
    return await HANDLERS[e.event_name](e, uow, ctx)


def counter(uow, metric: str, dimension: str = "estate", key: str = ESTATE, period: str = MONTH,
            estate: str = ESTATE) -> int:
    return uow.counters.get((period, estate, dimension, key, metric), 0)


def test_every_event_type_the_bus_accepts_has_one_handler():
    assert set(HANDLERS) == set(ev.PAYLOADS)
    assert HANDLERS["accepted"] is handlers.handle_accepted
    assert {HANDLERS[name] for name in ev.PAYLOADS if name != "accepted"} == {handlers.handle_ticket_event}


async def test_each_event_counts_once_and_a_redelivery_adds_nothing(uow, ctx):
    history = [accepted("T1", kind="repair", category="plumbing"),
               event(ev.Assigned(ticket_id="T1", departments=["engineering"], assigned_by="e1-cs01"), 5),
               event(ev.Completed(ticket_id="T1", kind="repair", category="plumbing", departments=["engineering"],
                                  completed_at=START + dt.timedelta(hours=2)), 120)]
    for e in history:
        applied = await handle(e, uow, ctx)
        assert applied is not None and e.id in applied.after.seen_event_ids
    assert await handle(history[0], uow, ctx) is None  # again within the batch
    await uow.flush(ctx.now())
    assert await handle(history[1], uow, ctx) is None  # again after the commit
    await uow.flush(ctx.now())
    assert counter(uow, "opened") == 1 and counter(uow, "opened", period=DAY) == 1
    assert counter(uow, "assigned", "department", "engineering") == 1 and counter(uow, "completed") == 1
    # The company's month counters move with the estate's (the consolidation reads them).
    assert counter(uow, "opened", key="*", estate="*") == 1
    assert uow.facts.stored[(ESTATE, "T1")].kind == "repair"


async def test_clocks_count_dispatchs_verdicts_once_per_clock(uow, ctx):
    await handle(accepted("T1"), uow, ctx)
    await handle(settled("T1", 1, ev.ClockOutcome.met, 30), uow, ctx)
    await handle(settled("T1", 2, ev.ClockOutcome.breached, 90), uow, ctx)
    await handle(settled("T1", 3, ev.ClockOutcome.superseded, 95), uow, ctx)
    repeated = settled("T1", 2, ev.ClockOutcome.breached, 100)  # a second verdict on clock 2: a new event id
    await handle(repeated, uow, ctx)
    await uow.flush(ctx.now())
    assert counter(uow, "clocks_met") == 1 and counter(uow, "clocks_breached") == 1
    assert counter(uow, "clocks_breached", "clock", "reply") == 1
    assert uow.facts.stored[(ESTATE, "T1")].on_time == {"reply": False}


async def test_the_ticket_closes_and_a_reopened_round_makes_it_open_again(uow, ctx):
    await handle(accepted("T1"), uow, ctx)
    assert (await uow.facts.get_for_update(ESTATE, "T1")).state == rules.OPEN
    await handle(event(ev.Closed(ticket_id="T1", closed_by="e1-cs01", reason="ok", satisfied=True), 60), uow, ctx)
    assert (await uow.facts.get_for_update(ESTATE, "T1")).state == rules.CLOSED
    await handle(event(ev.Reopened(ticket_id="T1", round=2, reason="again", reopened_by="e1-cs01",
                                   departments=["security"]), 120), uow, ctx)
    facts = await uow.facts.get_for_update(ESTATE, "T1")
    assert (facts.state, facts.round, facts.current_departments) == (rules.OPEN, 2, ["security"])
    await uow.flush(ctx.now())
    assert counter(uow, "closed") == 1 and counter(uow, "reactivated") == 1 and counter(uow, "reopened") == 1


async def test_the_third_complaint_of_a_category_in_the_window_suggests_corrective_action(uow, ctx, sink):
    # Three in one batch: the later ones see the earlier ones before anything is stored.
    for n in range(3):
        await handle(accepted(f"T{n}", minutes=n), uow, ctx)
    assert sink.names() == ["corrective_action_suggested"]
    suggestion = sink.payloads("corrective_action_suggested")[0]
    assert (suggestion.ticket_id, suggestion.scope, suggestion.tickets) == ("T2", "building", ["T0", "T1", "T2"])
    assert sink.events[0].actor == "analytics" and sink.events[0].time == ctx.now()
    assert [s.new.ticket_id for s in uow.facts.searched] == ["T0", "T1", "T2"]
    await uow.flush(ctx.now())
    await handle(accepted("T3", minutes=3), uow, ctx)  # the fourth of the burst stays silent
    assert len(sink.events) == 1


@pytest.mark.parametrize("kind, category", [("complaint", "general"), ("inquiry", "noise")])
async def test_ignored_categories_and_other_kinds_suggest_nothing(uow, ctx, sink, kind, category):
    for n in range(4):
        await handle(accepted(f"T{n}", category=category, kind=kind, minutes=n), uow, ctx)
    assert sink.events == [] and uow.facts.searched == []


async def test_a_batch_prepared_up_front_asks_the_searches_its_handlers_make(uow, ctx):
    """`prepare` reads the batch's repeat searches from the payloads; the handlers make them
    from the folded facts (a search prepared differently would be read again, one by one)."""
    batch = [accepted("T1", category="  Water  Leak "), accepted("T2", category="general"),
             accepted("T3", kind="inquiry"), accepted("T4", building=None, minutes=1),
             event(ev.Closed(ticket_id="T1", closed_by="cs", reason="ok"), 2)]
    await handlers.prepare(batch, uow, ctx)
    for e in batch:
        await handle(e, uow, ctx)
    assert uow.facts.prepared == uow.facts.searched
    assert [(s.new.ticket_id, s.new.category) for s in uow.facts.searched] == [("T1", "water leak"), ("T4", "noise")]


async def test_breaches_escalations_and_suggestions_feed_the_dashboard(uow, ctx):
    breach = event(ev.SlaBreached(ticket_id="T1", clock="reply", due_at=START, department="security"), 61)
    await handle(accepted("T1"), uow, ctx)
    await handle(breach, uow, ctx)
    assert uow.batch.alerts[breach.id]["event"] == "sla_breached" and not uow.batch.suggestions


async def test_a_payload_breaking_the_contract_is_refused_and_leaves_the_batch_as_it_was(uow, ctx):
    broken = event(ev.Closed(ticket_id="T1", closed_by="e1-cs01", reason="ok")).model_copy(
        update={"data": {"ticket_id": "T1"}})
    with pytest.raises(ValidationError):
        await handle(broken, uow, ctx)
    assert not uow.batch


def who(staff: str, roles=("department_head",), departments=()) -> Principal:
    return Principal(staff_id=staff, name=f"name of {staff}", roles=frozenset(roles), estates=frozenset({ESTATE}),
                     departments=frozenset(departments))


def sign_off(department: str = "engineering", signed_by: str = "e1-eng-head", month: str = "2026-11"):
    return SignOffCommand(estate=ESTATE, month=month, department=department, problems="水管老化",
                          corrective_actions="更换立管", signed_by=signed_by)


async def test_a_head_signs_the_month_and_signing_again_replaces_the_entry(uow, ctx):
    row = await handle_sign_off(sign_off(), uow, ctx, who("e1-eng-head"))
    assert (row["signed_by"], row["signer_name"], row["signed_at"]) == ("e1-eng-head", "name of e1-eng-head", START)
    await handle_sign_off(sign_off(month=MONTH), uow, ctx, who("e1-eng-head"))
    again = SignOffCommand(**{**sign_off().__dict__, "problems": "改"})
    await handle_sign_off(again, uow, ctx, who("e1-eng-head"))
    assert len(uow.signoffs.rows) == 2 and uow.signoffs.rows[(ESTATE, "2026-11", "engineering")]["problems"] == "改"
    # The estate director signs for any department.
    await handle_sign_off(sign_off("security", "e1-director"), uow, ctx, who("e1-director", ["estate_director"]))


@pytest.mark.parametrize("command, signer, status, text", [
    (sign_off(signed_by="e1-sec-head"), who("e1-eng-head"), 403, "signer's own"),
    (sign_off("finance"), who("e1-eng-head"), 422, "has no department"),
    (sign_off("security", "e1-eng-head"), who("e1-eng-head"), 403, "is not the head"),
    (sign_off(signed_by="e1-head"), who("e1-head", departments=["customer_service"]), 403, "is not the head"),
    (sign_off(month="2027-01"), who("e1-eng-head"), 422, "has not begun"),
])
async def test_sign_off_refusals(uow, ctx, command, signer, status, text):
    with pytest.raises((AuthError, RuleViolation)) as refused:
        await handle_sign_off(command, uow, ctx, signer)
    assert getattr(refused.value, "status", None) == status and text in str(refused.value)
    assert uow.signoffs.rows == {}
