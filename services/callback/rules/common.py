"""Shared pieces of the callback rules: timezone-aware times, the estate's local time
(`policy.timezone`), and day and hour arithmetic on it (calendar days keep the local time
of day, hours are elapsed time)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from shared.policy import Policy


# --- time helpers ------------------------------------------------------------------------


def _require_aware(moment: dt.datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")


def _local(moment: dt.datetime, policy: Policy, name: str = "moment") -> dt.datetime:
    _require_aware(moment, name)
    return moment.astimezone(ZoneInfo(policy.timezone))


def _days_later(local: dt.datetime, days: int) -> dt.datetime:
    # Aware + timedelta is wall-clock arithmetic in the same zone: "3 days" keeps the
    # local time of day, which is what a person promising "within 3 days" means.
    return local + dt.timedelta(days=days)


def _hours_later(local: dt.datetime, hours: int) -> dt.datetime:
    # Hours are elapsed time, so count them in UTC and show the result locally.
    return (local.astimezone(dt.timezone.utc) + dt.timedelta(hours=hours)).astimezone(local.tzinfo)
