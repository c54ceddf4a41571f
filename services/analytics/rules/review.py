"""The department heads' weekly review of their open forms and the staff assessment from the
countersign forms (RULES.md §4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from shared import events as ev
from shared.policy import DEFAULT_POLICY, Policy
from services.analytics.rules.common import BREACHED, MET, RUNNING, UNASSIGNED, Dimension, PeriodRollups
from services.analytics.rules.facts import TicketFacts
from services.analytics.rules.figures import Figures, _keys


# --- department weekly review and staff assessment -------------------------------------------


@dataclass(frozen=True)
class OpenItem:
    ticket_id: str
    kind: str | None
    category: str | None
    building: str | None
    round: int
    accepted_at: dt.datetime | None
    days_open: int | None
    overdue_clocks: tuple[str, ...]  # breached, or running past due at review time
    reopened: bool
    escalations: int
    needs_progress_update: bool


@dataclass(frozen=True)
class DepartmentReview:
    department: str
    open_count: int
    overdue_count: int
    items: tuple[OpenItem, ...]  # overdue first, then oldest first


def department_weekly_review(
    open_items: Iterable[TicketFacts], now: dt.datetime, policy: Policy = DEFAULT_POLICY
) -> tuple[DepartmentReview, ...]:
    """What each department head reads weekly (RULES §4): their open forms. A form sits
    with the departments of its current round (UNASSIGNED when not yet routed). A
    complaint needs an update when dispatch settled the latest week of its progress-update
    duty in the current round as breached (RULES §2 Progress updates: dispatch decides
    each week, `ev.PROGRESS_UPDATE_CLOCK`; this review counts its verdict)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    grouped: dict[str, list[OpenItem]] = {}
    for facts in open_items:
        if not facts.is_open:
            continue
        overdue = sorted({
            c.clock for c in facts.clocks
            if c.outcome == BREACHED or (c.outcome == RUNNING and c.due_at is not None and c.due_at < now)
        })
        days_open = (now - facts.accepted_at).days if facts.accepted_at else None
        weeks = sorted((c for c in facts.clocks if c.clock == ev.PROGRESS_UPDATE_CLOCK and c.round == facts.round
                        and c.outcome in (MET, BREACHED) and c.due_at is not None), key=lambda c: c.due_at)
        needs_update = bool(weeks) and weeks[-1].outcome == BREACHED
        item = OpenItem(
            ticket_id=facts.ticket_id, kind=facts.kind, category=facts.category,
            building=facts.building, round=facts.round, accepted_at=facts.accepted_at,
            days_open=days_open, overdue_clocks=tuple(overdue), reopened=facts.reopen_count > 0,
            escalations=facts.escalation_count, needs_progress_update=needs_update,
        )
        for department in facts.current_departments or [UNASSIGNED]:
            grouped.setdefault(department, []).append(item)
    epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    reviews = []
    for department in sorted(grouped):
        items = sorted(grouped[department],
                       key=lambda i: (not i.overdue_clocks, i.accepted_at or epoch, i.ticket_id))
        reviews.append(DepartmentReview(
            department=department, open_count=len(items),
            overdue_count=sum(1 for i in items if i.overdue_clocks), items=tuple(items),
        ))
    return tuple(reviews)


@dataclass(frozen=True)
class StaffAssessment:
    """Countersign forms as the evidence of a person's assessment (RULES §4): forms owned
    as first contact, forms signed back as handler, and how those forms went."""

    staff: str
    forms_accepted: int
    forms_signed: int
    completed: int
    closed: int
    clocks_met: int
    clocks_breached: int
    on_time_rate: float | None
    callbacks_required: int
    callbacks_on_time: int
    callback_on_time_rate: float | None
    satisfaction_answers: int
    result_satisfaction_rate: float | None
    attitude_satisfaction_rate: float | None
    reopened: int
    reopened_tickets: int
    escalations: int


def staff_assessment(rollups: PeriodRollups) -> tuple[StaffAssessment, ...]:
    """Per staff member of a period's rollups (the staff dimension), sorted by staff id."""
    result = []
    for staff in _keys(rollups, Dimension.staff.value):
        f = Figures.from_rollups(rollups, Dimension.staff.value, staff)
        result.append(StaffAssessment(
            staff=staff, forms_accepted=f.opened, forms_signed=f.forms_signed,
            completed=f.completed, closed=f.closed, clocks_met=f.clocks_met,
            clocks_breached=f.clocks_breached, on_time_rate=f.on_time_rate,
            callbacks_required=f.callbacks_required, callbacks_on_time=f.callbacks_on_time,
            callback_on_time_rate=f.callback_on_time_rate,
            satisfaction_answers=f.satisfaction_answers,
            result_satisfaction_rate=f.result_satisfaction_rate,
            attitude_satisfaction_rate=f.attitude_satisfaction_rate,
            reopened=f.reopened, reopened_tickets=f.reopened_tickets, escalations=f.escalations,
        ))
    return tuple(result)
