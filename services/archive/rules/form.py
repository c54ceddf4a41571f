"""The archived countersign form 会签单: assembled from a ticket's events, frozen as canonical
JSON (RULES §5; 002 §4.8)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.events import (
    PAYLOADS,
    AcceptedBy,
    Channel,
    CloudEvent,
    Kind,
    RepairClass,
    ReplyMethod,
    Severity,
    Urgency,
)
from shared.policy import DEFAULT_POLICY
from services.archive.rules.common import UtcDatetime, _Frozen, _free, _require_aware, refusal

FORM_SCHEMA = "estatedesk.archive.countersign_form/v1"


# --- the archived countersign form ----------------------------------------------------------


class IntakeRecord(_Frozen):
    """受理: what was registered when the request came in."""

    accepted_at: UtcDatetime
    registered_by: str
    form_number: str
    kind: Kind
    channel: Channel
    category: str
    repair_class: RepairClass | None
    severity: Severity
    urgency: Urgency
    accepted_by: AcceptedBy
    building: str | None
    unit: str | None
    location: str | None
    description: str
    first_contact: str
    first_contact_name: str | None
    received_at: UtcDatetime
    reply_method: ReplyMethod
    reply_agreed_by: UtcDatetime | None
    appointment_at: UtcDatetime | None
    off_hours: bool
    anonymous: bool
    owner_id: str | None
    about_role: str | None
    owner_loss_cny: float | None
    # Record content (000 §五.1–2): when it happened, why, who was involved, attachments
    # by reference, and the owner's signature state (signed / later 补签 / not required).
    occurred_at: UtcDatetime | None = None
    cause: str | None = None
    people: tuple[str, ...] = ()
    attachments: tuple[str, ...] = ()
    owner_signature: str | None = None


class ValidityRecord(_Frozen):
    """有效性判定 of a complaint; an invalid one carries the manager's confirmation."""

    judged_at: UtcDatetime
    valid: bool
    reason: str
    judged_by: str
    confirmed_by: str | None
    notify_owner_by: UtcDatetime | None


class DeadlineRecord(_Frozen):
    clock: str
    due_at: UtcDatetime
    department: str | None
    provisional: bool


class TransferRecord(_Frozen):
    """派工: one entry of the handover ledger."""

    assigned_at: UtcDatetime
    departments: tuple[str, ...]
    assigned_by: str
    deadlines: tuple[DeadlineRecord, ...]
    transferred_from: str | None = None  # a department handed the form on within the round


class AcknowledgementRecord(_Frozen):
    """签收: the receiving department signed the handover ledger."""

    acknowledged_at: UtcDatetime
    department: str
    acknowledged_by: str


class ArrivalRecord(_Frozen):
    recorded_at: UtcDatetime
    department: str
    arrived_by: str
    arrived_at: UtcDatetime


class EscalationRecord(_Frozen):
    escalated_at: UtcDatetime
    rung: str
    reason: str
    clock: str | None
    nonconformity: bool
    department: str | None = None  # whose clock ran out, when there is one


class BreachRecord(_Frozen):
    recorded_at: UtcDatetime
    clock: str
    due_at: UtcDatetime
    department: str | None
    provisional: bool


class SignBackRecord(_Frozen):
    """处理意见与结果: the department's opinion and result, verified by its head."""

    signed_at: UtcDatetime
    department: str
    opinion: str
    result: str
    signed_by: str
    verified_by: str


class CompletionRecord(_Frozen):
    recorded_at: UtcDatetime
    completed_at: UtcDatetime
    departments: tuple[str, ...]


class ProgressRecord(_Frozen):
    updated_at: UtcDatetime
    note: str
    method: ReplyMethod
    updated_by: str


class CallbackSchedule(_Frozen):
    scheduled_at: UtcDatetime
    due_at: UtcDatetime
    method: ReplyMethod
    assigned_to: str | None
    rule: str
    provisional: bool


