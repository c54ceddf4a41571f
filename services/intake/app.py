"""Intake: every request from every channel is registered here, gets its countersign-form
number and its first-contact owner, and is announced as `accepted`. Intake also keeps the
night shift's handover list, complaint validity, progress updates to owners, the owners
and units of each estate (with masked personal numbers) and the directory API through
which authorised roles change policies, the company calendar and estate definitions.

Statuses shown here: open (registered, in handling) → completed (every department signed
back) → closed; invalid (a complaint judged invalid; handling ended). A reopened request
is open again in its new round.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Literal

import sqlalchemy as sa
from fastapi import Body, Depends, Query
from prometheus_client import Counter
from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import rules, store
from shared.auth import STAFF_ROLES, Principal
from shared.calendar import CalendarOverrides
from shared.directory import Company, Estate, publish_directory
from shared.errors import RuleViolation
from shared.events import (
    AcceptedBy, Accepted, Channel, CloudEvent, Kind, ProgressUpdated, RepairClass, ReplyMethod, Severity, Urgency,
)
from shared import limits
from shared.events import ValidityJudged
from shared.limits import Category, Contract, Day, Identifier, Instant, Money, RowId, UnitPart, text
from shared.calendar_watch import on_calendar_change
from shared.lifecycle import TicketState
from shared.periods import canonical_category
from shared.policy import DEFAULT_POLICY, Policy, PolicyOverrides, effective_policy, overrides_data
from shared.service import LocalTime, Service, create_http_app, known_estate, principal, require_estate

log = logging.getLogger("estatedesk.intake")

service = Service(
    "intake", store.metadata, title="Intake 受理",
    description="Registers owners' requests from every channel; first-contact responsibility; countersign-form "
    "numbers; night-shift handover; complaint validity; progress updates; owners and units; the directory API.",
)

T = store.tickets
REGISTRAR_ROLES = ("customer_service", "customer_service_supervisor", "duty_staff", "department_staff",
                   "department_head", "estate_director")
JUDGE_ROLES = ("customer_service", "customer_service_supervisor", "estate_director", "quality_manager")
OWNER_DESK_ROLES = ("customer_service", "customer_service_supervisor", "estate_director")
HANDOVER_ROLES = ("customer_service", "customer_service_supervisor", "duty_staff")
ACCOUNT_ADMIN_ROLES = ("company_admin", "estate_director")
MANAGER_ROLES = ("customer_service_supervisor", "estate_director", "department_head", "quality_manager",
                 "general_manager")
DUTY_ROLES = ("duty_staff", "customer_service", "customer_service_supervisor", "estate_director")

signature_reminders_total = Counter(
    "estatedesk_signature_reminders", "Reminders to get a phone/letter owner's later signature (补签)",
    ["estate"], registry=service.registry,
)
unmasked_views_total = Counter(
    "estatedesk_owner_disclosures", "Owner records shown with phone or ID numbers unmasked",
    ["estate"], registry=service.registry,
)


# --- requests: models ------------------------------------------------------------------------


class RequestIn(Contract):
    """A request as the first employee registers it."""

    kind: Kind
    channel: Channel
    description: text(limits.DESCRIPTION_MAX)
    category: Category = "general"
    repair_class: RepairClass | None = None
    severity: Severity = Severity.not_serious
    urgency: Urgency = Urgency.not_urgent
    accepted_by: AcceptedBy = AcceptedBy.department
    building: UnitPart | None = None
    unit: str | None = Field(None, max_length=limits.UNIT_CODE_MAX, description="building-entrance-room, e.g. 1-2-301")
    location: str | None = Field(None, max_length=limits.SHORT_TEXT_MAX)
    reply_method: ReplyMethod = ReplyMethod.phone
    reply_agreed_by: Instant | None = Field(None, description="The reply time agreed with the owner at intake")
    appointment_at: Instant | None = None
    anonymous: bool = False
    owner_id: Identifier | None = None
    about_role: str | None = Field(None, max_length=limits.CODE_MAX, description="A complaint about staff: "
                                   "supervisor_or_above, customer_service_staff or company_staff")
    owner_loss_cny: Money | None = None
    client_request_id: str | None = Field(
        None, min_length=1, max_length=limits.CLIENT_ID_MAX,
        description="Caller's id for this submission; a repeat returns the first ticket.",
    )
    occurred_at: Instant | None = Field(None, description="When it happened")
    cause: str | None = Field(None, max_length=limits.TEXT_MAX)
    people: list[str] = Field(default_factory=list, max_length=50, description="People involved")
    attachments: list[str] = Field(default_factory=list, max_length=50,
                                   description="Attachments by reference (document ids or URLs)")
    owner_signed: bool = Field(False, description="The owner signed the form at intake (required for walk-ins)")

    @field_validator("people", "attachments")
    @classmethod
    def _short_items(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip() or len(value) > limits.SHORT_TEXT_MAX:
                raise ValueError(f"each entry must be 1–{limits.SHORT_TEXT_MAX} characters")
        return values

    @field_validator("category")
    @classmethod
    def _canonical_category(cls, value: str) -> str:
        # Every service compares categories in this one form (shared.periods).
        canonical = canonical_category(value)
        if not canonical:
            raise ValueError("a category needs a visible character")
        return canonical


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


def _ticket_out(row, updates=(), handover=None, now: dt.datetime | None = None) -> TicketOut:
    """A stored ticket (a row, or the dict of its columns) as the API shows it."""
    data = dict(row) if isinstance(row, dict) else dict(row._mapping)
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
                                            updated_at=u.updated_at) for u in updates]
    data["handover"] = (
        HandoverOut(id=handover.id, registered_by=handover.registered_by, registered_at=handover.registered_at,
                    handover_due=handover.handover_due, taken_over_by=handover.taken_over_by,
                    taken_over_at=handover.taken_over_at)
        if handover is not None else None
    )
    return TicketOut.model_validate(data)


async def _ticket(session: AsyncSession, estate: str, ticket_id: str, lock: bool = False):
    query = sa.select(T).where(T.c.estate == estate, T.c.id == ticket_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    if row is None:
        raise RuleViolation(f"no request {ticket_id!r} in estate {estate!r}", status=404)
    return row


async def _full_ticket(session: AsyncSession, row) -> TicketOut:
    updates = (
        await session.execute(
            sa.select(store.progress_updates).where(store.progress_updates.c.ticket_id == row.id)
            .order_by(store.progress_updates.c.updated_at, store.progress_updates.c.id)
        )
    ).all()
    handover = (
        await session.execute(sa.select(store.handover_items).where(store.handover_items.c.ticket_id == row.id))
    ).first()
    return _ticket_out(row, updates, handover)


def _aware(value: dt.datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise RuleViolation(f"{name} must carry its timezone (e.g. 2026-11-23T09:00:00+08:00)", status=422)


def _check_request(body: RequestIn, estate: Estate, now: dt.datetime) -> None:
    """What the later clocks rely on is checked here, where the caller can still fix it."""
    for name in ("reply_agreed_by", "appointment_at", "occurred_at"):
        _aware(getattr(body, name), name)
    if body.building and estate.buildings and body.building not in estate.buildings:
        raise RuleViolation(
            f"estate {estate.code} has no building {body.building!r} (it has: {', '.join(estate.buildings)})", status=422
        )
    if body.repair_class is not None and body.kind is not Kind.repair:
        raise RuleViolation(f"a repair class belongs to repairs, not to a {body.kind.value}", status=422)
    if body.repair_class is RepairClass.appointment:
        if body.appointment_at is None:
            raise RuleViolation("an appointment repair needs appointment_at", status=422)
        if body.appointment_at < now:
            raise RuleViolation(f"the appointment {body.appointment_at.isoformat()} has already passed", status=422)
    if body.reply_agreed_by is not None and body.reply_agreed_by < now:
        raise RuleViolation(f"the agreed reply time {body.reply_agreed_by.isoformat()} has already passed", status=422)
    if body.occurred_at is not None and body.occurred_at > now + dt.timedelta(minutes=5):
        raise RuleViolation("occurred_at lies in the future", status=422)


async def next_form_sequence(session, estate: str, year: int) -> int:
    """Gapless per estate and year: the counter row is incremented under its row lock in
    the registering transaction, so a rolled-back registration gives its number back."""
    seq = store.form_sequences
    result = await session.execute(
        pg_insert(seq).values(estate=estate, year=year, last=1)
        .on_conflict_do_update(index_elements=[seq.c.estate, seq.c.year], set_={"last": seq.c.last + 1})
        .returning(seq.c.last)
    )
    return result.scalar_one()


class RegistrationDesk:
    """Registers the requests of one estate in batches.

    The gapless form number needs the estate's counter row locked until commit, so
    registrations of an estate are serial by nature. Rather than let every request wait
    for the lock and its own commit, one worker per estate takes whatever has queued up
    and registers it in one transaction: one lock, one commit for the batch, and no
    savepoint unless a registration fails (then the batch goes again, each in its own
    savepoint, and a refused one gives its number back).
    """

    def __init__(self) -> None:
        self._queues: dict[tuple[str, int], list] = {}
        self._workers: dict[tuple[str, int], asyncio.Task] = {}

    async def register(self, estate: str, year: int, write):
        future = asyncio.get_running_loop().create_future()
        key = (estate, year)
        self._queues.setdefault(key, []).append((write, future))
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.create_task(self._drain(key))
        return await future

    async def _drain(self, key) -> None:
        while self._queues.get(key):
            batch, self._queues[key] = self._queues[key], []
            try:
                try:
                    outcomes = await self._all_at_once(batch)
                except _RegistrationFailed:
                    outcomes = await self._one_by_one(batch)
            except Exception as error:  # the commit failed: nobody in the batch was registered
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for future, value, error in outcomes:
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)

    @staticmethod
    async def _all_at_once(batch) -> list:
        """The common case: every registration of the batch in one transaction, no
        savepoints; raises `_RegistrationFailed` (rolled back, numbers untaken) when one
        of them fails, so the batch goes again one by one."""
        outcomes = []
        async with service.db.transaction() as session:
            for write, future in batch:
                try:
                    outcomes.append((future, await write(session), None))
                except Exception as error:
                    raise _RegistrationFailed() from error
        return outcomes

    @staticmethod
    async def _one_by_one(batch) -> list:
        """Each registration in its own savepoint: a refused one gives its number back,
        the batch goes on."""
        outcomes = []
        async with service.db.transaction() as session:
            for write, future in batch:
                try:
                    async with session.begin_nested():
                        outcomes.append((future, await write(session), None))
                except Exception as error:  # this request only; the batch goes on
                    outcomes.append((future, None, error))
        return outcomes


class _RegistrationFailed(Exception):
    """One registration of a batch failed in the all-at-once pass."""


registration_desk = RegistrationDesk()


# --- requests: routes ---------------------------------------------------------------------------


@service.http.post("/estates/{estate}/requests", status_code=201, response_model=TicketOut, tags=["requests"])
async def register_request(estate: str, body: RequestIn, who: Principal = Depends(require_estate)) -> TicketOut:
    """Register a request; the caller becomes its first-contact owner for its whole life.

    Walk-ins sign now (`owner_signed`); phone and letter requests are signed later and
    reminded until then. Duty staff registering outside office hours put the request on
    the shift-handover list."""
    known_estate(service, estate)
    directory_estate = service.directory.estate(estate)
    policy = service.directory.policy_for(estate)
    calendar = service.directory.calendar_for(estate)
    tz = service.directory.timezone_for(estate)
    now = service.clock.now()
    _check_request(body, directory_estate, now)
    requirement = rules.check_signature_at_intake(body.channel, body.owner_signed, policy, anonymous=body.anonymous,
                                                  reply_method=body.reply_method)
    signature = "signed" if body.owner_signed else requirement.value
    off_hours = rules.is_off_hours(now, policy, calendar)
    year = now.astimezone(tz).year

    async def write(session):
        if body.client_request_id:
            existing = (
                await session.execute(
                    sa.select(T).where(T.c.estate == estate, T.c.client_request_id == body.client_request_id)
                )
            ).first()
            if existing:
                return await _full_ticket(session, existing)
        number = rules.form_number(estate, year, await next_form_sequence(session, estate, year), policy)
        ticket_id = str(uuid.uuid4())
        record = dict(
            kind=body.kind, channel=body.channel, category=body.category, repair_class=body.repair_class,
            severity=body.severity, urgency=body.urgency, accepted_by=body.accepted_by, building=body.building,
            unit=body.unit, location=body.location, description=body.description, first_contact=who.staff_id,
            first_contact_name=who.name, received_at=now, reply_method=body.reply_method,
            reply_agreed_by=body.reply_agreed_by, appointment_at=body.appointment_at, off_hours=off_hours,
            anonymous=body.anonymous, owner_id=body.owner_id, about_role=body.about_role,
            owner_loss_cny=body.owner_loss_cny, occurred_at=body.occurred_at, cause=body.cause,
            people=body.people, attachments=body.attachments,
        )
        stored = dict(
            id=ticket_id, estate=estate, form_number=number, status=TicketState.in_handling, round=1,
            client_request_id=body.client_request_id, created_at=now, owner_signature=signature,
            signed_at=now if body.owner_signed else None, current_handler=who.staff_id,
            next_reminder_at=rules.next_signature_reminder(now, None, now, policy)
            if signature == rules.SignatureRequirement.later else None,
            **record,
        )
        await session.execute(sa.insert(T).values(**stored))
        handover = None
        if off_hours and who.has_role("duty_staff"):
            handover = dict(estate=estate, ticket_id=ticket_id, registered_by=who.staff_id, registered_at=now,
                            handover_due=await _roster_handover_due(session, estate, who.staff_id, now, policy, calendar))
            handover["id"] = (await session.execute(
                sa.insert(store.handover_items).values(**handover).returning(store.handover_items.c.id)
            )).scalar_one()
        await service.emit(
            session,
            Accepted(ticket_id=ticket_id, form_number=number, first_contact_name=who.name, owner_signature=signature,
                     **{k: v for k, v in record.items() if k not in ("first_contact_name",)}),
            estate=estate, actor=who.staff_id, time=now,
        )
        return _ticket_out(stored, (), _Row(**handover, taken_over_by=None, taken_over_at=None) if handover else None, now)

    try:
        return await registration_desk.register(estate, year, write)
    except IntegrityError:
        # Another replica registered the same client_request_id first: the same id
        # always answers with the first ticket.
        if not body.client_request_id:
            raise
        async with service.db.transaction() as session:
            existing = (await session.execute(
                sa.select(T).where(T.c.estate == estate, T.c.client_request_id == body.client_request_id)
            )).first()
            if existing is None:
                raise
            return await _full_ticket(session, existing)


class _Row(dict):
    """Attribute access to a dict, for values just written (no need to read them back)."""

    __getattr__ = dict.get


@service.http.get("/estates/{estate}/requests/{ticket_id}", response_model=TicketOut, tags=["requests"])
async def get_request(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> TicketOut:
    """One request with its first-contact owner, status, round, validity, signature state,
    handover and the updates given to the owner."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        return await _full_ticket(session, await _ticket(session, estate, ticket_id))


