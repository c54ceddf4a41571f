"""Repeated opinions calling for corrective action (RULES.md §2, counted in §4): whether a newly
accepted ticket makes its category, or its building, cross the policy's threshold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import NamedTuple

from shared import events as ev
from shared.policy import DEFAULT_POLICY, Policy


# --- repeated problems -------------------------------------------------------------------------


class RecentTicket(NamedTuple):
    ticket_id: str
    category: str
    building: str | None
    accepted_at: dt.datetime


class RepeatSearch(NamedTuple):
    """What repeat detection needs of the store for a newly accepted ticket `new` of
    `estate`: its earlier tickets of the same category, of kinds `kinds`, accepted after
    `since` (the start of the trailing window), the latest `limit` of them and the latest
    `limit` of `new`'s building (`limit` = the threshold: `repeat_problem` fires on exactly
    threshold − 1 earlier ones, so any superset of these answers alike)."""

    estate: str
    new: RecentTicket
    kinds: tuple[str, ...]
    since: dt.datetime
    limit: int


def repeat_search(estate: str, ticket_id: str, kind: str | None, category: str | None, building: str | None,
                  accepted_at: dt.datetime | None, policy: Policy = DEFAULT_POLICY) -> RepeatSearch | None:
    """The search for a ticket just accepted (its facts as `apply_event` sets them on
    `accepted`), or None when the rule does not watch it: a kind outside
    `repeat_problem_kinds`, no category or an ignored one, no acceptance time."""
    a = policy.analytics
    if kind not in a.repeat_problem_kinds or not category or category in a.repeat_problem_ignored_categories \
            or accepted_at is None:
        return None
    return RepeatSearch(estate, RecentTicket(ticket_id, category, building, accepted_at),
                        tuple(a.repeat_problem_kinds),
                        accepted_at - dt.timedelta(days=a.repeat_problem_window_days), a.repeat_problem_threshold)


def repeat_problem(
    recent: Iterable[RecentTicket | tuple[str, str, str | None, dt.datetime]],
    new: RecentTicket | tuple[str, str, str | None, dt.datetime],
    policy: Policy = DEFAULT_POLICY,
) -> ev.CorrectiveActionSuggested | None:
    """Repeated opinions call for corrective action (RULES §2, 002 §4.3.1 b).

    `recent` are the estate's tickets; `new` the ticket just accepted. Tickets are ordered
    by (accepted_at, ticket_id); those after `new` in that order are ignored, so passing
    every ticket is safe. The trailing window is (new − window_days, new].

    The suggestion fires when `new` makes the number of same-category tickets in the
    window *exactly* `repeat_problem_threshold`: it crosses from threshold − 1 to the
    threshold, so the 4th, 5th... ticket of the same burst stays silent; once the window
    has slid below the threshold, the next crossing fires again. The same rule is applied
    to the new ticket's building; when both cross, the tickets are the same and the
    building suggestion (the more precise) is returned."""
    new = RecentTicket(*new)
    threshold = policy.analytics.repeat_problem_threshold
    window_days = policy.analytics.repeat_problem_window_days
    since = new.accepted_at - dt.timedelta(days=window_days)
    order = (new.accepted_at, new.ticket_id)
    in_window = sorted(
        {t.ticket_id: t for t in map(lambda r: RecentTicket(*r), recent)
         if t.ticket_id != new.ticket_id and t.category == new.category
         and since < t.accepted_at and (t.accepted_at, t.ticket_id) < order}.values(),
        key=lambda t: (t.accepted_at, t.ticket_id),
    ) + [new]

    def suggestion(tickets: list[RecentTicket], scope: str) -> ev.CorrectiveActionSuggested:
        return ev.CorrectiveActionSuggested(
            ticket_id=new.ticket_id, category=new.category, scope=scope,  # type: ignore[arg-type]
            building=new.building if scope == "building" else None, count=len(tickets),
            window_days=window_days, tickets=[t.ticket_id for t in tickets],
        )

    if new.building is not None:
        same_building = [t for t in in_window if t.building == new.building]
        if len(same_building) == threshold:
            return suggestion(same_building, "building")
    if len(in_window) == threshold:
        return suggestion(in_window, "estate")
    return None
