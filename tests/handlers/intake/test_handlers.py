"""Intake's handlers on fake repositories: registration (numbers, first contact, idempotency,
signatures, the night-shift list), every ticket transition intake makes or follows
(completed, reopened, closed, validity, updates, signatures, taking over), the refused
ones with their status, the periodic handlers and the duty roster's handover steps."""

from __future__ import annotations

import datetime as dt

import pytest

from services.intake import handlers, rules
from services.intake.domain import Registration
from shared.errors import RuleViolation
from shared.events import AttitudeComplaintRaised, Closed, Completed, Kind, Reopened, ReplyMethod, make_event
from shared.lifecycle import TicketState
from tests.handlers.conftest import ESTATE, START
from tests.handlers.intake.fakes import FakeIntakeUnitOfWork

CS, DUTY, HEAD = f"{ESTATE}-cs01", f"{ESTATE}-duty01", f"{ESTATE}-head"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def uow(sink):
    return FakeIntakeUnitOfWork(sink)


def request(at: dt.datetime = START, *, staff: str = CS, duty: bool = False, key: str | None = None,
            **facts) -> Registration:
    fields = dict(kind=Kind.repair, channel="phone", description="漏水", category="漏水", severity="not_serious",
                  urgency="not_urgent", accepted_by="department", reply_method="phone", owner_signed=False,
                  anonymous=False, people=[], attachments=[])
    fields.update(facts)
    return Registration(estate=ESTATE, facts=fields, staff_id=staff, staff_name="客服一", duty_staff=duty,
                        received_at=at, client_request_id=key)


async def registered(uow, ctx, *commands) -> list:
    return [v.ticket for v in await handlers.handle_register(list(commands) or [request()], uow, ctx)]


def event(payload, clock, actor="dispatch"):
    return make_event(payload, estate=ESTATE, actor=actor, source="test", time=clock.now())


# --- registration --------------------------------------------------------------------------------


async def test_a_batch_takes_gapless_numbers_in_one_counter_update_and_announces_each(uow, ctx, sink):
    tickets = await registered(uow, ctx, request(), request(channel="walk_in", owner_signed=True), request())
    assert [t.form_number for t in tickets] == ["E1-2026-000001", "E1-2026-000002", "E1-2026-000003"]
    assert uow.form_numbers.takes == 1
    assert sink.names() == ["accepted"] * 3
    accepted = sink.payloads("accepted")[0]
    assert accepted.first_contact == CS and accepted.form_number == "E1-2026-000001"
    first = tickets[0]
    assert (first.status, first.round, first.current_handler) == (TicketState.in_handling, 1, CS)
    # Phone: the owner signs later and the desk is reminded after the policy's hours.
    assert first.owner_signature == "later" and first.next_reminder_at == START + dt.timedelta(hours=24)
    assert tickets[1].owner_signature == "signed" and tickets[1].signed_at == START


async def test_an_idempotency_key_answers_with_the_first_ticket_in_and_across_batches(uow, ctx, sink):
    first, again = await registered(uow, ctx, request(key="k1"), request(key="k1"))
    assert first.id == again.id
    [later] = await registered(uow, ctx, request(key="k1"))
    assert later.id == first.id and len(uow.tickets.rows) == 1
    assert sink.names() == ["accepted"] and uow.form_numbers.last[(ESTATE, 2026)] == 1


async def test_a_walk_in_without_the_owners_signature_is_refused(uow, ctx, sink):
    with pytest.raises(RuleViolation) as refused:
        await registered(uow, ctx, request(channel="walk_in"))
    assert refused.value.status == 422 and sink.events == []


