"""Working days: the mainland-China statutory calendar, its make-up workdays, and the
company's own overrides.

The `holidays` package knows the State Council's published arrangement (holidays and
make-up Saturdays/Sundays) only up to the last published year; it *projects* later years
without their make-up days. For a year nobody has published yet we use the *projected
calendar*: the fixed statutory holidays the package knows for that year (New Year, Spring
Festival, Qingming, Labour Day, Dragon Boat, Mid-Autumn, National Day — without the
package's guessed in-lieu "observed" days) are days off, weekends are rest days, and there
are no make-up days. Every result that reaches into such a year is provisional, so the
caller stores the flag and recomputes once the company loads that year's calendar or the
package learns it (issue 10 "Also build" 1). Nothing here ever raises for a date out of
range.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache

import holidays as holidays_pkg


@lru_cache(maxsize=1)
def _statutory_published_years() -> frozenset[int]:
    """Years for which the statutory arrangement (with make-up days) is published."""
    probe = holidays_pkg.country_holidays("CN", years=range(2000, 2101))
    return frozenset(d.year for d in probe.weekend_workdays)


@lru_cache(maxsize=256)
def _statutory_year(year: int) -> tuple[frozenset[dt.date], frozenset[dt.date]]:
    """(holidays off, make-up workdays) of one published year."""
    try:
        cn = holidays_pkg.country_holidays("CN", years=year)
        off = frozenset(d for d in cn if d.year == year)
        makeup = frozenset(d for d in cn.weekend_workdays if d.year == year)
    except Exception:  # an unknown year must never crash a deadline computation
        return frozenset(), frozenset()
    return off, makeup


@lru_cache(maxsize=256)
def _projected_year(year: int) -> frozenset[dt.date]:
    """The fixed statutory days off of a year whose arrangement is not published: only the
    holidays themselves (observed=False drops the package's guessed substitute days; the
    real in-lieu days and make-up days come with the published arrangement)."""
    try:
        cn = holidays_pkg.country_holidays("CN", years=year, observed=False)
        return frozenset(d for d in cn if d.year == year)
    except Exception:  # an unknown year must never crash a deadline computation
        return frozenset()


@dataclass(frozen=True)
class CalendarOverrides:
    """The company's own calendar: extra days off, extra workdays, and whole years it
    has loaded itself (e.g. next year's arrangement, before the package knows it)."""

    days_off: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()
    loaded_years: frozenset[int] = frozenset()

    @classmethod
    def from_data(cls, data: dict | None) -> "CalendarOverrides":
        data = data or {}
        return cls(
            days_off=frozenset(dt.date.fromisoformat(d) for d in data.get("days_off", [])),
            workdays=frozenset(dt.date.fromisoformat(d) for d in data.get("workdays", [])),
            loaded_years=frozenset(int(y) for y in data.get("loaded_years", [])),
        )

    def to_data(self) -> dict:
        return {
            "days_off": sorted(d.isoformat() for d in self.days_off),
            "workdays": sorted(d.isoformat() for d in self.workdays),
            "loaded_years": sorted(self.loaded_years),
        }


@dataclass(frozen=True)
class WorkingDayResult:
    """A computed date/time and whether any day it depends on is only provisional."""

    value: dt.datetime
    provisional: bool


@dataclass(frozen=True)
class WorkingCalendar:
    overrides: CalendarOverrides = field(default_factory=CalendarOverrides)

    def is_known(self, day: dt.date) -> bool:
        """True when the day's year has a published or company-loaded arrangement."""
        return day.year in _statutory_published_years() or day.year in self.overrides.loaded_years

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.overrides.workdays:
            return True
        if day in self.overrides.days_off:
            return False
        if day.year in _statutory_published_years():
            off, makeup = _statutory_year(day.year)
            if day in makeup:
                return True
            if day in off:
                return False
        elif day in _projected_year(day.year):
            return False
        return day.weekday() < 5

    def add_working_days(self, start: dt.datetime, days: int) -> WorkingDayResult:
        """`days` working days after `start`, keeping its time of day.

        Counting starts on the day after `start`: a request accepted on Friday 15:00
        with 2 working days is due Tuesday 15:00. A start on a non-working day counts
        the same way (the first working day after it is day 1).
        """
        provisional = False
        day = start.date()
        remaining = days
        # Bounded: even a calendar with no working days at all stops after 10 years.
        for _ in range(3660 + days * 7):
            if remaining <= 0:
                break
            day += dt.timedelta(days=1)
            provisional = provisional or not self.is_known(day)
            if self.is_working_day(day):
                remaining -= 1
        return WorkingDayResult(dt.datetime.combine(day, start.timetz()), provisional)

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """Working days in (start, end]; negative when end is before start."""
        if end < start:
            return -self.working_days_between(end, start)
        count, day = 0, start
        while day < end:
            day += dt.timedelta(days=1)
            count += self.is_working_day(day)
        return count

    def next_working_day_start(self, moment: dt.datetime, opening: dt.time) -> dt.datetime:
        """The first working-day opening time strictly after `moment` (shift handover)."""
        day = moment.date()
        if moment.timetz().replace(tzinfo=None) >= opening or not self.is_working_day(day):
            day += dt.timedelta(days=1)
        for _ in range(3660):
            if self.is_working_day(day):
                break
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, opening, tzinfo=moment.tzinfo)
