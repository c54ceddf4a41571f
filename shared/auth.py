"""Bearer tokens: who is acting, in which roles, for which estates.

A token is a JWT (HS256) signed with the installation's key. Company-wide roles see every
estate; everyone else acts only for the estates listed in the token.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import jwt

COMPANY_WIDE_ROLES = frozenset({"quality_manager", "general_manager", "management_representative", "company_admin"})
KNOWN_ROLES = frozenset(
    {
        "customer_service",
        "customer_service_supervisor",
        "duty_staff",  # security / fire-control centre, off-hours intake
        "department_staff",
        "department_head",
        "estate_director",
        "company_general_management",
        "integration",
        *COMPANY_WIDE_ROLES,
    }
)
# Everybody who works for the company; `integration` is a system, not staff.
STAFF_ROLES = tuple(sorted(KNOWN_ROLES - {"integration"}))
ISSUER = "estatedesk"


class AuthError(Exception):
    """Raised with a readable reason (and, for the screens, the same in Chinese); HTTP
    layers map it to 401/403."""

    def __init__(self, status: int, reason: str, reason_zh: str | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.reason_zh = reason_zh


@dataclass(frozen=True)
class Principal:
    staff_id: str
    name: str
    roles: frozenset[str]
    estates: frozenset[str]
    departments: frozenset[str] = frozenset()
    session: str | None = None  # the sign-in this token belongs to (`jti`); None for `estatedesk token`
    expires_at: dt.datetime | None = None

    @property
    def company_wide(self) -> bool:
        return bool(self.roles & COMPANY_WIDE_ROLES)

    def may_act_for(self, estate: str) -> bool:
        # A company-wide role sees every estate only with "*": the estate list is honoured.
        return "*" in self.estates or estate in self.estates

    def require_estate(self, estate: str) -> None:
        if not self.may_act_for(estate):
            raise AuthError(403, f"{self.staff_id} may not act for estate {estate!r} (token covers: "
                                 f"{sorted(self.estates) or 'none'})", f"您无权处理小区 {estate} 的事务")

    def require_role(self, *roles: str) -> None:
        if not (self.roles & set(roles)) and not (self.roles & {"company_admin"}):
            raise AuthError(403, f"{self.staff_id} needs one of the roles {sorted(roles)} (has {sorted(self.roles)})",
                            "您的岗位无权执行此操作")

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))


def issue_token(
    key: str,
    staff_id: str,
    roles: list[str],
    estates: list[str],
    *,
    name: str | None = None,
    departments: list[str] | None = None,
    now: dt.datetime | None = None,
    ttl: dt.timedelta = dt.timedelta(days=30),
    session: str | None = None,
) -> str:
    unknown = set(roles) - KNOWN_ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; known: {sorted(KNOWN_ROLES)}")
    wide = sorted(set(roles) & COMPANY_WIDE_ROLES)
    if wide and list(estates) != ["*"]:
        raise ValueError(f"the company-wide roles {wide} act for every estate: give the estates as ['*'] "
                         f"(--estate '*'), not {sorted(estates) or 'none'}")
    if not estates:
        raise ValueError("a token needs at least one estate (or '*')")
    now = now or dt.datetime.now(dt.timezone.utc)
    claims = {
        "iss": ISSUER,
        "sub": staff_id,
        "name": name or staff_id,
        "roles": sorted(roles),
        "estates": sorted(estates),
        "departments": sorted(departments or []),
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    if session:
        claims["jti"] = session
    return jwt.encode(claims, key, algorithm="HS256")


# Tokens already verified: (key, token) → (principal, exp). A token is checked once per
# signature, not on every request (and twice on a write route: the gate and the estate
# dependency); its expiry is still checked on every use, against real time. Revocation
# (sign-out) is the directory's check, done on every request by the callers.
_VERIFIED: dict[tuple[str, str], tuple[Principal, int]] = {}
VERIFIED_CACHE_SIZE = 4096


def verify_token(key: str, token: str) -> Principal:
    cached = _VERIFIED.get((key, token))
    if cached is not None:
        principal, exp = cached
        if exp > dt.datetime.now(dt.timezone.utc).timestamp():
            return principal
        raise AuthError(401, "token expired", "登录已过期，请重新登录")
    principal, exp = _verify(key, token)
    if len(_VERIFIED) >= VERIFIED_CACHE_SIZE:
        _VERIFIED.clear()  # bounded; rebuilt by the tokens in use
    _VERIFIED[(key, token)] = (principal, exp)
    return principal


def _verify(key: str, token: str) -> tuple[Principal, int]:
    """The token's principal and its expiry (epoch seconds); raises AuthError(401)."""
    try:
        # Expiry is checked against real time: tokens are a security matter, not a
        # business clock matter (the demo's accelerated clock must not expire them).
        claims = jwt.decode(token, key, algorithms=["HS256"], issuer=ISSUER, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise AuthError(401, "token expired", "登录已过期，请重新登录") from None
    except jwt.InvalidTokenError as error:
        raise AuthError(401, f"invalid token: {error}") from None
    exp = int(claims["exp"])
    return Principal(
        staff_id=claims["sub"],
        name=claims.get("name", claims["sub"]),
        roles=frozenset(claims.get("roles", [])),
        estates=frozenset(claims.get("estates", [])),
        departments=frozenset(claims.get("departments", [])),
        session=claims.get("jti"),
        # A forged far-future expiry must not break the date arithmetic: 2100 at most.
        expires_at=dt.datetime.fromtimestamp(min(exp, 4_102_444_800), dt.timezone.utc),
    ), exp


def principal_from_header(key: str, authorization: str | None) -> Principal:
    if not authorization:
        raise AuthError(401, "missing Authorization header: send 'Authorization: Bearer <token>' (see `estatedesk token`)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "Authorization header must be 'Bearer <token>'")
    return verify_token(key, token.strip())
