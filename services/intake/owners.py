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
service's tables. Pure rules live in owner_rules.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import uuid
from typing import Literal
from urllib.parse import quote

import httpx
import segno
import sqlalchemy as sa
from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import owner_rules as orules
from services.intake import owner_store as ostore
from services.intake import rules, store
from services.intake.api import RequestIn, TicketOut, register
from services.intake.app import OWNER_DESK_ROLES, service
from shared import limits
from shared.auth import AuthError, Principal
from shared.directory import revoke_session
from shared.errors import RuleViolation
from shared.events import Channel, CloudEvent, Kind, ReplyMethod
from shared.limits import Category, Contract, Instant, text
from shared.owner_auth import OwnerPrincipal, device_of, issue_owner_token, owner
from shared.periods import canonical_category
from shared.service import ErrorOut, LocalTime, known_estate, require_estate
from shared.storage import FileStore, file_store_from_env

log = logging.getLogger("estatedesk.intake.owners")
B, L, M, P, SUB, ST = (ostore.bindings, ostore.binding_log, ostore.messages, ostore.photos, ostore.submissions,
                       ostore.stages)
T = store.tickets
TOO_MANY = {429: {"model": ErrorOut, "description": "A rate limit of the owners' policy was reached"}}
OWNER_KINDS = (Kind.repair, Kind.complaint, Kind.inquiry, Kind.suggestion, Kind.praise)
DESK = "前台"
ONLINE_PREFIX = "online-"  # client_request_id of the request an online submission became


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
        await session.execute(sa.insert(M).values(
            estate=estate, unit=unit, recipient=recipient, purpose=purpose, text=text, ticket_id=ticket_id,
            binding_id=binding_id, phone=phone, sent_at=now, delivered_at=None if self.provider_url else now))

    async def deliver(self) -> int:
        """Hand undelivered messages to the provider (at least once; the provider keys by id)."""
        if not self.provider_url:
            return 0
        async with service.db.transaction() as session:
            rows = (await session.execute(sa.select(M).where(M.c.delivered_at.is_(None)).order_by(M.c.id).limit(100)
                                          .with_for_update(skip_locked=True))).all()
            async with httpx.AsyncClient(timeout=10) as client:
                for row in rows:
                    r = await client.post(self.provider_url, json={
                        "id": row.id, "estate": row.estate, "unit": row.unit, "purpose": row.purpose,
                        "text": row.text, "phone": row.phone, "binding": row.binding_id})
                    if r.status_code >= 300:
                        log.warning("notifier provider refused message %s: %s", row.id, r.status_code)
                        break
                    await session.execute(sa.update(M).where(M.c.id == row.id).values(delivered_at=_now()))
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
    await session.execute(sa.insert(L).values(estate=estate, unit=unit, action=action, binding_id=binding_id,
                                              actor=actor, device=device, at=_now()))


async def _known_unit(session: AsyncSession, estate: str, unit: str) -> None:
    known_estate(service, estate)
    found = (await session.execute(sa.select(store.units.c.code).where(
        store.units.c.estate == estate, store.units.c.code == unit))).first()
    if found is None:
        raise RuleViolation(f"estate {estate!r} has no unit {unit!r}", status=404)