async def test_an_off_hours_duty_registration_waits_on_the_handover_list_for_the_next_shift(uow, ctx):
    night = dt.datetime(2026, 12, 2, 22, 0, tzinfo=SHANGHAI)
    shift = rules.RosterShift(dt.date(2026, 12, 2), "security_control_centre", "night", (DUTY,),
                              dt.datetime(2026, 12, 2, 20, 0, tzinfo=SHANGHAI),
                              dt.datetime(2026, 12, 3, 8, 0, tzinfo=SHANGHAI))
    following = rules.RosterShift(dt.date(2026, 12, 3), "security_control_centre", "early", ("x",),
                                  shift.ends_at, dt.datetime(2026, 12, 3, 16, 0, tzinfo=SHANGHAI))
    uow.roster.add_shift(ESTATE, shift)
    uow.roster.add_shift(ESTATE, following)
    [found] = await handlers.handle_register([request(night, staff=DUTY, duty=True)], uow, ctx)
    assert found.ticket.off_hours and found.handover.handover_due == following.starts_at
    # A customer-service clerk's off-hours registration is not a duty handover.
    [clerk] = await handlers.handle_register([request(night)], uow, ctx)
    assert clerk.ticket.off_hours and clerk.handover is None


async def test_the_request_check_refuses_what_later_clocks_could_not_use(clock):
    from services.intake.domain import check_request

    past = START - dt.timedelta(hours=1)
    for facts, needle in [
        (dict(kind="repair", building="9"), "no building"),
        (dict(kind="complaint", repair_class="general"), "repair class"),
        (dict(kind="repair", repair_class="appointment"), "needs appointment_at"),
        (dict(kind="repair", repair_class="appointment", appointment_at=past), "already passed"),
        (dict(kind="repair", reply_agreed_by=past), "already passed"),
        (dict(kind="repair", occurred_at=START + dt.timedelta(hours=1)), "future"),
        (dict(kind="repair", occurred_at=dt.datetime(2026, 12, 1)), "timezone"),
    ]:
        with pytest.raises(RuleViolation, match=needle) as refused:
            check_request(facts, ESTATE, ["1", "2"], START)
        assert refused.value.status == 422


# --- the status other services decide -------------------------------------------------------------


def completed(ticket, round_, at):
    return Completed(ticket_id=ticket.id, round=round_, kind=Kind.repair, departments=["engineering"],
                     completed_at=at)


async def test_completed_reopened_closed_move_the_ticket_and_stale_events_change_nothing(uow, ctx, clock):
    [ticket] = await registered(uow, ctx)
    await handlers.HANDLERS["completed"](event(completed(ticket, 2, START), clock), uow, ctx)
    assert uow.tickets.rows[ticket.id]["status"] == "in_handling"  # another round's
    await handlers.HANDLERS["completed"](event(completed(ticket, 1, START), clock), uow, ctx)
    assert (uow.tickets.rows[ticket.id]["status"], uow.tickets.rows[ticket.id]["completed_at"]) == ("completed", START)
    reopen = Reopened(ticket_id=ticket.id, round=2, reason="还漏", reopened_by=CS)
    await handlers.HANDLERS["reopened"](event(reopen, clock), uow, ctx)
    row = uow.tickets.rows[ticket.id]
    assert (row["status"], row["round"], row["completed_at"]) == ("in_handling", 2, None)
    await handlers.HANDLERS["reopened"](event(reopen, clock), uow, ctx)  # redelivered: no change
    assert uow.tickets.rows[ticket.id]["round"] == 2
    clock.advance(hours=1)
    await handlers.HANDLERS["closed"](event(Closed(ticket_id=ticket.id, round=2, closed_by=CS, reason="满意"), clock),
                                      uow, ctx)
    assert (uow.tickets.rows[ticket.id]["status"], uow.tickets.rows[ticket.id]["closed_at"]) == ("closed", clock.now())
    # Completed after close (a late event of the round) leaves it closed.
    await handlers.HANDLERS["completed"](event(completed(ticket, 2, START), clock), uow, ctx)
    assert uow.tickets.rows[ticket.id]["status"] == "closed"


async def test_events_about_tickets_intake_does_not_know_are_ignored(uow, ctx, clock):
    for name, payload in [("completed", Completed(ticket_id="x", kind=Kind.repair, departments=[], completed_at=START)),
                          ("reopened", Reopened(ticket_id="x", round=2, reason="r", reopened_by=CS)),
                          ("closed", Closed(ticket_id="x", closed_by=CS, reason="r"))]:
        await handlers.HANDLERS[name](event(payload, clock), uow, ctx)
    assert uow.tickets.rows == {}


def test_every_event_handler_is_in_the_table():
    assert set(handlers.HANDLERS) == {"completed", "reopened", "closed", "attitude_complaint_raised"} \
        == set(handlers.DESCRIPTIONS)


