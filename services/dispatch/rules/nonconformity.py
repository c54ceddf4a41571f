"""The nonconformity record 不合格品/服务记录处理单 (RULES.md §2 Economic loss, Nonconformity &
CAPA): opened by the estate manager, approved by the management representative, then
corrective action, closure and the CAPA report; and whether the form's completion still
waits for the approval."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal

from shared.errors import RuleViolation
from shared.lifecycle import NonconformityState, require_transition
from shared.policy import Policy
from services.dispatch.rules.common import DEFAULT, _aware, _money, _required


# --- nonconformity record 不合格品/服务记录处理单 (RULES §2 Nonconformity & CAPA) ---------


@dataclass(frozen=True)
class NonconformityRecord:
    ticket_id: str
    content: str  # 不合格内容
    opened_by: str
    opened_at: dt.datetime
    owner_loss_cny: Decimal | None = None
    state: NonconformityState = NonconformityState.opened
    approved_by: str | None = None
    approved_at: dt.datetime | None = None
    corrective_action: str | None = None
    responsible: str | None = None
    action_started_at: dt.datetime | None = None
    closed_by: str | None = None
    closed_at: dt.datetime | None = None
    result: str | None = None
    capa_report: str | None = None  # 纠正/预防措施报告, after the review meeting
    capa_reported_at: dt.datetime | None = None

    @property
    def last_moment(self) -> dt.datetime:
        moments = [self.opened_at, self.approved_at, self.action_started_at, self.closed_at, self.capa_reported_at]
        return max(m for m in moments if m is not None)


def completion_waits_for_approval(nonconformity_state: NonconformityState | str | None) -> bool:
    """True while the form's nonconformity record (owner's loss above the threshold) still
    waits for the management representative's approval: the form may not return to
    customer service (`completed`), so no callback is planned and the ticket cannot close.
    None (no record) and every later state let it complete.
    Source: RULES §2 Economic loss; 004 篇3 §4.2.5."""
    if nonconformity_state is None:
        return False
    try:
        return NonconformityState(nonconformity_state) is NonconformityState.opened
    except ValueError:
        raise RuleViolation(f"unknown nonconformity state {nonconformity_state!r}", 422) from None


def _expect(record: NonconformityRecord, state: NonconformityState, action: str) -> None:
    if record.state is not state:
        raise RuleViolation(
            f"cannot {action} a nonconformity record that is {record.state.value} (it must be {state.value})", 409
        )


def _moved(record: NonconformityRecord, to: NonconformityState) -> NonconformityState:
    """The record's next state, as shared.lifecycle's table allows it."""
    require_transition(record.state, to, "a nonconformity record")
    return to


def _not_before(moment: dt.datetime, record: NonconformityRecord, action: str) -> None:
    _aware(moment, f"{action} time")
    if moment < record.last_moment:
        raise RuleViolation(f"cannot {action} at {moment.isoformat()}, before the record's previous step", 409)


def open_nonconformity(
    ticket_id: str, content: str, opened_by: str, opened_at: dt.datetime, owner_loss_cny=None
) -> NonconformityRecord:
    """The estate manager convenes the departments and writes the nonconformity."""
    loss = None if owner_loss_cny is None else _money(owner_loss_cny, "owner's loss")
    if loss is not None and loss < 0:
        raise RuleViolation(f"an owner's loss cannot be negative, got {owner_loss_cny}", 422)
    return NonconformityRecord(
        ticket_id=_required(ticket_id, "the ticket"),
        content=_required(content, "the nonconformity content"),
        opened_by=_required(opened_by, "who opened the record"),
        opened_at=_aware(opened_at, "opened_at"),
        owner_loss_cny=loss,
    )


def approve_nonconformity(
    record: NonconformityRecord, approved_by: str, approver_role: str, approved_at: dt.datetime, policy: Policy = DEFAULT
) -> NonconformityRecord:
    _expect(record, NonconformityState.opened, "approve")
    required_role = policy.escalation.nonconformity_approver_role
    if approver_role != required_role:
        raise RuleViolation(f"a nonconformity record is approved by the {required_role}, not by a {approver_role}", 403)
    _not_before(approved_at, record, "approve")
    return replace(
        record,
        state=_moved(record, NonconformityState.approved),
        approved_by=_required(approved_by, "the approver"),
        approved_at=approved_at,
    )


def start_corrective_action(
    record: NonconformityRecord, action: str, responsible: str, started_at: dt.datetime
) -> NonconformityRecord:
    _expect(record, NonconformityState.approved, "start corrective action on")
    _not_before(started_at, record, "start corrective action")
    return replace(
        record,
        state=_moved(record, NonconformityState.corrective_action),
        corrective_action=_required(action, "the corrective action"),
        responsible=_required(responsible, "the person responsible"),
        action_started_at=started_at,
    )


def close_nonconformity(
    record: NonconformityRecord, closed_by: str, result: str, closed_at: dt.datetime
) -> NonconformityRecord:
    _expect(record, NonconformityState.corrective_action, "close")
    _not_before(closed_at, record, "close")
    return replace(
        record,
        state=_moved(record, NonconformityState.closed),
        closed_by=_required(closed_by, "who closed the record"),
        result=_required(result, "the corrective action's result"),
        closed_at=closed_at,
    )


def attach_capa_report(record: NonconformityRecord, report: str, reported_at: dt.datetime) -> NonconformityRecord:
    """After closure a review meeting may produce a corrective/preventive action report."""
    _expect(record, NonconformityState.closed, "attach a CAPA report to")
    if record.capa_report is not None:
        raise RuleViolation("this nonconformity record already has its CAPA report", 409)
    _not_before(reported_at, record, "attach a CAPA report")
    return replace(record, capa_report=_required(report, "the CAPA report"), capa_reported_at=reported_at)
