"""Shared pieces of the dispatch rules: the default policy, timezone-aware times and the
estate's local time, elapsed time (through UTC), required text and amounts of money.
Refusals are `shared.errors.RuleViolation`: 422 unless a move is refused (409)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from shared.errors import RuleViolation  # one definition; these rules refuse with 422 unless a move is refused (409)
from shared.policy import Policy


DEFAULT = Policy()
UTC = dt.timezone.utc


def _aware(moment: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise RuleViolation(f"{name} must be a timezone-aware datetime, got {moment!r}", 422)
    return moment


def _local(moment: dt.datetime, policy: Policy, name: str) -> dt.datetime:
    return _aware(moment, name).astimezone(ZoneInfo(policy.timezone))


def _elapsed(start: dt.datetime, delta: dt.timedelta, policy: Policy) -> dt.datetime:
    """`start` + real elapsed time (through UTC, so a DST change cannot bend it)."""
    return (start.astimezone(UTC) + delta).astimezone(ZoneInfo(policy.timezone))


def _required(value: str | None, what: str) -> str:
    if not (value or "").strip():
        raise RuleViolation(f"{what} is required", 422)
    return value.strip()


def _money(value, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise RuleViolation(f"{what} {value!r} is not an amount", 422) from None
    if not amount.is_finite():
        raise RuleViolation(f"{what} {value!r} is not an amount", 422)
    return amount
