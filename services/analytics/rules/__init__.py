"""Statistics for the quality office (RULES.md §4), as pure functions over plain data.

The analytics service keeps an incremental read model: a table of counters
``(estate, period, dimension, key, metric) -> value`` plus one small `TicketFacts` row
per ticket. `apply_event(facts, event)` folds one ticket event into the ticket's facts
and returns the counter increments (`RollupDelta`) it causes. Replaying the same events
in the same order always gives the same facts and the same totals, whether they are
applied in one go, in batches, or again after a crash (an event id already seen by the
ticket adds nothing).

Which period a figure belongs to (estate local time, `policy.timezone`):

* opened — the day the owner raised it (`Accepted.received_at`);
* completed — `Completed.completed_at`; closed / reactivated — the event time;
* a clock *met* — the day it was stopped; a clock *breached* — the day it ran out
  (its `due_at`), so a late stop and a late breach notice land on the same day;
* callbacks (required, done, on time, overdue) — the day the callback was scheduled, so
  a month's callback rate compares that month's callbacks with what became of them and
  never exceeds 100 %;
* satisfaction answers — the day of the callback; validity — the day of the judgement;
* everything else — the event time.

Open items carried into the next month:
``carried_out = carried_in + opened + reactivated - closed`` (reactivated = a closed
ticket opened again), exact because every transition is counted once.

Clocks. Dispatch owns the SLA clocks and publishes its verdict on each as one
`clock_settled` event (met, breached, superseded, cancelled, rescheduled; see
`services.dispatch.rules.clock_verdict`). This model counts those verdicts and never
re-derives them: `met` adds `clocks_met` on the day it was settled, `breached` adds
`clocks_breached` on the day the clock ran out (its `due_at`); the other outcomes ended a
clock no longer owed and count neither. A verdict counts once per dispatch clock id. The
`Assigned` deadlines only declare the clocks (for the weekly review's overdue list).
"""

from __future__ import annotations

# The rules live by topic in this package's modules; this is their public face, so that
# callers write `rules.apply_event` whichever module holds it.
from services.analytics.rules.common import (
    BREACHED,
    CLOSED,
    COMPANY_TOTAL,
    Dimension,
    MET,
    Metric,
    OPEN,
    PeriodRollups,
    RUNNING,
    RollupDelta,
    RollupKey,
    UNASSIGNED,
)
from services.analytics.rules.facts import (
    CallbackFacts,
    ClockFacts,
    TicketFacts,
)
from services.analytics.rules.counting import (
    apply_event,
    fold,
    period_rollups,
    replay,
)
from services.analytics.rules.figures import (
    CorrectiveActionLine,
    Figures,
    MonthlyReport,
    SignOff,
    monthly_report,
    period_report,
)
from services.analytics.rules.consolidation import (
    CompanyConsolidation,
    EstateRanking,
    QuarterlySummary,
    RANKING_RULE,
    company_consolidation,
    composite_score,
    quarter_of,
    quarterly_summary,
)
from services.analytics.rules.review import (
    DepartmentReview,
    OpenItem,
    StaffAssessment,
    department_weekly_review,
    staff_assessment,
)
from services.analytics.rules.repeats import (
    RecentTicket,
    RepeatSearch,
    repeat_problem,
    repeat_search,
)

__all__ = [
    "BREACHED",
    "CLOSED",
    "COMPANY_TOTAL",
    "CallbackFacts",
    "ClockFacts",
    "CompanyConsolidation",
    "CorrectiveActionLine",
    "DepartmentReview",
    "Dimension",
    "EstateRanking",
    "Figures",
    "MET",
    "Metric",
    "MonthlyReport",
    "OPEN",
    "OpenItem",
    "PeriodRollups",
    "QuarterlySummary",
    "RANKING_RULE",
    "RUNNING",
    "RecentTicket",
    "RepeatSearch",
    "RollupDelta",
    "RollupKey",
    "SignOff",
    "StaffAssessment",
    "TicketFacts",
    "UNASSIGNED",
    "apply_event",
    "company_consolidation",
    "composite_score",
    "department_weekly_review",
    "fold",
    "monthly_report",
    "period_report",
    "period_rollups",
    "quarter_of",
    "quarterly_summary",
    "repeat_problem",
    "repeat_search",
    "replay",
    "staff_assessment",
]
