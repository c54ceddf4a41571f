"""The owners' own routes (issue 15), under /owner/...: get a binding code and bind a unit,
renew the owner token, see and remove the binding, upload photos, submit online requests
and follow them, read the messages sent about them. Helpers shared with the desk (the
notifier, the binding checks, the owner-facing submission view) are in owners.py."""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from typing import Literal

from fastapi import Depends, Request, Response
from pydantic import BaseModel, Field

from services.intake import owner_rules as orules
from services.intake.app import service
from services.intake.owner_store import SelfService
from services.intake.owners import (
    TOO_MANY, SubmissionOut, _estate_name, _full_submission, _issue_code, _known_unit, _live_binding, _log, _now,
    _photo_response, _policy, _refuse_if_locked, _refuse_limit, _stage, _unbind, _zone, files,
)
from shared import limits
from shared.auth import AuthError
from shared.errors import RuleViolation
from shared.events import Kind, ReplyMethod
from shared.limits import Category, Contract, Instant, text
from shared.owner_auth import OwnerPrincipal, device_of, issue_owner_token, owner
from shared.periods import canonical_category
from shared.service import LocalTime
from sqlalchemy.ext.asyncio import AsyncSession


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
        _refuse_if_locked(await SelfService(session).lock_row(estate, unit), estate)
        hour_ago = _now() - dt.timedelta(hours=1)
        repository = SelfService(session)
        _refuse_limit(orules.first_exceeded(
            orules.Limit("codes for this unit", "本户获取验证码", await repository.codes_for_unit(estate, unit, hour_ago),
                         policy.codes_per_unit_per_hour),
            orules.Limit("codes from this device", "本设备获取验证码",
                         await repository.codes_from_device(device, hour_ago), policy.codes_per_device_per_hour)))
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
        repository = SelfService(session)
        lock = await repository.lock_row(estate, unit)
        _refuse_if_locked(lock, estate)
        now = _now()
        candidates = await repository.live_codes(estate, unit, now)
        given = orules.code_hash(service.settings.signing_key, estate, unit, body.code)
        match = next((c for c in candidates if hmac.compare_digest(c.code_hash, given)), None)
        if match is None:
            wrong, locked = orules.after_wrong_code(lock.wrong_codes, now, policy)
            await repository.count_wrong_code(estate, unit, wrong, locked)
            await _log(session, estate, unit, "locked" if locked else "wrong_code", "owner", device=device)
            refusal = (AuthError(403, *orules.bind_locked(locked, now, _zone(estate))) if locked else
                       AuthError(401, f"wrong or expired code ({policy.bind_max_wrong_codes - wrong} tries left)",
                                 f"验证码错误或已过期（还可尝试 {policy.bind_max_wrong_codes - wrong} 次）"))
        else:
            refusal = None
            binding = str(uuid.uuid4())
            real_now = dt.datetime.now(dt.timezone.utc)  # tokens expire on real time (shared.auth)
            expires = real_now + dt.timedelta(days=policy.owner_token_days)
            await repository.use_code(match.id, now)
            await repository.reset_wrong_codes(estate, unit)
            await repository.add_binding(dict(id=binding, estate=estate, unit=unit, device=device, bound_at=now,
                                              expires_at=expires))
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
        await SelfService(session).extend_binding(who.binding, expires)
    token = issue_owner_token(service.settings.signing_key, who.binding, estate, who.unit, now=real_now,
                              ttl=dt.timedelta(days=policy.owner_token_days))
    return OwnerSessionOut(token=token, estate=estate, estate_name=_estate_name(estate), unit=who.unit,
                           binding=who.binding, expires_at=expires)


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
        repository = SelfService(session)
        loose = await repository.loose_photos(who.binding, _now() - dt.timedelta(days=1))
        _refuse_limit(orules.first_exceeded(orules.Limit(
            "photos not attached to a request", "上传照片", loose,
            policy.photos_per_request * policy.submissions_per_device_per_hour)))
        await files().put(key, data, content_type)
        await repository.add_photo(dict(id=photo_id, estate=estate, unit=who.unit, binding_id=who.binding,
                                        content_type=content_type, size=len(data), storage_key=key,
                                        uploaded_at=_now()))
    return PhotoOut(id=photo_id, content_type=content_type, size=len(data))


@service.http.get("/owner/estates/{estate}/photos/{photo_id}", tags=["owners' self-service"],
                  response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
async def owner_photo(estate: str, photo_id: str, who: OwnerPrincipal = Depends(owner)) -> Response:
    async with service.db.transaction() as session:
        return await _photo_response(session, estate, photo_id, who.unit)


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
        repository = SelfService(session)
        _refuse_limit(orules.first_exceeded(
            orules.Limit("requests from this unit today", "本户提交", await repository.submissions_for_unit(
                estate, who.unit, now - dt.timedelta(days=1)), policy.submissions_per_unit_per_day),
            orules.Limit("requests from this device", "本设备提交", await repository.submissions_from_device(
                device, now - dt.timedelta(hours=1)), policy.submissions_per_device_per_hour)))
        if body.photos:
            mine = await repository.unattached_of(who.binding, body.photos)
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
        row = await repository.add_submission(values)
        if body.photos:
            await repository.attach_photos(body.photos, submission)
        await _stage(session, row, orules.Stage.submitted, 1, f"submitted-{submission}", at=now)
        return await _full_submission(session, row)


@service.http.get("/owner/estates/{estate}/requests", response_model=list[SubmissionOut], tags=["owners' self-service"])
async def owner_requests(estate: str, who: OwnerPrincipal = Depends(owner)) -> list[SubmissionOut]:
    """The unit's online requests, newest first (only this unit's, whoever bound it)."""
    async with service.db.transaction() as session:
        await _live_binding(session, who)
        rows = await SelfService(session).submissions_of_unit(estate, who.unit)
        return [await _full_submission(session, row) for row in rows]


async def _owned_submission(session: AsyncSession, estate: str, submission_id: str, unit: str):
    row = await SelfService(session).submission(submission_id, estate, unit)
    if row is None:  # another unit's request is "not found", never "forbidden": ids are not probed
        raise RuleViolation(f"no request {submission_id!r} of your unit", status=404, zh="未找到本户的该报事")
    return row


@service.http.get("/owner/estates/{estate}/requests/{submission_id}", response_model=SubmissionOut,
                  tags=["owners' self-service"])
async def owner_request(estate: str, submission_id: str, who: OwnerPrincipal = Depends(owner)) -> SubmissionOut:
    async with service.db.transaction() as session:
        await _live_binding(session, who)
        return await _full_submission(session, await _owned_submission(session, estate, submission_id, who.unit))


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
        rows = await SelfService(session).progress_messages(estate, who.unit)
    return [OwnerMessageOut(text=r.text, sent_at=r.sent_at, submission_id=r.submission_id) for r in rows]
