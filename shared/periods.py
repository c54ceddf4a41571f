"""Months, quarters and categories as every service writes and compares them: one
definition each (issue 11: a rule needed in two places lives once in `shared/`).

- a month is "YYYY-MM"; a quarter is "YYYYQn" ("YYYY-Qn" is read too) — RULES §4 (monthly
  estate report, quarterly summary) and §5 (monthly organisation, quarterly archiving);
- a category is compared by its canonical form (Unicode NFKC, spaces trimmed and folded,
  case-folded), so "漏水" and "漏水 " are one category for the callback's recurrence rule
  (002 §4.6.5) and for analytics' repeat-problem detection (002 §4.3.1 b) alike.

- the progress-update duty's weeks (RULES §2 Progress updates; 002 §4.4.1 b) run from
  the moment a complaint has been open `progress_updates_after_days`, 7 × 24 h each: one
  grid for dispatch (which decides each week met or missed) and callback (which shows
  the current week on its worklist).

Errors: `RuleViolation` with status 422 naming the expected form.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from shared.errors import RuleViolation

MONTH = re.compile(r"^(?P<year>\d{4})-(?P<month>0[1-9]|1[0-2])$")
QUARTER = re.compile(r"^(?P<year>\d{4})-?Q(?P<quarter>[1-4])$")


def parse_month(text: str) -> str:
    """ "2026-11" → "2026-11"; anything else → RuleViolation(422)."""
    text = text.strip()
    if not MONTH.match(text):
        raise RuleViolation(f"month {text!r} must be written YYYY-MM with a month 1..12, e.g. 2026-11", status=422)
    return text


def month_parts(text: str) -> tuple[int, int]:
    """ "2026-11" → (2026, 11)."""
    match = MONTH.match(parse_month(text))
    return int(match["year"]), int(match["month"])


def parse_quarter(text: str) -> str:
    """ "2026Q4" or "2026-Q4" → "2026Q4"; anything else → RuleViolation(422)."""
    match = QUARTER.match(text.strip())
    if not match:
        raise RuleViolation(f"quarter {text!r} must be written YYYYQn, e.g. 2026Q4", status=422)
    return f"{match['year']}Q{match['quarter']}"


def quarter_of(month: str) -> str:
    """ "2026-11" → "2026Q4"."""
    year, number = month_parts(month)
    return f"{year:04d}Q{(number - 1) // 3 + 1}"


def months_of_quarter(quarter: str) -> tuple[str, str, str]:
    """ "2026Q4" → ("2026-10", "2026-11", "2026-12")."""
    match = QUARTER.match(parse_quarter(quarter))
    year, first = int(match["year"]), 3 * int(match["quarter"]) - 2
    return tuple(f"{year:04d}-{first + i:02d}" for i in range(3))  # type: ignore[return-value]


def canonical_category(text: str) -> str:
    """The one form a category is stored and compared in: NFKC, trimmed, inner runs of
    space folded to one, case-folded ("  Water  Leak " → "water leak")."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


WEEK = dt.timedelta(days=7)


def progress_week(opened_at: dt.datetime, at: dt.datetime, after_days: int) -> tuple[dt.datetime, dt.datetime]:
    """The week of the progress-update duty that holds `at`, as (start, end), end
    exclusive: weeks run from `opened_at + after_days` days in elapsed time; before the
    duty applies, its first week. Times must be timezone-aware (ValueError)."""
    if opened_at.tzinfo is None or at.tzinfo is None:
        raise ValueError("progress weeks need timezone-aware times")
    applies_from = opened_at + dt.timedelta(days=after_days)
    index = max((at - applies_from) // WEEK, 0)
    start = applies_from + index * WEEK
    return start, start + WEEK
