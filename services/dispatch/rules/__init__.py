"""Dispatch policy as pure functions: routing, the round's clocks, breaches, escalation,
nonconformity records, the countersign form's state machine, progress updates and paid
household-service bills.

No I/O here. Every number comes from a `Policy`; working days come from a
`WorkingCalendar`. Times are timezone-aware; minute and hour clocks are elapsed time
(plain timedelta), day clocks are working days counted in the estate's local time.
"""

from __future__ import annotations

# The rules live by topic in this package's modules; this is their public face, so that
# callers write `rules.route` whichever module holds it.
from services.dispatch.rules.common import DEFAULT, UTC
from services.dispatch.rules.facts import TicketFacts
from services.dispatch.rules.routing import (
    DEFAULT_DEPARTMENTS,
    DEFAULT_ROUTING_RULES,
    RoutingRule,
    departments_in_estate,
    route,
    routing_rules_from_data,
)
from services.dispatch.rules.clocks import (
    CLOCKS_MET_BY,
    Clock,
    RESCHEDULED,
    Step,
    arrival_due,
    arrival_grace_minutes,
    clock_verdict,
    clocks_met_by,
    progress_clock,
    progress_week_met,
    recompute_day_clock,
    reschedule_appointment,
    start_round_clocks,
    working_days_of,
)
from services.dispatch.rules.escalation import (
    first_rung,
    needs_nonconformity,
    next_escalation_at,
    next_rung,
)
from services.dispatch.rules.nonconformity import (
    NonconformityRecord,
    approve_nonconformity,
    attach_capa_report,
    close_nonconformity,
    completion_waits_for_approval,
    open_nonconformity,
    start_corrective_action,
)
from services.dispatch.rules.countersign import (
    DepartmentProgress,
    FormRound,
    FormStatus,
    apply_acknowledge,
    apply_arrive,
    apply_return,
    apply_sign_back,
    apply_verify,
    assign_round,
    pending_departments,
    round_complete,
)
from services.dispatch.rules.paid_services import (
    Bill,
    BillCopy,
    BillLine,
    CENT,
    FINANCE_ROLE,
    LineKind,
    ServiceItem,
    Settlement,
    SettlementChannel,
    make_bill,
    material_line,
    service_line,
    settle_bill,
)
from shared.errors import RuleViolation  # one definition; these rules refuse with 422 unless a move is refused (409)
from shared.lifecycle import NonconformityState

__all__ = [
    "Bill",
    "BillCopy",
    "BillLine",
    "CENT",
    "CLOCKS_MET_BY",
    "Clock",
    "DEFAULT",
    "DEFAULT_DEPARTMENTS",
    "DEFAULT_ROUTING_RULES",
    "DepartmentProgress",
    "FINANCE_ROLE",
    "FormRound",
    "FormStatus",
    "LineKind",
    "NonconformityRecord",
    "NonconformityState",
    "RESCHEDULED",
    "RoutingRule",
    "RuleViolation",
    "ServiceItem",
    "Settlement",
    "SettlementChannel",
    "Step",
    "TicketFacts",
    "UTC",
    "apply_acknowledge",
    "apply_arrive",
    "apply_return",
    "apply_sign_back",
    "apply_verify",
    "approve_nonconformity",
    "arrival_due",
    "arrival_grace_minutes",
    "assign_round",
    "attach_capa_report",
    "clock_verdict",
    "clocks_met_by",
    "close_nonconformity",
    "completion_waits_for_approval",
    "departments_in_estate",
    "first_rung",
    "make_bill",
    "material_line",
    "needs_nonconformity",
    "next_escalation_at",
    "next_rung",
    "open_nonconformity",
    "pending_departments",
    "progress_clock",
    "progress_week_met",
    "recompute_day_clock",
    "reschedule_appointment",
    "round_complete",
    "route",
    "routing_rules_from_data",
    "service_line",
    "settle_bill",
    "start_corrective_action",
    "start_round_clocks",
    "working_days_of",
]