@service.http.get("/estates/{estate}/requests", response_model=list[TicketOut], tags=["requests"])
async def list_requests(
    estate: str,
    first_contact: str | None = Query(None, max_length=64, description="Requests this employee owns as first contact"),
    status: Literal["open", "in_handling", "completed", "closed", "invalid"] | None = Query(
        None, description="open: in handling (shared.lifecycle's in_handling)"),
    kind: Kind | None = Query(None, description="Only requests of this kind (the console's complaint list)"),
    signature: Literal["pending"] | None = Query(None, description="pending: a later signature (补签) is still owed"),
    notice: Literal["overdue"] | None = Query(
        None, description="overdue: invalid complaints whose owner was not told the reason in time"),
    limit: int = Query(200, ge=1, le=1000),
    who: Principal = Depends(require_estate),
) -> list[TicketOut]:
    """Requests of the estate, newest first; a first-contact owner sees the state of every
    request they own."""
    known_estate(service, estate)
    query = sa.select(T).where(T.c.estate == estate).order_by(T.c.received_at.desc()).limit(limit)
    if first_contact:
        query = query.where(T.c.first_contact == first_contact)
    if status:
        query = query.where(T.c.status == (TicketState.in_handling if status == "open" else status))
    if kind:
        query = query.where(T.c.kind == kind)
    if signature == "pending":
        query = query.where(T.c.owner_signature == "later", T.c.signed_at.is_(None))
    now = service.clock.now()
    if notice == "overdue":
        query = query.where(sa.or_(T.c.valid.is_(False), T.c.validity_state == rules.ValidityState.awaiting_confirmation),
                            T.c.owner_notified_at.is_(None), T.c.notify_owner_by < now)
    async with service.db.transaction() as session:
        return [_ticket_out(row, now=now) for row in (await session.execute(query)).all()]


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
    policy = service.directory.policy_for(estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        row = await _ticket(session, estate, ticket_id, lock=True)
        if row.validity_state == rules.ValidityState.awaiting_confirmation:
            raise RuleViolation("this complaint's invalid judgement awaits a manager's confirmation", status=409)
        if row.valid is not None:
            raise RuleViolation(f"this complaint was already judged {'valid' if row.valid else 'invalid'}", status=409)
        judgement = rules.judge_validity(row.kind, body.valid, body.reason, who.staff_id, body.confirmed_by, now,
                                         policy, service.directory.calendar_for(estate))
        if row.status == "closed":
            raise RuleViolation("the request is closed", status=409)
        await session.execute(sa.update(T).where(T.c.id == ticket_id).values(
            valid=True if judgement.valid else None, validity_reason=judgement.reason, judged_by=judgement.judged_by,
            confirmed_by=None, judged_at=now, notify_owner_by=judgement.notify_owner_by,
            notify_provisional=judgement.provisional, validity_state=judgement.state,
        ))
        if judgement.valid:  # an invalid one is announced when the manager decides
            await service.emit(session, judgement.to_payload(ticket_id), estate=estate, actor=who.staff_id, time=now)
        return await _full_ticket(session, await _ticket(session, estate, ticket_id))


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
    policy = service.directory.policy_for(estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        row = await _ticket(session, estate, ticket_id, lock=True)
        state = rules.confirm_invalid(row.validity_state, row.judged_by, who.staff_id, who.roles, body.confirm, policy)
        note = (body.note or "").strip()
        if state is rules.ValidityState.rejected and not note:
            raise RuleViolation("rejecting an invalid judgement needs the manager's reason", status=422)
        valid = state is rules.ValidityState.rejected
        reason = note if valid else row.validity_reason
        await session.execute(sa.update(T).where(T.c.id == ticket_id).values(
            valid=valid, confirmed_by=who.staff_id, validity_state=state, validity_decided_at=now,
            validity_reason=reason, notify_owner_by=None if valid else row.notify_owner_by,
            notify_provisional=False if valid else row.notify_provisional,
            status=row.status if valid else TicketState.invalid,
        ))
        await service.emit(session, ValidityJudged(
            ticket_id=ticket_id, valid=valid, reason=reason, judged_by=row.judged_by, confirmed_by=who.staff_id,
            notify_owner_by=None if valid else row.notify_owner_by,
        ), estate=estate, actor=who.staff_id, time=now)
        return await _full_ticket(session, await _ticket(session, estate, ticket_id))


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
    now = service.clock.now()
    async with service.db.transaction() as session:
        row = await _ticket(session, estate, ticket_id, lock=True)
        notice_owed = row.valid is False and row.owner_notified_at is None
        # A closed request takes no more updates, except the reason an invalid complaint
        # was refused (its handling ends at once, the notice is still owed).
        if row.status == "closed" and not notice_owed:
            raise RuleViolation("the request is closed", status=409)
        await session.execute(sa.insert(store.progress_updates).values(
            ticket_id=ticket_id, estate=estate, note=body.note, method=body.method, updated_by=who.staff_id,
            updated_at=now,
        ))
        if notice_owed:
            await session.execute(sa.update(T).where(T.c.id == ticket_id).values(owner_notified_at=now))
        await service.emit(
            session, ProgressUpdated(ticket_id=ticket_id, note=body.note, method=body.method, updated_by=who.staff_id),
            estate=estate, actor=who.staff_id, time=now,
        )
        return await _full_ticket(session, await _ticket(session, estate, ticket_id))


class SignatureIn(Contract):
    signed_by_owner: bool


@service.http.post("/estates/{estate}/requests/{ticket_id}/signature", response_model=TicketOut, tags=["requests"])
async def record_signature(estate: str, ticket_id: str, body: SignatureIn, who: Principal = Depends(require_estate)) -> TicketOut:
    """The owner supplied the later signature (补签); reminders stop."""
    known_estate(service, estate)
    if not body.signed_by_owner:
        raise RuleViolation("record the signature once the owner has signed (signed_by_owner: true)", status=422)
    now = service.clock.now()
    async with service.db.transaction() as session:
        row = await _ticket(session, estate, ticket_id, lock=True)
        if row.owner_signature == "signed":
            raise RuleViolation("the owner already signed this form", status=409)
        if row.owner_signature != "later":
            raise RuleViolation(f"a {row.channel} request owes no owner signature", status=409)
        await session.execute(sa.update(T).where(T.c.id == ticket_id).values(
            owner_signature="signed", signed_at=now, next_reminder_at=None,
        ))
        return await _full_ticket(session, await _ticket(session, estate, ticket_id))


# --- night-shift handover ---------------------------------------------------------------------

H = store.handover_items


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


@service.http.get("/estates/{estate}/handover", response_model=HandoverListOut, tags=["handover"])
async def get_handover(estate: str, include_taken: bool = Query(False), who: Principal = Depends(require_estate)) -> HandoverListOut:
    """What the duty staff registered off hours, for the next shift to take over item by item."""
    known_estate(service, estate)
    query = (sa.select(H, T.c.form_number, T.c.kind, T.c.description).join(T, T.c.id == H.c.ticket_id)
             .where(H.c.estate == estate).order_by(H.c.registered_at))
    if not include_taken:
        query = query.where(H.c.taken_over_at.is_(None))
    async with service.db.transaction() as session:
        rows = (await session.execute(query)).all()
        unclaimed = (await session.execute(
            sa.select(sa.func.count()).select_from(H).where(H.c.estate == estate, H.c.taken_over_at.is_(None))
        )).scalar_one()
    items = [HandoverItemOut(id=r.id, ticket_id=r.ticket_id, form_number=r.form_number, kind=r.kind,
                             description=r.description, registered_by=r.registered_by, registered_at=r.registered_at,
                             handover_due=r.handover_due, taken_over_by=r.taken_over_by, taken_over_at=r.taken_over_at)
             for r in rows]
    return HandoverListOut(estate=estate, complete=unclaimed == 0, unclaimed=unclaimed, items=items)


@service.http.post("/estates/{estate}/handover/{item_id}/take-over", response_model=HandoverItemOut, tags=["handover"])
async def take_over(estate: str, item_id: RowId, who: Principal = Depends(require_estate)) -> HandoverItemOut:
    """The next shift takes an item over explicitly; the first-contact owner stays."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        item = (await session.execute(
            sa.select(H).where(H.c.estate == estate, H.c.id == item_id).with_for_update()
        )).first()
        if item is None:
            raise RuleViolation(f"no handover item {item_id} in estate {estate!r}", status=404)
        if item.taken_over_at is not None:
            raise RuleViolation(f"handover item {item_id} was already taken over by {item.taken_over_by}", status=409)
        if item.registered_by == who.staff_id:
            raise RuleViolation("the next shift takes the item over, not the one who registered it", status=409)
        await session.execute(sa.update(H).where(H.c.id == item_id).values(taken_over_by=who.staff_id, taken_over_at=now))
        await session.execute(sa.update(T).where(T.c.id == item.ticket_id).values(current_handler=who.staff_id))
        ticket = await _ticket(session, estate, item.ticket_id)
    return HandoverItemOut(id=item.id, ticket_id=item.ticket_id, form_number=ticket.form_number, kind=ticket.kind,
                           description=ticket.description, registered_by=item.registered_by,
                           registered_at=item.registered_at, handover_due=item.handover_due,
                           taken_over_by=who.staff_id, taken_over_at=now)


# --- consumers: the status the first-contact owner sees ------------------------------------------


@service.consumer("completed", description="Every department signed back: the request shows completed.")
async def on_completed(session: AsyncSession, event: CloudEvent) -> None:
    completed = event.payload()
    await session.execute(sa.update(T).where(
        T.c.id == completed.ticket_id, T.c.round == completed.round, T.c.status == TicketState.in_handling,
    ).values(status=TicketState.completed, completed_at=completed.completed_at))


@service.consumer("reopened", description="The owner was not satisfied: the request is open again in a new round.")
async def on_reopened(session: AsyncSession, event: CloudEvent) -> None:
    reopened = event.payload()
    await session.execute(sa.update(T).where(T.c.id == reopened.ticket_id, T.c.round < reopened.round).values(
        status=TicketState.in_handling, round=reopened.round, completed_at=None, closed_at=None,
    ))


@service.consumer("closed", description="The owner is satisfied (or the window elapsed): the request shows closed.")
async def on_closed(session: AsyncSession, event: CloudEvent) -> None:
    closed = event.payload()
    await session.execute(sa.update(T).where(T.c.id == closed.ticket_id).values(status=TicketState.closed, closed_at=event.time))


# --- periodic: later-signature reminders -----------------------------------------------------------


@service.periodic("signature-reminders", every_seconds=5.0)
async def remind_signatures() -> int:
    """Remind the desk of every phone/letter request whose owner has not signed yet."""
    now = service.clock.now()
    async with service.db.transaction() as session:
        due = (await session.execute(
            sa.select(T.c.id, T.c.estate, T.c.received_at, T.c.first_contact)
            .where(T.c.next_reminder_at.is_not(None), T.c.next_reminder_at <= now, T.c.signed_at.is_(None))
            .order_by(T.c.next_reminder_at).limit(500).with_for_update(skip_locked=True)
        )).all()
        for row in due:
            policy = service.directory.policy_for(row.estate)
            await session.execute(sa.update(T).where(T.c.id == row.id).values(
                reminders_sent=T.c.reminders_sent + 1, last_reminded_at=now,
                next_reminder_at=rules.next_signature_reminder(row.received_at, now, now, policy),
            ))
            signature_reminders_total.labels(row.estate).inc()
            log.info("owner's signature still owed", extra={"estate": row.estate, "ticket": row.id})
    return len(due)


@on_calendar_change(service, "calendar-recompute")
async def recompute_notices_on_calendar_change() -> int:
    """On every change of the company's calendar, count every owed invalid-complaint
    notice deadline again from its judgement (issue 10: every running deadline follows
    every change)."""
    changed = 0
    async with service.db.transaction() as session:
        rows = (await session.execute(
            sa.select(T.c.id, T.c.estate, T.c.judged_at, T.c.notify_owner_by, T.c.notify_provisional)
            .where(T.c.notify_owner_by.is_not(None), T.c.owner_notified_at.is_(None), T.c.judged_at.is_not(None))
            .with_for_update(skip_locked=True)
        )).all()
        for row in rows:
            notice = rules.invalid_notice_due(row.judged_at, service.directory.policy_for(row.estate),
                                              service.directory.calendar_for(row.estate))
            if (notice.value, notice.provisional) != (row.notify_owner_by, row.notify_provisional):
                await session.execute(sa.update(T).where(T.c.id == row.id)
                                      .values(notify_owner_by=notice.value, notify_provisional=notice.provisional))
                changed += 1
    return changed


# --- owners and units -----------------------------------------------------------------------------

U, O = store.units, store.owners


class UnitIn(Contract):
    """A unit's parts; its code joins them with "-" (so no part may contain one)."""

    building: UnitPart
    entrance: UnitPart = Field(description="单元")
    room: UnitPart


class UnitOut(UnitIn):
    code: str = Field(description="building-entrance-room")


class ContactIn(Contract):
    name: str = Field(min_length=1, max_length=128)
    phone: str = Field(min_length=3, max_length=32)
    relation: str | None = Field(None, max_length=32)


class OwnerIn(Contract):
    name: str = Field(min_length=1, max_length=128)
    unit: str = Field(min_length=1, max_length=64)
    relation: Literal["owner", "resident"] = "owner"
    phone: str | None = Field(None, min_length=3, max_length=32)
    id_number: str | None = Field(None, min_length=6, max_length=32)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=10)


class OwnerOut(BaseModel):
    id: str
    name: str
    unit: str
    relation: str
    phone: str | None
    id_number: str | None
    contacts: list[dict]
    masked: bool = Field(description="True when phone and ID numbers are shown masked for this viewer")


@service.http.post("/estates/{estate}/units", status_code=201, response_model=UnitOut, tags=["owners"])
async def add_unit(estate: str, body: UnitIn, who: Principal = Depends(require_estate)) -> UnitOut:
    known_estate(service, estate)
    buildings = service.directory.estate(estate).buildings
    if buildings and body.building not in buildings:
        raise RuleViolation(f"estate {estate} has no building {body.building!r} (it has: {', '.join(buildings)})", status=422)
    code = f"{body.building}-{body.entrance}-{body.room}"
    async with service.db.transaction() as session:
        inserted = (await session.execute(
            pg_insert(U).values(estate=estate, code=code, created_at=service.clock.now(), **body.model_dump())
            .on_conflict_do_nothing().returning(U.c.code)
        )).first()
    if inserted is None:
        raise RuleViolation(f"unit {code} already exists", status=409)
    return UnitOut(code=code, **body.model_dump())


@service.http.get("/estates/{estate}/units", response_model=list[UnitOut], tags=["owners"])
async def list_units(estate: str, building: str | None = Query(None, max_length=32),
                     who: Principal = Depends(require_estate)) -> list[UnitOut]:
    known_estate(service, estate)
    query = sa.select(U).where(U.c.estate == estate).order_by(U.c.code)
    if building:
        query = query.where(U.c.building == building)
    async with service.db.transaction() as session:
        rows = (await session.execute(query)).all()
    return [UnitOut(code=r.code, building=r.building, entrance=r.entrance, room=r.room) for r in rows]


def _owner_out(row, who: Principal, policy: Policy) -> OwnerOut:
    unmasked = rules.may_unmask(who.roles, policy)
    contacts = [
        {**c, "phone": rules.phone_for_viewer(c.get("phone"), who.roles, policy)} for c in (row.contacts or [])
    ]
    return OwnerOut(
        id=row.id, name=row.name, unit=row.unit, relation=row.relation,
        phone=rules.phone_for_viewer(row.phone, who.roles, policy) if row.phone else None,
        id_number=rules.id_number_for_viewer(row.id_number, who.roles, policy) if row.id_number else None,
        contacts=contacts, masked=not unmasked,
    )


async def _log_disclosures(session: AsyncSession, estate: str, rows, who: Principal, policy: Policy,
                           purpose: str | None) -> None:
    """Every unmasked view of an owner's numbers is logged (owner files are level-1 confidential)."""
    if not rules.may_unmask(who.roles, policy):
        return
    entries = []
    for row in rows:
        fields = [name for name in ("phone", "id_number") if getattr(row, name)]
        fields += ["contacts.phone"] if any(c.get("phone") for c in (row.contacts or [])) else []
        if fields:
            entries.append(dict(estate=estate, owner_id=row.id, viewer=who.staff_id, roles=sorted(who.roles),
                                fields=fields, purpose=purpose, disclosed_at=service.clock.now()))
    if entries:
        await session.execute(sa.insert(store.disclosures), entries)
        unmasked_views_total.labels(estate).inc(len(entries))


@service.http.post("/estates/{estate}/owners", status_code=201, response_model=OwnerOut, tags=["owners"])
async def add_owner(estate: str, body: OwnerIn, who: Principal = Depends(require_estate)) -> OwnerOut:
    """An owner or resident of a unit, with contacts."""
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    owner_id = str(uuid.uuid4())
    async with service.db.transaction() as session:
        if not (await session.execute(sa.select(U.c.code).where(U.c.estate == estate, U.c.code == body.unit))).first():
            raise RuleViolation(f"no unit {body.unit!r} in estate {estate}; register the unit first", status=422)
        await session.execute(sa.insert(O).values(
            id=owner_id, estate=estate, unit=body.unit, name=body.name, relation=body.relation, phone=body.phone,
            id_number=body.id_number, contacts=[c.model_dump() for c in body.contacts], created_by=who.staff_id,
            created_at=service.clock.now(),
        ))
        row = (await session.execute(sa.select(O).where(O.c.id == owner_id))).first()
    return _owner_out(row, who, policy)


@service.http.get("/estates/{estate}/owners", response_model=list[OwnerOut], tags=["owners"])
async def list_owners(estate: str, unit: str | None = Query(None, max_length=64),
                      purpose: str | None = Query(None, max_length=200, description="Why the numbers are looked up"),
                      who: Principal = Depends(require_estate)) -> list[OwnerOut]:
    """Owners and residents; phone and ID numbers are masked except for the roles the
    policy allows (customer service by default), whose every view is logged."""
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    query = sa.select(O).where(O.c.estate == estate).order_by(O.c.unit, O.c.name).limit(1000)
    if unit:
        query = query.where(O.c.unit == unit)
    async with service.db.transaction() as session:
        rows = (await session.execute(query)).all()
        await _log_disclosures(session, estate, rows, who, policy, purpose)
    return [_owner_out(r, who, policy) for r in rows]


@service.http.get("/estates/{estate}/owners/{owner_id}", response_model=OwnerOut, tags=["owners"])
async def get_owner(estate: str, owner_id: str, purpose: str | None = Query(None, max_length=200),
                    who: Principal = Depends(require_estate)) -> OwnerOut:
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    async with service.db.transaction() as session:
        row = (await session.execute(sa.select(O).where(O.c.estate == estate, O.c.id == owner_id))).first()
        if row is None:
            raise RuleViolation(f"no owner {owner_id!r} in estate {estate!r}", status=404)
        await _log_disclosures(session, estate, [row], who, policy, purpose)
    return _owner_out(row, who, policy)


class DisclosureOut(BaseModel):
    owner_id: str
    viewer: str
    roles: list[str]
    fields: list[str]
    purpose: str | None
    disclosed_at: LocalTime


@service.http.get("/estates/{estate}/disclosures", response_model=list[DisclosureOut], tags=["owners"])
async def list_disclosures(estate: str, owner_id: str | None = Query(None, max_length=64),
                           who: Principal = Depends(require_estate)) -> list[DisclosureOut]:
    """The log of unmasked views, for the estate director and the quality manager."""
    known_estate(service, estate)
    who.require_role("estate_director", "customer_service_supervisor", "quality_manager")
    query = (sa.select(store.disclosures).where(store.disclosures.c.estate == estate)
             .order_by(store.disclosures.c.id.desc()).limit(1000))
    if owner_id:
        query = query.where(store.disclosures.c.owner_id == owner_id)
    async with service.db.transaction() as session:
        rows = (await session.execute(query)).all()
    return [DisclosureOut.model_validate(dict(r._mapping)) for r in rows]


# --- the directory API: policies, calendar, estate definitions -------------------------------------

POLICY_ROLES_ESTATE = ("estate_director", "quality_manager")
POLICY_ROLES_COMPANY = ("quality_manager",)


class PolicyOut(BaseModel):
    estate: str
    overrides: dict = Field(description="This estate's overrides of the company policy")
    company_overrides: dict
    effective: dict = Field(description="Defaults ← company ← estate: what the services apply")
    defaults: dict = Field(description="The RULES.md defaults (shared/policy.py), shown beside each value")


class CalendarIn(Contract):
    days_off: list[Day] = Field(default_factory=list, description="Extra days off (company holidays)")
    workdays: list[Day] = Field(default_factory=list, description="Extra workdays (make-up days)")
    loaded_years: list[int] = Field(default_factory=list, description="Years whose full arrangement is loaded here")

    @field_validator("loaded_years")
    @classmethod
    def _years(cls, years: list[int]) -> list[int]:
        for year in years:
            if not 2000 <= year <= 2100:
                raise ValueError(f"year {year} is out of range 2000–2100")
        return years


def _validated_policy(company_overrides: dict, estate_overrides: dict | None, what: str) -> Policy:
    try:
        policy = effective_policy(company_overrides, estate_overrides)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise RuleViolation(f"{what} refused: {problems}", status=422) from None
    return policy


async def _publish(company: Company | None, estates: list[Estate]) -> None:
    """Write the directory bucket, then wait until our own watcher has seen it, so the
    caller's next request is served with the change."""
    await publish_directory(service.settings.nats_url, company, estates)
    for _ in range(100):
        seen = (company is None or service.directory.company == company) and all(
            service.directory.estate(e.code) == e for e in estates
        )
        if seen:
            return
        await asyncio.sleep(0.02)
    log.warning("directory change not seen by this process within 2 s")


def _policy_out(code: str) -> PolicyOut:
    estate = service.directory.estate(code)
    return PolicyOut(estate=code, overrides=estate.policy, company_overrides=service.directory.company.policy,
                     effective=service.directory.policy_for(code).model_dump(mode="json"),
                     defaults=DEFAULT_POLICY.model_dump(mode="json"))


@service.http.get("/estates/{estate}/policy", response_model=PolicyOut, tags=["directory"])
async def get_estate_policy(estate: str, who: Principal = Depends(require_estate)) -> PolicyOut:
    known_estate(service, estate)
    return _policy_out(estate)


@service.http.put("/estates/{estate}/policy", response_model=PolicyOut, tags=["directory"])
async def put_estate_policy(estate: str, body: PolicyOverrides = Body(..., description="The estate's overrides "
                            "(replaces the previous ones), e.g. {\"clocks\": {\"arrival_minutes_general\": 45}}"),
                            who: Principal = Depends(require_estate)) -> PolicyOut:
    """Change this estate's policy (estate director, quality manager, company admin)."""
    known_estate(service, estate)
    overrides = overrides_data(body)
    _validated_policy(service.directory.company.policy, overrides, f"policy of estate {estate}")
    updated = service.directory.estate(estate).model_copy(update={"policy": overrides})
    await _publish(None, [updated])
    return _policy_out(estate)


@service.http.put("/company/policy", response_model=dict, tags=["directory"])
async def put_company_policy(body: PolicyOverrides = Body(..., description="The company's overrides of the "
                             "RULES.md defaults (replaces the previous ones)"),
                             who: Principal = Depends(principal)) -> dict:
    """Change the company policy for every estate (quality manager, company admin)."""
    overrides = overrides_data(body)
    _validated_policy(overrides, None, "company policy")
    for code, estate in service.directory.estates.items():
        _validated_policy(overrides, estate.policy, f"company policy (with estate {code}'s overrides)")
    company = service.directory.company.model_copy(update={"policy": overrides})
    await _publish(company, [])
    return {"policy": company.policy, "effective": effective_policy(company.policy).model_dump(mode="json")}


@service.http.get("/company/calendar", response_model=CalendarIn, tags=["directory"])
async def get_company_calendar(who: Principal = Depends(principal)) -> CalendarIn:
    """The company's own calendar as last saved (extra days off, workdays, loaded years)."""
    return CalendarIn.model_validate(CalendarOverrides.from_data(service.directory.company.calendar).to_data())


@service.http.put("/company/calendar", response_model=CalendarIn, tags=["directory"])
async def put_company_calendar(body: CalendarIn, who: Principal = Depends(principal)) -> CalendarIn:
    """The company's own calendar: extra days off and workdays, and the years it has
    loaded (deadlines reaching into a loaded year stop being provisional)."""
    both = set(body.days_off) & set(body.workdays)
    if both:
        raise RuleViolation(f"a day cannot be both off and a workday: {', '.join(sorted(d.isoformat() for d in both))}",
                            status=422)
    overrides = CalendarOverrides(frozenset(body.days_off), frozenset(body.workdays), frozenset(body.loaded_years))
    company = service.directory.company.model_copy(update={"calendar": overrides.to_data()})
    await _publish(company, [])
    return CalendarIn.model_validate(overrides.to_data())


class RoutingRuleIn(Contract):
    kind: Kind | None = None
    category: str | None = Field(None, max_length=500, description="Shell patterns, alternatives separated by |")
    location: str | None = Field(None, max_length=500)
    departments: list[str] = Field(min_length=1)
    priority: int = Field(0, ge=-1000, le=1000)


@service.http.get("/estates/{estate}", response_model=Estate, tags=["directory"])
async def get_estate(estate: str, who: Principal = Depends(require_estate)) -> Estate:
    known_estate(service, estate)
    return service.directory.estate(estate)


@service.http.put("/estates/{estate}", response_model=Estate, tags=["directory"])
async def put_estate(estate: str, body: Estate, who: Principal = Depends(principal)) -> Estate:
    """Define an estate: departments, staff, buildings, routing rules and policy
    overrides (company admin)."""
    if body.code != estate:
        raise RuleViolation(f"the body defines estate {body.code!r}, the path names {estate!r}", status=422)
    codes = body.department_codes()
    if len(set(codes)) != len(codes):
        raise RuleViolation("a department code appears twice", status=422)
    for index, raw in enumerate(body.routing_rules):
        try:
            rule = RoutingRuleIn.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
            raise RuleViolation(f"routing rule {index + 1} refused: {problems}", status=422) from None
        unknown = [d for d in rule.departments if codes and d not in codes]
        if unknown:
            raise RuleViolation(f"routing rule {index + 1} names departments the estate lacks: {unknown}", status=422)
    _validated_policy(service.directory.company.policy, body.policy, f"policy of estate {estate}")
    await _publish(None, [body])
    return body


# --- duty roster, duty log and shift handover (issue 10 "Also build" 2) ---------------------------
# 001 第1篇 (handover rules, 2.4 when it is refused), 第2篇 (duty log, holiday duty), 第7篇
# (monthly roster, 三班制), 第11、14篇 (front desk and security handover); 002 §4.2.4;
# 004 篇3 §3.4.

ROSTER_ROLES = ("customer_service_supervisor", "estate_director", "estate_manager")
RS, DL, SH, SHI = store.roster_shifts, store.duty_log, store.shift_handovers, store.shift_handover_items


class RosterEntryIn(Contract):
    day: Day
    post: str = Field(min_length=1, max_length=32, description="customer_service_desk / security_control_centre")
    shift: str = Field(min_length=1, max_length=16, description="A shift of the estate's policy (early/middle/night)")
    staff: list[str] = Field(min_length=1, max_length=20)


class RosterShiftOut(BaseModel):
    id: int
    day: dt.date
    post: str
    shift: str
    staff: list[str]
    starts_at: LocalTime
    ends_at: LocalTime


class DutyLogIn(Contract):
    entry: str = Field(min_length=1, max_length=5000, description="What happened, how it was handled (值班记录)")


class HandoverItemIn(Contract):
    note: str = Field(min_length=1, max_length=5000)
    ticket_id: str | None = Field(None, max_length=64)


class ShiftHandoverIn(Contract):
    items: list[HandoverItemIn] = Field(default_factory=list, max_length=200,
                                        description="Leaders' instructions, keys, equipment… (open requests are added)")


class ShiftItemOut(BaseModel):
    id: int
    ticket_id: str | None
    kind: str | None
    repair_class: str | None
    urgency: str | None
    note: str
    claim_due: LocalTime
    claimed_by: str | None
    claimed_at: LocalTime | None
    escalated_to: str | None
    escalated_at: LocalTime | None
    overdue: bool


def _shift_out(row) -> RosterShiftOut:
    return RosterShiftOut(id=row.id, day=row.day, post=row.post, shift=row.shift, staff=list(row.staff),
                          starts_at=row.starts_at, ends_at=row.ends_at)


def _item_out(row, now: dt.datetime) -> ShiftItemOut:
    return ShiftItemOut(id=row.id, ticket_id=row.ticket_id, kind=row.kind, repair_class=row.repair_class,
                        urgency=row.urgency, note=row.note, claim_due=row.claim_due, claimed_by=row.claimed_by,
                        claimed_at=row.claimed_at, escalated_to=row.escalated_to, escalated_at=row.escalated_at,
                        overdue=rules.handover_item_overdue(row.claimed_at, row.claim_due, now))


def _roster_of(rows) -> list[rules.RosterShift]:
    return [rules.RosterShift(r.day, r.post, r.shift, tuple(r.staff), r.starts_at, r.ends_at) for r in rows]


async def _roster_handover_due(session: AsyncSession, estate: str, staff_id: str, now: dt.datetime, policy: Policy,
                               calendar) -> dt.datetime:
    """An off-hours registration's handover time on the estate's roster (the next shift of
    the registrant's post; holidays have their own duty shifts), else the next working
    morning."""
    rows = (await session.execute(sa.select(RS).where(
        RS.c.estate == estate, RS.c.ends_at > now - dt.timedelta(days=1), RS.c.starts_at < now + dt.timedelta(days=14),
    ))).all()
    return rules.roster_handover_due(now, staff_id, _roster_of(rows), policy, calendar)


@service.http.put("/estates/{estate}/roster/{month}", response_model=list[RosterShiftOut], tags=["duty"])
async def put_roster(estate: str, month: str, entries: list[RosterEntryIn],
                     who: Principal = Depends(require_estate)) -> list[RosterShiftOut]:
    """Set a month's roster (排班表) of every duty post, holidays included; replaces the
    month's shifts that have no handover yet (a changed roster is re-issued, 第7篇 1.1.7)."""
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    shifts = rules.roster_for_month(month, [e.model_dump(mode="json") for e in entries], policy)
    now = service.clock.now()
    first = dt.date.fromisoformat(f"{month}-01")
    after = (first + dt.timedelta(days=32)).replace(day=1)
    async with service.db.transaction() as session:
        handed = sa.select(SH.c.shift_id)
        await session.execute(sa.delete(RS).where(RS.c.estate == estate, RS.c.day >= first, RS.c.day < after,
                                                  RS.c.id.not_in(handed)))
        for s in shifts:
            await session.execute(pg_insert(RS).values(
                estate=estate, post=s.post, day=s.day, shift=s.shift, staff=list(s.staff), starts_at=s.starts_at,
                ends_at=s.ends_at, set_by=who.staff_id, set_at=now,
            ).on_conflict_do_nothing(constraint="uq_roster_shift"))
        rows = (await session.execute(sa.select(RS).where(RS.c.estate == estate, RS.c.day >= first, RS.c.day < after)
                                      .order_by(RS.c.starts_at, RS.c.post))).all()
    return [_shift_out(r) for r in rows]


@service.http.get("/estates/{estate}/roster/{month}", response_model=list[RosterShiftOut], tags=["duty"])
async def get_roster(estate: str, month: str, who: Principal = Depends(require_estate)) -> list[RosterShiftOut]:
    known_estate(service, estate)
    rules.roster_for_month(month, [], service.directory.policy_for(estate))  # validates the month
    first = dt.date.fromisoformat(f"{month}-01")
    after = (first + dt.timedelta(days=32)).replace(day=1)
    async with service.db.transaction() as session:
        rows = (await session.execute(sa.select(RS).where(RS.c.estate == estate, RS.c.day >= first, RS.c.day < after)
                                      .order_by(RS.c.starts_at, RS.c.post))).all()
    return [_shift_out(r) for r in rows]


async def _shift(session: AsyncSession, estate: str, shift_id: int):
    row = (await session.execute(sa.select(RS).where(RS.c.id == shift_id, RS.c.estate == estate))).first()
    if row is None:
        raise RuleViolation(f"no rostered shift {shift_id} in estate {estate!r}", status=404)
    return row


def _on_duty(who: Principal, shift) -> None:
    if who.staff_id not in shift.staff and not who.has_role(*ROSTER_ROLES):
        raise RuleViolation(f"{who.staff_id} is not on the {shift.shift} shift of {shift.post} on {shift.day}", status=403)


@service.http.post("/estates/{estate}/shifts/{shift_id}/log", status_code=201, tags=["duty"])
async def add_duty_log(estate: str, shift_id: RowId, body: DutyLogIn, who: Principal = Depends(require_estate)) -> dict:
    """A line of the shift's duty log (值班记录: who, when, what happened, how handled)."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        _on_duty(who, await _shift(session, estate, shift_id))
        entry_id = (await session.execute(sa.insert(DL).values(shift_id=shift_id, at=now, by=who.staff_id,
                                                              entry=body.entry).returning(DL.c.id))).scalar_one()
    return {"id": entry_id, "shift_id": shift_id, "at": now, "by": who.staff_id, "entry": body.entry}


@service.http.post("/estates/{estate}/shifts/{shift_id}/handover", status_code=201, response_model=list[ShiftItemOut],
                   tags=["duty"])
async def hand_over_shift(estate: str, shift_id: RowId, body: ShiftHandoverIn,
                          who: Principal = Depends(require_estate)) -> list[ShiftItemOut]:
    """The outgoing shift hands over item by item: the given items plus every request its
    staff registered on the shift and not yet handled (with kind, repair class and
    urgency). Refused (409) while a major or emergency incident of the shift is still open
    (001 第1篇 2.4). The incoming shift must claim each item by its start."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        shift = await _shift(session, estate, shift_id)
        _on_duty(who, shift)
        if (await session.execute(sa.select(SH.c.id).where(SH.c.shift_id == shift_id))).first():
            raise RuleViolation(f"the {shift.shift} shift of {shift.post} on {shift.day} was already handed over",
                                status=409)
        tickets = (await session.execute(sa.select(T).where(
            T.c.estate == estate, T.c.first_contact.in_(list(shift.staff)),
            T.c.received_at >= shift.starts_at, T.c.received_at < shift.ends_at).order_by(T.c.received_at))).all()
        incidents = [rules.ShiftIncident(
            t.id, t.kind, t.repair_class, t.severity, t.urgency,
            handled=t.completed_at is not None or t.closed_at is not None or t.status in ("closed", "invalid"),
        ) for t in tickets]
        blockers = rules.handover_blockers(incidents)
        if blockers:
            raise RuleViolation(f"no handover while a major or emergency incident of this shift is open: "
                                f"{', '.join(blockers)}", status=409)
        roster = _roster_of((await session.execute(sa.select(RS).where(
            RS.c.estate == estate, RS.c.post == shift.post, RS.c.starts_at >= shift.ends_at))).all())
        claim_due = rules.next_shift_start(roster, shift.post, shift.ends_at) or shift.ends_at
        handover_id = (await session.execute(sa.insert(SH).values(
            shift_id=shift_id, estate=estate, handed_over_by=who.staff_id, handed_over_at=now, claim_due=claim_due,
        ).returning(SH.c.id))).scalar_one()
        by_id = {t.id: t for t in tickets}
        rows = [dict(ticket_id=t.id, kind=t.kind, repair_class=t.repair_class, urgency=t.urgency,
                     note=t.description[:500]) for t in tickets if t.id in
                {i.ticket_id for i in incidents if not i.handled}]
        for item in body.items:
            ticket = by_id.get(item.ticket_id) if item.ticket_id else None
            rows.append(dict(ticket_id=item.ticket_id, kind=ticket.kind if ticket else None,
                             repair_class=ticket.repair_class if ticket else None,
                             urgency=ticket.urgency if ticket else None, note=item.note))
        if rows:
            await session.execute(sa.insert(SHI), [dict(r, handover_id=handover_id, estate=estate, claim_due=claim_due)
                                                  for r in rows])
        items = (await session.execute(sa.select(SHI).where(SHI.c.handover_id == handover_id)
                                       .order_by(SHI.c.id))).all()
    return [_item_out(i, now) for i in items]


@service.http.get("/estates/{estate}/shift-handover-items", response_model=list[ShiftItemOut], tags=["duty"])
async def list_shift_items(estate: str, status: Literal["open", "overdue", "all"] = Query("open"),
                           who: Principal = Depends(require_estate)) -> list[ShiftItemOut]:
    """Handover items: unclaimed (`open`), unclaimed past the incoming shift's start
    (`overdue`, escalated to the customer-service supervisor), or all."""
    known_estate(service, estate)
    now = service.clock.now()
    query = sa.select(SHI).where(SHI.c.estate == estate).order_by(SHI.c.claim_due, SHI.c.id).limit(500)
    if status == "open":
        query = query.where(SHI.c.claimed_at.is_(None))
    elif status == "overdue":
        query = query.where(SHI.c.claimed_at.is_(None), SHI.c.claim_due < now)
    async with service.db.transaction() as session:
        return [_item_out(r, now) for r in (await session.execute(query)).all()]


@service.http.post("/estates/{estate}/shift-handover-items/{item_id}/claim", response_model=ShiftItemOut,
                   tags=["duty"])
async def claim_shift_item(estate: str, item_id: RowId, who: Principal = Depends(require_estate)) -> ShiftItemOut:
    """The incoming shift claims one item (签字确认)."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        item = (await session.execute(sa.select(SHI).where(SHI.c.id == item_id, SHI.c.estate == estate)
                                      .with_for_update())).first()
        if item is None:
            raise RuleViolation(f"no handover item {item_id} in estate {estate!r}", status=404)
        if item.claimed_at is not None:
            raise RuleViolation(f"handover item {item_id} was already claimed by {item.claimed_by}", status=409)
        handover = (await session.execute(sa.select(SH).where(SH.c.id == item.handover_id))).one()
        outgoing = await _shift(session, estate, handover.shift_id)
        incoming = (await session.execute(sa.select(RS).where(
            RS.c.estate == estate, RS.c.post == outgoing.post, RS.c.starts_at == handover.claim_due))).first()
        if not who.has_role(*ROSTER_ROLES) and (incoming is None or who.staff_id not in incoming.staff):
            raise RuleViolation(f"{who.staff_id} is not on the incoming shift of {outgoing.post}", status=403)
        await session.execute(sa.update(SHI).where(SHI.c.id == item_id).values(claimed_by=who.staff_id, claimed_at=now))
        row = (await session.execute(sa.select(SHI).where(SHI.c.id == item_id))).one()
    return _item_out(row, now)


@service.periodic("shift-handover-escalation", every_seconds=5.0)
async def escalate_unclaimed_items() -> int:
    """An item unclaimed past the incoming shift's start escalates (once) to the estate's
    policy.intake.handover_escalation_role (the customer-service supervisor)."""
    now = service.clock.now()
    async with service.db.transaction() as session:
        due = (await session.execute(
            sa.select(SHI.c.id, SHI.c.estate).where(SHI.c.claimed_at.is_(None), SHI.c.escalated_at.is_(None),
                                                    SHI.c.claim_due < now)
            .order_by(SHI.c.claim_due).limit(500).with_for_update(skip_locked=True)
        )).all()
        for row in due:
            role = service.directory.policy_for(row.estate).intake.handover_escalation_role
            found = service.directory.estate(row.estate)
            holders = [s.id for s in (found.staff if found else []) if role in s.roles]
            await session.execute(sa.update(SHI).where(SHI.c.id == row.id).values(
                escalated_to=holders[0] if holders else role, escalated_at=now))
            log.warning("handover item unclaimed past the incoming shift's start; escalated to the %s", role,
                        extra={"estate": row.estate, "item": row.id})
    return len(due)


# Who may call each write route (RULES §1; printed in the README by `estatedesk roles`).
# Finer rules (a manager's confirmation, the next shift taking over) are checked inside.
service.write_roles = {
    ("POST", "/estates/{estate}/requests"): REGISTRAR_ROLES,
    ("POST", "/estates/{estate}/requests/{ticket_id}/validity"): JUDGE_ROLES,
    ("POST", "/estates/{estate}/requests/{ticket_id}/progress"): REGISTRAR_ROLES,
    ("POST", "/estates/{estate}/requests/{ticket_id}/signature"): REGISTRAR_ROLES,
    ("POST", "/estates/{estate}/handover/{item_id}/take-over"): HANDOVER_ROLES,
    ("POST", "/estates/{estate}/units"): OWNER_DESK_ROLES,
    ("POST", "/estates/{estate}/owners"): OWNER_DESK_ROLES,
    ("PUT", "/estates/{estate}/policy"): POLICY_ROLES_ESTATE,
    ("PUT", "/company/policy"): POLICY_ROLES_COMPANY,
    ("PUT", "/company/calendar"): POLICY_ROLES_COMPANY,
    ("PUT", "/estates/{estate}"): ("company_admin",),
    # Sign-in (services/intake/accounts.py): anyone on the staff renews, signs out and
    # changes their own password; accounts are the admin's and estate directors'.
    ("POST", "/auth/renew"): STAFF_ROLES,
    ("POST", "/auth/logout"): STAFF_ROLES,
    ("POST", "/auth/password"): STAFF_ROLES,
    ("PUT", "/accounts/{staff_id}/password"): ACCOUNT_ADMIN_ROLES,
    ("DELETE", "/accounts/{staff_id}"): ACCOUNT_ADMIN_ROLES,
    # Validity confirmation, duty roster and shift handover (issue 10): who of these may act
    # on a given judgement or shift (the policy's confirming roles, the shift's staff) is
    # checked inside.
    ("POST", "/estates/{estate}/requests/{ticket_id}/validity/confirmation"): MANAGER_ROLES,
    ("PUT", "/estates/{estate}/roster/{month}"): ("customer_service_supervisor", "estate_director"),
    ("POST", "/estates/{estate}/shifts/{shift_id}/log"): DUTY_ROLES,
    ("POST", "/estates/{estate}/shifts/{shift_id}/handover"): DUTY_ROLES,
    ("POST", "/estates/{estate}/shift-handover-items/{item_id}/claim"): DUTY_ROLES,
}
# Signing in is the one write that needs no token.
service.public_routes = {("POST", "/auth/login")}
# Owners' data: a refusal here also lands in the archive's access log (shared.service).
service.audited_routes = ("/estates/{estate}/owners", "/estates/{estate}/units")

from services.intake import accounts  # noqa: E402,F401  (registers the sign-in routes)
from services.intake import console  # noqa: E402,F401  (the console's server clock)
from services.intake import owners  # noqa: E402,F401  (owners' self-service, issue 15)


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
