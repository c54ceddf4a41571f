"""Intake's staff API for requests: registration (the caller becomes the first-contact
owner 首问), reading and listing requests, complaint validity and its confirmation,
updates given to owners, later signatures (补签), and the night-shift handover list.
Routes parse, authorise (`service.write_roles` in app.py, `require_estate`), open the
transaction, build the unit of work, call a handler (handlers.py) and map the result.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from services.intake import handlers, rules
from services.intake.app import service
from services.intake.desk import RegistrationDesk
from services.intake.contracts import RequestIn
from services.intake.domain import Registration, check_request
from services.intake.handlers import TicketView
from services.intake.uow import IntakeUnitOfWork
from shared.auth import Principal
from shared.errors import RuleViolation
from shared.events import Kind, ReplyMethod
from shared import limits
from shared.limits import Contract, Money, RowId
from shared.lifecycle import TicketState
from shared.service import LocalTime, known_estate, require_estate


class SignatureOut(BaseModel):
    requirement: str = Field(description="signed / later (补签 owed) / not_required")
    signed_at: LocalTime | None
    reminders_sent: int
    last_reminded_at: LocalTime | None
    next_reminder_at: LocalTime | None


class ValidityOut(BaseModel):
    valid: bool = Field(description="The judgement (while awaiting confirmation: the judge's proposal, invalid)")
    state: str = Field("valid", description="valid / awaiting_confirmation / confirmed / rejected")
    reason: str
    judged_by: str
    confirmed_by: str | None = Field(description="The manager who confirmed or rejected an invalid judgement")
    judged_at: LocalTime
    decided_at: LocalTime | None = None
    notify_owner_by: LocalTime | None
    notify_provisional: bool
    owner_notified_at: LocalTime | None
    notice_overdue: bool
    notice_late: bool = Field(False, description="The owner heard the reason after the deadline (stays marked)")


class ProgressOut(BaseModel):
    note: str
    method: str
    updated_by: str
    updated_at: LocalTime


class HandoverOut(BaseModel):
    id: int = Field(description="The handover item's id (for .../handover/{item_id}/take-over)")
    registered_by: str
    registered_at: LocalTime
    handover_due: LocalTime
    taken_over_by: str | None
    taken_over_at: LocalTime | None


class TicketOut(BaseModel):
    id: str
    estate: str
    form_number: str
    kind: str
    channel: str
    category: str
    status: str
    round: int
    first_contact: str = Field(description="首问首接责任人: fixed for the request's whole life")
    first_contact_name: str | None
    current_handler: str | None = None
    received_at: LocalTime
    description: str
    repair_class: str | None = None
    severity: str | None = None
    urgency: str | None = None
    accepted_by: str | None = None
    building: str | None = None
    unit: str | None = None
    location: str | None = None
    occurred_at: LocalTime | None = None
    cause: str | None = None
    people: list[str] = Field(default_factory=list)
    attachments: list[str] = Field(default_factory=list)
    owner_id: str | None = None
    anonymous: bool = False
    about_role: str | None = None
    owner_loss_cny: Money | None = None
    reply_method: str | None = None
    reply_agreed_by: LocalTime | None = None
    appointment_at: LocalTime | None = None
    off_hours: bool = False
    signature: SignatureOut | None = None
    validity: ValidityOut | None = None
    progress_updates: list[ProgressOut] = Field(default_factory=list)
    handover: HandoverOut | None = None
    completed_at: LocalTime | None = None
    closed_at: LocalTime | None = None


class HandoverItemOut(HandoverOut):
    ticket_id: str
    form_number: str
    kind: str
    description: str


class HandoverListOut(BaseModel):
    estate: str
    complete: bool = Field(description="False while any item is unclaimed")
    unclaimed: int
    items: list[HandoverItemOut]


def ticket_out(found: TicketView, now: dt.datetime | None = None) -> TicketOut:
    """A ticket with its updates and handover item as the API shows it."""
    data = found.ticket.columns()
    data["signature"] = SignatureOut(
        requirement=data["owner_signature"], signed_at=data.get("signed_at"),
        reminders_sent=data.get("reminders_sent") or 0, last_reminded_at=data.get("last_reminded_at"),
        next_reminder_at=data.get("next_reminder_at"),
    )
    state = data.get("validity_state")
    if data.get("valid") is not None or state == rules.ValidityState.awaiting_confirmation:
        now = now or service.clock.now()
        notice_owed = state in (rules.ValidityState.awaiting_confirmation, rules.ValidityState.confirmed) or (
            state is None and data["valid"] is False)
        data["validity"] = ValidityOut(
            valid=bool(data["valid"]), state=state or ("valid" if data["valid"] else "confirmed"),
            reason=data["validity_reason"], judged_by=data["judged_by"],
            confirmed_by=data["confirmed_by"], judged_at=data["judged_at"], decided_at=data.get("validity_decided_at"),
            notify_owner_by=data["notify_owner_by"],
            notify_provisional=data["notify_provisional"], owner_notified_at=data["owner_notified_at"],
            notice_overdue=bool(notice_owed and data["owner_notified_at"] is None and data["notify_owner_by"]
                                and data["notify_owner_by"] < now),
            notice_late=rules.notice_late(data["notify_owner_by"], data["owner_notified_at"]),
        )
    else:
        data["validity"] = None
    data["progress_updates"] = [ProgressOut(note=u.note, method=u.method, updated_by=u.updated_by,
                                            updated_at=u.updated_at) for u in found.updates]
    handover = found.handover
    data["handover"] = (
        HandoverOut(id=handover.id, registered_by=handover.registered_by, registered_at=handover.registered_at,
                    handover_due=handover.handover_due, taken_over_by=handover.taken_over_by,
                    taken_over_at=handover.taken_over_at)
        if handover is not None else None
    )
    return TicketOut.model_validate(data)


def _uow(session) -> IntakeUnitOfWork:
    return IntakeUnitOfWork(session, service.emit)


registration_desk = RegistrationDesk(service)


# --- requests -------------------------------------------------------------------------------------


async def register(estate: str, body: RequestIn, who: Principal) -> TicketOut:
    """Register one request through the registration desk (also what an owner's online
    request becomes when a clerk opens it). A `client_request_id` registered before
    answers with the first ticket."""
    known_estate(service, estate)
    now = service.clock.now()
    facts = body.model_dump()
    check_request(facts, estate, service.directory.estate(estate).buildings, now)
    command = Registration(estate=estate, facts=facts, staff_id=who.staff_id, staff_name=who.name,
                           duty_staff=who.has_role("duty_staff"), received_at=now,
                           client_request_id=body.client_request_id)
    # Refuse a walk-in without the owner's signature here, before it joins a batch.
    rules.check_signature_at_intake(body.channel, body.owner_signed, service.directory.policy_for(estate),
                                    anonymous=body.anonymous, reply_method=body.reply_method)
    try:
        found = await registration_desk.register(command, handlers.registration_year(now, service.context, estate))
    except IntegrityError:
        # Another replica registered the same client_request_id first: the same id
        # always answers with the first ticket.
        if not body.client_request_id:
            raise
        async with service.db.transaction() as session:
            found = await handlers.view_by_client_request(estate, body.client_request_id, _uow(session))
        if found is None:
            raise
    return ticket_out(found, now)


@service.http.post("/estates/{estate}/requests", status_code=201, response_model=TicketOut, tags=["requests"])
async def register_request(estate: str, body: RequestIn, who: Principal = Depends(require_estate)) -> TicketOut:
    """Register a request; the caller becomes its first-contact owner for its whole life.

    Walk-ins sign now (`owner_signed`); phone and letter requests are signed later and
    reminded until then. Duty staff registering outside office hours put the request on
    the shift-handover list."""
    return await register(estate, body, who)


@service.http.get("/estates/{estate}/requests/{ticket_id}", response_model=TicketOut, tags=["requests"])
async def get_request(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> TicketOut:
    """One request with its first-contact owner, status, round, validity, signature state,
    handover and the updates given to the owner."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        return ticket_out(await handlers.ticket_view(estate, ticket_id, _uow(session)))