async def test_callbacks_attitude_verdict_becomes_one_complaint_through_intakes_own_registration(uow, ctx, sink, clock):
    """Callback decides (attitude_complaint_raised); intake registers the complaint once, a
    redelivery answers with the same ticket (its client request id)."""
    raised = AttitudeComplaintRaised(
        ticket_id="t1", callback_id="cb1", round=1, form_number="E1-2026-000007", unit="1-1-101", owner_id=None,
        reply_method=ReplyMethod.phone, answered_by=ReplyMethod.phone, recorded_by=CS, first_contact=HEAD,
        departments=["engineering"], suggestions="维修工态度恶劣", client_request_id="attitude-cb1")
    message = event(raised, clock, actor="callback")
    await handlers.HANDLERS["attitude_complaint_raised"](message, uow, ctx)
    await handlers.HANDLERS["attitude_complaint_raised"](message, uow, ctx)
    [complaint] = [t for t in uow.tickets.rows.values()]
    assert complaint["kind"] == Kind.complaint and complaint["first_contact"] == CS
    assert sink.names() == ["accepted"]
    accepted = sink.payloads("accepted")[0]
    assert "E1-2026-000007" in accepted.description and accepted.first_contact == CS


# --- complaint validity ------------------------------------------------------------------------------


async def complaint(uow, ctx):
    [ticket] = await registered(uow, ctx, request(kind=Kind.complaint))
    return ticket


def judge(ticket, valid, staff=CS, reason="理由"):
    return handlers.JudgeValidity(ESTATE, ticket.id, valid, reason, None, staff)


def decide(ticket, confirm, staff="mgr", roles=("estate_director",), note=None):
    return handlers.DecideValidity(ESTATE, ticket.id, confirm, note, staff, frozenset(roles))


async def test_a_valid_judgement_is_final_and_announced(uow, ctx, sink):
    ticket = await complaint(uow, ctx)
    found = await handlers.handle_judge_validity(judge(ticket, True), uow, ctx)
    assert found.ticket.valid is True and found.ticket.validity_state == "valid"
    assert sink.payloads("validity_judged")[0].valid is True
    with pytest.raises(RuleViolation, match="already judged valid") as refused:
        await handlers.handle_judge_validity(judge(ticket, False), uow, ctx)
    assert refused.value.status == 409


async def test_an_invalid_judgement_waits_for_another_managers_confirmation(uow, ctx, sink):
    ticket = await complaint(uow, ctx)
    found = await handlers.handle_judge_validity(judge(ticket, False), uow, ctx)
    assert found.ticket.validity_state == "awaiting_confirmation" and found.ticket.valid is None
    assert "validity_judged" not in sink.names() and found.ticket.notify_owner_by is not None
    with pytest.raises(RuleViolation, match="awaits") as waiting:
        await handlers.handle_judge_validity(judge(ticket, True), uow, ctx)
    assert waiting.value.status == 409
    with pytest.raises(RuleViolation) as not_a_manager:
        await handlers.handle_decide_validity(decide(ticket, True, roles=("customer_service",)), uow, ctx)
    assert not_a_manager.value.status == 403
    with pytest.raises(RuleViolation) as own_judgement:
        await handlers.handle_decide_validity(decide(ticket, True, staff=CS), uow, ctx)
    assert own_judgement.value.status == 403
    confirmed = await handlers.handle_decide_validity(decide(ticket, True), uow, ctx)
    assert (confirmed.ticket.status, confirmed.ticket.valid, confirmed.ticket.confirmed_by) == ("invalid", False, "mgr")
    [announced] = sink.payloads("validity_judged")
    assert announced.valid is False and announced.notify_owner_by == confirmed.ticket.notify_owner_by
    with pytest.raises(RuleViolation) as twice:
        await handlers.handle_decide_validity(decide(ticket, True), uow, ctx)
    assert twice.value.status == 409


