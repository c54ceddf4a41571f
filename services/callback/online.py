"""Owners answer their callback online (issue 15; 002 §4.4.2 c, d): the questions of a
satisfaction callback the owner chose to get online, answered on the owners' page with
an owner token (shared.owner_auth). The answers go through the same handler as a callback
the desk records (`handlers.handle_record`): "not satisfied" sends the form round again,
and the `callback_done` event counts the same in every report.

An owner sees and answers only the callbacks of their unit's requests (the unit is what
`accepted` said); another unit's ticket is "not found"."""

from __future__ import annotations

from fastapi import Depends
from pydantic import BaseModel, Field

from services.callback import views
from services.callback.api import RecordIn, record_answers
from services.callback.app import service, unit_of_work
from services.callback.rules import CallbackPurpose
from shared.errors import RuleViolation
from shared.events import ReplyMethod
from shared.limits import Contract
from shared.owner_auth import OwnerPrincipal, owner


class OwnerCallbacksOut(BaseModel):
    ticket_id: str
    form_number: str | None
    status: str = Field(description="in_handling / awaiting_callback / awaiting_verdict / closed")
    current_round: int
    callbacks: list[dict] = Field(description="The satisfaction callbacks of every round, oldest first; "
                                              "`answerable` marks the one waiting for the owner's answers")


class OwnerAnswersIn(Contract):
    """002 §4.4.2 d: handled in time? satisfied with the result? with the attitude? suggestions."""

    handled_in_time: bool
    result_satisfied: bool
    attitude_satisfied: bool
    suggestions: str = Field("", max_length=5000)


class OwnerAnswerOut(BaseModel):
    outcome: str | None = Field(description="closed / reopened, or None when the answers only inform")
    round: int | None


@service.http.get("/owner/estates/{estate}/tickets/{ticket_id}/callbacks", response_model=OwnerCallbacksOut,
                  tags=["owners' self-service"])
async def owner_callbacks(estate: str, ticket_id: str, who: OwnerPrincipal = Depends(owner)) -> OwnerCallbacksOut:
    """The satisfaction callbacks of the owner's request (only their unit's)."""
    ctx = service.context
    async with service.db.transaction() as session:
        uow = unit_of_work(session)
        ticket = await uow.tickets.get(estate, ticket_id)
        if ticket is None or ticket.unit != who.unit:
            raise RuleViolation(f"no request {ticket_id!r} of your unit", status=404, zh="未找到本户的该报事")
        callbacks = await uow.callbacks.of_ticket(ticket_id, purpose=CallbackPurpose.satisfaction.value)
    tz, now = ctx.timezone(estate), ctx.now()
    return OwnerCallbacksOut(
        ticket_id=ticket_id, form_number=ticket.form_number, status=ticket.status.value,
        current_round=ticket.current_round,
        callbacks=[views.owner_callback_view(c, tz, now, ticket.form_number)
                   for c in sorted(callbacks, key=lambda c: (c.round, c.due_at))])


@service.http.post("/owner/estates/{estate}/callbacks/{callback_id}/answer", response_model=OwnerAnswerOut,
                   tags=["owners' self-service"])
async def answer_callback(estate: str, callback_id: str, body: OwnerAnswersIn,
                          who: OwnerPrincipal = Depends(owner)) -> OwnerAnswerOut:
    """Answer the callback of one's own request online. Satisfied closes it; not satisfied
    sends it back to the handling departments for another round, as a desk callback does."""
    result = await record_answers(
        estate, callback_id, RecordIn(**body.model_dump(), owner_confirmed=True, method=ReplyMethod.online),
        who.actor, answered_by_owner=True, owner_unit=who.unit)
    outcome = result["outcome"]
    return OwnerAnswerOut(outcome=outcome["event"] if outcome else None, round=outcome["round"] if outcome else None)


service.owner_routes |= {("POST", "/owner/estates/{estate}/callbacks/{callback_id}/answer")}
