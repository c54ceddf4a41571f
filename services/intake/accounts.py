"""Staff sign-in (issue 16): accounts with argon2 password hashes, lock-out after repeated
wrong passwords, short-lived tokens (a shift) with renewal, sign-out.

Intake owns the directory API, so it owns the accounts too; the hashes live in intake's
tables, never in the directory bucket. Who a staff member is (name, roles, estates,
departments) is read from the directory at every sign-in and renewal, so a change there
takes effect at the next token; a staff member removed from the directory is refused by
every service at once (`shared.service.require_known_staff`).

Pure rules first (tested without I/O), then the routes (their SQL: store.Accounts).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass

from fastapi import Depends, Request, Response
from pwdlib import PasswordHash
from pydantic import BaseModel, Field

from services.intake.app import ACCOUNT_ADMIN_ROLES, service
from services.intake.store import Accounts
from shared import limits
from shared.auth import COMPANY_WIDE_ROLES, AuthError, Principal, issue_token
from shared.directory import Company, Estate, revoke_session
from shared.errors import RuleViolation
from shared.limits import Contract
from shared.policy import AccountPolicy
from shared.service import LocalTime, principal

PASSWORDS = PasswordHash.recommended()  # argon2id, OWASP parameters (pwdlib)


# --- pure rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who a sign-in speaks for, as the directory says now."""

    staff_id: str
    name: str
    roles: tuple[str, ...]
    estates: tuple[str, ...]  # ("*",) for head-office staff
    departments: tuple[str, ...]


def find_identity(company: Company, estates: dict[str, Estate], login: str) -> Identity | None:
    """The staff member whose id (or phone) is `login`: head-office staff act for every
    estate; estate staff for each estate that lists them, with the union of their roles
    there. None when nobody has that id or phone."""
    login = login.strip()
    member = next((m for m in company.staff if login in (m.id, m.phone)), None)
    if member is not None:
        return Identity(member.id, member.name, tuple(sorted(member.roles)), ("*",),
                        (member.department,) if member.department else ())
    found = [(code, m) for code, estate in sorted(estates.items()) for m in estate.staff if login in (m.id, m.phone)]
    if not found:
        return None
    staff_id = found[0][1].id
    mine = [(code, m) for code, estate in sorted(estates.items()) for m in estate.staff if m.id == staff_id]
    roles = sorted({role for _, m in mine for role in m.roles} - COMPANY_WIDE_ROLES)
    departments = sorted({m.department for _, m in mine if m.department})
    # A department head named on the department (not only in the staff list) heads it.
    departments += sorted({d.code for code, _ in mine for d in estates[code].departments
                           if d.head == staff_id} - set(departments))
    return Identity(staff_id, mine[0][1].name, tuple(roles), tuple(code for code, _ in mine), tuple(departments))


def refusal(locked_until: dt.datetime | None, disabled_at: dt.datetime | None, now: dt.datetime,
            zone: dt.tzinfo = dt.timezone.utc) -> tuple[str, str] | None:
    """Why an account may not sign in now, in English and Chinese (times in `zone`), or None."""
    if disabled_at is not None:
        return "this account is disabled; ask the company administrator", "账号已停用，请联系系统管理员"
    if locked_until is not None and locked_until > now:
        until = locked_until.astimezone(zone)
        return (f"locked after repeated wrong passwords until {until.isoformat(timespec='minutes')}",
                f"密码连续输错，账号已锁定至 {until:%Y-%m-%d %H:%M}")
    return None


def after_wrong_password(failures: int, now: dt.datetime, policy: AccountPolicy) -> tuple[int, dt.datetime | None]:
    """(failures so far, locked until): the policy's count of wrong passwords in a row
    locks the account for its minutes, and the count starts again."""
    failures += 1
    if failures >= policy.max_failed_logins:
        return 0, now + dt.timedelta(minutes=policy.lockout_minutes)
    return failures, None


def password_problem(password: str, policy: AccountPolicy) -> str | None:
    if len(password) < policy.min_password_length:
        return f"a password needs at least {policy.min_password_length} characters"
    if password.strip() != password:
        return "a password may not start or end with a space"
    return None


# --- HTTP ----------------------------------------------------------------------------------------


class LoginIn(Contract):
    login: str = Field(min_length=1, max_length=limits.ID_MAX, description="Staff id or phone number")
    password: str = Field(min_length=1, max_length=256)


class StaffOut(BaseModel):
    id: str
    name: str
    roles: list[str]
    estates: list[str]
    departments: list[str]


class SessionOut(BaseModel):
    token: str = Field(description="Bearer token for every service's API")
    expires_at: LocalTime
    staff: StaffOut


