"""The figures of a period and the estate's monthly report 《月客户意见统计分析表》 (RULES.md §4):
the rates built on the counters, the breakdowns by dimension, the corrective-action lines,
the department head's sign-off and the report's due day."""

from __future__ import annotations

import calendar as _calendar
import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared import events as ev
from shared.policy import DEFAULT_POLICY, Policy
from services.analytics.rules.common import _METRICS, Dimension, Metric, PeriodRollups


# --- figures and the monthly report ---------------------------------------------------------


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Figures:
    """Every counter of one (dimension, key) in one period, with the rates built on them.
    Field names are the `Metric` values."""

    opened: int = 0
    off_hours_opened: int = 0
    reactivated: int = 0
    completed: int = 0
    closed: int = 0
    closed_first_round: int = 0
    assigned: int = 0
    acknowledged: int = 0
    arrived: int = 0
    signed_back: int = 0
    forms_signed: int = 0
    progress_updates: int = 0
    valid_complaints: int = 0
    invalid_complaints: int = 0
    escalations: int = 0
    nonconformities: int = 0
    clocks_met: int = 0
    clocks_breached: int = 0
    callbacks_required: int = 0
    callbacks_done: int = 0
    callbacks_on_time: int = 0
    callbacks_overdue: int = 0
    satisfaction_answers: int = 0
    result_satisfied: int = 0
    attitude_satisfied: int = 0
    handled_in_time: int = 0
    reopened: int = 0
    reopened_tickets: int = 0
    repeat_problems: int = 0
    repeat_problem_tickets: int = 0

    @classmethod
    def from_rollups(cls, rollups: PeriodRollups, dimension: str, key: str) -> "Figures":
        return cls(**{m: rollups.get((dimension, key, m), 0) for m in _METRICS})

    def __add__(self, other: "Figures") -> "Figures":
        return Figures(**{m: getattr(self, m) + getattr(other, m) for m in _METRICS})

    @property
    def on_time_rate(self) -> float | None:
        """Clocks met / clocks counted (met + breached)."""
        return _rate(self.clocks_met, self.clocks_met + self.clocks_breached)

    @property
    def valid_complaint_rate(self) -> float | None:
        return _rate(self.valid_complaints, self.valid_complaints + self.invalid_complaints)

    @property
    def callback_rate(self) -> float | None:
        """Callbacks done / callbacks required (same cohort)."""
        return _rate(self.callbacks_done, self.callbacks_required)

    @property
    def callback_on_time_rate(self) -> float | None:
        """Callbacks done on time / callbacks required (same cohort)."""
        return _rate(self.callbacks_on_time, self.callbacks_required)

    @property
    def result_satisfaction_rate(self) -> float | None:
        return _rate(self.result_satisfied, self.satisfaction_answers)

    @property
    def attitude_satisfaction_rate(self) -> float | None:
        return _rate(self.attitude_satisfied, self.satisfaction_answers)

    @property
    def handled_in_time_rate(self) -> float | None:
        return _rate(self.handled_in_time, self.satisfaction_answers)

    @property
    def first_round_close_rate(self) -> float | None:
        """Closed without re-opening / closed."""
        return _rate(self.closed_first_round, self.closed)

    RATES = (
        "on_time_rate", "valid_complaint_rate", "callback_rate", "callback_on_time_rate",
        "result_satisfaction_rate", "attitude_satisfaction_rate", "handled_in_time_rate",
        "first_round_close_rate",
    )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {m: getattr(self, m) for m in _METRICS}
        data.update({rate: getattr(self, rate) for rate in self.RATES})
        return data


@dataclass(frozen=True)
class CorrectiveActionLine:
    """One line of the report's "problems and corrective actions" section."""

    problem: str
    action: str = ""
    owner: str = ""
    status: str = ""
    category: str | None = None
    tickets: tuple[str, ...] = ()

    @classmethod
    def coerce(cls, item: Any) -> "CorrectiveActionLine":
        if isinstance(item, CorrectiveActionLine):
            return item
        if isinstance(item, ev.CorrectiveActionSuggested):
            where = f"building {item.building}" if item.scope == "building" else "estate"
            return cls(
                problem=f"{item.category}: {item.count} opinions within {item.window_days} days ({where})",
                category=item.category, tickets=tuple(item.tickets),
            )
        if isinstance(item, str):
            return cls(problem=item)
        if isinstance(item, Mapping):
            return cls(
                problem=str(item.get("problem", "")), action=str(item.get("action", "")),
                owner=str(item.get("owner", "")), status=str(item.get("status", "")),
                category=item.get("category"), tickets=tuple(item.get("tickets", ())),
            )
        raise TypeError(f"cannot read a corrective action from {type(item).__name__}")


@dataclass(frozen=True)
class SignOff:
    """The department head's summary and signature (RULES §4: signed by the head)."""

    summary: str = ""
    department_head: str = ""
    signed_on: dt.date | None = None


