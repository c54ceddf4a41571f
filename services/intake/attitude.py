"""Intake registers the attitude complaint callback decided (issue 15 leftover; issue 11
"decisions leave as facts"): callback emits `attitude_complaint_raised` when an owner
answering a callback (recorded by the desk, or answered on the owners' page) is not
satisfied with the staff's attitude; intake turns it into a new complaint.

What RULES.md says about it: staff attitude is itself a ground for a *valid* complaint
(RULES §1 Complaint validity; 002 §4.2.2), and a complaint about company staff starts its
escalation at the estate director (RULES §2 Escalation by subject; 000 §五.2(2)), hence
`about_role="company_staff"`. The owner is called back on it by the method they chose for
the callback (RULES §3 Who). Its first-contact owner 首问 is the staff member who
recorded the callback; when the owner answered online, the original ticket's first-contact
owner, who already tracks this owner's request (RULES §1 First-contact responsibility).

Idempotent: the request carries the event's `client_request_id` (`attitude-<callback id>`,
the key the callback record route also hands to clients), so a redelivered event or a
client submitting the same request returns the first ticket.

Wiring (left to the merge, intake is being restructured): register
`handle_attitude_complaint_raised` as intake's consumer of `attitude_complaint_raised`,
with a `Registrar` that runs intake's registration command in the consumer's transaction.
"""

from __future__ import annotations

from typing import Protocol

from shared.events import AttitudeComplaintRaised, Channel, CloudEvent, Kind, ReplyMethod
from shared.limits import DESCRIPTION_MAX
from shared.uow import HandlerContext

ATTITUDE_CATEGORY = "staff_attitude"
# RULES §2 Escalation by subject: a complaint about company staff (policy.escalation.subject_roles).
ABOUT_ROLE = "company_staff"

# How the owner gave the answers is the channel the complaint came in by (RULES §1 Channels).
# Said during a callback visit, it is relayed by the visiting employee: the owner signs
# later (a walk-around-visit channel would need the signature now, which no event carries).
CHANNEL_OF_ANSWER = {
    ReplyMethod.phone: Channel.phone,
    ReplyMethod.visit: Channel.relayed_by_employee,
    ReplyMethod.letter: Channel.letter,
    ReplyMethod.online: Channel.online,
}


class Registrar(Protocol):
    async def register(self, estate: str, request: dict, first_contact: str) -> str:
        """Register `request` (intake's RequestIn fields) with `first_contact` as 首问;
        returns the ticket id (the first one again for a known client_request_id)."""


def attitude_complaint_request(raised: AttitudeComplaintRaised) -> dict:
    """The complaint as intake's registration takes it (RequestIn's fields)."""
    about = raised.form_number or raised.ticket_id
    description = f"回访时业主对工作人员的服务态度不满意（原报事单 {about}，第 {raised.round} 轮回访）"
    if raised.departments:
        description += f"；处理部门：{'、'.join(raised.departments)}"
    if raised.suggestions:
        description += f"。业主意见：{raised.suggestions}"
    reply = raised.reply_method if raised.reply_method is not ReplyMethod.none else ReplyMethod.phone
    request = {
        "kind": Kind.complaint.value,
        "channel": CHANNEL_OF_ANSWER.get(raised.answered_by, Channel.phone).value,
        "category": ATTITUDE_CATEGORY,
        "description": description[:DESCRIPTION_MAX],
        "about_role": ABOUT_ROLE,
        "reply_method": reply.value,
        "client_request_id": raised.client_request_id,
    }
    if raised.unit:
        request["unit"] = raised.unit
    if raised.owner_id:
        request["owner_id"] = raised.owner_id
    return request


def first_contact_of(raised: AttitudeComplaintRaised) -> str:
    """The staff member who recorded the callback; online, the original ticket's 首问."""
    if raised.answered_by_owner and raised.first_contact:
        return raised.first_contact
    return raised.recorded_by


async def handle_attitude_complaint_raised(event: CloudEvent, registrar: Registrar, ctx: HandlerContext) -> str:
    """Register the attitude complaint callback decided; returns the new (or first) ticket id."""
    raised: AttitudeComplaintRaised = event.payload()
    return await registrar.register(event.estate, attitude_complaint_request(raised), first_contact_of(raised))
