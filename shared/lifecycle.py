"""One lifecycle vocabulary (issue 11): the states of a ticket, of a countersign form's
department line, of a callback and of a nonconformity record, each with its allowed
transitions as data. Services store these values, check their transitions here, and
every status column carries a CHECK constraint built from the same enum.

Each service keeps the part of the ticket's life it sees (intake: in_handling →
completed → closed; dispatch adds awaiting_nc and invalid; callback adds
awaiting_callback and awaiting_verdict): one spelling per state, one table of moves.
Sources: RULES §1 (registration), §2 (handover ledger, sign-back, nonconformity & CAPA),
§3 (callback, recurrence), seeds 002 §4.4–4.7, 004 篇3 §4.2.5.

Errors: `require_transition` raises `RuleViolation` (409) naming both states.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

import sqlalchemy as sa

from shared.errors import RuleViolation


class TicketState(StrEnum):
    """The ticket's life as a whole (处理中 → 已完成待回访 → 已关闭)."""

    in_handling = "in_handling"  # registered, with the departments
    awaiting_approval = "awaiting_nc"  # signed back; the nonconformity record awaits approval
    completed = "completed"  # every department signed back: back with customer service
    awaiting_callback = "awaiting_callback"  # a callback is due
    awaiting_verdict = "awaiting_verdict"  # no callback: the recurrence window decides
    invalid = "invalid"  # a complaint judged invalid: handling ended, the owner is told why
    closed = "closed"  # satisfied, or closed without a judgement


class LineState(StrEnum):
    """A department's line in the handover ledger, one per transfer (RULES §2)."""

    assigned = "assigned"
    acknowledged = "acknowledged"  # signed for in the ledger
    arrived = "arrived"  # on site (repairs)
    # Opinion and result written by the department; its head has not verified yet (the
    # status column is 16 wide, hence the short spelling).
    awaiting_verification = "awaiting_verify"
    signed_back = "signed_back"  # opinion and result written, verified by the head
    transferred = "transferred"  # handed on to another department (a new line)


class CallbackState(StrEnum):
    pending = "pending"
    done = "done"
    cancelled = "cancelled"  # the round was decided otherwise, or the ticket closed


class NonconformityState(StrEnum):
    """不合格品/服务记录处理单 (RULES §2 Nonconformity & CAPA; 004 篇3 §4.2.5)."""

    opened = "opened"
    approved = "approved"
    corrective_action = "corrective_action"
    closed = "closed"


class DestructionRequestState(StrEnum):
    """An archive destruction request 销毁申请 (RULES §5 Destruction: only with the general
    manager's approval; 001 第5篇 1.7, 第6篇 1.5): asked, then approved (the records are
    destroyed) or refused (with the reason)."""

    requested = "requested"
    approved = "approved"
    refused = "refused"


T, L, C, N, D = TicketState, LineState, CallbackState, NonconformityState, DestructionRequestState