async def test_a_rejection_needs_the_managers_reason_and_makes_the_complaint_valid(uow, ctx, sink):
    ticket = await complaint(uow, ctx)
    await handlers.handle_judge_validity(judge(ticket, False), uow, ctx)
    with pytest.raises(RuleViolation) as no_reason:
        await handlers.handle_decide_validity(decide(ticket, False), uow, ctx)
    assert no_reason.value.status == 422
    rejected = await handlers.handle_decide_validity(decide(ticket, False, note="有效"), uow, ctx)
    assert (rejected.ticket.valid, rejected.ticket.validity_reason, rejected.ticket.notify_owner_by) == (True, "有效", None)
    assert rejected.ticket.status == "in_handling" and sink.payloads("validity_judged")[0].valid is True


async def test_only_open_complaints_are_judged_and_confirmation_follows_the_lifecycle(uow, ctx, clock):
    [repair] = await registered(uow, ctx)
    with pytest.raises(RuleViolation, match="only complaints") as not_a_complaint:
        await handlers.handle_judge_validity(judge(repair, True), uow, ctx)
    assert not_a_complaint.value.status == 409
    closed = await complaint(uow, ctx)
    await handlers.HANDLERS["closed"](event(Closed(ticket_id=closed.id, closed_by=CS, reason="r"), clock), uow, ctx)
    with pytest.raises(RuleViolation, match="closed") as is_closed:
        await handlers.handle_judge_validity(judge(closed, True), uow, ctx)
    assert is_closed.value.status == 409
    # Judged invalid after its departments completed: handling ends there too.
    done = await complaint(uow, ctx)
    await handlers.handle_judge_validity(judge(done, False), uow, ctx)
    await handlers.HANDLERS["completed"](event(completed(done, 1, START), clock), uow, ctx)
    assert (await handlers.handle_decide_validity(decide(done, True), uow, ctx)).ticket.status == "invalid"
    # Closed (the owner satisfied) while the judgement waited: the lifecycle refuses invalid.
    late = await complaint(uow, ctx)
    await handlers.handle_judge_validity(judge(late, False), uow, ctx)
    await handlers.HANDLERS["closed"](event(Closed(ticket_id=late.id, closed_by=CS, reason="r"), clock), uow, ctx)
    with pytest.raises(RuleViolation, match="cannot go from closed to invalid") as moved_on:
        await handlers.handle_decide_validity(decide(late, True), uow, ctx)
    assert moved_on.value.status == 409


async def test_a_calendar_change_recounts_owed_notices_only(uow, ctx, directory):
    ticket = await complaint(uow, ctx)
    await handlers.handle_judge_validity(judge(ticket, False), uow, ctx)
    assert await handlers.handle_calendar_change(uow, ctx) == 0  # same calendar, same deadline
    uow.tickets.rows[ticket.id]["notify_owner_by"] = START  # as counted on an older calendar
    assert await handlers.handle_calendar_change(uow, ctx) == 1
    assert uow.tickets.rows[ticket.id]["notify_owner_by"] > START


# --- updates to the owner, signatures, taking over -----------------------------------------------------


async def test_progress_is_logged_and_announced_and_a_closed_request_takes_none(uow, ctx, clock, sink):
    [ticket] = await registered(uow, ctx)
    found = await handlers.handle_give_progress(handlers.GiveProgress(ESTATE, ticket.id, "已派工", "phone", CS), uow, ctx)
    assert [u.note for u in found.updates] == ["已派工"] and sink.payloads("progress_updated")[0].updated_by == CS
    await handlers.HANDLERS["closed"](event(Closed(ticket_id=ticket.id, closed_by=CS, reason="r"), clock), uow, ctx)
    with pytest.raises(RuleViolation, match="closed") as refused:
        await handlers.handle_give_progress(handlers.GiveProgress(ESTATE, ticket.id, "n", "phone", CS), uow, ctx)
    assert refused.value.status == 409


async def test_the_first_update_after_a_confirmed_invalid_judgement_is_the_notice_even_when_closed(uow, ctx, clock):
    ticket = await complaint(uow, ctx)
    await handlers.handle_judge_validity(judge(ticket, False), uow, ctx)
    await handlers.handle_decide_validity(decide(ticket, True), uow, ctx)
    await handlers.HANDLERS["closed"](event(Closed(ticket_id=ticket.id, closed_by=CS, reason="r"), clock), uow, ctx)
    clock.advance(hours=2)
    found = await handlers.handle_give_progress(handlers.GiveProgress(ESTATE, ticket.id, "原因", "phone", CS), uow, ctx)
    assert found.ticket.owner_notified_at == clock.now()
    with pytest.raises(RuleViolation):
        await handlers.handle_give_progress(handlers.GiveProgress(ESTATE, ticket.id, "again", "phone", CS), uow, ctx)