@dataclass(frozen=True)
class MonthlyReport:
    """《月客户意见统计分析表》 of one estate and one month (or, for the quarterly summary,
    the sum over a quarter: `period` "2026Q4"; for the company, estate `COMPANY_TOTAL`)."""

    estate: str
    period: str
    due_on: dt.date | None
    totals: Figures
    open_carried_in: int
    by_kind: dict[str, Figures]
    by_channel: dict[str, Figures]
    by_kind_channel: dict[str, dict[str, int]]  # kind -> channel -> opened
    by_department: dict[str, Figures]
    by_category: dict[str, Figures]
    by_building: dict[str, Figures]
    by_clock: dict[str, Figures]
    by_rung: dict[str, int]  # escalations per rung
    by_repair_class: dict[str, Figures]
    by_staff: dict[str, Figures]
    corrective_actions: tuple[CorrectiveActionLine, ...] = ()
    sign_off: SignOff = SignOff()
    rollups: Mapping[tuple[str, str, str], int] = field(default_factory=dict, repr=False)

    @property
    def month(self) -> str:
        return self.period

    @property
    def open_carried_out(self) -> int:
        """Open at the end of the period, carried into the next."""
        t = self.totals
        return self.open_carried_in + t.opened + t.reactivated - t.closed

    def to_dict(self) -> dict[str, Any]:
        def table(rows: Mapping[str, Figures]) -> dict[str, Any]:
            return {key: figures.to_dict() for key, figures in rows.items()}

        return {
            "estate": self.estate,
            "period": self.period,
            "due_on": self.due_on.isoformat() if self.due_on else None,
            "totals": self.totals.to_dict(),
            "open_carried_in": self.open_carried_in,
            "open_carried_out": self.open_carried_out,
            "by_kind": table(self.by_kind),
            "by_channel": table(self.by_channel),
            "by_kind_channel": {k: dict(v) for k, v in self.by_kind_channel.items()},
            "by_department": table(self.by_department),
            "by_category": table(self.by_category),
            "by_building": table(self.by_building),
            "by_clock": table(self.by_clock),
            "by_rung": dict(self.by_rung),
            "by_repair_class": table(self.by_repair_class),
            "by_staff": table(self.by_staff),
            "corrective_actions": [dataclasses.asdict(line) for line in self.corrective_actions],
            "sign_off": {
                "summary": self.sign_off.summary,
                "department_head": self.sign_off.department_head,
                "signed_on": self.sign_off.signed_on.isoformat() if self.sign_off.signed_on else None,
            },
        }


def _keys(rollups: PeriodRollups, dimension: str) -> list[str]:
    return sorted({key for (d, key, _), value in rollups.items() if d == dimension and value})


def _keys_by_dimension(rollups: PeriodRollups) -> dict[str, list[str]]:
    """`_keys` of every dimension in one pass over the rollups."""
    found: dict[str, set[str]] = {}
    for (dimension, key, _), value in rollups.items():
        if value:
            found.setdefault(dimension, set()).add(key)
    return {dimension: sorted(keys) for dimension, keys in found.items()}


def _breakdown(rollups: PeriodRollups, dimension: Dimension, keys: dict[str, list[str]]) -> dict[str, Figures]:
    return {key: Figures.from_rollups(rollups, dimension.value, key) for key in keys.get(dimension.value, ())}


def _due_on(month: str, policy: Policy) -> dt.date:
    year, number = (int(part) for part in month.split("-"))
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    last_day = _calendar.monthrange(year, number)[1]
    return dt.date(year, number, min(policy.analytics.monthly_report_due_day, last_day))


def _build_report(
    estate: str, period: str, rollups: PeriodRollups, open_carried: int,
    corrective_actions: Iterable[Any], due_on: dt.date | None, sign_off: SignOff | None,
) -> MonthlyReport:
    rollups = {k: v for k, v in rollups.items() if v}
    keys = _keys_by_dimension(rollups)
    kind_channel: dict[str, dict[str, int]] = {}
    for key in keys.get(Dimension.kind_channel.value, ()):
        opened = rollups.get((Dimension.kind_channel.value, key, Metric.opened.value), 0)
        if opened:
            kind, _, channel = key.partition("|")
            kind_channel.setdefault(kind, {})[channel] = opened
    return MonthlyReport(
        estate=estate,
        period=period,
        due_on=due_on,
        totals=Figures.from_rollups(rollups, Dimension.estate.value, estate),
        open_carried_in=open_carried,
        by_kind=_breakdown(rollups, Dimension.kind, keys),
        by_channel=_breakdown(rollups, Dimension.channel, keys),
        by_kind_channel=kind_channel,
        by_department=_breakdown(rollups, Dimension.department, keys),
        by_category=_breakdown(rollups, Dimension.category, keys),
        by_building=_breakdown(rollups, Dimension.building, keys),
        by_clock=_breakdown(rollups, Dimension.clock, keys),
        by_rung={key: rollups.get((Dimension.rung.value, key, Metric.escalations.value), 0)
                 for key in keys.get(Dimension.rung.value, ())},
        by_repair_class=_breakdown(rollups, Dimension.repair_class, keys),
        by_staff=_breakdown(rollups, Dimension.staff, keys),
        corrective_actions=tuple(CorrectiveActionLine.coerce(item) for item in corrective_actions),
        sign_off=sign_off or SignOff(),
        rollups=rollups,
    )


def monthly_report(
    estate: str,
    month: str,
    rollups: PeriodRollups,
    open_carried: int,
    corrective_actions: Iterable[Any] = (),
    *,
    policy: Policy = DEFAULT_POLICY,
    sign_off: SignOff | None = None,
) -> MonthlyReport:
    """The estate's 《月客户意见统计分析表》 for `month` ("2026-11") from that month's
    rollups; `open_carried` is the number of open items carried in from the month before.
    Corrective actions may be `CorrectiveActionSuggested` payloads, dicts or strings."""
    dt.date.fromisoformat(f"{month}-01")  # refuses a malformed month early
    return _build_report(estate, month, rollups, open_carried, corrective_actions,
                         _due_on(month, policy), sign_off)


def period_report(
    estate: str,
    period: str,
    rollups: PeriodRollups,
    open_carried: int,
    corrective_actions: Iterable[Any] = (),
    *,
    due_on: dt.date | None = None,
) -> MonthlyReport:
    """A report over rollups already summed for any period label (a quarter "2026Q4",
    or the company's sums computed by the database) — the same figures `company_consolidation`
    and `quarterly_summary` build by merging estate reports."""
    return _build_report(estate, period, rollups, open_carried, corrective_actions, due_on, None)
