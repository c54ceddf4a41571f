"""What the read model remembers of each ticket (RULES.md §4): `TicketFacts` with its clocks and
callbacks, and their JSON rows for the ticket-facts table."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.analytics.rules.common import BREACHED, MET, OPEN, RUNNING


# --- ticket facts ------------------------------------------------------------------------


def _dt(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _copy_with(obj, **changes):
    """A shallow copy of a dataclass instance with some attributes replaced (what
    `dataclasses.replace` does, without re-running `__init__`: the fold's hot path)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    new.__dict__.update(changes)
    return new


@dataclass
class ClockFacts:
    """One clock instance and how it was counted (to move it exactly once on a flip)."""

    round: int
    clock: str
    department: str | None
    due_at: dt.datetime | None = None
    outcome: str = RUNNING  # running, or dispatch's verdict (ev.ClockOutcome)
    clock_id: int | None = None  # dispatch's id, once its verdict has been seen
    counted_day: str | None = None
    counted_under: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "clock": self.clock, "department": self.department, "due_at": _iso(self.due_at),
                "outcome": self.outcome, "clock_id": self.clock_id, "counted_day": self.counted_day,
                "counted_under": [list(d) for d in self.counted_under]}

    def copy(self) -> "ClockFacts":
        return _copy_with(self, counted_under=list(self.counted_under))  # its pairs are tuples

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClockFacts":
        return cls(
            round=data["round"], clock=data["clock"], department=data.get("department"),
            due_at=_dt(data.get("due_at")), outcome=data.get("outcome", RUNNING), clock_id=data.get("clock_id"),
            counted_day=data.get("counted_day"),
            counted_under=[tuple(d) for d in data.get("counted_under", [])],
        )


@dataclass
class CallbackFacts:
    callback_id: str
    round: int
    counted_day: str  # the day it was scheduled: its cohort
    counted_under: list[tuple[str, str]] = field(default_factory=list)
    done: bool = False
    on_time: bool | None = None
    overdue: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"callback_id": self.callback_id, "round": self.round, "counted_day": self.counted_day,
                "counted_under": [list(d) for d in self.counted_under], "done": self.done,
                "on_time": self.on_time, "overdue": self.overdue}

    def copy(self) -> "CallbackFacts":
        return _copy_with(self, counted_under=list(self.counted_under))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CallbackFacts":
        return cls(
            callback_id=data["callback_id"], round=data["round"],
            counted_day=data["counted_day"],
            counted_under=[tuple(d) for d in data.get("counted_under", [])],
            done=data.get("done", False), on_time=data.get("on_time"),
            overdue=data.get("overdue", False),
        )


@dataclass
class TicketFacts:
    """What the read model remembers of one ticket to count its later events."""

    ticket_id: str
    estate: str
    kind: str | None = None  # None until the `accepted` event has been seen
    channel: str | None = None
    category: str | None = None
    repair_class: str | None = None
    building: str | None = None
    first_contact: str | None = None
    accepted_at: dt.datetime | None = None
    off_hours: bool = False
    departments: list[str] = field(default_factory=list)  # every department ever routed to
    round_departments: dict[int, list[str]] = field(default_factory=dict)
    valid: bool | None = None  # complaints: None until judged
    validity_counted_day: str | None = None
    validity_counted_under: list[tuple[str, str]] = field(default_factory=list)
    round: int = 1
    completed_at: dt.datetime | None = None  # the latest round's completion
    closed_at: dt.datetime | None = None
    state: str = OPEN
    reopen_count: int = 0
    escalation_count: int = 0
    last_rung: str | None = None
    clocks: list[ClockFacts] = field(default_factory=list)
    callbacks: list[CallbackFacts] = field(default_factory=list)
    result_satisfied: bool | None = None  # the latest callback's answers
    attitude_satisfied: bool | None = None
    progress_updates: list[dt.datetime] = field(default_factory=list)
    seen_event_ids: list[str] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    @property
    def current_departments(self) -> list[str]:
        return list(self.round_departments.get(self.round, []))

    @property
    def breached_clocks(self) -> list[str]:
        """Names of the clocks breached in any round (each name once)."""
        return sorted({c.clock for c in self.clocks if c.outcome == BREACHED})

    @property
    def on_time(self) -> dict[str, bool | None]:
        """Per clock name: False if any instance was breached, True if every instance was
        met, None while one is still running without a breach."""
        result: dict[str, bool | None] = {}
        for c in self.clocks:
            if c.outcome not in (RUNNING, MET, BREACHED):
                continue  # superseded, cancelled, rescheduled: no longer owed, not counted
            previous = result.get(c.clock, True)
            if c.outcome == BREACHED or previous is False:
                result[c.clock] = False
            elif c.outcome == RUNNING or previous is None:
                result[c.clock] = None
            else:
                result[c.clock] = True
        return result

    def copy(self) -> "TicketFacts":
        """A copy whose changes never reach this one (what `copy.deepcopy` gives, at a
        fraction of its cost: the nested pairs are tuples and the times immutable). Its
        clocks and callbacks are this one's objects, in lists of its own, until `own`
        replaces the one about to change (an event changes one at most; copying every
        clock of every ticket for each event was a fifth of a rebuild's fold)."""
        return _copy_with(
            self, departments=list(self.departments),
            round_departments={k: list(v) for k, v in self.round_departments.items()},
            validity_counted_under=list(self.validity_counted_under),
            clocks=list(self.clocks), callbacks=list(self.callbacks),
            progress_updates=list(self.progress_updates), seen_event_ids=list(self.seen_event_ids),
        )

    def own(self, items: list, index: int):
        """`items[index]` (of this ticket's `clocks` or `callbacks`), made this copy's own
        before it changes: replaced by a copy, which is returned."""
        item = items[index] = items[index].copy()
        return item

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready row for the read model's ticket-facts table."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["accepted_at"] = _iso(self.accepted_at)
        data["completed_at"] = _iso(self.completed_at)
        data["closed_at"] = _iso(self.closed_at)
        data["round_departments"] = {str(k): list(v) for k, v in self.round_departments.items()}
        data["validity_counted_under"] = [list(d) for d in self.validity_counted_under]
        data["clocks"] = [c.to_dict() for c in self.clocks]
        data["callbacks"] = [c.to_dict() for c in self.callbacks]
        data["progress_updates"] = [_iso(t) for t in self.progress_updates]
        data["departments"] = list(self.departments)
        data["seen_event_ids"] = list(self.seen_event_ids)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TicketFacts":
        values = dict(data)
        values["accepted_at"] = _dt(values.get("accepted_at"))
        values["completed_at"] = _dt(values.get("completed_at"))
        values["closed_at"] = _dt(values.get("closed_at"))
        values["round_departments"] = {
            int(k): list(v) for k, v in (values.get("round_departments") or {}).items()
        }
        values["validity_counted_under"] = [tuple(d) for d in values.get("validity_counted_under") or []]
        values["clocks"] = [ClockFacts.from_dict(c) for c in values.get("clocks") or []]
        values["callbacks"] = [CallbackFacts.from_dict(c) for c in values.get("callbacks") or []]
        values["progress_updates"] = [_dt(t) for t in values.get("progress_updates") or []]
        values["departments"] = list(values.get("departments") or [])
        values["seen_event_ids"] = list(values.get("seen_event_ids") or [])
        return cls(**values)