class CallbackAnswer(_Frozen):
    answered_at: UtcDatetime
    method: ReplyMethod
    handled_in_time: bool
    result_satisfied: bool
    attitude_satisfied: bool
    suggestions: str
    owner_confirmed: bool
    done_by: str
    on_time: bool


class CallbackRecord(_Frozen):
    """回访: one callback, from its schedule to the owner's answers."""

    callback_id: str
    schedule: CallbackSchedule | None
    answers: tuple[CallbackAnswer, ...]
    overdue_at: UtcDatetime | None


class ReopenRecord(_Frozen):
    """Why the owner was not satisfied and the form went round again."""

    reopened_at: UtcDatetime
    reason: str
    reopened_by: str
    departments: tuple[str, ...]


class ClosureRecord(_Frozen):
    """结案."""

    closed_at: UtcDatetime
    round: int
    closed_by: str
    reason: str


class RoundRecord(_Frozen):
    round: int
    reopen: ReopenRecord | None
    transfers: tuple[TransferRecord, ...]
    acknowledgements: tuple[AcknowledgementRecord, ...]
    arrivals: tuple[ArrivalRecord, ...]
    escalations: tuple[EscalationRecord, ...]
    breaches: tuple[BreachRecord, ...]
    sign_backs: tuple[SignBackRecord, ...]
    completions: tuple[CompletionRecord, ...]
    progress_updates: tuple[ProgressRecord, ...]
    callbacks: tuple[CallbackRecord, ...]
    closure: ClosureRecord | None


class SourceEvent(_Frozen):
    """The events the form was assembled from, so it can be checked against the stream."""

    id: str
    event: str
    time: UtcDatetime
    actor: str


class ArchivedForm(_Frozen):
    """The full 《业主(住户)服务登记会签单》 of one ticket, every round of it."""

    schema_version: Literal["estatedesk.archive.countersign_form/v1"] = FORM_SCHEMA
    ticket_id: str
    estate: str
    form_number: str
    timezone: str
    intake: IntakeRecord
    validity: tuple[ValidityRecord, ...]
    rounds: tuple[RoundRecord, ...]
    closure: ClosureRecord | None
    source_events: tuple[SourceEvent, ...]

    @property
    def is_closed(self) -> bool:
        return self.closure is not None

    @property
    def closed_at(self) -> dt.datetime | None:
        return self.closure.closed_at if self.closure else None


# Events that happen to the record after it is frozen, or belong to analytics: they are
# never part of the form's content, or archiving would change what it archives. Dispatch's
# clock verdicts (clock_settled) are counted by analytics and keep coming after `closed`
# (closing settles the clocks still running); the form keeps the deadlines and breaches.
# An attitude complaint raised on a callback becomes a ticket of its own with its own form;
# this form keeps the owner's answer (attitude_satisfied) and the closure's reason.
NOT_PART_OF_FORM = frozenset({"archived", "lent", "returned", "destroyed", "corrective_action_suggested",
                              "clock_settled", "attitude_complaint_raised"})


class _RoundBuilder:
    def __init__(self, number: int) -> None:
        self.number = number
        self.reopen: ReopenRecord | None = None
        self.lists: dict[str, list[Any]] = {
            name: []
            for name in (
                "transfers", "acknowledgements", "arrivals", "escalations", "breaches",
                "sign_backs", "completions", "progress_updates",
            )
        }
        self.callbacks: dict[str, dict[str, Any]] = {}
        self.closure: ClosureRecord | None = None

    def callback(self, callback_id: str) -> dict[str, Any]:
        return self.callbacks.setdefault(
            callback_id, {"callback_id": callback_id, "schedule": None, "answers": [], "overdue_at": None}
        )

    def build(self) -> RoundRecord:
        return RoundRecord(
            round=self.number,
            reopen=self.reopen,
            callbacks=tuple(CallbackRecord(**c) for c in self.callbacks.values()),
            closure=self.closure,
            **{name: tuple(items) for name, items in self.lists.items()},
        )


