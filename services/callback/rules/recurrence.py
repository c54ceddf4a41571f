"""The recurrence rule (RULES.md §3 No callback path): with no callback path, or a one-way
online reply, a same-category opinion in the same department within the window makes the
first not satisfied; none by the window's end makes it satisfied (002 §4.6.5)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.periods import canonical_category
from shared.events import Kind
from shared.policy import Policy
from services.callback.rules.common import _days_later, _local, _require_aware


# --- recurrence rule (no callback path) --------------------------------------------------


@dataclass(frozen=True)
class OpinionFact:
    """One owner opinion as the recurrence rule sees it.

    `completed_at` starts the first opinion's window (一个月内 after handling). A later
    opinion counts from when it was raised (`raised_at`), falling back to `completed_at`
    when the shell knows only that."""

    ticket_id: str
    category: str
    department: str
    estate: str
    completed_at: dt.datetime | None = None
    raised_at: dt.datetime | None = None
    kind: Kind | None = None

    @property
    def appeared_at(self) -> dt.datetime:
        moment = self.raised_at or self.completed_at
        if moment is None:
            raise ValueError(f"opinion {self.ticket_id} has neither raised_at nor completed_at")
        return moment


RecurrenceVerdict = Literal["not_satisfied", "satisfied"]


def window_end(first: OpinionFact, policy: Policy) -> dt.datetime:
    """End (exclusive) of the recurrence window: `recurrence_window_days` calendar days
    after the first opinion was completed, at the same local time of day."""
    if first.completed_at is None:
        raise ValueError(f"opinion {first.ticket_id} is not completed: no recurrence window yet")
    return _days_later(_local(first.completed_at, policy, "completed_at"), policy.callback.recurrence_window_days)


def _same_key(value: str) -> str:
    return canonical_category(value)


def recurring_opinions(first: OpinionFact, later_opinions: Iterable[OpinionFact], policy: Policy) -> list[OpinionFact]:
    """Later opinions that make the first count as not satisfied: same estate, same
    department, same category (002 §4.6.5), raised in [completed, window end).

    Opinions raised while the first was still being handled are the same problem, not a
    recurrence after handling (经处理后). A praise is no sign of dissatisfaction."""
    start = first.completed_at
    if start is None:
        raise ValueError(f"opinion {first.ticket_id} is not completed: no recurrence window yet")
    _require_aware(start, "completed_at")
    end = window_end(first, policy)
    found = []
    for later in later_opinions:
        if later.ticket_id == first.ticket_id or later.kind is Kind.praise:
            continue
        if (
            _same_key(later.estate) != _same_key(first.estate)
            or _same_key(later.department) != _same_key(first.department)
            or _same_key(later.category) != _same_key(first.category)
        ):
            continue
        appeared = later.appeared_at
        _require_aware(appeared, "appeared_at")
        if start <= appeared < end:
            found.append(later)
    return sorted(found, key=lambda o: (o.appeared_at, o.ticket_id))


def recurrence_decision(
    first: OpinionFact, later_opinions: Iterable[OpinionFact], now: dt.datetime, policy: Policy
) -> RecurrenceVerdict | None:
    """RULES §3 No callback path: a same-category opinion in the same department within
    the window makes the first "not_satisfied" at once; none by the window's end makes it
    "satisfied"; until then None (undecided)."""
    _require_aware(now, "now")
    if recurring_opinions(first, later_opinions, policy):
        return "not_satisfied"
    if now >= window_end(first, policy):
        return "satisfied"
    return None


def recurrence_verdict(
    firsts: Sequence[OpinionFact], later_opinions: Iterable[OpinionFact], now: dt.datetime, policy: Policy
) -> tuple[RecurrenceVerdict | None, list[OpinionFact]]:
    """The recurrence decision for an opinion handled by several departments (one
    OpinionFact per department): a recurrence in any of them makes it "not_satisfied";
    "satisfied" only once the window has elapsed for all. Also returns the recurring
    opinions, earliest first."""
    if not firsts:
        raise ValueError("an opinion needs at least one department for the recurrence rule")
    later = list(later_opinions)
    recurring: dict[str, OpinionFact] = {}
    verdicts = []
    for first in firsts:
        verdicts.append(recurrence_decision(first, later, now, policy))
        for opinion in recurring_opinions(first, later, policy):
            recurring.setdefault(opinion.ticket_id, opinion)
    found = sorted(recurring.values(), key=lambda o: (o.appeared_at, o.ticket_id))
    if "not_satisfied" in verdicts:
        return "not_satisfied", found
    if all(v == "satisfied" for v in verdicts):
        return "satisfied", []
    return None, []


def recurrence_key(category: str) -> str:
    """The form in which categories are compared (and grouped) by the recurrence rule."""
    return _same_key(category)