# A countersign-form number as rules.form_number prints it: the estate, a 4-digit year, the sequence.
FORM_NUMBER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*-[0-9]{4}-[0-9]+$"


@service.http.get("/estates/{estate}/requests", response_model=list[TicketOut], tags=["requests"])
async def list_requests(
    estate: str,
    first_contact: str | None = Query(None, max_length=64, description="Requests this employee owns as first contact"),
    status: Literal["open", "in_handling", "completed", "closed", "invalid"] | None = Query(
        None, description="open: in handling (shared.lifecycle's in_handling)"),
    kind: Kind | None = Query(None, description="Only requests of this kind (the console's complaint list)"),
    form_number: str | None = Query(
        None, min_length=1, max_length=limits.FORM_NUMBER_MAX, pattern=FORM_NUMBER_PATTERN,
        description="The request with this countersign-form number (ESTATE-YEAR-SEQUENCE, exactly as printed), "
        "at most one, however old: the ticket page's search"),
    signature: Literal["pending"] | None = Query(None, description="pending: a later signature (补签) is still owed"),
    notice: Literal["overdue"] | None = Query(
        None, description="overdue: invalid complaints whose owner was not told the reason in time"),
    limit: int = Query(200, ge=1, le=1000),
    who: Principal = Depends(require_estate),
) -> list[TicketOut]:
    """Requests of the estate, newest first; a first-contact owner sees the state of every
    request they own."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        found = await _uow(session).tickets.list_for_estate(
            estate, first_contact=first_contact, status=TicketState.in_handling if status == "open" else status,
            kind=kind, form_number=form_number, signature_pending=signature == "pending",
            notice_overdue_at=now if notice == "overdue" else None, limit=limit)
    return [ticket_out(TicketView(ticket), now) for ticket in found]


class ValidityIn(Contract):
    valid: bool
    reason: str = Field(min_length=1, max_length=5000)
    confirmed_by: str | None = Field(None, max_length=64, description="The manager confirming an invalid judgement")


@service.http.post("/estates/{estate}/requests/{ticket_id}/validity", response_model=TicketOut, tags=["requests"])
async def judge_validity(estate: str, ticket_id: str, body: ValidityIn, who: Principal = Depends(require_estate)) -> TicketOut:
    """Judge a complaint valid or invalid, with the reason. Valid is final at once. Invalid
    waits as "awaiting_confirmation" (a `confirmed_by` in the body confirms nothing) until
    a manager confirms or rejects it with their own sign-in (POST .../validity/confirmation);
    the owner must hear the reason within the policy's working days of this judgement."""
    known_estate(service, estate)
    command = handlers.JudgeValidity(estate, ticket_id, body.valid, body.reason, body.confirmed_by, who.staff_id)
    async with service.db.transaction() as session:
        return ticket_out(await handlers.handle_judge_validity(command, _uow(session), service.context))