# state -> the states it may move to. A reopened round (the owner not satisfied) takes a
# completed, awaiting or closed ticket back to in_handling.
TICKET_TRANSITIONS: Mapping[TicketState, frozenset[TicketState]] = {
    T.in_handling: frozenset({T.awaiting_approval, T.completed, T.awaiting_callback, T.awaiting_verdict,
                              T.invalid, T.closed}),
    T.awaiting_approval: frozenset({T.completed, T.invalid, T.closed}),
    # A complaint judged invalid after its departments completed (confirmed by a manager):
    # its handling ends there, the scheduled callback is cancelled (RULES §1 Invalid complaint).
    T.completed: frozenset({T.awaiting_callback, T.awaiting_verdict, T.invalid, T.closed, T.in_handling}),
    T.awaiting_callback: frozenset({T.awaiting_verdict, T.closed, T.in_handling}),
    T.awaiting_verdict: frozenset({T.closed, T.in_handling}),
    T.invalid: frozenset({T.closed}),
    T.closed: frozenset({T.in_handling}),
}
LINE_TRANSITIONS: Mapping[LineState, frozenset[LineState]] = {
    L.assigned: frozenset({L.acknowledged, L.transferred}),
    # A head signing back their own department's line verifies it at once (signed_back).
    L.acknowledged: frozenset({L.arrived, L.awaiting_verification, L.signed_back, L.transferred}),
    L.arrived: frozenset({L.awaiting_verification, L.signed_back, L.transferred}),
    # The head verifies, or returns the sign-back to the department (back to work).
    L.awaiting_verification: frozenset({L.signed_back, L.acknowledged, L.arrived}),
    L.signed_back: frozenset(),
    L.transferred: frozenset(),
}
CALLBACK_TRANSITIONS: Mapping[CallbackState, frozenset[CallbackState]] = {
    C.pending: frozenset({C.done, C.cancelled}),
    C.done: frozenset(),
    C.cancelled: frozenset(),
}
NONCONFORMITY_TRANSITIONS: Mapping[NonconformityState, frozenset[NonconformityState]] = {
    N.opened: frozenset({N.approved}),
    N.approved: frozenset({N.corrective_action}),
    N.corrective_action: frozenset({N.closed}),
    N.closed: frozenset(),
}
DESTRUCTION_REQUEST_TRANSITIONS: Mapping[DestructionRequestState, frozenset[DestructionRequestState]] = {
    D.requested: frozenset({D.approved, D.refused}),
    D.approved: frozenset(),
    D.refused: frozenset(),
}
MACHINES: Mapping[type[StrEnum], Mapping] = {
    TicketState: TICKET_TRANSITIONS, LineState: LINE_TRANSITIONS,
    CallbackState: CALLBACK_TRANSITIONS, NonconformityState: NONCONFORMITY_TRANSITIONS,
    DestructionRequestState: DESTRUCTION_REQUEST_TRANSITIONS,
}
INITIAL: Mapping[type[StrEnum], StrEnum] = {
    TicketState: T.in_handling, LineState: L.assigned, CallbackState: C.pending, NonconformityState: N.opened,
    DestructionRequestState: D.requested,
}
# Where a life may end (a closed ticket may still be reopened).
FINAL: Mapping[type[StrEnum], frozenset[StrEnum]] = {
    TicketState: frozenset({T.closed}), LineState: frozenset({L.signed_back, L.transferred}),
    CallbackState: frozenset({C.done, C.cancelled}), NonconformityState: frozenset({N.closed}),
    DestructionRequestState: frozenset({D.approved, D.refused}),
}


def can_move(current: StrEnum, to: StrEnum) -> bool:
    """Whether `current` may move to `to` in its machine (the same enum)."""
    return type(current) is type(to) and to in MACHINES[type(current)][current]


def require_transition(current: StrEnum, to: StrEnum, what: str) -> None:
    """Refuse a move the machine does not allow: RuleViolation 409 naming both states."""
    if not can_move(current, to):
        raise RuleViolation(f"{what} cannot go from {current.value} to {to.value}", status=409)


def check_constraint(column: str, states: Iterable[StrEnum], name: str) -> sa.CheckConstraint:
    """The CHECK a status column carries: its value is one of `states`."""
    values = ", ".join(f"'{state.value}'" for state in states)
    return sa.CheckConstraint(f"{column} IN ({values})", name=name)


def mermaid(machine: type[StrEnum]) -> str:
    """The machine as one Mermaid state diagram (the README shows the ticket's)."""
    transitions = MACHINES[machine]
    lines = ["stateDiagram-v2", f"    [*] --> {INITIAL[machine].value}"]
    for state in machine:
        for to in sorted(transitions[state], key=list(machine).index):
            lines.append(f"    {state.value} --> {to.value}")
        if state in FINAL[machine]:
            lines.append(f"    {state.value} --> [*]")
    return "\n".join(lines) + "\n"