class PasswordIn(Contract):
    password: str = Field(min_length=1, max_length=256)


class OwnPasswordIn(Contract):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class AccountOut(BaseModel):
    staff_id: str
    name: str
    roles: list[str]
    estates: list[str]
    has_password: bool
    locked_until: LocalTime | None
    disabled: bool
    last_login_at: LocalTime | None


def _now() -> dt.datetime:
    # Sign-in is a security matter on real time, like token expiry (shared.auth).
    return dt.datetime.now(dt.timezone.utc)


def _policy() -> AccountPolicy:
    return service.directory.policy_for("").accounts


def _identity(login: str) -> Identity | None:
    return find_identity(service.directory.company, service.directory.estates, login)


async def _open_session(identity: Identity, now: dt.datetime) -> SessionOut:
    hours = _policy().session_hours
    session = str(uuid.uuid4())
    expires = now + dt.timedelta(hours=hours)
    async with service.db.transaction() as db:
        await Accounts(db).open_session(session, identity.staff_id, now, expires)
    token = issue_token(service.settings.signing_key, identity.staff_id, list(identity.roles), list(identity.estates),
                        name=identity.name, departments=list(identity.departments), now=now,
                        ttl=dt.timedelta(hours=hours), session=session)
    return SessionOut(token=token, expires_at=expires, staff=StaffOut(
        id=identity.staff_id, name=identity.name, roles=list(identity.roles), estates=list(identity.estates),
        departments=list(identity.departments)))


WRONG, WRONG_ZH = "wrong staff id or password", "工号或密码错误"


def _zone() -> dt.tzinfo:
    return service.directory.timezone_for("")


@service.http.post("/auth/login", response_model=SessionOut, tags=["accounts"])
async def login(body: LoginIn) -> SessionOut:
    """Sign in with staff id (or phone) and password; the token lasts the policy's shift
    (8 h by default) and is renewed with /auth/renew. The policy's count of wrong
    passwords in a row (5) locks the account for its minutes (15)."""
    now = _now()
    identity = _identity(body.login)
    async with service.db.transaction() as db:
        repository = Accounts(db)
        account = await repository.get(identity.staff_id, lock=True) if identity else None
        if account is None:
            # Same answer and roughly the same time as a wrong password: ids are not probed.
            await asyncio.to_thread(PASSWORDS.hash, body.password)
            raise AuthError(401, WRONG, WRONG_ZH)
        why = refusal(account.locked_until, account.disabled_at, now, _zone())
        if why:
            raise AuthError(403, *why)
        valid, rehashed = await asyncio.to_thread(PASSWORDS.verify_and_update, body.password, account.password_hash)
        if not valid:
            failures, locked = after_wrong_password(account.failed_attempts, now, _policy())
            await repository.update(account.staff_id, failed_attempts=failures, locked_until=locked)
            wrong = AuthError(403, *refusal(locked, None, now, _zone())) if locked else AuthError(401, WRONG, WRONG_ZH)
        else:
            wrong = None
            await repository.update(account.staff_id, failed_attempts=0, locked_until=None,
                                    **({"password_hash": rehashed} if rehashed else {}))
    if wrong:
        raise wrong
    return await _open_session(identity, now)


async def _live_session(who: Principal) -> None:
    if who.session is None:
        raise AuthError(403, "this token was not made by signing in; sign in with a staff account")
    async with service.db.transaction() as db:
        row = await Accounts(db).sign_in(who.session)
    if row is None or row.revoked_at is not None:
        raise AuthError(401, "signed out: sign in again", "已退出登录，请重新登录")


@service.http.post("/auth/renew", response_model=SessionOut, tags=["accounts"])
async def renew(who: Principal = Depends(principal)) -> SessionOut:
    """A fresh token for a live sign-in, with what the directory says now."""
    await _live_session(who)
    identity = _identity(who.staff_id)
    if identity is None:
        raise AuthError(403, f"{who.staff_id} is no longer in the directory")
    async with service.db.transaction() as db:
        account = await Accounts(db).get(who.staff_id)
    if account is None or account.disabled_at is not None:
        raise AuthError(403, "this account is disabled; ask the company administrator", "账号已停用，请联系系统管理员")
    return await _open_session(identity, _now())


@service.http.post("/auth/logout", status_code=204, tags=["accounts"])
async def logout(who: Principal = Depends(principal)) -> Response:
    """Sign out: this sign-in's tokens are refused by every service from now on."""
    await _live_session(who)
    async with service.db.transaction() as db:
        await Accounts(db).sign_out(who.session, _now())
    await revoke_session(service.settings.nats_url, who.session, who.expires_at.isoformat())
    return Response(status_code=204)