def assemble_form(events: Iterable[CloudEvent], *, timezone: str = DEFAULT_POLICY.timezone) -> ArchivedForm:
    """The countersign form of one ticket from its events, grouped by round.

    Events are taken in (time, id) order, so the same events in any order and with
    redelivered duplicates give the same form. Raises ValueError when the events belong
    to several tickets or estates, lack the intake, carry two intakes, name an unknown
    event type, or contradict themselves (one id, two contents)."""
    ZoneInfo(timezone)  # an unknown zone is refused here, not when the form is printed
    by_id: dict[str, CloudEvent] = {}
    for event in events:
        _require_aware(event.time, f"event {event.id} time")
        known = by_id.get(event.id)
        if known is not None and known != event:
            raise ValueError(f"event id {event.id} was delivered with two different contents")
        by_id[event.id] = event
    ordered = sorted(by_id.values(), key=lambda e: (e.time, e.id))
    if not ordered:
        raise ValueError("no events: nothing to archive")
    tickets = {e.subject for e in ordered}
    estates = {e.estate for e in ordered}
    if len(tickets) != 1 or len(estates) != 1:
        raise ValueError(f"events of several tickets {sorted(tickets)} or estates {sorted(estates)}")
    ticket_id, estate = tickets.pop(), estates.pop()

    intake: IntakeRecord | None = None
    validity: list[ValidityRecord] = []
    rounds: dict[int, _RoundBuilder] = {1: _RoundBuilder(1)}
    current_round = 1
    sources: list[SourceEvent] = []

    def round_of(number: int) -> _RoundBuilder:
        nonlocal current_round
        if number < 1:
            raise ValueError(f"round {number} of ticket {ticket_id} is not a round")
        current_round = max(current_round, number)
        return rounds.setdefault(number, _RoundBuilder(number))

    for event in ordered:
        name = event.event_name
        if name in NOT_PART_OF_FORM:
            continue
        if name not in PAYLOADS:
            raise ValueError(f"event type {event.type!r} is unknown to the archive")
        payload = event.payload()
        if payload.ticket_id != ticket_id:  # type: ignore[attr-defined]
            raise ValueError(f"event {event.id} carries ticket {payload.ticket_id}, subject {ticket_id}")  # type: ignore[attr-defined]
        sources.append(SourceEvent(id=event.id, event=name, time=event.time, actor=event.actor))
        at = event.time
        data = payload.model_dump()

        if name == "accepted":
            if intake is not None:
                raise ValueError(f"ticket {ticket_id} was accepted twice")
            fields = {k: data[k] for k in IntakeRecord.model_fields if k in data}
            fields.update(
                accepted_at=at,
                registered_by=event.actor,
                description=_free(data["description"]),
                location=_free(data["location"]),
                cause=_free(data.get("cause")),
                people=tuple(_free(person) for person in data.get("people") or ()),
            )
            intake = IntakeRecord(**fields)
        elif name == "validity_judged":
            validity.append(
                ValidityRecord(
                    judged_at=at, valid=data["valid"], reason=_free(data["reason"]),
                    judged_by=data["judged_by"], confirmed_by=data["confirmed_by"],
                    notify_owner_by=data["notify_owner_by"],
                )
            )
        elif name == "assigned":
            round_of(data["round"]).lists["transfers"].append(
                TransferRecord(
                    assigned_at=at, departments=tuple(data["departments"]), assigned_by=data["assigned_by"],
                    deadlines=tuple(DeadlineRecord(**d) for d in data["deadlines"]),
                    transferred_from=data.get("transferred_from"),
                )
            )
        elif name == "acknowledged":
            round_of(data["round"]).lists["acknowledgements"].append(
                AcknowledgementRecord(
                    acknowledged_at=at, department=data["department"], acknowledged_by=data["acknowledged_by"]
                )
            )
        elif name == "arrived":
            round_of(data["round"]).lists["arrivals"].append(
                ArrivalRecord(
                    recorded_at=at, department=data["department"], arrived_by=data["arrived_by"],
                    arrived_at=data["arrived_at"],
                )
            )
        elif name == "escalated":
            round_of(data["round"]).lists["escalations"].append(
                EscalationRecord(
                    escalated_at=at, rung=data["rung"], reason=_free(data["reason"]), clock=data["clock"],
                    nonconformity=data["nonconformity"], department=data.get("department"),
                )
            )
        elif name == "sla_breached":
            round_of(data["round"]).lists["breaches"].append(
                BreachRecord(
                    recorded_at=at, clock=data["clock"], due_at=data["due_at"], department=data["department"],
                    provisional=data["provisional"],
                )
            )
        elif name == "signed_back":
            round_of(data["round"]).lists["sign_backs"].append(
                SignBackRecord(
                    signed_at=at, department=data["department"], opinion=_free(data["opinion"]),
                    result=_free(data["result"]), signed_by=data["signed_by"], verified_by=data["verified_by"],
                )
            )
        elif name == "completed":
            round_of(data["round"]).lists["completions"].append(
                CompletionRecord(
                    recorded_at=at, completed_at=data["completed_at"], departments=tuple(data["departments"])
                )
            )
        elif name == "progress_updated":
            # Progress notes carry no round: they belong to the round under way.
            rounds[current_round].lists["progress_updates"].append(
                ProgressRecord(
                    updated_at=at, note=_free(data["note"]), method=data["method"], updated_by=data["updated_by"]
                )
            )
        elif name == "reopened":
            round_of(data["round"]).reopen = ReopenRecord(
                reopened_at=at, reason=_free(data["reason"]), reopened_by=data["reopened_by"],
                departments=tuple(data["departments"]),
            )
        elif name == "callback_scheduled":
            round_of(data["round"]).callback(data["callback_id"])["schedule"] = CallbackSchedule(
                scheduled_at=at, due_at=data["due_at"], method=data["method"], assigned_to=data["assigned_to"],
                rule=data["rule"], provisional=data["provisional"],
            )
        elif name == "callback_done":
            round_of(data["round"]).callback(data["callback_id"])["answers"].append(
                CallbackAnswer(
                    answered_at=at, method=data["method"], handled_in_time=data["handled_in_time"],
                    result_satisfied=data["result_satisfied"], attitude_satisfied=data["attitude_satisfied"],
                    suggestions=_free(data["suggestions"]), owner_confirmed=data["owner_confirmed"],
                    done_by=data["done_by"], on_time=data["on_time"],
                )
            )
        elif name == "callback_overdue":
            record = round_of(data["round"]).callback(data["callback_id"])
            if record["overdue_at"] is None:
                record["overdue_at"] = at
        elif name == "closed":
            round_of(data["round"]).closure = ClosureRecord(
                closed_at=at, round=data["round"], closed_by=data["closed_by"], reason=_free(data["reason"])
            )
        else:  # a payload the archive does not place yet must not vanish silently
            raise ValueError(f"event type {event.type!r} has no place on the countersign form")

    if intake is None:
        raise ValueError(f"ticket {ticket_id} has no accepted event: the form has no intake")
    built = tuple(rounds[n].build() for n in sorted(rounds))
    # The form is closed when its latest round is; a closure followed by a reopen is history.
    last = built[-1]
    return ArchivedForm(
        ticket_id=ticket_id,
        estate=estate,
        form_number=intake.form_number,
        timezone=timezone,
        intake=intake,
        validity=tuple(validity),
        rounds=built,
        closure=last.closure,
        source_events=tuple(sources),
    )


def check_archivable(form: ArchivedForm) -> None:
    """Only a closed form is frozen: nothing may be added to it once archived."""
    if not form.is_closed:
        raise refusal("not_closed", f"form {form.form_number} is not closed and cannot be archived yet")


def canonical_bytes(form: ArchivedForm) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, non-ASCII kept as is."""
    return json.dumps(
        form.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def form_from_bytes(content: bytes) -> ArchivedForm:
    """The archived form back from its stored content (for printing and reading)."""
    return ArchivedForm.model_validate_json(content)


