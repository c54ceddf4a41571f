"""The attitude complaint an owner's callback answers raise, as intake registers it (issue
15 leftover; issue 11: one rule in one place). Callback decides and emits
`attitude_complaint_raised`; intake's consumer registers this request from it, and
callback's record route hands the same request to its client (idempotent on
`client_request_id`, so both paths give one ticket).

What RULES.md says: staff attitude is itself a ground for a *valid* complaint (RULES §1
Complaint validity; 002 §4.2.2); a complaint about company staff starts its escalation at
the estate director (RULES §2 Escalation by subject; 000 §五.2(2)), hence
`about_role="company_staff"`; the owner is answered by the method chosen for the callback
(RULES §3 Who).
"""

from __future__ import annotations

from shared.events import AttitudeComplaintRaised, Channel, Kind, ReplyMethod
from shared.limits import DESCRIPTION_MAX

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


def attitude_complaint_request(raised: AttitudeComplaintRaised) -> dict:
    """The complaint as intake's registration takes it (intake's RequestIn fields)."""
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
