"""shared.lifecycle (issue 11): one vocabulary for the ticket, a form line, a callback and
a nonconformity record, their moves as data, the CHECK each status column carries and
the diagram the README shows."""

from __future__ import annotations

import pytest

from services.dispatch import rules as dispatch_rules
from shared.errors import RuleViolation
from shared.lifecycle import (
    FINAL, INITIAL, MACHINES, CallbackState, DestructionRequestState, LineState, NonconformityState, TicketState, can_move,
    check_constraint, mermaid, require_transition,
)


@pytest.mark.parametrize("machine", list(MACHINES), ids=lambda m: m.__name__)
def test_every_state_has_its_moves_and_every_state_is_reachable(machine):
    moves = MACHINES[machine]
    assert set(moves) == set(machine)
    reached, frontier = {INITIAL[machine]}, [INITIAL[machine]]
    while frontier:
        for to in moves[frontier.pop()]:
            if to not in reached:
                reached.add(to)
                frontier.append(to)
    assert reached == set(machine)
    assert FINAL[machine] <= reached


@pytest.mark.parametrize("current, to", [
    (TicketState.closed, TicketState.completed),
    (TicketState.invalid, TicketState.in_handling),
    (LineState.signed_back, LineState.acknowledged),
    (LineState.transferred, LineState.signed_back),
    (LineState.awaiting_verification, LineState.transferred),  # a line waiting for its head is not handed on
    (LineState.assigned, LineState.awaiting_verification),
    (CallbackState.done, CallbackState.pending),
    (NonconformityState.opened, NonconformityState.closed),
    (DestructionRequestState.refused, DestructionRequestState.approved),  # a refusal stands; ask again
    (DestructionRequestState.approved, DestructionRequestState.refused),
])
def test_a_move_the_table_does_not_allow_is_refused_with_409(current, to):
    assert not can_move(current, to)
    with pytest.raises(RuleViolation) as refused:
        require_transition(current, to, "the thing")
    assert refused.value.status == 409 and current.value in str(refused.value) and to.value in str(refused.value)


def test_states_of_different_machines_never_move_into_each_other():
    assert not can_move(TicketState.closed, NonconformityState.closed)


def test_a_reopened_round_brings_a_closed_ticket_back():
    assert can_move(TicketState.closed, TicketState.in_handling)
    assert can_move(TicketState.awaiting_verdict, TicketState.in_handling)


def test_the_check_constraint_lists_every_allowed_spelling():
    check = check_constraint("status", TicketState, "ck_forms_status")
    assert check.name == "ck_forms_status"
    assert str(check.sqltext) == ("status IN ('in_handling', 'awaiting_nc', 'completed', 'awaiting_callback', "
                                  "'awaiting_verdict', 'invalid', 'closed')")


def test_the_diagram_shows_every_move_once():
    diagram = mermaid(TicketState)
    moves = [line.strip() for line in diagram.splitlines()[2:] if "[*]" not in line]
    assert len(moves) == sum(len(m) for m in MACHINES[TicketState].values()) == len(set(moves))
    assert diagram.startswith("stateDiagram-v2\n    [*] --> in_handling\n")
    assert "    closed --> [*]" in diagram


def test_dispatch_speaks_the_shared_vocabulary():
    assert dispatch_rules.FormStatus is LineState
    assert dispatch_rules.NonconformityState is NonconformityState
