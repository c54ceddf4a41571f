"""Dispatch's HTTP request and response shapes (unchanged: the console and other services
read them) and the mapping of the read models (`queries.py`) onto them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import BaseModel, Field

from services.dispatch import rules
from services.dispatch.queries import FormDetail
from services.dispatch.rules import Clock, TicketFacts
from shared.events import ClockOutcome
from shared.lifecycle import LineState
from shared.limits import Contract, Instant, Money
from shared.policy import Policy
from shared.service import LocalTime, local_iso


class DepartmentIn(Contract):
    department: str = Field(min_length=1, max_length=32)


class SignBackIn(DepartmentIn):
    opinion: str = Field(min_length=1, max_length=20000, description="The department's handling opinion")
    result: str = Field(min_length=1, max_length=20000, description="The handling result")
    verified_by: str | None = Field(
        None, min_length=1, max_length=64,
        description="Kept for integrations: when it names the caller, the department's head, the sign-back is "
                    "verified at once; naming another head, the line waits for that head's verification "
                    "(POST .../sign-back/verify)")


class VerifyIn(DepartmentIn):
    pass


class ReturnSignBackIn(DepartmentIn):
    reason: str = Field(min_length=1, max_length=2000, description="Why the head returns the sign-back to the department")


class RescheduleIn(DepartmentIn):
    appointment_at: Instant = Field(description="The new appointment (timezone-aware)")
    note: str = Field(min_length=1, max_length=2000, description="The note left for the owner, and why")


class TransferIn(DepartmentIn):
    from_department: str | None = Field(
        None, max_length=32, description="The department handing it on (default: the caller's own active line)"
    )
    note: str | None = Field(None, max_length=2000)


class LedgerLineOut(BaseModel):
    id: int
    round: int
    department: str
    assigned_at: LocalTime
    assigned_by: str
    transferred_from: str | None
    arrival_required: bool
    status: str
    acknowledged_at: LocalTime | None
    acknowledged_by: str | None
    arrived_at: LocalTime | None
    arrived_by: str | None
    signed_at: LocalTime | None  # the department signed back
    signed_back_at: LocalTime | None  # its head verified: the line counts as signed back
    opinion: str | None
    result: str | None
    signed_by: str | None
    verified_by: str | None
    appointment_at: LocalTime | None
    notes: list[dict]
    transferred_at: LocalTime | None
    transferred_to: str | None
    transferred_by: str | None


class DeadlineOut(BaseModel):
    round: int
    clock: str
    department: str | None
    due_at: LocalTime
    provisional: bool
    met_at: LocalTime | None
    outcome: str | None
    breached_at: LocalTime | None
    verdict: ClockOutcome | None = Field(
        description="Dispatch's verdict (published as clock_settled): met, breached, superseded, cancelled, "
        "rescheduled; null while running")
    overdue: bool
    grace_minutes: int = Field(0, description="Arrival only: the policy's grace included in due_at (emergency 立即)")


class EscalationOut(BaseModel):
    round: int
    rung: str
    reason: str
    clock: str | None
    department: str | None
    nonconformity: bool
    escalated_at: LocalTime
    next_at: LocalTime | None
    resolved_at: LocalTime | None


class NonconformityOut(BaseModel):
    ticket_id: str
    content: str
    owner_loss_cny: Decimal | None
    state: str
    opened_by: str
    opened_at: LocalTime
    approved_by: str | None
    approved_at: LocalTime | None
    corrective_action: str | None
    responsible: str | None
    action_started_at: LocalTime | None
    closed_by: str | None
    closed_at: LocalTime | None
    result: str | None
    capa_report: str | None
    capa_reported_at: LocalTime | None


class ProgressWindowOut(BaseModel):
    start: LocalTime
    end: LocalTime
    updates: int
    required: int


class FormOut(BaseModel):
    ticket_id: str
    estate: str
    form_number: str
    kind: str
    category: str
    repair_class: str | None
    first_contact: str
    round: int
    status: str
    validity: str | None
    accepted_at: LocalTime
    completed_at: LocalTime | None
    departments: list[str] = Field(description="Departments holding an active line in the current round")
    ledger: list[LedgerLineOut]
    deadlines: list[DeadlineOut]
    escalations: list[EscalationOut]
    nonconformity: NonconformityOut | None
    progress_updates: list[LocalTime]
    progress_updates_missing: list[ProgressWindowOut]
    clocks_met: int = Field(description="Clocks met (the on-time figures count the same verdicts)")
    clocks_breached: int = Field(description="Clocks breached: ran out, or stopped after their due time")
    overdue: bool


class FormSummaryOut(BaseModel):
    ticket_id: str
    form_number: str
    kind: str
    category: str
    round: int
    status: str
    departments: list[str]
    accepted_at: LocalTime
    overdue: bool
    next_due_at: LocalTime | None



class NonconformityIn(Contract):
    content: str = Field(min_length=1, max_length=20000, description="不合格内容")
    owner_loss_cny: Money | None = Field(None)


class CorrectiveActionIn(Contract):
    action: str = Field(min_length=1, max_length=20000)
    responsible: str = Field(min_length=1, max_length=64)


class CloseNonconformityIn(Contract):
    result: str = Field(min_length=1, max_length=20000)


class CapaReportIn(Contract):
    report: str = Field(min_length=1, max_length=50000, description="纠正/预防措施报告")


def _line_status(line) -> str:
    return LineState(line.status).value


def _line_out(line) -> LedgerLineOut:
    data = dict(line._mapping)
    data["status"] = _line_status(line)
    data["notes"] = [_local_note(note) for note in line.notes or []]
    return LedgerLineOut.model_validate(data)


NOTE_TIMES = ("at", "appointment_at", "previous_appointment_at")


def _local_note(note: dict) -> dict:
    """A stored ledger note with its times in the answer's zone, like every other time."""
    return {key: local_iso(dt.datetime.fromisoformat(value)) if key in NOTE_TIMES and value else value
            for key, value in note.items()}


