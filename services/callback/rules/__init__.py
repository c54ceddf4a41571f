"""Callback 回访 rules (RULES.md §3): who is called back, by when, by which method, what
the owner's answers mean, and how opinions without a callback path are judged.

Pure functions over plain data. Every number comes from `policy.callback` (or, for the
progress-update rhythm, the read-only `policy.clocks`); times must be timezone-aware and
day arithmetic happens in the estate's local time (`policy.timezone`). The callback
service's shell feeds these functions facts from events and stores what they return.
"""

from __future__ import annotations

# The rules live by topic in this package's modules; this is their public face, so that
# callers write `rules.plan_completion` whichever module holds it.
from services.callback.rules.planning import (
    CallbackPurpose,
    CallbackRule,
    CompletionFacts,
    CompletionPlan,
    PlannedCallback,
    callback_assignee,
    callback_id_for,
    counts_in_rate,
    decides_outcome,
    in_activity_sample,
    plan_callbacks,
    plan_completion,
    plan_midway_callback,
    recompute_complaint_due,
    satisfaction_by_recurrence,
)
from services.callback.rules.worklist import (
    PendingCallback,
    WorklistEntry,
    is_overdue,
    order_worklist,
)
from services.callback.rules.outcome import (
    CallbackAnswers,
    Outcome,
    callback_submission_key,
    check_call_method,
    check_owner_may_answer,
    check_recordable,
    check_resubmission,
    decide_outcome,
    record_outcome,
)
from services.callback.rules.recurrence import (
    OpinionFact,
    RecurrenceVerdict,
    recurrence_decision,
    recurrence_key,
    recurrence_verdict,
    recurring_opinions,
    window_end,
)
from services.callback.rules.visits import (
    VisitTally,
    check_visit_date,
    parse_month,
    visit_shortfall,
)
from services.callback.rules.progress import (
    ProgressUpdateStatus,
    weekly_update_status,
)
from services.callback.rules.metrics import (
    callback_rate,
    satisfaction_rate,
)
# Names the single module also offered: the refusal, and the event types the rules take
# (the service shell writes rules.Kind, rules.RepairClass).
from shared.errors import RuleViolation
from shared.events import Kind, RepairClass, ReplyMethod

__all__ = [
    "CallbackAnswers",
    "CallbackPurpose",
    "CallbackRule",
    "CompletionFacts",
    "CompletionPlan",
    "Kind",
    "OpinionFact",
    "Outcome",
    "PendingCallback",
    "PlannedCallback",
    "ProgressUpdateStatus",
    "RecurrenceVerdict",
    "RepairClass",
    "ReplyMethod",
    "RuleViolation",
    "VisitTally",
    "WorklistEntry",
    "callback_assignee",
    "callback_id_for",
    "callback_rate",
    "callback_submission_key",
    "check_call_method",
    "check_owner_may_answer",
    "check_recordable",
    "check_resubmission",
    "check_visit_date",
    "counts_in_rate",
    "decide_outcome",
    "decides_outcome",
    "in_activity_sample",
    "is_overdue",
    "order_worklist",
    "parse_month",
    "plan_callbacks",
    "plan_completion",
    "plan_midway_callback",
    "recompute_complaint_due",
    "record_outcome",
    "recurrence_decision",
    "recurrence_key",
    "recurrence_verdict",
    "recurring_opinions",
    "satisfaction_by_recurrence",
    "satisfaction_rate",
    "visit_shortfall",
    "weekly_update_status",
    "window_end",
]
