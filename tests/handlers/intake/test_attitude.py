"""Intake's side of the attitude complaint (issue 15 leftover): the event callback raises
becomes a valid-ground complaint about company staff, registered once, with the right
first-contact owner. RULES §1 Complaint validity, §2 Escalation by subject."""

from __future__ import annotations

import pytest

from services.intake.attitude import first_contact_of, handle_attitude_complaint_raised
from shared.attitude import ABOUT_ROLE, ATTITUDE_CATEGORY, attitude_complaint_request
from shared.events import AttitudeComplaintRaised, ReplyMethod, make_event
from shared.policy import DEFAULT_POLICY
from tests.handlers.conftest import ESTATE, START


def raised(**overrides) -> AttitudeComplaintRaised:
    values = dict(ticket_id="t1", callback_id="cb1", round=2, form_number="E1-2026-000007", unit="1-1-101",
                  owner_id="o1", reply_method=ReplyMethod.phone, answered_by=ReplyMethod.phone,
                  recorded_by=f"{ESTATE}-cs01", first_contact=f"{ESTATE}-head", departments=["engineering"],
                  suggestions="维修工态度恶劣", client_request_id="attitude-cb1")
    return AttitudeComplaintRaised(**{**values, **overrides})


class Registrar:
    """Intake's registration as the consumer sees it: one ticket per client_request_id."""

    def __init__(self):
        self.tickets: dict[str, tuple[str, dict, str]] = {}

    async def register(self, estate: str, request: dict, first_contact: str) -> str:
        key = request["client_request_id"]
        self.tickets.setdefault(key, (estate, request, first_contact))
        return f"ticket-{key}"


def test_the_request_is_a_complaint_about_company_staff():
    request = attitude_complaint_request(raised())
    assert (request["kind"], request["category"], request["about_role"]) == ("complaint", ATTITUDE_CATEGORY, ABOUT_ROLE)
    # RULES §2 Escalation by subject: such a complaint starts at the estate director.
    assert ABOUT_ROLE in DEFAULT_POLICY.escalation.subject_roles
    assert (request["unit"], request["owner_id"], request["reply_method"]) == ("1-1-101", "o1", "phone")
    assert "E1-2026-000007" in request["description"] and "维修工态度恶劣" in request["description"]
    assert request["client_request_id"] == "attitude-cb1"


@pytest.mark.parametrize("answered_by, channel", [
    (ReplyMethod.phone, "phone"), (ReplyMethod.visit, "relayed_by_employee"), (ReplyMethod.letter, "letter"),
    (ReplyMethod.online, "online")])
def test_the_channel_is_how_the_owner_answered(answered_by, channel):
    assert attitude_complaint_request(raised(answered_by=answered_by))["channel"] == channel


def test_the_request_passes_intakes_own_validation():
    from services.intake.contracts import RequestIn
    from services.intake.rules import check_signature_at_intake

    body = RequestIn(**attitude_complaint_request(raised(reply_method=ReplyMethod.none, answered_by=ReplyMethod.visit,
                                                          suggestions="x" * 5000)))
    assert body.reply_method is ReplyMethod.phone  # someone must be able to call the owner back
    # No signature can come with an event: every channel used owes it later at most.
    check_signature_at_intake(body.channel, False, DEFAULT_POLICY, reply_method=body.reply_method)


def test_first_contact_is_who_recorded_it_or_online_the_original_first_contact():
    assert first_contact_of(raised()) == f"{ESTATE}-cs01"
    online = raised(answered_by=ReplyMethod.online, answered_by_owner=True, recorded_by="owner:o1")
    assert first_contact_of(online) == f"{ESTATE}-head"


async def test_a_redelivered_event_registers_one_complaint(ctx):
    registrar = Registrar()
    event = make_event(raised(), estate=ESTATE, actor=f"{ESTATE}-cs01", source="callback", time=START)
    first = await handle_attitude_complaint_raised(event, registrar, ctx)
    again = await handle_attitude_complaint_raised(event, registrar, ctx)
    assert first == again and list(registrar.tickets) == ["attitude-cb1"]
    assert registrar.tickets["attitude-cb1"][0] == ESTATE
