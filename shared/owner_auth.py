"""Owners' tokens (issue 15): an owner or resident who proved the tie to a unit with a
one-time code acts for that unit only, never as staff.

An owner token is a JWT signed with the installation's key like a staff token, but with
its own issuer, so neither kind is ever accepted where the other is expected. Its `jti`
is the binding's id: removing the binding (by the owner or the desk) publishes it on the
directory's revoked list (`shared.directory.revoke_session`) and every service refuses
the token from then on.

Routes an owner writes to are declared in the service's `owner_routes` (the staff role
gate of `shared.service.authorize` then asks for an owner token instead of a role).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import jwt
from fastapi import Request

from shared.auth import AuthError

OWNER_ISSUER = "estatedesk-owner"
DEVICE_HEADER = "x-device-id"
DEVICE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


@dataclass(frozen=True)
class OwnerPrincipal:
    binding: str  # the binding's id (the token's jti and sub)
    estate: str
    unit: str
    expires_at: dt.datetime

    @property
    def actor(self) -> str:
        """How the owner appears as the actor of an event or a record."""
        return f"owner:{self.binding}"


def issue_owner_token(key: str, binding: str, estate: str, unit: str, *, now: dt.datetime,
                      ttl: dt.timedelta) -> str:
    claims = {"iss": OWNER_ISSUER, "sub": binding, "jti": binding, "estate": estate, "unit": unit,
              "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
    return jwt.encode(claims, key, algorithm="HS256")


def verify_owner_token(key: str, authorization: str | None) -> OwnerPrincipal:
    """Raises AuthError(401) without a valid owner token (a staff token is not one)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "bind your unit first: no owner token", "请先绑定房屋")
    try:
        claims = jwt.decode(token.strip(), key, algorithms=["HS256"], issuer=OWNER_ISSUER,
                            options={"require": ["exp", "sub", "jti"]})
    except jwt.ExpiredSignatureError:
        raise AuthError(401, "owner token expired: bind again", "绑定已过期，请重新绑定") from None
    except jwt.InvalidTokenError as error:
        raise AuthError(401, f"not an owner token: {error}", "请先绑定房屋") from None
    return OwnerPrincipal(binding=claims["sub"], estate=str(claims.get("estate", "")), unit=str(claims.get("unit", "")),
                          expires_at=dt.datetime.fromtimestamp(min(int(claims["exp"]), 4_102_444_800), dt.timezone.utc))


def owner_of_request(request: Request) -> OwnerPrincipal:
    """The owner behind a request: a valid owner token whose binding was not removed and,
    for a path under /owner/estates/{estate}, whose estate is that one (403 otherwise)."""
    service = request.app.state.service
    who = verify_owner_token(service.settings.signing_key, request.headers.get("authorization"))
    if who.binding in service.directory.revoked:
        raise AuthError(401, "this binding was removed: bind the unit again", "房屋绑定已解除，请重新绑定")
    estate = request.path_params.get("estate")
    if estate is not None and estate != who.estate:
        raise AuthError(403, f"this owner token is for estate {who.estate!r}, not {estate!r}", "无权查看其他小区")
    return who


async def owner(request: Request) -> OwnerPrincipal:
    """FastAPI dependency of every owner route."""
    return owner_of_request(request)


def device_of(request: Request) -> str:
    """The device a request comes from, for rate limits: the page's random device id
    (kept in the browser), else the client's address."""
    device = request.headers.get(DEVICE_HEADER, "")
    if DEVICE_PATTERN.match(device):
        return device
    return f"ip:{request.client.host if request.client else 'unknown'}"
