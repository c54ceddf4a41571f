"""The statistics' shared vocabulary (RULES.md §4): the dimensions and metrics of the read model's
counters, the open and clock states it holds, the company-total key, the counter increment
(`RollupDelta`), a counter's key (`RollupKey`) and one period's slice (`PeriodRollups`)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple

from shared import events as ev
from shared.lifecycle import TicketState


# --- vocabulary --------------------------------------------------------------------------


class Dimension(StrEnum):
    estate = "estate"
    department = "department"
    kind = "kind"
    category = "category"  # cause category 原因分类, as recorded at intake
    channel = "channel"
    staff = "staff"  # first-contact owner 首问首接责任人 (and the signer, for forms_signed)
    building = "building"
    kind_channel = "kind_channel"  # "<kind>|<channel>": the report's kind × channel table
    clock = "clock"
    rung = "rung"  # escalation rung
    repair_class = "repair_class"  # household repair review (RULES §4)


class Metric(StrEnum):
    opened = "opened"
    off_hours_opened = "off_hours_opened"
    reactivated = "reactivated"  # a closed ticket opened again
    completed = "completed"  # rounds completed (a re-opened ticket completes twice)
    closed = "closed"
    closed_first_round = "closed_first_round"  # closed without ever being re-opened
    assigned = "assigned"  # once per (ticket, department)
    acknowledged = "acknowledged"
    arrived = "arrived"
    signed_back = "signed_back"
    forms_signed = "forms_signed"  # staff dimension: forms the person signed back
    progress_updates = "progress_updates"
    valid_complaints = "valid_complaints"
    invalid_complaints = "invalid_complaints"
    escalations = "escalations"
    nonconformities = "nonconformities"
    clocks_met = "clocks_met"
    clocks_breached = "clocks_breached"
    callbacks_required = "callbacks_required"
    callbacks_done = "callbacks_done"
    callbacks_on_time = "callbacks_on_time"
    callbacks_overdue = "callbacks_overdue"
    satisfaction_answers = "satisfaction_answers"
    result_satisfied = "result_satisfied"
    attitude_satisfied = "attitude_satisfied"
    handled_in_time = "handled_in_time"
    reopened = "reopened"  # re-opening events (rounds added)
    reopened_tickets = "reopened_tickets"  # tickets re-opened at least once
    repeat_problems = "repeat_problems"  # corrective actions suggested for repeats
    repeat_problem_tickets = "repeat_problem_tickets"  # tickets behind those suggestions


_METRICS = tuple(m.value for m in Metric)  # plain strings: Enum.value lookups are slow in bulk

# A clock's outcome as analytics holds it: running until dispatch's verdict
# (`clock_settled`) arrives, then that verdict's own value (`ev.ClockOutcome`).
RUNNING = "running"
MET, BREACHED = ev.ClockOutcome.met.value, ev.ClockOutcome.breached.value
# The read model's open flag of a ticket: every `TicketState` of shared.lifecycle but
# closed is open (the weekly review and the dashboard count open forms).
CLOSED = TicketState.closed.value
OPEN = "open"
UNASSIGNED = "unassigned"  # weekly review bucket for forms not routed to a department
COMPANY_TOTAL = "*"  # estate key of company-wide sums; never a valid estate code


class RollupDelta(NamedTuple):
    estate: str
    period: str  # "2026-11-22" (day) or "2026-11" (month)
    dimension: str
    key: str
    metric: str
    delta: int


RollupKey = tuple[str, str, str, str, str]  # (estate, period, dimension, key, metric)
PeriodRollups = Mapping[tuple[str, str, str], int]  # (dimension, key, metric) -> value