class ConfirmationIn(Contract):
    confirm: bool = Field(description="true: confirmed invalid (handling ends); false: rejected (the complaint is valid)")
    note: str | None = Field(None, max_length=5000, description="The manager's reason, required to reject")


@service.http.post("/estates/{estate}/requests/{ticket_id}/validity/confirmation", response_model=TicketOut,
                   tags=["requests"])
async def confirm_validity(estate: str, ticket_id: str, body: ConfirmationIn,
                           who: Principal = Depends(require_estate)) -> TicketOut:
    """The manager, signed in as themselves, confirms or rejects an invalid judgement
    (RULES §1 Complaint validity). Only then is `validity_judged` announced; the owner's
    notice deadline still counts from the judgement."""
    known_estate(service, estate)
    command = handlers.DecideValidity(estate, ticket_id, body.confirm, body.note, who.staff_id, frozenset(who.roles))
    async with service.db.transaction() as session:
        return ticket_out(await handlers.handle_decide_validity(command, _uow(session), service.context))


class ProgressIn(Contract):
    note: str = Field(min_length=1, max_length=5000)
    method: ReplyMethod = ReplyMethod.phone


@service.http.post("/estates/{estate}/requests/{ticket_id}/progress", status_code=201, response_model=TicketOut,
                   tags=["requests"])
async def add_progress(estate: str, ticket_id: str, body: ProgressIn, who: Principal = Depends(require_estate)) -> TicketOut:
    """Log an update given to the owner (long-running complaints need two a week). For
    an invalid complaint, the first update after the judgement is the notice of why."""
    known_estate(service, estate)
    if body.method is ReplyMethod.none:
        raise RuleViolation("an update given to the owner needs a method (phone, visit, letter or online)", status=422)
    command = handlers.GiveProgress(estate, ticket_id, body.note, body.method, who.staff_id)
    async with service.db.transaction() as session:
        return ticket_out(await handlers.handle_give_progress(command, _uow(session), service.context))


class SignatureIn(Contract):
    signed_by_owner: bool


@service.http.post("/estates/{estate}/requests/{ticket_id}/signature", response_model=TicketOut, tags=["requests"])
async def record_signature(estate: str, ticket_id: str, body: SignatureIn, who: Principal = Depends(require_estate)) -> TicketOut:
    """The owner supplied the later signature (补签); reminders stop."""
    known_estate(service, estate)
    if not body.signed_by_owner:
        raise RuleViolation("record the signature once the owner has signed (signed_by_owner: true)", status=422)
    async with service.db.transaction() as session:
        return ticket_out(await handlers.handle_record_signature(estate, ticket_id, _uow(session), service.context))


# --- night-shift handover ---------------------------------------------------------------------


@service.http.get("/estates/{estate}/handover", response_model=HandoverListOut, tags=["handover"])
async def get_handover(estate: str, include_taken: bool = Query(False), who: Principal = Depends(require_estate)) -> HandoverListOut:
    """What the duty staff registered off hours, for the next shift to take over item by item."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        uow = _uow(session)
        rows = await uow.handovers.list_for_estate(estate, include_taken)
        unclaimed = await uow.handovers.count_unclaimed(estate)
    items = [HandoverItemOut(id=r.id, ticket_id=r.ticket_id, form_number=r.form_number, kind=r.kind,
                             description=r.description, registered_by=r.registered_by, registered_at=r.registered_at,
                             handover_due=r.handover_due, taken_over_by=r.taken_over_by, taken_over_at=r.taken_over_at)
             for r in rows]
    return HandoverListOut(estate=estate, complete=unclaimed == 0, unclaimed=unclaimed, items=items)


@service.http.post("/estates/{estate}/handover/{item_id}/take-over", response_model=HandoverItemOut, tags=["handover"])
async def take_over(estate: str, item_id: RowId, who: Principal = Depends(require_estate)) -> HandoverItemOut:
    """The next shift takes an item over explicitly; the first-contact owner stays."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        item, ticket, now = await handlers.handle_take_over(estate, item_id, who.staff_id, _uow(session), service.context)
    return HandoverItemOut(id=item.id, ticket_id=item.ticket_id, form_number=ticket.form_number, kind=ticket.kind,
                           description=ticket.record["description"], registered_by=item.registered_by,
                           registered_at=item.registered_at, handover_due=item.handover_due,
                           taken_over_by=ticket.current_handler, taken_over_at=now)