async def test_a_later_signature_is_recorded_once_and_reminders_run_until_then(uow, ctx, clock):
    [phone, walk_in] = await registered(uow, ctx, request(), request(channel="walk_in", owner_signed=True))
    clock.advance(hours=25)
    reminded = await handlers.handle_signature_reminders(uow, ctx)
    assert [t.id for t in reminded] == [phone.id]
    row = uow.tickets.rows[phone.id]
    assert (row["reminders_sent"], row["last_reminded_at"]) == (1, clock.now())
    assert row["next_reminder_at"] == clock.now() + dt.timedelta(hours=24)
    assert await handlers.handle_signature_reminders(uow, ctx) == []
    found = await handlers.handle_record_signature(ESTATE, phone.id, uow, ctx)
    assert (found.ticket.owner_signature, found.ticket.next_reminder_at) == ("signed", None)
    for ticket_id, needle in [(phone.id, "already signed"), (walk_in.id, "already signed")]:
        with pytest.raises(RuleViolation, match=needle) as refused:
            await handlers.handle_record_signature(ESTATE, ticket_id, uow, ctx)
        assert refused.value.status == 409
    [online] = await registered(uow, ctx, request(channel="online"))
    with pytest.raises(RuleViolation, match="owes no owner signature"):
        await handlers.handle_record_signature(ESTATE, online.id, uow, ctx)
    with pytest.raises(RuleViolation) as unknown:
        await handlers.handle_record_signature(ESTATE, "nope", uow, ctx)
    assert unknown.value.status == 404


async def test_the_next_shift_takes_a_night_item_over_and_the_first_contact_stays(uow, ctx):
    night = dt.datetime(2026, 12, 2, 22, 0, tzinfo=SHANGHAI)
    [found] = await handlers.handle_register([request(night, staff=DUTY, duty=True)], uow, ctx)
    item_id = found.handover.id
    with pytest.raises(RuleViolation, match="not the one who registered") as own:
        await handlers.handle_take_over(ESTATE, item_id, DUTY, uow, ctx)
    assert own.value.status == 409
    item, ticket, when = await handlers.handle_take_over(ESTATE, item_id, CS, uow, ctx)
    assert (ticket.current_handler, ticket.first_contact, when) == (CS, DUTY, ctx.now())
    assert uow.tickets.rows[ticket.id]["current_handler"] == CS
    with pytest.raises(RuleViolation, match="already taken over") as twice:
        await handlers.handle_take_over(ESTATE, item_id, HEAD, uow, ctx)
    assert twice.value.status == 409
    with pytest.raises(RuleViolation) as unknown:
        await handlers.handle_take_over(ESTATE, 99, CS, uow, ctx)
    assert unknown.value.status == 404


# --- duty roster and shift handover ------------------------------------------------------------------------


def shifts(uow):
    day = dt.date(2026, 12, 2)
    night = rules.RosterShift(day, "security_control_centre", "night", (DUTY,),
                              dt.datetime(2026, 12, 2, 0, 0, tzinfo=SHANGHAI),
                              dt.datetime(2026, 12, 2, 8, 0, tzinfo=SHANGHAI))
    early = rules.RosterShift(day, "security_control_centre", "early", (CS,), night.ends_at,
                              dt.datetime(2026, 12, 2, 16, 0, tzinfo=SHANGHAI))
    return uow.roster.add_shift(ESTATE, night), uow.roster.add_shift(ESTATE, early)


async def test_a_shift_with_an_open_emergency_cannot_hand_over(uow, ctx):
    night_id, _ = shifts(uow)
    at = dt.datetime(2026, 12, 2, 3, 0, tzinfo=SHANGHAI)
    [urgent] = await registered(uow, ctx, request(at, staff=DUTY, duty=True, repair_class="emergency"))
    with pytest.raises(RuleViolation, match=urgent.id) as refused:
        await handlers.handle_shift_handover(ESTATE, night_id, [], DUTY, {"duty_staff"}, uow, ctx)
    assert refused.value.status == 409


