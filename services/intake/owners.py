"""Owners' self-service (issue 15): bind a unit with a one-time code, submit online, follow
the form in plain words. Intake owns owners and units, so it owns this too.

- Binding: the unit's link (or its QR code) opens the owners' page; a one-time code goes
  to the phone on file, or the desk reads it out, through the notifier; the policy's count
  of wrong codes in a row locks binding for the unit. Every act is logged.
- Submitting: the owner's request waits for the desk clerk who first opens it (首问); it
  then becomes a normal request, channel `online`, registered exactly as the desk does.
- Following: the owner-facing stage of each request is a projection of the ticket events
  intake consumes; each change sends the owner a message through the notifier.

Owners act only for their unit (shared.owner_auth); nothing here reads another
service's tables. Pure rules live in owner_rules, the SQL in owner_store (SelfService).
This module: the notifier, the helpers both audiences use, the desk's routes and the
projection of ticket events; the owners' own routes are in owner_api.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Literal
from urllib.parse import quote

import segno
from fastapi import Depends, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import owner_rules as orules
from services.intake import rules
from services.intake.api import TicketOut, register, registration_desk
from services.intake.contracts import RequestIn
from services.intake.app import OWNER_DESK_ROLES, service
from services.intake.owner_handlers import (ONLINE_PREFIX, concerns_no_owner, handle_ticket_event_for_owner,
                                             prepare_ticket_events_for_owner, record_stage)
from services.intake.owner_store import OwnerDirectory, SelfService
from services.intake.store import ProgressUpdates
from services.intake.uow import IntakeUnitOfWork
from shared import limits
from shared.auth import AuthError, Principal
from shared.directory import revoke_session
from shared.errors import RuleViolation
from shared.events import Channel, CloudEvent, Kind
from shared.owner_auth import OwnerPrincipal
from shared.service import ErrorOut, LocalTime, known_estate, require_estate
from shared.storage import FileStore, file_store_from_env
from shared.uow import of_batch

log = logging.getLogger("estatedesk.intake.owners")
TOO_MANY = {429: {"model": ErrorOut, "description": "A rate limit of the owners' policy was reached"}}
OWNER_KINDS = (Kind.repair, Kind.complaint, Kind.inquiry, Kind.suggestion, Kind.praise)
DESK = "前台"


def _now() -> dt.datetime:
    return service.clock.now()


def _policy(estate: str):
    return service.directory.policy_for(estate).owners


def _zone(estate: str):
    return service.directory.timezone_for(estate)


# --- the notifier and the file store ------------------------------------------------------------


class Notifier:
    """Sends a message to an owner (or to the desk, for a code it reads out).

    Every message is recorded in intake's `owner_messages`. The embedded default stops
    there: the desk's "sent messages" page is its delivery. With ESTATEDESK_NOTIFIER_URL
    set, a provider adapter (SMS gateway, WeChat template messages) receives each message
    as JSON by POST from the delivery job, and `delivered_at` marks what it took."""

    def __init__(self, provider_url: str | None = None):
        self.provider_url = provider_url

    async def send(self, session: AsyncSession, *, estate: str, unit: str, recipient: str, purpose: str, text: str,
                   ticket_id: str | None = None, binding_id: str | None = None, phone: str | None = None) -> None:
        now = _now()
        await SelfService(session).add_message(dict(
            estate=estate, unit=unit, recipient=recipient, purpose=purpose, text=text, ticket_id=ticket_id,
            binding_id=binding_id, phone=phone, sent_at=now, delivered_at=None if self.provider_url else now))

    async def deliver(self) -> int:
        """Hand undelivered messages to the provider (at least once; the provider keys by id)."""
        if not self.provider_url:
            return 0
        import httpx  # only with a provider: 3.6 MB of intake's memory otherwise

        async with service.db.transaction() as session:
            rows = await SelfService(session).undelivered()
            async with httpx.AsyncClient(timeout=10) as client:
                for row in rows:
                    r = await client.post(self.provider_url, json={
                        "id": row.id, "estate": row.estate, "unit": row.unit, "purpose": row.purpose,
                        "text": row.text, "phone": row.phone, "binding": row.binding_id})
                    if r.status_code >= 300:
                        log.warning("notifier provider refused message %s: %s", row.id, r.status_code)
                        break
                    await SelfService(session).delivered(row.id, _now())
        return len(rows)


notifier = Notifier(os.environ.get("ESTATEDESK_NOTIFIER_URL") or None)
_files: FileStore | None = None


def files() -> FileStore:
    global _files
    if _files is None:
        _files = file_store_from_env(service.settings.data_dir)
    return _files


@service.periodic("owner-notifier-delivery", every_seconds=5.0)
async def deliver_messages() -> int:
    return await notifier.deliver()


# --- helpers ---------------------------------------------------------------------------------------


async def _log(session: AsyncSession, estate: str, unit: str, action: str, actor: str, *,
               binding_id: str | None = None, device: str | None = None) -> None:
    await SelfService(session).log(dict(estate=estate, unit=unit, action=action, binding_id=binding_id,
                                        actor=actor, device=device, at=_now()))


async def _known_unit(session: AsyncSession, estate: str, unit: str) -> None:
    known_estate(service, estate)
    if not await OwnerDirectory(session).has_unit(estate, unit):
        raise RuleViolation(f"estate {estate!r} has no unit {unit!r}", status=404)


def _refuse_limit(limit: orules.Limit | None) -> None:
    if limit is not None:
        raise RuleViolation(f"too many {limit.what}: at most {limit.allowed}; try again later", status=429,
                            zh=f"{limit.what_zh}过于频繁（上限 {limit.allowed}），请稍后再试")


def _refuse_if_locked(row, estate: str) -> None:
    why = orules.bind_locked(row.locked_until, _now(), _zone(estate))
    if why:
        raise AuthError(403, *why)


async def _issue_code(session: AsyncSession, estate: str, unit: str, device: str) -> tuple[str, str]:
    """A fresh one-time code for the unit, sent through the notifier to the phone on file
    (else to the desk, which reads it out). Returns (code, masked recipient)."""
    policy = service.directory.policy_for(estate)
    code = orules.new_code(policy.owners)
    now = _now()
    repository = SelfService(session)
    await repository.add_code(estate, unit, orules.code_hash(service.settings.signing_key, estate, unit, code),
                              device, now, now + dt.timedelta(minutes=policy.owners.bind_code_minutes))
    phone = await repository.phone_on_file(estate, unit)
    recipient = rules.mask_phone(phone, policy) if phone else DESK
    await notifier.send(session, estate=estate, unit=unit, recipient=recipient, purpose="bind_code", phone=phone,
                        text=f"【{_estate_name(estate)}】{unit} 房屋绑定验证码 {code}，"
                             f"{policy.owners.bind_code_minutes} 分钟内有效。如非本人操作请忽略。")
    return code, recipient


def _estate_name(estate: str) -> str:
    found = service.directory.estate(estate)
    return found.name if found else estate


async def _live_binding(session: AsyncSession, who: OwnerPrincipal):
    row = await SelfService(session).binding(who.binding)
    if row is None or row.unbound_at is not None:
        raise AuthError(401, "this binding was removed: bind the unit again", "房屋绑定已解除，请重新绑定")
    return row


async def _unbind(estate: str, binding_id: str, actor: str, unit: str | None = None) -> None:
    async with service.db.transaction() as session:
        row = await SelfService(session).unbind(estate, binding_id, actor, _now(), unit)
        if row is None:
            raise RuleViolation(f"no live binding {binding_id!r} in estate {estate!r}", status=404)
        await _log(session, estate, row.unit, "unbound", actor, binding_id=binding_id)
    await revoke_session(service.settings.nats_url, binding_id, row.expires_at.isoformat())


async def _photo_response(session: AsyncSession, estate: str, photo_id: str, unit: str | None) -> Response:
    row = await SelfService(session).photo(estate, photo_id, unit)
    if row is None:
        raise RuleViolation(f"no photo {photo_id!r}", status=404)
    return Response(await files().get(row.storage_key), media_type=row.content_type,
                    headers={"Cache-Control": "private, max-age=3600"})


@service.http.get("/estates/{estate}/owner-photos/{photo_id}", tags=["owners"], response_class=Response,
                  responses={200: {"content": {"image/jpeg": {}}}})
async def staff_photo(estate: str, photo_id: str, who: Principal = Depends(require_estate)) -> Response:
    """A photo an owner attached to an online request (the request's attachments name it)."""
    async with service.db.transaction() as session:
        return await _photo_response(session, estate, photo_id, None)


class StageOut(BaseModel):
    stage: str
    words: str = Field(description="The stage in the owner's plain words (受理, 派工 …)")
    round: int
    at: LocalTime
    promised_at: LocalTime | None
    note: str | None


class UpdateOut(BaseModel):
    note: str
    at: LocalTime


class SubmissionOut(BaseModel):
    id: str
    kind: str
    category: str
    description: str
    photos: list[str]
    reply_method: str
    reply_time: LocalTime | None
    anonymous: bool
    submitted_at: LocalTime
    stage: str
    words: str
    round: int
    steps: list[str] = Field(description="The whole path in plain words")
    ticket_id: str | None
    form_number: str | None = None
    first_contact_name: str | None = Field(None, description="The desk clerk who owns the request (首问)")
    promised_at: LocalTime | None = Field(None, description="The next time promised to the owner")
    history: list[StageOut] = Field(default_factory=list)
    updates: list[UpdateOut] = Field(default_factory=list, description="What the first-contact owner told the owner")


def _submission_out(row, ticket=None, history=(), updates=()) -> SubmissionOut:
    stage = orules.Stage(row.stage)
    history = [StageOut(stage=h.stage, words=orules.STAGE_WORDS[orules.Stage(h.stage)], round=h.round, at=h.at,
                        promised_at=h.promised_at, note=h.note) for h in history]
    promised = next((h.promised_at for h in reversed(history) if h.promised_at and h.round == row.round), None)
    return SubmissionOut(
        id=row.id, kind=row.kind, category=row.category, description=row.description, photos=list(row.photos),
        reply_method=row.reply_method, reply_time=row.reply_agreed_by, anonymous=row.anonymous,
        submitted_at=row.submitted_at, stage=stage.value, words=orules.STAGE_WORDS[stage], round=row.round,
        steps=[orules.STAGE_WORDS[s] for s in orules.STEPS], ticket_id=row.ticket_id,
        form_number=ticket.form_number if ticket else None,
        first_contact_name=(ticket.first_contact_name or ticket.first_contact) if ticket else None,
        promised_at=None if stage is orules.Stage.closed else promised or (
            row.reply_agreed_by if stage in (orules.Stage.submitted, orules.Stage.accepted) else None),
        history=history, updates=[UpdateOut(note=u.note, at=u.updated_at) for u in updates])


async def _full_submission(session: AsyncSession, row) -> SubmissionOut:
    ticket = updates = None
    repository = SelfService(session)
    if row.ticket_id:
        ticket = await repository.ticket_of(row.ticket_id)
        updates = await ProgressUpdates(session).for_ticket(row.ticket_id)
    history = await repository.history(row.id)
    return _submission_out(row, ticket, history, updates or ())


async def _stage(session: AsyncSession, row, stage: orules.Stage, round_: int, event_id: str, **more) -> bool:
    """Record a stage the owner sees and tell the owner (owner_handlers.record_stage)."""
    return await record_stage(owner_uow(session), service.context, row, stage, round_, event_id, **more)


# --- the desk: online requests, codes, QR codes, bindings, sent messages -------------------------


class OnlineRequestOut(SubmissionOut):
    unit: str
    opened_by: str | None
    opened_at: LocalTime | None


def _desk(who: Principal) -> None:
    who.require_role(*OWNER_DESK_ROLES)


@service.http.get("/estates/{estate}/online-requests", response_model=list[OnlineRequestOut], tags=["owners"])
async def online_requests(estate: str, status: Literal["waiting", "opened"] | None = Query(None),
                          who: Principal = Depends(require_estate)) -> list[OnlineRequestOut]:
    """Owners' online requests: waiting for a clerk to open them (受理), or opened."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        rows = await SelfService(session).online_requests(estate, status)
        out = []
        for row in rows:
            base = await _full_submission(session, row)
            out.append(OnlineRequestOut(**base.model_dump(), unit="" if row.anonymous else row.unit,
                                        opened_by=row.opened_by, opened_at=row.opened_at))
    return out


@service.http.post("/estates/{estate}/online-requests/{submission_id}/open", response_model=TicketOut, tags=["owners"])
async def open_online_request(estate: str, submission_id: str, who: Principal = Depends(require_estate)) -> TicketOut:
    """受理: the clerk who first opens an owner's online request becomes its first-contact
    owner (RULES §1), and it is registered as a normal request, channel `online`. Opening
    it again (anyone) returns the same request; the first opener stays its owner."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        repository = SelfService(session)
        row = await repository.submission(submission_id, estate, lock=True)
        if row is None:
            raise RuleViolation(f"no online request {submission_id!r} in estate {estate!r}", status=404)
        now = _now()
        building = row.unit.split("-")[0] if "-" in row.unit else None
        estate_buildings = service.directory.estate(estate).buildings
        body = RequestIn(
            kind=row.kind, channel=Channel.online, description=row.description, category=row.category,
            unit=None if row.anonymous else row.unit,
            building=building if building and (not estate_buildings or building in estate_buildings) else None,
            reply_method=row.reply_method,
            # A wished-for time already past when the clerk opens it cannot be agreed any more.
            reply_agreed_by=row.reply_agreed_by if row.reply_agreed_by and row.reply_agreed_by > now else None,
            anonymous=row.anonymous, attachments=[f"/v1/estates/{estate}/owner-photos/{p}" for p in row.photos],
            client_request_id=ONLINE_PREFIX + submission_id,
        )
        ticket = await register(estate, body, who)
        if row.ticket_id is None:
            row = await repository.opened(submission_id, ticket.id, who.staff_id, now)
            await _stage(session, row, orules.Stage.accepted, 1, f"opened-{submission_id}", at=now,
                         note=ticket.first_contact_name or ticket.first_contact, form_number=ticket.form_number,
                         promised_at=row.reply_agreed_by)
    return ticket


class BindCodeOut(BaseModel):
    unit: str
    code: str = Field(description="To read out to the owner at the desk; also in the sent messages")
    expires_at: LocalTime


@service.http.post("/estates/{estate}/units/{unit}/bind-code", status_code=201, response_model=BindCodeOut,
                   tags=["owners"])
async def desk_bind_code(estate: str, unit: str, who: Principal = Depends(require_estate)) -> BindCodeOut:
    """A binding code the desk reads out to an owner standing in front of it."""
    async with service.db.transaction() as session:
        await _known_unit(session, estate, unit)
        _refuse_if_locked(await SelfService(session).lock_row(estate, unit), estate)
        code, _ = await _issue_code(session, estate, unit, f"desk:{who.staff_id}")
        await _log(session, estate, unit, "code_issued", who.staff_id)
    return BindCodeOut(unit=unit, code=code,
                       expires_at=_now() + dt.timedelta(minutes=_policy(estate).bind_code_minutes))


def bind_link(base: str, estate: str, unit: str) -> str:
    return f"{base.rstrip('/')}/o/bind/{quote(estate)}/{quote(unit)}"


@service.http.get("/estates/{estate}/units/{unit}/bind-qr", tags=["owners"], response_class=Response,
                  responses={200: {"content": {"image/svg+xml": {}}}})
async def bind_qr(estate: str, unit: str, base: str = Query(..., max_length=200, pattern=r"^https?://[^\s]+$",
                                                            description="The console's address, e.g. https://kf.example.com"),
                  who: Principal = Depends(require_estate)) -> Response:
    """The unit's binding link as a printable QR code (SVG, made with segno)."""
    async with service.db.transaction() as session:
        await _known_unit(session, estate, unit)
    qr = segno.make(bind_link(base, estate, unit), error="m")
    return Response(qr.svg_inline(scale=6, title=f"{unit} 绑定"), media_type="image/svg+xml")


class BindingOut(BaseModel):
    id: str
    unit: str
    on_file: list[str] = Field(default_factory=list, description="The unit's owners and residents on file, "
                               "phone masked per policy (intake.mask_keep_head/tail)")
    device: str = Field(description="Masked")
    bound_at: LocalTime
    unbound_at: LocalTime | None
    unbound_by: str | None


def _mask_device(device: str) -> str:
    return device[:4] + "****" if len(device) > 4 else "****"


@service.http.get("/estates/{estate}/owner-bindings", response_model=list[BindingOut], tags=["owners"])
async def list_bindings(estate: str, unit: str | None = Query(None, max_length=limits.UNIT_CODE_MAX),
                        include_removed: bool = Query(False), who: Principal = Depends(require_estate)) -> list[BindingOut]:
    """Who is bound to which unit (devices masked)."""
    _desk(who)
    policy = service.directory.policy_for(estate)
    async with service.db.transaction() as session:
        repository = SelfService(session)
        rows = await repository.bindings(estate, unit, include_removed)
        people = await repository.people_on_file(estate, {r.unit for r in rows})
    on_file: dict[str, list[str]] = {}
    for person in people:
        on_file.setdefault(person.unit, []).append(
            f"{person.name} {rules.mask_phone(person.phone, policy)}".strip())
    return [BindingOut(id=r.id, unit=r.unit, on_file=on_file.get(r.unit, []), device=_mask_device(r.device),
                       bound_at=r.bound_at, unbound_at=r.unbound_at, unbound_by=r.unbound_by) for r in rows]


@service.http.delete("/estates/{estate}/owner-bindings/{binding_id}", status_code=204, tags=["owners"])
async def desk_unbind(estate: str, binding_id: str, who: Principal = Depends(require_estate)) -> Response:
    """The desk removes a binding (moved out, lost phone); logged, refused everywhere at once."""
    await _unbind(estate, binding_id, who.staff_id)
    return Response(status_code=204)


class BindingLogOut(BaseModel):
    unit: str
    action: str
    binding_id: str | None
    actor: str
    device: str | None
    at: LocalTime


@service.http.get("/estates/{estate}/owner-binding-log", response_model=list[BindingLogOut], tags=["owners"])
async def binding_log(estate: str, unit: str | None = Query(None, max_length=limits.UNIT_CODE_MAX),
                      who: Principal = Depends(require_estate)) -> list[BindingLogOut]:
    _desk(who)
    async with service.db.transaction() as session:
        rows = await SelfService(session).log_entries(estate, unit)
    return [BindingLogOut(unit=r.unit, action=r.action, binding_id=r.binding_id, actor=r.actor,
                          device=_mask_device(r.device) if r.device else None, at=r.at) for r in rows]


class MessageOut(BaseModel):
    id: int
    unit: str
    recipient: str
    purpose: str
    text: str
    ticket_id: str | None
    sent_at: LocalTime
    delivered_at: LocalTime | None


@service.http.get("/estates/{estate}/owner-messages", response_model=list[MessageOut], tags=["owners"])
async def sent_messages(estate: str, unit: str | None = Query(None, max_length=limits.UNIT_CODE_MAX),
                        who: Principal = Depends(require_estate)) -> list[MessageOut]:
    """What the notifier sent (the embedded notifier's delivery: the desk reads codes out)."""
    _desk(who)
    async with service.db.transaction() as session:
        rows = await SelfService(session).messages(estate, unit)
    return [MessageOut(id=r.id, unit=r.unit, recipient=r.recipient, purpose=r.purpose, text=r.text,
                       ticket_id=r.ticket_id, sent_at=r.sent_at, delivered_at=r.delivered_at) for r in rows]


# --- the projection: ticket events → the owner's stage and a message -----------------------------


def owner_uow(session: AsyncSession) -> IntakeUnitOfWork:
    """Intake's unit of work with the owners' repository and the notifier."""
    return IntakeUnitOfWork(session, service.emit, owners=SelfService(session),
                            notify=lambda **message: notifier.send(session, **message))


_BATCH_UOW = "intake.owner_uow"


def _batch_uow(session: AsyncSession) -> IntakeUnitOfWork:
    """One unit of work for a consumer batch's session (it carries the batch's read-ahead
    tickets); each batch has a session of its own, so nothing outlives the batch."""
    return of_batch(session, _BATCH_UOW, owner_uow)


async def prepare_owner_batch(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Read the batch's tickets in one query before its events are handled."""
    await prepare_ticket_events_for_owner(events, _batch_uow(session))


@service.consumer(description="Owners' view of their online requests: each stage of the countersign form in "
                              "plain words, and a message to the owner at each change (issue 15).",
                  prepare=prepare_owner_batch,
                  ignore=lambda event: concerns_no_owner(event, registration_desk.recent_keys))
async def on_ticket_event(session: AsyncSession, event: CloudEvent) -> None:
    await handle_ticket_event_for_owner(event, _batch_uow(session), service.context)


# Desk routes by role (RULES §1: owner data only through customer service); owners' writes
# need an owner token for their unit; asking for a code and binding need none.
service.write_roles.update({
    ("POST", "/estates/{estate}/online-requests/{submission_id}/open"): OWNER_DESK_ROLES,
    ("POST", "/estates/{estate}/units/{unit}/bind-code"): OWNER_DESK_ROLES,
    ("DELETE", "/estates/{estate}/owner-bindings/{binding_id}"): OWNER_DESK_ROLES,
})
service.owner_routes |= {
    ("POST", "/owner/estates/{estate}/photos"),
    ("POST", "/owner/estates/{estate}/requests"),
    ("DELETE", "/owner/estates/{estate}/binding"),
    ("POST", "/owner/estates/{estate}/session/renew"),
}
OWNER_SIGN_IN = {("POST", "/owner/estates/{estate}/units/{unit}/code"),
                 ("POST", "/owner/estates/{estate}/units/{unit}/bind")}
service.public_routes |= OWNER_SIGN_IN
# Owners' data at the desk: a refusal there goes to the archive's access log too.
service.audited_routes += ("/estates/{estate}/online-requests", "/estates/{estate}/owner-photos",
                           "/estates/{estate}/owner-bindings", "/estates/{estate}/owner-binding-log",
                           "/estates/{estate}/owner-messages")