def _deadline_out(row, now: dt.datetime, grace_minutes: int = 0) -> DeadlineOut:
    overdue = row.met_at is None and (row.breached_at is not None or row.due_at < now)
    return DeadlineOut(round=row.round, clock=row.clock, department=row.department or None, due_at=row.due_at,
                       provisional=row.provisional, met_at=row.met_at, outcome=row.outcome,
                       breached_at=row.breached_at, overdue=overdue,
                       verdict=rules.clock_verdict(row.due_at, row.breached_at, row.met_at, row.outcome),
                       grace_minutes=grace_minutes if row.clock == Clock.arrival.value else 0)


def _missed_weeks(deadlines, update_times: list[dt.datetime], policy: Policy) -> list[ProgressWindowOut]:
    """RULES §2 Progress updates: the weeks dispatch settled as breached (ended short)."""
    required = policy.clocks.progress_updates_per_week
    return [
        ProgressWindowOut(start=d.started_at, end=d.due_at, required=required,
                          updates=sum(d.started_at <= t < d.due_at for t in update_times))
        for d in deadlines if d.clock == Clock.progress_update.value and d.breached_at is not None
    ]




def form_out(detail: FormDetail, now: dt.datetime, policy: Policy) -> FormOut:
    """The countersign form as the console shows it; `now` judges the running clocks."""
    form, updates = detail.form, list(detail.updates)
    grace = rules.arrival_grace_minutes(TicketFacts(kind=form.kind, repair_class=form.repair_class), policy)
    deadlines_out = [_deadline_out(d, now, grace) for d in detail.deadlines]
    lines = detail.lines
    return FormOut(
        ticket_id=form.ticket_id, estate=form.estate, form_number=form.form_number, kind=form.kind,
        category=form.category, repair_class=form.repair_class, first_contact=form.first_contact, round=form.round,
        status=form.status, validity=form.validity, accepted_at=form.accepted_at, completed_at=form.completed_at,
        departments=[l.department for l in lines if l.round == form.round and l.transferred_at is None],
        ledger=[_line_out(l) for l in lines],
        deadlines=deadlines_out,
        escalations=[EscalationOut.model_validate(dict(e._mapping)) for e in detail.escalations],
        nonconformity=NonconformityOut.model_validate(dict(detail.nonconformity._mapping))
        if detail.nonconformity else None,
        progress_updates=updates,
        progress_updates_missing=_missed_weeks(detail.deadlines, updates, policy),
        clocks_met=sum(d.verdict is ClockOutcome.met for d in deadlines_out),
        clocks_breached=sum(d.verdict is ClockOutcome.breached for d in deadlines_out),
        overdue=any(d.overdue for d in deadlines_out),
    )


def nc_out(record) -> NonconformityOut:
    """A nonconformity record (`rules.NonconformityRecord` or its row) as answered."""
    data = {k: getattr(record, k) for k in NonconformityOut.model_fields}
    data["state"] = rules.NonconformityState(data["state"]).value
    return NonconformityOut.model_validate(data)
