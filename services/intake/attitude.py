"""Intake registers the attitude complaint callback decided (issue 15 leftover; issue 11
"decisions leave as facts"): callback emits `attitude_complaint_raised` when an owner
answering a callback (recorded by the desk, or answered on the owners' page) is not
satisfied with the staff's attitude; intake turns it into a new complaint, built by
`shared.attitude.attitude_complaint_request` (what RULES.md says about it is there).

Its first-contact owner 首问 is the staff member who recorded the callback; when the owner
answered online, the original ticket's first-contact owner, who already tracks this
owner's request (RULES §1 First-contact responsibility).

Idempotent: the request carries the event's `client_request_id` (`attitude-<callback id>`,
the key the callback record route also hands to clients), so a redelivered event or a
client submitting the same request returns the first ticket.

Wiring (left to the merge, intake is being restructured): register
`handle_attitude_complaint_raised` as intake's consumer of `attitude_complaint_raised`,
with a `Registrar` that runs intake's registration command in the consumer's transaction.
"""

from __future__ import annotations

from typing import Protocol

from shared.attitude import attitude_complaint_request
from shared.events import AttitudeComplaintRaised, CloudEvent
from shared.uow import HandlerContext


class Registrar(Protocol):
    async def register(self, estate: str, request: dict, first_contact: str) -> str:
        """Register `request` (intake's RequestIn fields) with `first_contact` as 首问;
        returns the ticket id (the first one again for a known client_request_id)."""


def first_contact_of(raised: AttitudeComplaintRaised) -> str:
    """The staff member who recorded the callback; online, the original ticket's 首问."""
    if raised.answered_by_owner and raised.first_contact:
        return raised.first_contact
    return raised.recorded_by


async def handle_attitude_complaint_raised(event: CloudEvent, registrar: Registrar, ctx: HandlerContext) -> str:
    """Register the attitude complaint callback decided; returns the new (or first) ticket id."""
    raised: AttitudeComplaintRaised = event.payload()
    return await registrar.register(event.estate, attitude_complaint_request(raised), first_contact_of(raised))
