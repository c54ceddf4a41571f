"""What a transition of the countersign form asks the shell to do, in order: clocks to
close (each settled once) or start, escalations to resolve, events to raise. The form
(`domain.Form`) records them; `handlers.apply_effects` carries them out through the unit
of work. The scopes' `matches` state the condition the SQL repositories write as WHERE
(the handler tier's fakes use them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from services.dispatch import rules
from services.dispatch.rules import Step
from shared.events import Payload


def met_by(step: Step) -> tuple[str, ...]:
    """The clock names a step meets (`rules.clocks_met_by`)."""
    return tuple(clock.value for clock in rules.clocks_met_by(step))


@dataclass(frozen=True)
class ClockScope:
    """Which open clocks an effect touches (all given conditions hold)."""

    ticket_id: str | None = None
    round: int | None = None
    assignment_id: int | None = None
    clocks: tuple[str, ...] | None = None
    except_clock: str | None = None
    ids: tuple[int, ...] | None = None

    def matches(self, clock: Any) -> bool:
        """The same condition the SQL repository writes as WHERE (for the fakes)."""
        return ((self.ticket_id is None or clock.ticket_id == self.ticket_id)
                and (self.round is None or clock.round == self.round)
                and (self.assignment_id is None or clock.assignment_id == self.assignment_id)
                and (self.clocks is None or clock.clock in self.clocks)
                and (self.except_clock is None or clock.clock != self.except_clock)
                and (self.ids is None or clock.id in self.ids))


@dataclass(frozen=True)
class CloseClocks:
    """Close the open clocks in `scope` with `outcome` (met, superseded, cancelled,
    rescheduled) at `at`; a clock not breached yet is settled then."""

    scope: ClockScope
    outcome: str
    at: dt.datetime


@dataclass(frozen=True)
class NewClock:
    clock: str
    due_at: dt.datetime
    started_at: dt.datetime
    round: int
    department: str | None = None  # a department clock belongs to that department's active line
    provisional: bool = False
    working_days: int | None = None


@dataclass(frozen=True)
class StartClocks:
    clocks: tuple[NewClock, ...]


@dataclass(frozen=True)
class EscalationScope:
    ticket_id: str
    round: int | None = None
    nonconformity: bool | None = None
    except_clock: str | None = None  # escalations of this clock stay open (tracking)

    def matches(self, row: Any) -> bool:
        return (row.ticket_id == self.ticket_id and (self.round is None or row.round == self.round)
                and (self.nonconformity is None or row.nonconformity is self.nonconformity)
                and (self.except_clock is None or row.clock is None or row.clock != self.except_clock))


@dataclass(frozen=True)
class ResolveEscalations:
    scope: EscalationScope
    at: dt.datetime


@dataclass(frozen=True)
class Raise:
    payload: Payload
    actor: str
    at: dt.datetime


Effect = CloseClocks | StartClocks | ResolveEscalations | Raise
