"""Record numbers, closing months and quarters, and when a month or quarter may be organised
(002 §4.8.1–4.8.2)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from shared.periods import MONTH, QUARTER, months_of_quarter
from shared.policy import DEFAULT_POLICY, Policy
from services.archive.rules.common import RECORD_NUMBER, _require_aware, refusal


# --- numbering, months, quarters ------------------------------------------------------------


def record_number(estate: str, year: int, sequence: int) -> str:
    """"HX01-DA-2026-000001": estate, 档案 (DA), year of the closing month, number in year."""
    if not 1 <= sequence <= 999_999:
        raise ValueError(f"record sequence {sequence} outside 1..999999")
    if not 1000 <= year <= 9999:
        raise ValueError(f"year {year} is not a four-digit year")
    return f"{estate.upper()}-DA-{year:04d}-{sequence:06d}"


def parse_record_number(number: str) -> tuple[str, int, int]:
    """(ESTATE, year, sequence) of a record number; ValueError when malformed."""
    match = RECORD_NUMBER.match(number)
    if not match:
        raise ValueError(f"{number!r} is not a record number like HX01-DA-2026-000001")
    return match["estate"], int(match["year"]), int(match["sequence"])


def closed_month(closed_at: dt.datetime, tz: str | ZoneInfo) -> str:
    """"2026-11": the local month the form closed in, which is the month it is archived
    with (a request spanning months goes with the month it ends, 002 §4.8.1)."""
    _require_aware(closed_at, "closed_at")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    local = closed_at.astimezone(zone)
    return f"{local.year:04d}-{local.month:02d}"


# --- the archive's calendar: when a month or quarter may be organised ---------------------


def period_end(period: str, tz: str | ZoneInfo) -> dt.datetime:
    """The first local instant after a month ("2026-11") or a quarter ("2026Q4")."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    if QUARTER.match(period):
        last_month = months_of_quarter(period)[-1]
    elif MONTH.match(period):
        last_month = period
    else:
        raise ValueError(f"{period!r} is neither a month like 2026-11 nor a quarter like 2026Q4")
    year, month = int(last_month[:4]), int(last_month[5:])
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return dt.datetime(year, month, 1, tzinfo=zone)


def check_period_over(period: str, now: dt.datetime, tz: str | ZoneInfo) -> None:
    """A month is organised, a quarter archived, only once it is over in the estate."""
    _require_aware(now, "now")
    end = period_end(period, tz)
    if now < end:
        raise refusal(
            "period_not_over", f"{period} is not over yet in the estate's time zone (it ends {end.isoformat()})"
        )


def scheduled_run_due(period: str, now: dt.datetime, tz: str | ZoneInfo, policy: Policy = DEFAULT_POLICY) -> bool:
    """The schedule organises a period `organise_grace_hours` after it ends, so forms
    closed on its last evening have been archived by then."""
    _require_aware(now, "now")
    return now >= period_end(period, tz) + dt.timedelta(hours=policy.archive.organise_grace_hours)