async def _count(session: AsyncSession, table, *where) -> int:
    return (await session.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar_one()


def _refuse_limit(limit: orules.Limit | None) -> None:
    if limit is not None:
        raise RuleViolation(f"too many {limit.what}: at most {limit.allowed}; try again later", status=429,
                            zh=f"{limit.what_zh}过于频繁（上限 {limit.allowed}），请稍后再试")


async def _lock_row(session: AsyncSession, estate: str, unit: str):
    await session.execute(pg_insert(ostore.bind_locks).values(estate=estate, unit=unit).on_conflict_do_nothing())
    return (await session.execute(sa.select(ostore.bind_locks).where(
        ostore.bind_locks.c.estate == estate, ostore.bind_locks.c.unit == unit).with_for_update())).one()


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
    await session.execute(sa.insert(ostore.bind_codes).values(
        estate=estate, unit=unit, code_hash=orules.code_hash(service.settings.signing_key, estate, unit, code),
        device=device, issued_at=now, expires_at=now + dt.timedelta(minutes=policy.owners.bind_code_minutes)))
    phone = (await session.execute(sa.select(store.owners.c.phone).where(
        store.owners.c.estate == estate, store.owners.c.unit == unit, store.owners.c.phone.is_not(None))
        .order_by(store.owners.c.relation, store.owners.c.created_at).limit(1))).scalar()
    recipient = rules.mask_phone(phone, policy) if phone else DESK
    await notifier.send(session, estate=estate, unit=unit, recipient=recipient, purpose="bind_code", phone=phone,
                        text=f"【{_estate_name(estate)}】{unit} 房屋绑定验证码 {code}，"
                             f"{policy.owners.bind_code_minutes} 分钟内有效。如非本人操作请忽略。")
    return code, recipient


def _estate_name(estate: str) -> str:
    found = service.directory.estate(estate)
    return found.name if found else estate


# --- owner side: binding -------------------------------------------------------------------------


class CodeSentOut(BaseModel):
    sent_to: str = Field(description="The masked phone on file, or 前台 when the desk reads the code out")
    expires_at: LocalTime


class BindIn(Contract):
    code: str = Field(min_length=4, max_length=10, pattern=r"^[0-9]+$")


class OwnerSessionOut(BaseModel):
    token: str = Field(description="Owner token for the /owner/... routes of every service")
    estate: str
    estate_name: str
    unit: str
    binding: str
    expires_at: LocalTime


@service.http.post("/owner/estates/{estate}/units/{unit}/code", response_model=CodeSentOut, tags=["owners' self-service"],
                   responses=TOO_MANY)
async def send_bind_code(estate: str, unit: str, request: Request) -> CodeSentOut:
    """Send a one-time binding code for the unit (no token: this is how an owner gets in).
    Limited per unit and per device per hour (policy.owners); refused while binding is
    locked after wrong codes."""
    device = device_of(request)
    policy = _policy(estate) if service.directory.estate(estate) else None
    async with service.db.transaction() as session:
        await _known_unit(session, estate, unit)
        _refuse_if_locked(await _lock_row(session, estate, unit), estate)
        hour_ago = _now() - dt.timedelta(hours=1)
        C = ostore.bind_codes
        _refuse_limit(orules.first_exceeded(
            orules.Limit("codes for this unit", "本户获取验证码", await _count(
                session, C, C.c.estate == estate, C.c.unit == unit, C.c.issued_at > hour_ago),
                policy.codes_per_unit_per_hour),
            orules.Limit("codes from this device", "本设备获取验证码", await _count(
                session, C, C.c.device == device, C.c.issued_at > hour_ago), policy.codes_per_device_per_hour)))
        _, recipient = await _issue_code(session, estate, unit, device)
        await _log(session, estate, unit, "code_sent", "owner", device=device)
    return CodeSentOut(sent_to=recipient, expires_at=_now() + dt.timedelta(minutes=policy.bind_code_minutes))


@service.http.post("/owner/estates/{estate}/units/{unit}/bind", response_model=OwnerSessionOut,
                   tags=["owners' self-service"])
async def bind_unit(estate: str, unit: str, body: BindIn, request: Request) -> OwnerSessionOut:
    """Prove the tie to the unit with a one-time code and get an owner token. The policy's
    count of wrong codes in a row (5) locks binding for the unit for its minutes (30)."""
    device = device_of(request)
    async with service.db.transaction() as session:
        await _known_unit(session, estate, unit)
        policy = service.directory.policy_for(estate).owners
        lock = await _lock_row(session, estate, unit)
        _refuse_if_locked(lock, estate)
        now = _now()
        C = ostore.bind_codes
        candidates = (await session.execute(sa.select(C).where(
            C.c.estate == estate, C.c.unit == unit, C.c.used_at.is_(None), C.c.expires_at > now))).all()
        given = orules.code_hash(service.settings.signing_key, estate, unit, body.code)
        match = next((c for c in candidates if hmac.compare_digest(c.code_hash, given)), None)
        if match is None:
            wrong, locked = orules.after_wrong_code(lock.wrong_codes, now, policy)
            await session.execute(sa.update(ostore.bind_locks).where(
                ostore.bind_locks.c.estate == estate, ostore.bind_locks.c.unit == unit)
                .values(wrong_codes=wrong, locked_until=locked))
            await _log(session, estate, unit, "locked" if locked else "wrong_code", "owner", device=device)
            refusal = (AuthError(403, *orules.bind_locked(locked, now, _zone(estate))) if locked else
                       AuthError(401, f"wrong or expired code ({policy.bind_max_wrong_codes - wrong} tries left)",
                                 f"验证码错误或已过期（还可尝试 {policy.bind_max_wrong_codes - wrong} 次）"))
        else:
            refusal = None
            binding = str(uuid.uuid4())
            real_now = dt.datetime.now(dt.timezone.utc)  # tokens expire on real time (shared.auth)
            expires = real_now + dt.timedelta(days=policy.owner_token_days)
            await session.execute(sa.update(C).where(C.c.id == match.id).values(used_at=now))
            await session.execute(sa.update(ostore.bind_locks).where(
                ostore.bind_locks.c.estate == estate, ostore.bind_locks.c.unit == unit).values(wrong_codes=0))
            await session.execute(sa.insert(B).values(id=binding, estate=estate, unit=unit, device=device,
                                                      bound_at=now, expires_at=expires))
            await _log(session, estate, unit, "bound", "owner", binding_id=binding, device=device)
    if refusal:  # raised after the commit: the wrong code is counted
        raise refusal
    token = issue_owner_token(service.settings.signing_key, binding, estate, unit, now=real_now,
                              ttl=dt.timedelta(days=policy.owner_token_days))
    return OwnerSessionOut(token=token, estate=estate, estate_name=_estate_name(estate), unit=unit, binding=binding,
                           expires_at=expires)


@service.http.post("/owner/estates/{estate}/session/renew", response_model=OwnerSessionOut,
                   tags=["owners' self-service"])
async def renew_owner_session(estate: str, who: OwnerPrincipal = Depends(owner)) -> OwnerSessionOut:
    """A fresh owner token for a binding still in place (issue 15: a binding lasts until
    the owner or the desk removes it; the token, `owners.owner_token_days` long, is renewed
    by the owners' page while it is still valid). 401 once the binding was removed or the
    token has expired (then the owner binds again)."""
    policy = service.directory.policy_for(estate).owners
    real_now = dt.datetime.now(dt.timezone.utc)  # tokens expire on real time (shared.auth)
    expires = real_now + dt.timedelta(days=policy.owner_token_days)
    async with service.db.transaction() as session:
        await _live_binding(session, who)
        # The binding's expiry tells the revoked list how long to remember it.
        await session.execute(sa.update(B).where(B.c.id == who.binding).values(expires_at=expires))
    token = issue_owner_token(service.settings.signing_key, who.binding, estate, who.unit, now=real_now,
                              ttl=dt.timedelta(days=policy.owner_token_days))
    return OwnerSessionOut(token=token, estate=estate, estate_name=_estate_name(estate), unit=who.unit,
                           binding=who.binding, expires_at=expires)


async def _live_binding(session: AsyncSession, who: OwnerPrincipal):
    row = (await session.execute(sa.select(B).where(B.c.id == who.binding))).first()
    if row is None or row.unbound_at is not None:
        raise AuthError(401, "this binding was removed: bind the unit again", "房屋绑定已解除，请重新绑定")
    return row


class OwnerMeOut(BaseModel):
    estate: str
    estate_name: str
    unit: str
    binding: str
    bound_at: LocalTime


@service.http.get("/owner/estates/{estate}/me", response_model=OwnerMeOut, tags=["owners' self-service"])
async def owner_me(estate: str, who: OwnerPrincipal = Depends(owner)) -> OwnerMeOut:
    async with service.db.transaction() as session:
        row = await _live_binding(session, who)
    return OwnerMeOut(estate=estate, estate_name=_estate_name(estate), unit=who.unit, binding=who.binding,
                      bound_at=row.bound_at)


async def _unbind(estate: str, binding_id: str, actor: str, unit: str | None = None) -> None:
    async with service.db.transaction() as session:
        row = (await session.execute(sa.update(B).where(
            B.c.id == binding_id, B.c.estate == estate, B.c.unbound_at.is_(None), *([B.c.unit == unit] if unit else []))
            .values(unbound_at=_now(), unbound_by=actor).returning(B.c.unit, B.c.expires_at))).first()
        if row is None:
            raise RuleViolation(f"no live binding {binding_id!r} in estate {estate!r}", status=404)
        await _log(session, estate, row.unit, "unbound", actor, binding_id=binding_id)
    await revoke_session(service.settings.nats_url, binding_id, row.expires_at.isoformat())


@service.http.delete("/owner/estates/{estate}/binding", status_code=204, tags=["owners' self-service"])
async def unbind_self(estate: str, who: OwnerPrincipal = Depends(owner)) -> Response:
    """The owner removes their own binding; the token is refused everywhere from now on."""
    await _unbind(estate, who.binding, who.actor, who.unit)
    return Response(status_code=204)


# --- owner side: photos and requests -------------------------------------------------------------


class PhotoOut(BaseModel):
    id: str
    content_type: str
    size: int


@service.http.post("/owner/estates/{estate}/photos", status_code=201, response_model=PhotoOut,
                   tags=["owners' self-service"], responses=TOO_MANY,
                   openapi_extra={"requestBody": {"required": True, "content": {
                       "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                       "image/png": {"schema": {"type": "string", "format": "binary"}},
                       "image/webp": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_photo(estate: str, request: Request, who: OwnerPrincipal = Depends(owner)) -> PhotoOut:
    """One photo as the request body (JPEG, PNG or WebP by its bytes; at most
    policy.owners.photo_max_kib); attach its id to a request within the day."""
    policy = _policy(estate)
    data = await request.body()
    problem = orules.photo_problem(data, policy)
    if problem:
        raise RuleViolation(problem[0], status=422, zh=problem[1])
    photo_id = str(uuid.uuid4())
    content_type = orules.photo_type(data)
    key = f"owner-photos/{estate}/{photo_id}"
    async with service.db.transaction() as session:
        await _live_binding(session, who)
        loose = await _count(session, P, P.c.binding_id == who.binding, P.c.submission_id.is_(None),
                             P.c.uploaded_at > _now() - dt.timedelta(days=1))
        _refuse_limit(orules.first_exceeded(orules.Limit(
            "photos not attached to a request", "上传照片", loose,
            policy.photos_per_request * policy.submissions_per_device_per_hour)))
        await files().put(key, data, content_type)
        await session.execute(sa.insert(P).values(id=photo_id, estate=estate, unit=who.unit, binding_id=who.binding,
                                                  content_type=content_type, size=len(data), storage_key=key,
                                                  uploaded_at=_now()))
    return PhotoOut(id=photo_id, content_type=content_type, size=len(data))


async def _photo_response(session: AsyncSession, estate: str, photo_id: str, unit: str | None) -> Response:
    row = (await session.execute(sa.select(P).where(P.c.id == photo_id, P.c.estate == estate,
                                                    *([P.c.unit == unit] if unit else [])))).first()
    if row is None:
        raise RuleViolation(f"no photo {photo_id!r}", status=404)
    return Response(await files().get(row.storage_key), media_type=row.content_type,
                    headers={"Cache-Control": "private, max-age=3600"})


@service.http.get("/owner/estates/{estate}/photos/{photo_id}", tags=["owners' self-service"],
                  response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
async def owner_photo(estate: str, photo_id: str, who: OwnerPrincipal = Depends(owner)) -> Response:
    async with service.db.transaction() as session:
        return await _photo_response(session, estate, photo_id, who.unit)


@service.http.get("/estates/{estate}/owner-photos/{photo_id}", tags=["owners"], response_class=Response,
                  responses={200: {"content": {"image/jpeg": {}}}})
async def staff_photo(estate: str, photo_id: str, who: Principal = Depends(require_estate)) -> Response:
    """A photo an owner attached to an online request (the request's attachments name it)."""
    async with service.db.transaction() as session:
        return await _photo_response(session, estate, photo_id, None)


class SubmissionIn(Contract):
    """An owner's request (002 §4.2.1 c): kind, category, description, photos, how and when
    to be answered; anonymous only for opinions (not a repair: someone must be let in)."""

    kind: Literal["repair", "complaint", "inquiry", "suggestion", "praise"]
    category: Category = "general"
    description: text(limits.DESCRIPTION_MAX)
    photos: list[str] = Field(default_factory=list, max_length=20, description="Ids from the photo upload")
    reply_method: Literal["phone", "online", "visit", "letter"] = "online"
    reply_time: Instant | None = Field(None, description="When the owner would like the answer")
    anonymous: bool = False
    location: str | None = Field(None, max_length=limits.SHORT_TEXT_MAX)


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
    if row.ticket_id:
        ticket = (await session.execute(sa.select(T).where(T.c.id == row.ticket_id))).first()
        U = store.progress_updates
        updates = (await session.execute(sa.select(U).where(U.c.ticket_id == row.ticket_id)
                                         .order_by(U.c.updated_at, U.c.id))).all()
    history = (await session.execute(sa.select(ST).where(ST.c.submission_id == row.id).order_by(ST.c.at, ST.c.id))).all()
    return _submission_out(row, ticket, history, updates or ())


async def _stage(session: AsyncSession, row, stage: orules.Stage, round_: int, event_id: str, *,
                 promised_at: dt.datetime | None = None, note: str | None = None, at: dt.datetime | None = None,
                 form_number: str | None = None) -> bool:
    """Record a stage the owner sees and tell the owner; False when this event was seen."""
    at = at or _now()
    inserted = (await session.execute(pg_insert(ST).values(
        submission_id=row.id, event_id=event_id, stage=stage.value, round=round_, at=at, promised_at=promised_at,
        note=note).on_conflict_do_nothing().returning(ST.c.id))).first()
    if inserted is None:
        return False
    await session.execute(sa.update(SUB).where(SUB.c.id == row.id).values(stage=stage.value, round=round_, stage_at=at))
    await notifier.send(session, estate=row.estate, unit=row.unit, recipient=f"业主（{row.unit}）", purpose="progress",
                        ticket_id=row.ticket_id, binding_id=row.binding_id,
                        text=orules.stage_message(stage, form_number, round_, promised_at, _zone(row.estate), note))
    return True


@service.http.post("/owner/estates/{estate}/requests", status_code=201, response_model=SubmissionOut,
                   tags=["owners' self-service"], responses=TOO_MANY)
async def submit_request(estate: str, body: SubmissionIn, request: Request,
                         who: OwnerPrincipal = Depends(owner)) -> SubmissionOut:
    """Submit a request online. It waits for the desk clerk who first opens it, who becomes
    its first-contact owner; limited per unit per day and per device per hour."""
    policy = _policy(estate)
    device = device_of(request)
    if body.anonymous and body.kind == Kind.repair:
        raise RuleViolation("a repair cannot be anonymous: someone must let the technician in", status=422,
                            zh="报修不能匿名：维修人员需要上门")
    if len(body.photos) > policy.photos_per_request:
        raise RuleViolation(f"at most {policy.photos_per_request} photos per request", status=422,
                            zh=f"每次最多上传 {policy.photos_per_request} 张照片")
    now = _now()
    if body.reply_time is not None and body.reply_time < now:
        raise RuleViolation("the reply time lies in the past", status=422, zh="期望答复时间已过")
    category = canonical_category(body.category) or "general"
    async with service.db.transaction() as session:
        await _live_binding(session, who)
        _refuse_limit(orules.first_exceeded(
            orules.Limit("requests from this unit today", "本户提交", await _count(
                session, SUB, SUB.c.estate == estate, SUB.c.unit == who.unit,
                SUB.c.submitted_at > now - dt.timedelta(days=1)), policy.submissions_per_unit_per_day),
            orules.Limit("requests from this device", "本设备提交", await _count(
                session, SUB, SUB.c.device == device, SUB.c.submitted_at > now - dt.timedelta(hours=1)),
                policy.submissions_per_device_per_hour)))
        if body.photos:
            mine = set((await session.execute(sa.select(P.c.id).where(
                P.c.id.in_(body.photos), P.c.binding_id == who.binding, P.c.submission_id.is_(None)))).scalars())
            unknown = [p for p in body.photos if p not in mine]
            if unknown:
                raise RuleViolation(f"unknown or already attached photos: {', '.join(unknown)}", status=422,
                                    zh="照片无效或已被使用，请重新上传")
        submission = str(uuid.uuid4())
        values = dict(id=submission, estate=estate, unit=who.unit, binding_id=who.binding, device=device,
                      kind=body.kind, category=category,
                      description=body.description + (f"\n位置：{body.location}" if body.location else ""),
                      photos=body.photos, reply_method=ReplyMethod.none.value if body.anonymous else body.reply_method,
                      reply_agreed_by=body.reply_time, anonymous=body.anonymous, submitted_at=now,
                      stage=orules.Stage.submitted.value, round=1, stage_at=now)
        await session.execute(sa.insert(SUB).values(**values))
        if body.photos:
            await session.execute(sa.update(P).where(P.c.id.in_(body.photos)).values(submission_id=submission))
        row = (await session.execute(sa.select(SUB).where(SUB.c.id == submission))).one()
        await _stage(session, row, orules.Stage.submitted, 1, f"submitted-{submission}", at=now)
        return await _full_submission(session, row)


@service.http.get("/owner/estates/{estate}/requests", response_model=list[SubmissionOut], tags=["owners' self-service"])
async def owner_requests(estate: str, who: OwnerPrincipal = Depends(owner)) -> list[SubmissionOut]:
    """The unit's online requests, newest first (only this unit's, whoever bound it)."""
    async with service.db.transaction() as session:
        await _live_binding(session, who)
        rows = (await session.execute(sa.select(SUB).where(SUB.c.estate == estate, SUB.c.unit == who.unit)
                                      .order_by(SUB.c.submitted_at.desc()).limit(100))).all()
        return [await _full_submission(session, row) for row in rows]


async def _owned_submission(session: AsyncSession, estate: str, submission_id: str, unit: str):
    row = (await session.execute(sa.select(SUB).where(SUB.c.id == submission_id, SUB.c.estate == estate,
                                                      SUB.c.unit == unit))).first()
    if row is None:  # another unit's request is "not found", never "forbidden": ids are not probed
        raise RuleViolation(f"no request {submission_id!r} of your unit", status=404, zh="未找到本户的该报事")
    return row


@service.http.get("/owner/estates/{estate}/requests/{submission_id}", response_model=SubmissionOut,
                  tags=["owners' self-service"])
async def owner_request(estate: str, submission_id: str, who: OwnerPrincipal = Depends(owner)) -> SubmissionOut:
    async with service.db.transaction() as session:
        await _live_binding(session, who)
        return await _full_submission(session, await _owned_submission(session, estate, submission_id, who.unit))


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
    query = sa.select(SUB).where(SUB.c.estate == estate)
    if status:
        query = query.where(SUB.c.ticket_id.is_(None) if status == "waiting" else SUB.c.ticket_id.is_not(None))
    async with service.db.transaction() as session:
        rows = (await session.execute(query.order_by(SUB.c.submitted_at.desc()).limit(200))).all()
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
        row = (await session.execute(sa.select(SUB).where(SUB.c.id == submission_id, SUB.c.estate == estate)
                                     .with_for_update())).first()
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
            await session.execute(sa.update(SUB).where(SUB.c.id == submission_id).values(
                ticket_id=ticket.id, opened_by=who.staff_id, opened_at=now))
            row = (await session.execute(sa.select(SUB).where(SUB.c.id == submission_id))).one()
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
        _refuse_if_locked(await _lock_row(session, estate, unit), estate)
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
    query = sa.select(B).where(B.c.estate == estate)
    if unit:
        query = query.where(B.c.unit == unit)
    if not include_removed:
        query = query.where(B.c.unbound_at.is_(None))
    policy = service.directory.policy_for(estate)
    O = store.owners
    async with service.db.transaction() as session:
        rows = (await session.execute(query.order_by(B.c.bound_at.desc()).limit(500))).all()
        people = (await session.execute(sa.select(O.c.unit, O.c.name, O.c.phone).where(
            O.c.estate == estate, O.c.unit.in_({r.unit for r in rows})).order_by(O.c.relation, O.c.created_at))).all()
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
    query = sa.select(L).where(L.c.estate == estate)
    if unit:
        query = query.where(L.c.unit == unit)
    async with service.db.transaction() as session:
        rows = (await session.execute(query.order_by(L.c.at.desc(), L.c.id.desc()).limit(500))).all()
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
    query = sa.select(M).where(M.c.estate == estate)
    if unit:
        query = query.where(M.c.unit == unit)
    async with service.db.transaction() as session:
        rows = (await session.execute(query.order_by(M.c.id.desc()).limit(200))).all()
    return [MessageOut(id=r.id, unit=r.unit, recipient=r.recipient, purpose=r.purpose, text=r.text,
                       ticket_id=r.ticket_id, sent_at=r.sent_at, delivered_at=r.delivered_at) for r in rows]


class OwnerMessageOut(BaseModel):
    text: str
    sent_at: LocalTime
    submission_id: str | None = Field(description="The request it is about, for the page to open")


@service.http.get("/owner/estates/{estate}/messages", response_model=list[OwnerMessageOut],
                  tags=["owners' self-service"])
async def owner_messages(estate: str, who: OwnerPrincipal = Depends(owner)) -> list[OwnerMessageOut]:
    """The messages the notifier sent about the unit's requests, newest first (never codes)."""
    async with service.db.transaction() as session:
        await _live_binding(session, who)
        rows = (await session.execute(
            sa.select(M.c.text, M.c.sent_at, SUB.c.id.label("submission_id"))
            .join(SUB, SUB.c.ticket_id == M.c.ticket_id, isouter=True)
            .where(M.c.estate == estate, M.c.unit == who.unit, M.c.purpose == "progress")
            .order_by(M.c.id.desc()).limit(50))).all()
    return [OwnerMessageOut(text=r.text, sent_at=r.sent_at, submission_id=r.submission_id) for r in rows]


# --- the projection: ticket events → the owner's stage and a message -----------------------------


@service.consumer(description="Owners' view of their online requests: each stage of the countersign form in "
                              "plain words, and a message to the owner at each change (issue 15).")
async def on_ticket_event(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    ticket_id = data.get("ticket_id")
    if not ticket_id:
        return
    # Found by the registration's idempotency key, committed with the ticket before any
    # event of it exists: an event never outruns the link (the opening clerk's transaction
    # holds the row until it has written the link).
    ticket = (await session.execute(sa.select(T.c.form_number, T.c.client_request_id).where(T.c.id == ticket_id))).first()
    if ticket is None or not (ticket.client_request_id or "").startswith(ONLINE_PREFIX):
        return  # not an owner's online request
    row = (await session.execute(sa.select(SUB).where(
        SUB.c.id == ticket.client_request_id.removeprefix(ONLINE_PREFIX)).with_for_update())).first()
    if row is None:
        return
    form_number = ticket.form_number
    if event.event_name == "progress_updated":
        await notifier.send(session, estate=row.estate, unit=row.unit, recipient=f"业主（{row.unit}）",
                            purpose="progress", ticket_id=ticket_id, binding_id=row.binding_id,
                            text=f"您的报事（{form_number}）进展：{data.get('note', '')}")
        return
    stage = orules.next_stage(orules.Stage(row.stage), row.round, event.event_name, data.get("round"))
    if stage is None:
        return
    note = None
    if event.event_name == "assigned":
        names = {d.code: d.name for d in (service.directory.estate(row.estate).departments or [])}
        note = "、".join(names.get(d, d) for d in data.get("departments", []))
    await _stage(session, row, stage, data.get("round") or row.round, event.id, at=event.time,
                 promised_at=orules.promised_time(event.event_name, data), note=note, form_number=form_number)


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
