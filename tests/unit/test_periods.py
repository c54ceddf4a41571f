"""Issue 11: months, quarters and categories defined once (shared/periods.py) and used by
callback, analytics and archive alike."""

from __future__ import annotations

import datetime as dt

import pytest

from services.analytics import reports as analytics_reports, rules as analytics_rules
from services.archive import rules as archive_rules
from services.callback import rules as callback_rules
from shared.errors import RuleViolation
from shared.periods import canonical_category, month_parts, months_of_quarter, parse_quarter, quarter_of
from shared.policy import Policy

T0 = dt.datetime(2026, 11, 2, 9, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("month, quarter", [("2026-01", "2026Q1"), ("2026-03", "2026Q1"), ("2026-04", "2026Q2"),
                                            ("2026-11", "2026Q4"), ("2026-12", "2026Q4")])
def test_quarters(month, quarter):
    assert quarter_of(month) == quarter and month in months_of_quarter(quarter)
    # Every service answers the same.
    assert archive_rules.quarter_of(month) == quarter
    assert analytics_rules.quarter_of(month) == (quarter, months_of_quarter(quarter))


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "26-11", "2026/11", "", "2026-1"])
def test_bad_months_are_refused_alike(bad):
    for parse in (month_parts, analytics_reports.parse_month, callback_rules.parse_month):
        with pytest.raises(RuleViolation) as error:
            parse(bad)
        assert error.value.status == 422 and "YYYY-MM" in str(error.value)


def test_quarter_spellings():
    assert parse_quarter("2026Q4") == parse_quarter("2026-Q4") == "2026Q4"
    assert analytics_reports.parse_quarter("2027-Q1") == ("2027Q1", ("2027-01", "2027-02", "2027-03"))
    with pytest.raises(RuleViolation):
        parse_quarter("2026Q5")


@pytest.mark.parametrize("a, b", [("漏水", "漏水 "), ("漏水", "\u3000漏水"), ("Water Leak", "water  leak"),
                                  ("ＡＢＣ", "abc")])
def test_one_category_for_callback_and_analytics(a, b):
    assert canonical_category(a) == canonical_category(b)
    # callback's recurrence rule: the same category
    assert callback_rules.recurrence_key(a) == callback_rules.recurrence_key(b)
    # analytics' repeat-problem detection: two tickets of "漏水" and "漏水 " are one category
    first = analytics_rules.RecentTicket("t1", canonical_category(a), None, T0)
    second = analytics_rules.RecentTicket("t2", canonical_category(b), None, T0 + dt.timedelta(hours=1))
    policy = Policy.model_validate({"analytics": {"repeat_problem_threshold": 2}})
    suggestion = analytics_rules.repeat_problem([first], second, policy)
    assert suggestion is not None and suggestion.tickets == ["t1", "t2"]


def test_different_categories_stay_different():
    assert canonical_category("漏水") != canonical_category("漏电")
