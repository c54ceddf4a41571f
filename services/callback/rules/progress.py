"""Progress updates for long-running complaints (RULES.md §2 Progress updates; 002 §4.4.1 b):
where a still-open complaint stands this week, the worklist's reminder."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from shared.periods import progress_week
from shared.policy import Policy
from services.callback.rules.common import _require_aware


# --- progress updates for long-running complaints ----------------------------------------


@dataclass(frozen=True)
class ProgressUpdateStatus:
    required: bool  # open long enough for the weekly rhythm to apply
    applies_from: dt.datetime
    week_start: dt.datetime | None
    week_end: dt.datetime | None
    done_this_week: int
    missing_this_week: int
    next_update_due_at: dt.datetime | None
    overdue: bool


def weekly_update_status(
    opened_at: dt.datetime, update_times: Iterable[dt.datetime], now: dt.datetime, policy: Policy
) -> ProgressUpdateStatus:
    """Where a still-open complaint stands this week on "at least N updates a week"
    (RULES §2 Progress updates; 002 §4.4.1 b), once it has been open
    `progress_updates_after_days`: the worklist's reminder. Whether a finished week was
    met or missed is dispatch's verdict (clock_settled), counted, never judged here.

    Weeks are dispatch's (`shared.periods.progress_week`). The N updates of a week are
    spread evenly, so the next one is due at the next 1/N of the week not yet covered:
    with 2 a week, half-way and at the end; once a week has its N, the next week's first
    slot."""
    clocks = policy.clocks
    tz = ZoneInfo(policy.timezone)
    _require_aware(opened_at, "opened_at")
    _require_aware(now, "now")
    times = list(update_times)
    for moment in times:
        _require_aware(moment, "update time")
    # Elapsed-time arithmetic in UTC; results shown in local time.
    utc_opened = opened_at.astimezone(dt.timezone.utc)
    applies_from, _ = progress_week(utc_opened, utc_opened, clocks.progress_updates_after_days)
    per_week = clocks.progress_updates_per_week
    if per_week <= 0 or now < applies_from:
        return ProgressUpdateStatus(False, applies_from.astimezone(tz), None, None, 0, 0, None, False)
    week_start, week_end = progress_week(utc_opened, now, clocks.progress_updates_after_days)
    done = sum(week_start <= t < week_end and t <= now for t in times)
    slot = (week_end - week_start) / per_week
    if done < per_week:
        next_due = week_start + slot * (done + 1)
    else:
        next_due = week_end + slot
    return ProgressUpdateStatus(
        required=True,
        applies_from=applies_from.astimezone(tz),
        week_start=week_start.astimezone(tz),
        week_end=week_end.astimezone(tz),
        done_this_week=done,
        missing_this_week=max(per_week - done, 0),
        next_update_due_at=next_due.astimezone(tz),
        overdue=now > next_due,
    )
