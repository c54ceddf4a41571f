"""What a request would get if registered now (issue 16, the console's Register screen):
the departments the form would go to and the clocks that would start - reply deadline,
arrival, acknowledgement, repair slip, tracking - computed by the same rules dispatch
applies when the request arrives (`rules.route`, `rules.start_round_clocks`), so the
console never re-derives a deadline in JavaScript. Nothing is stored.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from services.dispatch import rules
from services.dispatch.app import service
from services.dispatch.handlers import route
from services.dispatch.rules import TicketFacts
from shared import limits
from shared.auth import Principal
from shared.events import AcceptedBy, Kind, ReplyMethod, Severity, Urgency
from shared.limits import Contract, Instant, Money
from shared.service import LocalTime, known_estate, require_estate


class PreviewIn(Contract):
    kind: Kind
    category: str = Field("general", min_length=1, max_length=limits.CODE_MAX)
    repair_class: str | None = Field(None, max_length=limits.CODE_MAX)
    severity: Severity = Severity.not_serious
    urgency: Urgency = Urgency.not_urgent
    accepted_by: AcceptedBy = AcceptedBy.department
    building: str | None = Field(None, max_length=limits.CODE_MAX)
    location: str | None = Field(None, max_length=200)
    reply_method: ReplyMethod = ReplyMethod.phone
    reply_agreed_by: Instant | None = None
    appointment_at: Instant | None = None
    about_role: str | None = Field(None, max_length=limits.CODE_MAX)
    owner_loss_cny: Money | None = None


class PreviewClockOut(BaseModel):
    clock: str = Field(description="reply / acknowledge / arrival / repair_slip_return / tracking")
    department: str | None
    due_at: LocalTime
    provisional: bool = Field(description="The company calendar does not reach the due date yet")


class PreviewOut(BaseModel):
    now: LocalTime = Field(description="The services' clock: when the clocks would start")
    departments: list[str]
    clocks: list[PreviewClockOut]
    nonconformity: bool = Field(
        description="The owner's loss is above the policy's threshold (RULES §2 Economic loss)")


@service.http.get("/estates/{estate}/clock-preview", response_model=PreviewOut, tags=["forms"])
async def clock_preview(estate: str, body: Annotated[PreviewIn, Query()],
                        who: Principal = Depends(require_estate)) -> PreviewOut:
    """The departments and deadlines a request with these facts would get if registered
    now (RULES §2 Clocks, Departments). 422 with the reason when the rules refuse the facts
    (e.g. an agreed reply time already past)."""
    known_estate(service, estate)
    known = service.directory.estate(estate)
    policy = service.directory.policy_for(estate)
    now = service.clock.now()
    facts = TicketFacts(**body.model_dump())
    departments = route(facts, known)
    deadlines = rules.start_round_clocks(facts, departments, now, policy, service.directory.calendar_for(estate), 1)
    return PreviewOut(now=now, departments=departments,
                      nonconformity=rules.needs_nonconformity(body.owner_loss_cny, policy),
                      clocks=[PreviewClockOut(clock=str(d.clock), department=d.department, due_at=d.due_at,
                                              provisional=d.provisional) for d in deadlines])