async def test_the_incoming_shift_claims_handed_over_items_and_unclaimed_ones_escalate(uow, ctx, clock):
    night_id, _ = shifts(uow)
    at = dt.datetime(2026, 12, 2, 3, 0, tzinfo=SHANGHAI)
    [open_one] = await registered(uow, ctx, request(at, staff=DUTY, duty=True))
    with pytest.raises(RuleViolation) as not_on_shift:
        await handlers.handle_shift_handover(ESTATE, night_id, [], CS, {"customer_service"}, uow, ctx)
    assert not_on_shift.value.status == 403
    items = await handlers.handle_shift_handover(ESTATE, night_id, [{"note": "钥匙在抽屉", "ticket_id": None}],
                                                 DUTY, {"duty_staff"}, uow, ctx)
    assert [(i.ticket_id, i.note) for i in items] == [(open_one.id, "漏水"), (None, "钥匙在抽屉")]
    assert items[0].claim_due == dt.datetime(2026, 12, 2, 8, 0, tzinfo=SHANGHAI)
    with pytest.raises(RuleViolation, match="already handed over"):
        await handlers.handle_shift_handover(ESTATE, night_id, [], DUTY, {"duty_staff"}, uow, ctx)
    with pytest.raises(RuleViolation) as outgoing:
        await handlers.handle_claim_item(ESTATE, items[0].id, DUTY, {"duty_staff"}, uow, ctx)
    assert outgoing.value.status == 403
    claimed = await handlers.handle_claim_item(ESTATE, items[0].id, CS, {"customer_service"}, uow, ctx)
    assert claimed.claimed_by == CS
    with pytest.raises(RuleViolation) as twice:
        await handlers.handle_claim_item(ESTATE, items[0].id, CS, {"customer_service"}, uow, ctx)
    assert twice.value.status == 409
    # START is 10:00 local, after the early shift's start: the other item is overdue.
    [(row, role)] = await handlers.handle_escalations(uow, ctx)
    assert row.id == items[1].id and role == "customer_service_supervisor"
    assert uow.roster.handover_items[1].escalated_at == clock.now()
    assert await handlers.handle_escalations(uow, ctx) == []  # once


async def test_a_duty_log_line_needs_someone_on_the_shift(uow, ctx):
    night_id, _ = shifts(uow)
    entry = await handlers.handle_duty_log(ESTATE, night_id, "巡查正常", DUTY, {"duty_staff"}, uow, ctx)
    assert (entry["by"], entry["at"]) == (DUTY, START)
    with pytest.raises(RuleViolation) as refused:
        await handlers.handle_duty_log(ESTATE, night_id, "x", CS, {"customer_service"}, uow, ctx)
    assert refused.value.status == 403
    with pytest.raises(RuleViolation) as unknown:
        await handlers.handle_duty_log(ESTATE, 99, "x", DUTY, {"duty_staff"}, uow, ctx)
    assert unknown.value.status == 404


# --- a request another service decided (callback's attitude complaint) ------------------------------------


async def test_a_decided_request_is_registered_in_the_consumers_transaction_once_per_key(uow, ctx, sink):
    registrar = handlers.TransactionRegistrar(uow, ctx)
    complaint = {"kind": "complaint", "channel": "phone", "category": "staff_attitude", "description": "态度差",
                 "about_role": "company_staff", "reply_method": "phone", "client_request_id": "attitude-c1"}
    first = await registrar.register(ESTATE, complaint, CS)
    assert await registrar.register(ESTATE, complaint, CS) == first
    ticket = uow.tickets.rows[first]
    assert (ticket["first_contact"], ticket["first_contact_name"], ticket["form_number"]) == (CS, "客服一",
                                                                                               "E1-2026-000001")
    assert sink.names() == ["accepted"]
    with pytest.raises(RuleViolation) as unknown:
        await registrar.register("nowhere", complaint, CS)
    assert unknown.value.status == 404
    with pytest.raises(RuleViolation) as no_building:
        await registrar.register(ESTATE, {**complaint, "client_request_id": "x", "building": "9"}, CS)
    assert no_building.value.status == 422
