"""Walk-around visits (RULES.md §3 Walk-around visits): each customer-service staff member's
visits in a month against the 2–3 a month (002 §4.5.1), report months, visit dates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.periods import month_parts
from shared.errors import RuleViolation
from shared.policy import Policy


# --- walk-around visits ------------------------------------------------------------------


@dataclass(frozen=True)
class VisitTally:
    visits: int  # visits made in the month
    missing: int  # visits short of visits_per_month_min
    over_max: bool  # more than visits_per_month_max (the procedure says 2–3)
    excess: int  # visits beyond visits_per_month_max


def visit_shortfall(
    visits_by_staff: Mapping[str, Iterable[dt.date]],
    month: tuple[int, int],
    staff_list: Iterable[str],
    policy: Policy,
) -> dict[str, VisitTally]:
    """Each listed customer-service staff member's walk-around visits in `month`
    (year, month) against the 2–3 a month of RULES §3 (002 §4.5.1).

    Dates are the estate's local dates: a datetime is refused, because near midnight its
    month depends on a timezone this function cannot know. Staff not on the list are
    not under the obligation and are left out."""
    year, month_number = month
    if not 1 <= month_number <= 12:
        raise RuleViolation(f"month must be 1..12, got {month_number}", status=422)
    cb = policy.callback
    tallies = {}
    for staff in staff_list:
        made = 0
        for day in visits_by_staff.get(staff, ()):
            if isinstance(day, dt.datetime):
                raise TypeError(f"visit dates must be local dates, got datetime {day!r}")
            made += (day.year, day.month) == (year, month_number)
        tallies[staff] = VisitTally(
            visits=made,
            missing=max(cb.visits_per_month_min - made, 0),
            over_max=made > cb.visits_per_month_max,
            excess=max(made - cb.visits_per_month_max, 0),
        )
    return tallies


def parse_month(text: str) -> tuple[int, int]:
    """A report month written YYYY-MM → (year, month); anything else is refused (422)."""
    return month_parts(text)


def check_visit_date(visited_on: dt.date, today: dt.date) -> None:
    """A walk-around visit is recorded after it took place: a future date is refused."""
    if isinstance(visited_on, dt.datetime):
        raise TypeError(f"visit dates must be local dates, got datetime {visited_on!r}")
    if visited_on > today:
        raise RuleViolation(f"visit date {visited_on.isoformat()} is in the future (today is {today.isoformat()})", status=422)