@service.http.get("/auth/me", response_model=StaffOut, tags=["accounts"])
async def me(who: Principal = Depends(principal)) -> StaffOut:
    return StaffOut(id=who.staff_id, name=who.name, roles=sorted(who.roles), estates=sorted(who.estates),
                    departments=sorted(who.departments))


@service.http.post("/auth/password", status_code=204, tags=["accounts"])
async def change_own_password(body: OwnPasswordIn, who: Principal = Depends(principal)) -> Response:
    await _live_session(who)
    async with service.db.transaction() as db:
        account = await Accounts(db).get(who.staff_id, lock=True)
        if account is None or not await asyncio.to_thread(PASSWORDS.verify, body.current_password,
                                                          account.password_hash):
            raise AuthError(403, "the current password is wrong", "原密码错误")
        await _set_password(db, who.staff_id, body.new_password, who.staff_id)
    return Response(status_code=204)


def _may_manage(who: Principal, identity: Identity) -> None:
    if who.has_role("company_admin") or "*" in who.estates and who.company_wide:
        return
    if "*" in identity.estates or not set(identity.estates) <= set(who.estates):
        raise AuthError(403, f"{who.staff_id} may manage accounts of their own estates' staff only")


async def _set_password(db, staff_id: str, password: str, by: str) -> None:
    problem = password_problem(password, _policy())
    if problem:
        raise RuleViolation(problem, status=422)
    hashed = await asyncio.to_thread(PASSWORDS.hash, password)
    now = _now()
    values = dict(password_hash=hashed, password_set_at=now, password_set_by=by, failed_attempts=0, locked_until=None)
    await Accounts(db).set_password(staff_id, values)


@service.http.put("/accounts/{staff_id}/password", status_code=204, tags=["accounts"])
async def set_password(staff_id: str, body: PasswordIn, who: Principal = Depends(principal)) -> Response:
    """Create the staff member's account, or reset its password (and lift a lock-out):
    the company admin for anyone, an estate director for the staff of their estates."""
    identity = _identity(staff_id)
    if identity is None or identity.staff_id != staff_id:
        raise RuleViolation(f"no staff member {staff_id!r} in the directory; add them to an estate first", status=404)
    _may_manage(who, identity)
    async with service.db.transaction() as db:
        await _set_password(db, staff_id, body.password, who.staff_id)
    return Response(status_code=204)


@service.http.delete("/accounts/{staff_id}", status_code=204, tags=["accounts"])
async def disable_account(staff_id: str, who: Principal = Depends(principal)) -> Response:
    """Disable an account and end its sign-ins everywhere."""
    identity = _identity(staff_id)
    if identity is not None:
        _may_manage(who, identity)
    elif not who.has_role("company_admin"):
        raise AuthError(403, "only the company admin manages accounts of staff no longer in the directory")
    now = _now()
    async with service.db.transaction() as db:
        repository = Accounts(db)
        if not await repository.disable(staff_id, now):
            raise RuleViolation(f"no account for {staff_id!r}", status=404)
        live = await repository.end_sign_ins(staff_id, now)
    for session in live:
        await revoke_session(service.settings.nats_url, session.id, session.expires_at.isoformat())
    return Response(status_code=204)


@service.http.get("/accounts", response_model=list[AccountOut], tags=["accounts"])
async def list_accounts(request: Request, who: Principal = Depends(principal)) -> list[AccountOut]:
    """The directory's staff with their account state, for the admin's settings screen."""
    if not who.has_role(*ACCOUNT_ADMIN_ROLES):
        raise AuthError(403, f"{who.staff_id} needs one of the roles {list(ACCOUNT_ADMIN_ROLES)}")
    ids = {m.id for m in service.directory.company.staff}
    ids |= {m.id for e in service.directory.estates.values() for m in e.staff}
    identities = [i for i in (_identity(staff_id) for staff_id in sorted(ids)) if i is not None]
    if not (who.has_role("company_admin") or "*" in who.estates):
        identities = [i for i in identities if set(i.estates) & set(who.estates)]
    async with service.db.transaction() as db:
        rows = await Accounts(db).of([i.staff_id for i in identities])
    out = []
    for identity in identities:
        row = rows.get(identity.staff_id)
        out.append(AccountOut(
            staff_id=identity.staff_id, name=identity.name, roles=list(identity.roles), estates=list(identity.estates),
            has_password=row is not None, locked_until=row.locked_until if row and row.locked_until
            and row.locked_until > _now() else None, disabled=bool(row and row.disabled_at),
            last_login_at=row.last_login_at if row else None))
    return out
