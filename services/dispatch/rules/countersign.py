"""The countersign form's round (RULES.md §2 Handover ledger, Sign-back): the departments a
round is assigned to, and each department line's acknowledgement, arrival on site,
sign-back, the head's verification or return; the round is complete when every line is
signed back and verified."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from shared.errors import RuleViolation
from shared.lifecycle import LineState, require_transition
from services.dispatch.rules.common import _aware, _required


# --- the countersign form's round (RULES §2 Handover ledger, Sign-back) -------------------


# A department line's states and moves are shared.lifecycle's (one vocabulary).
FormStatus = LineState


@dataclass(frozen=True)
class DepartmentProgress:
    department: str
    status: FormStatus = FormStatus.assigned
    arrival_required: bool = False  # repairs: someone must be on site before sign-back
    acknowledged_by: str | None = None
    acknowledged_at: dt.datetime | None = None
    arrived_by: str | None = None
    arrived_at: dt.datetime | None = None
    opinion: str | None = None
    result: str | None = None
    signed_by: str | None = None
    verified_by: str | None = None
    signed_at: dt.datetime | None = None  # the department's sign-back
    verified_at: dt.datetime | None = None  # the head's verification: only then it counts


@dataclass(frozen=True)
class FormRound:
    round: int
    assigned_at: dt.datetime
    departments: tuple[DepartmentProgress, ...] = field(default_factory=tuple)

    def progress(self, department: str) -> DepartmentProgress:
        for entry in self.departments:
            if entry.department == department:
                return entry
        raise RuleViolation(f"department {department} is not assigned to this form", 409)

    def _with(self, updated: DepartmentProgress) -> "FormRound":
        return replace(
            self,
            departments=tuple(updated if e.department == updated.department else e for e in self.departments),
        )


def assign_round(
    departments: Sequence[str],
    assigned_at: dt.datetime,
    round: int = 1,
    arrival_required: Iterable[str] = (),
) -> FormRound:
    if round < 1:
        raise RuleViolation(f"rounds are numbered from 1, got {round}", 422)
    departments = [_required(d, "a department") for d in departments]
    if not departments:
        raise RuleViolation("a form must be assigned to at least one department", 422)
    if len(set(departments)) != len(departments):
        raise RuleViolation(f"a department is assigned twice in {departments}", 422)
    arrival_required = set(arrival_required)
    stray = arrival_required - set(departments)
    if stray:
        raise RuleViolation(f"arrival required of departments not assigned: {sorted(stray)}", 422)
    return FormRound(
        round=round,
        assigned_at=_aware(assigned_at, "assigned_at"),
        departments=tuple(DepartmentProgress(d, arrival_required=d in arrival_required) for d in departments),
    )


def _line_moved(entry: DepartmentProgress, to: LineState) -> LineState:
    """The line's next state, as shared.lifecycle's table allows it."""
    require_transition(entry.status, to, f"department {entry.department}'s line")
    return to


def _after(moment: dt.datetime, earlier: dt.datetime | None, what: str, before_what: str) -> None:
    _aware(moment, what)
    if earlier is not None and moment < earlier:
        raise RuleViolation(f"{what} at {moment.isoformat()} precedes {before_what} at {earlier.isoformat()}", 409)


def apply_acknowledge(state: FormRound, department: str, acknowledged_by: str, acknowledged_at: dt.datetime) -> FormRound:
    """The receiving department signs for the form in the handover ledger."""
    entry = state.progress(department)
    if entry.status is not FormStatus.assigned:
        raise RuleViolation(f"department {department} already acknowledged this form", 409)
    _after(acknowledged_at, state.assigned_at, "acknowledgement", "the assignment")
    return state._with(
        replace(
            entry,
            status=_line_moved(entry, FormStatus.acknowledged),
            acknowledged_by=_required(acknowledged_by, "who acknowledged"),
            acknowledged_at=acknowledged_at,
        )
    )


def apply_arrive(state: FormRound, department: str, arrived_by: str, arrived_at: dt.datetime) -> FormRound:
    entry = state.progress(department)
    if entry.status is FormStatus.assigned:
        raise RuleViolation(f"arrival before acknowledgement by department {department}", 409)
    if entry.status is FormStatus.arrived:
        raise RuleViolation(f"department {department} already arrived on site", 409)
    if entry.status is FormStatus.signed_back:
        raise RuleViolation(f"department {department} already signed back; arrival comes before sign-back", 409)
    if entry.status is FormStatus.awaiting_verification:
        raise RuleViolation(f"department {department}'s sign-back already waits for its head's verification; "
                            "arrival comes before sign-back", 409)
    _after(arrived_at, entry.acknowledged_at, "arrival", "the acknowledgement")
    return state._with(
        replace(entry, status=_line_moved(entry, FormStatus.arrived), arrived_by=_required(arrived_by, "who arrived"), arrived_at=arrived_at)
    )


def apply_sign_back(
    state: FormRound,
    department: str,
    opinion: str,
    result: str,
    signed_by: str,
    verified_by: str | None,
    signed_at: dt.datetime,
) -> FormRound:
    """The department writes its handling opinion and result (签回); the line then waits
    for its head's verification (`awaiting_verify`). `verified_by` is given only when the
    signer is the department's head, who verifies their own sign-back at once
    (`signed_back`). Errors: 409 before acknowledgement / arrival (repairs), or when the
    line was already signed back or awaits verification; 422 for a blank opinion or result.
    Source: RULES §2 Sign-back; seeds 000 §四, §五.2(2); 002 §4.3.1 c,e."""
    entry = state.progress(department)
    if entry.status is FormStatus.assigned:
        raise RuleViolation(f"sign-back before acknowledgement by department {department}", 409)
    if entry.status is FormStatus.signed_back:
        raise RuleViolation(f"department {department} already signed back", 409)
    if entry.status is FormStatus.awaiting_verification:
        raise RuleViolation(f"department {department}'s sign-back already waits for its head's verification", 409)
    if entry.arrival_required and entry.status is not FormStatus.arrived:
        raise RuleViolation(f"sign-back before arrival on site by department {department}", 409)
    _after(signed_at, entry.arrived_at or entry.acknowledged_at, "sign-back", "the previous step")
    head = (verified_by or "").strip() or None
    signed = replace(
        entry,
        status=_line_moved(entry, FormStatus.signed_back if head else FormStatus.awaiting_verification),
        opinion=_required(opinion, "the handling opinion"),
        result=_required(result, "the handling result"),
        signed_by=_required(signed_by, "who signed back"),
        signed_at=signed_at,
        verified_by=head,
        verified_at=signed_at if head else None,
    )
    return state._with(signed)


def _awaiting_head(state: FormRound, department: str) -> DepartmentProgress:
    entry = state.progress(department)
    if entry.status is not FormStatus.awaiting_verification:
        raise RuleViolation(f"department {department}'s line is {entry.status.value}, not waiting for its head's "
                            "verification", 409)
    return entry


def apply_verify(state: FormRound, department: str, verified_by: str, verified_at: dt.datetime) -> FormRound:
    """The department head verifies the sign-back (审核签字): the line is signed back and
    counts for the form's round. Errors: 409 unless the line awaits verification or when
    `verified_at` precedes the sign-back. Source: RULES §2 Sign-back; seeds 000 §四."""
    entry = _awaiting_head(state, department)
    _after(verified_at, entry.signed_at, "verification", "the sign-back")
    return state._with(replace(entry, status=_line_moved(entry, FormStatus.signed_back),
                               verified_by=_required(verified_by, "who verified"), verified_at=verified_at))


def apply_return(state: FormRound, department: str, reason: str, returned_at: dt.datetime) -> FormRound:
    """The head returns the sign-back to the department (退回重办): the opinion and result
    are cleared and the line is back in work (`arrived` when someone was on site, else
    `acknowledged`). Errors: 409 unless the line awaits verification; 422 for a blank
    reason. Source: RULES §2 Sign-back; seeds 002 §4.3.1 e."""
    entry = _awaiting_head(state, department)
    _required(reason, "the reason for returning the sign-back")
    _after(returned_at, entry.signed_at, "return", "the sign-back")
    back = FormStatus.arrived if entry.arrived_at is not None else FormStatus.acknowledged
    return state._with(replace(entry, status=_line_moved(entry, back), opinion=None, result=None,
                               signed_by=None, signed_at=None, verified_by=None, verified_at=None))


def pending_departments(state: FormRound) -> list[str]:
    return [e.department for e in state.departments if e.status is not FormStatus.signed_back]


def round_complete(state: FormRound) -> bool:
    """Every assigned department signed back and its head verified: the form returns to
    customer service."""
    return not pending_departments(state)
