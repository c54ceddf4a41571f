"""Archive 归档 rules (RULES.md §5): the frozen countersign form, the estate's hash chain,
numbering and volumes, retention, the lending register and destruction. Pure functions
over plain data; the service shell does the storage and the messaging.

Hash-chain design
-----------------
Every estate keeps one append-only chain of archived forms, sequence 1, 2, 3, ... without
gaps. For each record:

    content       = canonical_bytes(form)            canonical JSON, UTF-8
    content_hash  = sha256(content)                   hex
    previous_hash = record_hash of the record before, genesis_hash(estate) for record 1
    record_hash   = chain_hash(previous_hash, sequence, record_number, content_hash)
                  = sha256("<previous_hash>|<sequence>|<record_number>|<content_hash>")

The link hashes over the content's *hash*, not the content itself, so a record can be
destroyed after its retention period (with the general manager's approval, 001 第5篇 1.7)
without breaking the chain: its content goes, its content_hash, previous_hash and
record_hash stay as a tombstone (`destroyed=True`), and a `DestructionLogEntry` that
survives the record says who approved it and when. Binding the sequence and the record
number into the link means relabelling or reordering records is detected too.

`verify_chain` reports the first record (in sequence order) that fails any check: a gap
or duplicate in the sequence, a link that does not point at the previous record, content
whose sha256 is not its content_hash, a record_hash that does not recompute, a live
record without content, a destroyed record still holding content, or (when a destruction
log is passed) a destroyed record nobody logged. A forger who rewrites a record's content,
its content_hash and every later record_hash defeats the chain alone; the `archived`
events on the stream carry each record's content_hash, pass them as `anchors` and that
rewrite is pinned to the right record as well.

Numbering: record numbers run per estate and per year of the closing month
("HX01-DA-2026-000001"); the chain sequence runs per estate for ever. A form closed in
a later month than it was opened belongs to its closing month (002 §4.8.1: a request
spanning months is archived with the next month), and volumes are made per quarter
(002 §4.8.2), one retention class per volume (001 第6篇 1.1.2 ⑤).

Privacy: the archived form names the owner only by owner_id; phone and ID-card numbers
written into free text are replaced before freezing, because the record is lent out
and a loan must not leak them (001 第11篇 §3, 004 篇5 §4.2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.periods import MONTH, QUARTER, months_of_quarter, quarter_of  # noqa: F401  (re-exported: rules.quarter_of)
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
from shared.errors import RuleViolation
from shared.policy import DEFAULT_POLICY, Policy

FORM_SCHEMA = "estatedesk.archive.countersign_form/v1"
RECORD_NUMBER = re.compile(r"^(?P<estate>[A-Z0-9][A-Z0-9_-]*)-DA-(?P<year>\d{4})-(?P<sequence>\d{6})$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


# HTTP status of each refusal: a missing or wrong approval or permission is 403, a
# request the record's state or retention does not allow is 409, bad input is 422.
REFUSAL_STATUS = {
    "approval_required": 403,
    "self_approval": 403,
    "approver_not_authorised": 403,
    "written_approval_required": 403,
    "general_manager_approval_required": 403,
    "approval_reference_required": 403,
    "not_closed": 409,
    "record_destroyed": 409,
    "already_returned": 409,
    "already_destroyed": 409,
    "retention_not_expired": 409,
    "on_loan": 409,
    "period_not_over": 409,
    "unknown_mode": 422,
    "purpose_required": 422,
}


def refusal(code: str, reason: str) -> RuleViolation:
    """A request the archive rules refuse: `reason` for the person who asked, `code` a
    stable slug for API clients; the status follows the code (REFUSAL_STATUS)."""
    return RuleViolation(reason, status=REFUSAL_STATUS.get(code, 409), code=code)


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("archive times must be timezone-aware")
    return value.astimezone(dt.timezone.utc)


# Stored times are UTC so the same instant always serialises to the same bytes, whatever
# offset the emitting service used; rendering shows them in the estate's local time.
UtcDatetime = Annotated[dt.datetime, AfterValidator(_utc)]


def _require_aware(value: dt.datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- privacy in free text -----------------------------------------------------------------

_ID_CARD = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[-\s]?)?1[3-9]\d[-\s]?\d{4}[-\s]?\d{4}(?![0-9])")
_LANDLINE = re.compile(r"(?<![0-9])0\d{2,3}[-\s]?\d{7,8}(?![0-9])")
PHONE_REDACTED = "[电话已隐去]"
ID_CARD_REDACTED = "[证件号已隐去]"


def redact_personal_numbers(text: str) -> str:
    """Replace ID-card, mobile and landline numbers written into free text."""
    text = _ID_CARD.sub(ID_CARD_REDACTED, text)
    text = _MOBILE.sub(PHONE_REDACTED, text)
    return _LANDLINE.sub(PHONE_REDACTED, text)


def _free(text: str | None) -> str | None:
    return None if text is None else redact_personal_numbers(text)


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
NOT_PART_OF_FORM = frozenset({"archived", "lent", "returned", "destroyed", "corrective_action_suggested",
                              "clock_settled"})


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


# --- the hash chain -------------------------------------------------------------------------


def genesis_hash(estate: str) -> str:
    """The previous_hash of an estate's first record."""
    return hashlib.sha256(f"estatedesk:{estate}:genesis".encode()).hexdigest()


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def chain_hash(previous_hash: str, sequence: int, record_number: str, content_hash: str) -> str:
    """record_hash = sha256("<previous_hash>|<sequence>|<record_number>|<content_hash>")."""
    return hashlib.sha256(f"{previous_hash}|{sequence}|{record_number}|{content_hash}".encode()).hexdigest()


# --- addenda: events that arrive after their ticket was archived ---------------------------


def addendum_content(envelope: Mapping[str, Any]) -> bytes:
    """An addendum's content: the late event's CloudEvents envelope as canonical JSON."""
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def addendum_hash(previous_hash: str, record_number: str, number: int, content_hash: str) -> str:
    """sha256("<previous_hash>|<record_number>+<number>|<content_hash>"); the first
    addendum's previous_hash is its record's stored hash, each later one the addendum
    before it: a side chain hanging from the record, never changing the record itself."""
    return hashlib.sha256(f"{previous_hash}|{record_number}+{number}|{content_hash}".encode()).hexdigest()


@dataclass(frozen=True)
class AddendumLink:
    number: int
    content: bytes
    content_hash: str
    previous_hash: str
    stored_hash: str


def verify_addenda(record_number: str, record_hash: str, addenda: Sequence[AddendumLink]) -> str | None:
    """None when the record's addenda (in number order) are intact and linked to it, else
    the reason naming the first broken one."""
    previous = record_hash
    for expected, link in enumerate(addenda, start=1):
        where = f"addendum {link.number} of {record_number}"
        if link.number != expected:
            return f"{where}: numbered out of turn (expected {expected})"
        if content_hash(link.content) != link.content_hash:
            return f"{where}: content altered (hash differs)"
        if link.previous_hash != previous:
            return f"{where}: not linked to what precedes it"
        if addendum_hash(previous, record_number, link.number, link.content_hash) != link.stored_hash:
            return f"{where}: stored hash does not match"
        previous = link.stored_hash
    return None


class ChainRecord(_Frozen):
    """One link of an estate's chain; `content` is None once the record is destroyed."""

    sequence: int = Field(ge=1)
    record_number: str
    content: bytes | None
    content_hash: str
    previous_hash: str
    stored_hash: str
    destroyed: bool = False


def seal_record(previous_hash: str, sequence: int, record_number: str, content: bytes) -> ChainRecord:
    """The next link: `previous_hash` is the last record's stored_hash (or the genesis hash)."""
    digest = content_hash(content)
    return ChainRecord(
        sequence=sequence,
        record_number=record_number,
        content=content,
        content_hash=digest,
        previous_hash=previous_hash,
        stored_hash=chain_hash(previous_hash, sequence, record_number, digest),
    )


def next_link(estate: str, last: ChainRecord | None) -> tuple[str, int]:
    """(previous_hash, sequence) for the record after `last` (None: the estate's first)."""
    if last is None:
        return genesis_hash(estate), 1
    return last.stored_hash, last.sequence + 1


def tombstone(record: ChainRecord) -> ChainRecord:
    """The record after destruction: content gone, every hash kept, chain intact."""
    return record.model_copy(update={"content": None, "destroyed": True})


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_broken: str | None
    reason: str
    records_checked: int

    def __bool__(self) -> bool:
        return self.ok


def verify_chain(
    records: Sequence[ChainRecord],
    *,
    estate: str | None = None,
    destruction_log: Sequence["DestructionLogEntry"] | None = None,
    anchors: Mapping[str, str] | None = None,
) -> VerifyResult:
    """Check an estate's whole chain; see the module docstring for what is detected.

    estate: when given, record 1 must link to the estate's genesis hash.
    destruction_log: when given, every destroyed record needs an entry with its hash.
    anchors: record_number → content_hash as published elsewhere (the archived events)."""
    ordered = sorted(records, key=lambda r: r.sequence)
    logged = None if destruction_log is None else {e.record_number: e for e in destruction_log}
    seen_numbers: set[str] = set()
    expected_sequence = 1
    expected_previous = genesis_hash(estate) if estate is not None else None

    def broken(record: ChainRecord, reason: str, checked: int) -> VerifyResult:
        return VerifyResult(ok=False, first_broken=record.record_number, reason=reason, records_checked=checked)

    for index, record in enumerate(ordered):
        checked = index + 1
        if record.sequence != expected_sequence:
            if record.sequence < expected_sequence:
                return broken(record, f"sequence {record.sequence} appears twice", checked)
            missing = (
                f"{expected_sequence}" if record.sequence == expected_sequence + 1
                else f"{expected_sequence}–{record.sequence - 1}"
            )
            return broken(record, f"gap in the chain: sequence {missing} missing before {record.sequence}", checked)
        if record.record_number in seen_numbers:
            return broken(record, f"record number {record.record_number} appears twice", checked)
        seen_numbers.add(record.record_number)
        if expected_previous is not None and record.previous_hash != expected_previous:
            what = "the estate's genesis hash" if index == 0 else f"record {ordered[index - 1].record_number}"
            return broken(record, f"broken link: previous_hash does not match {what}", checked)
        if record.destroyed:
            if record.content is not None:
                return broken(record, "record is marked destroyed but still holds its content", checked)
            if logged is not None:
                entry = logged.get(record.record_number)
                if entry is None:
                    return broken(record, "record was destroyed without a destruction log entry", checked)
                if entry.content_hash != record.content_hash:
                    return broken(record, "destruction log entry names another content hash", checked)
        else:
            if record.content is None:
                return broken(record, "content missing from a record that was never destroyed", checked)
            if content_hash(record.content) != record.content_hash:
                return broken(record, "content altered: its sha256 differs from the stored content hash", checked)
        if anchors is not None and record.record_number in anchors and anchors[record.record_number] != record.content_hash:
            return broken(record, "content hash differs from the one published when the record was archived", checked)
        if chain_hash(record.previous_hash, record.sequence, record.record_number, record.content_hash) != record.stored_hash:
            return broken(record, "record hash does not recompute from its link and content hash", checked)
        expected_previous = record.stored_hash
        expected_sequence += 1
    return VerifyResult(ok=True, first_broken=None, reason="chain intact", records_checked=len(ordered))


# --- numbering, months, quarters ------------------------------------------------------------


def record_number(estate: str, year: int, sequence: int) -> str:
    """"HX01-DA-2026-000001": estate, 档案 (DA), year of the closing month, number in year."""
    if not 1 <= sequence <= 999_999:
        raise ValueError(f"record sequence {sequence} outside 1..999999")
    if not 1000 <= year <= 9999:
        raise ValueError(f"year {year} is not a four-digit year")
    return f"{estate.upper()}-DA-{year:04d}-{sequence:06d}"


def parse_record_number(number: str) -> tuple[str, int, int]:
    """(ESTATE, year, sequence) of a record number; ValueError when malformed."""
    match = RECORD_NUMBER.match(number)
    if not match:
        raise ValueError(f"{number!r} is not a record number like HX01-DA-2026-000001")
    return match["estate"], int(match["year"]), int(match["sequence"])


def closed_month(closed_at: dt.datetime, tz: str | ZoneInfo) -> str:
    """"2026-11": the local month the form closed in, which is the month it is archived
    with (a request spanning months goes with the month it ends, 002 §4.8.1)."""
    _require_aware(closed_at, "closed_at")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    local = closed_at.astimezone(zone)
    return f"{local.year:04d}-{local.month:02d}"


# --- retention ------------------------------------------------------------------------------


class RetentionClass(StrEnum):
    ordinary = "ordinary"
    important_event = "important_event"  # 重要事件资料档案, 004 篇5 §4.1.4
    company_handled = "company_handled"  # archived by the general management dept, 002 §4.8.4


RETENTION_CLASS_LABELS = {
    RetentionClass.ordinary: "一般",
    RetentionClass.important_event: "重要事件",
    RetentionClass.company_handled: "公司处理",
}

KIND_LABELS = {
    Kind.inquiry: "咨询",
    Kind.suggestion: "建议",
    Kind.complaint: "投诉",
    Kind.praise: "表扬",
    Kind.repair: "报修",
    Kind.special_service: "特约服务",
    Kind.situation_report: "情况反映",
    Kind.activity: "社区活动",
}


def retention_years(retention_class: RetentionClass, policy: Policy = DEFAULT_POLICY) -> int:
    archive = policy.archive
    return {
        RetentionClass.ordinary: archive.retention_years_ordinary,
        RetentionClass.important_event: archive.retention_years_important_event,
        RetentionClass.company_handled: archive.retention_years_company_handled,
    }[RetentionClass(retention_class)]


def retention_class(
    form: ArchivedForm, marked_important: bool, handled_by_company: bool, policy: Policy = DEFAULT_POLICY
) -> RetentionClass:
    """Important events (marked by the estate manager, or escalated to a major-impact rung)
    are filed separately; then opinions the company itself handled or accepted; the rest
    are ordinary."""
    important_rungs = set(policy.archive.important_event_rungs)
    escalated_to_top = any(e.rung in important_rungs for r in form.rounds for e in r.escalations)
    if marked_important or escalated_to_top:
        return RetentionClass.important_event
    if handled_by_company or form.intake.accepted_by == AcceptedBy.company:
        return RetentionClass.company_handled
    return RetentionClass.ordinary


def _add_years(moment: dt.datetime, years: int) -> dt.datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February into a common year: the last day of February
        return moment.replace(year=moment.year + years, day=28)


def retention_expires(
    archived_at: dt.datetime, retention_class: RetentionClass, policy: Policy = DEFAULT_POLICY
) -> dt.datetime:
    """The moment the retention period ends (destruction allowed from then on), in the
    estate's local time: archived_at + N years, or 1 January after archiving + N years."""
    _require_aware(archived_at, "archived_at")
    zone = ZoneInfo(policy.timezone)
    local = archived_at.astimezone(zone)
    years = retention_years(retention_class, policy)
    if policy.archive.retention_starts == "next_january_first":
        return dt.datetime(local.year + 1 + years, 1, 1, tzinfo=zone)
    return _add_years(local, years)


# --- archived records, volumes and catalogues ----------------------------------------------


class ArchivedRecord(_Frozen):
    """What the catalogues, the register and destruction need to know of a record."""

    estate: str
    sequence: int = Field(ge=1)
    record_number: str
    ticket_id: str
    form_number: str
    kind: Kind
    title: str
    closed_month: str
    retention_class: RetentionClass
    archived_at: UtcDatetime
    content_hash: str
    destroyed: bool = False


TITLE_EXCERPT_CHARS = 24  # a catalogue line, not the description


def record_title(form: ArchivedForm) -> str:
    """Item title for the catalogues: kind, place and the start of the description."""
    place = "".join(p for p in (form.intake.building, form.intake.unit) if p)
    text = " ".join(form.intake.description.split())
    excerpt = text if len(text) <= TITLE_EXCERPT_CHARS else text[:TITLE_EXCERPT_CHARS] + "…"
    head = KIND_LABELS[form.intake.kind] + (f"({place})" if place else "")
    return f"{head}:{excerpt}"


def archived_record(
    form: ArchivedForm,
    *,
    sequence: int,
    record_number: str,
    retention_class: RetentionClass,
    archived_at: dt.datetime,
    content_hash: str,
) -> ArchivedRecord:
    """The catalogue facts of a freshly archived, closed form."""
    check_archivable(form)
    return ArchivedRecord(
        estate=form.estate,
        sequence=sequence,
        record_number=record_number,
        ticket_id=form.ticket_id,
        form_number=form.form_number,
        kind=form.intake.kind,
        title=record_title(form),
        closed_month=closed_month(form.closed_at, form.timezone),  # type: ignore[arg-type]
        retention_class=retention_class,
        archived_at=archived_at,
        content_hash=content_hash,
    )


class ItemCatalogueEntry(_Frozen):
    """卷内目录 line."""

    volume_number: str
    item_number: int
    record_number: str
    form_number: str
    ticket_id: str
    title: str
    closed_month: str
    destroyed: bool


class VolumeCatalogueEntry(_Frozen):
    """案卷目录 line."""

    volume_number: str
    title: str
    retention_class: RetentionClass
    retention_years: int
    custodian: str
    item_count: int
    first_record: str
    last_record: str
    months: tuple[str, ...]


class GeneralCatalogueEntry(_Frozen):
    """总目录 line: one per retention class present in the quarter."""

    retention_class: RetentionClass
    retention_years: int
    custodian: str
    volume_numbers: tuple[str, ...]
    item_count: int


class Volume(_Frozen):
    catalogue: VolumeCatalogueEntry
    items: tuple[ItemCatalogueEntry, ...]


class VolumePlan(_Frozen):
    estate: str
    quarter: str
    general_catalogue: tuple[GeneralCatalogueEntry, ...]
    volume_catalogue: tuple[VolumeCatalogueEntry, ...]
    volumes: tuple[Volume, ...]


# Who keeps each class: company-handled opinions go to the general management dept
# (002 §4.8.4); the estate keeps the rest, important events in their own file.
CUSTODIANS = {
    RetentionClass.ordinary: "estate_customer_service",
    RetentionClass.important_event: "estate_customer_service",
    RetentionClass.company_handled: "company_general_management",
}
_CHINESE_QUARTER = {1: "一", 2: "二", 3: "三", 4: "四"}


def volume_number(estate: str, quarter: str, index: int) -> str:
    return f"{estate.upper()}-{quarter}-V{index:02d}"


def assign_volumes(records: Sequence[ArchivedRecord], *, quarter: str, policy: Policy = DEFAULT_POLICY) -> VolumePlan:
    """Bind a quarter's records into volumes, one retention class per volume, at most
    `volume_max_items` forms each, with the general, volume and item catalogues.

    Input order does not matter: classes go in RetentionClass order, records by
    (closed month, record number), so the same records always give the same plan.
    Destroyed records keep their place (marked) so destruction never renumbers."""
    months = set(months_of_quarter(quarter))
    estates = {r.estate for r in records}
    if len(estates) > 1:
        raise ValueError(f"records of several estates {sorted(estates)} in one volume plan")
    if len({r.record_number for r in records}) != len(records):
        raise ValueError("a record appears twice in the volume plan")
    outside = sorted(r.record_number for r in records if r.closed_month not in months)
    if outside:
        raise ValueError(f"records {outside} did not close in {quarter}")
    if not records:
        return VolumePlan(estate="", quarter=quarter, general_catalogue=(), volume_catalogue=(), volumes=())
    estate = estates.pop()
    limit = policy.archive.volume_max_items
    if limit < 1:
        raise ValueError("volume_max_items must be at least 1")
    year, q = quarter.split("Q")

    volumes: list[Volume] = []
    general: list[GeneralCatalogueEntry] = []
    for cls in RetentionClass:
        members = sorted((r for r in records if r.retention_class == cls), key=lambda r: (r.closed_month, r.record_number))
        if not members:
            continue
        years = retention_years(cls, policy)
        chunks = [members[i:i + limit] for i in range(0, len(members), limit)]
        numbers: list[str] = []
        for part, chunk in enumerate(chunks, start=1):
            number = volume_number(estate, quarter, len(volumes) + 1)
            numbers.append(number)
            title = (
                f"{estate.upper()} {year}年第{_CHINESE_QUARTER[int(q)]}季度 业主(住户)服务登记会签单"
                f"({RETENTION_CLASS_LABELS[cls]},保管期限{years}年)第{part}卷/共{len(chunks)}卷"
            )
            items = tuple(
                ItemCatalogueEntry(
                    volume_number=number, item_number=i, record_number=r.record_number, form_number=r.form_number,
                    ticket_id=r.ticket_id, title=r.title, closed_month=r.closed_month, destroyed=r.destroyed,
                )
                for i, r in enumerate(chunk, start=1)
            )
            catalogue = VolumeCatalogueEntry(
                volume_number=number, title=title, retention_class=cls, retention_years=years,
                custodian=CUSTODIANS[cls], item_count=len(items), first_record=chunk[0].record_number,
                last_record=chunk[-1].record_number, months=tuple(sorted({r.closed_month for r in chunk})),
            )
            volumes.append(Volume(catalogue=catalogue, items=items))
        general.append(
            GeneralCatalogueEntry(
                retention_class=cls, retention_years=years, custodian=CUSTODIANS[cls],
                volume_numbers=tuple(numbers), item_count=len(members),
            )
        )
    return VolumePlan(
        estate=estate,
        quarter=quarter,
        general_catalogue=tuple(general),
        volume_catalogue=tuple(v.catalogue for v in volumes),
        volumes=tuple(volumes),
    )


# --- lending register 借阅登记 --------------------------------------------------------------


class LoanMode(StrEnum):
    consult = "consult"  # 查阅: read in place
    loan = "loan"  # 外借: taken away, due back
    copy = "copy"  # 复印/打印
    export = "export"  # 拷贝: an electronic copy


class AccessBasis(StrEnum):
    custodian = "custodian"  # customer-service staff of the estate, self-registered
    manager_approval = "manager_approval"  # approved by the estate director/manager
    written_approval = "written_approval"  # with the written approval's reference


@dataclass(frozen=True)
class Person:
    """Someone asking for, approving or reading a record."""

    id: str
    roles: frozenset[str]
    estates: frozenset[str]
    external: bool = False  # outside the company (needs written approval, 001 第6篇 1.2.8)
    organisation: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(self.roles))
        object.__setattr__(self, "estates", frozenset(self.estates))


class RegisterEntry(_Frozen):
    """One line of the 《文件借阅登记表》: date, purpose, person, due date (001 第5篇 1.3)."""

    loan_id: str
    record_number: str
    record_estate: str
    borrower: str
    borrower_external: bool
    borrower_organisation: str | None
    purpose: str
    mode: LoanMode
    basis: AccessBasis
    registered_at: UtcDatetime
    valid_until: UtcDatetime
    due_back: UtcDatetime | None
    approved_by: str | None
    approval_reference: str | None
    returned_at: UtcDatetime | None = None


def _is_custodian(person: Person, estate: str, policy: Policy) -> bool:
    return (
        not person.external
        and bool(person.roles & set(policy.archive.self_register_roles))
        and estate in person.estates
    )


def check_loan_request(
    *,
    loan_id: str,
    record: ArchivedRecord,
    borrower: Person,
    purpose: str,
    mode: LoanMode | str,
    now: dt.datetime,
    approver: Person | None = None,
    approval_reference: str | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> RegisterEntry:
    """The register entry for a consultation, loan, copy or export, or RuleViolation.

    Owner files are level-1 confidential (004 篇5 §4.2.1): customer-service staff of the
    record's estate may register themselves to consult; anyone else needs the estate
    director's or manager's approval recorded; a loan, copy or export (004 篇5 §4.2.8)
    and anybody outside the company (§4.2.4, 001 第6篇 1.2.8) need it in writing, with
    the written approval's reference. Nobody approves their own request."""
    _require_aware(now, "now")
    try:
        mode = LoanMode(mode)
    except ValueError:
        raise refusal("unknown_mode", f"unknown loan mode {mode!r}: consult, loan, copy or export") from None
    if not purpose or not purpose.strip():
        raise refusal("purpose_required", "every consultation or loan is registered with its purpose")
    if record.destroyed:
        raise refusal("record_destroyed", f"record {record.record_number} was destroyed")
    reference = (approval_reference or "").strip() or None
    custodian = _is_custodian(borrower, record.estate, policy)

    if custodian and mode == LoanMode.consult:
        basis = AccessBasis.custodian
    else:
        who = "people outside the company" if borrower.external else (
            "a loan, copy or export" if custodian else "staff other than the estate's customer service"
        )
        if approver is None:
            raise refusal(
                "approval_required",
                f"owner records are level-1 confidential: {who} need the approval of the estate director or manager",
            )
        if approver.id == borrower.id:
            raise refusal("self_approval", "nobody may approve their own access to an owner record")
        if approver.external or not (approver.roles & set(policy.archive.approver_roles)) or record.estate not in approver.estates:
            raise refusal(
                "approver_not_authorised",
                f"{approver.id} is not a director or manager of estate {record.estate} and cannot approve this",
            )
        needs_writing = borrower.external or mode != LoanMode.consult
        if needs_writing and reference is None:
            raise refusal(
                "written_approval_required",
                f"{who} need the manager's written approval: give its reference",
            )
        basis = AccessBasis.written_approval if needs_writing else AccessBasis.manager_approval

    if mode == LoanMode.loan:
        due_back: dt.datetime | None = now + dt.timedelta(days=policy.archive.loan_days)
        valid_until = due_back
    else:
        due_back = None
        valid_until = now + dt.timedelta(hours=policy.archive.consult_hours)
    return RegisterEntry(
        loan_id=loan_id,
        record_number=record.record_number,
        record_estate=record.estate,
        borrower=borrower.id,
        borrower_external=borrower.external,
        borrower_organisation=borrower.organisation,
        purpose=purpose.strip(),
        mode=mode,
        basis=basis,
        registered_at=now,
        valid_until=valid_until,  # type: ignore[arg-type]
        due_back=due_back,
        approved_by=approver.id if approver is not None and basis != AccessBasis.custodian else None,
        approval_reference=reference,
    )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def may_read(
    actor: Person,
    record_estate: str,
    record_number: str,
    entry: RegisterEntry | None,
    now: dt.datetime,
    policy: Policy = DEFAULT_POLICY,
) -> Decision:
    """Whether `actor` may read the record now. Nothing is readable without a register
    entry made for this person and this record and still running."""
    _require_aware(now, "now")
    if entry is None:
        return Decision(False, "no register entry: every consultation must be registered first")
    if entry.record_number != record_number or entry.record_estate != record_estate:
        return Decision(False, f"the register entry is for record {entry.record_number}, not {record_number}")
    if entry.borrower != actor.id or entry.borrower_external != actor.external:
        return Decision(False, "the register entry was made for someone else")
    if entry.returned_at is not None and entry.returned_at <= now:
        return Decision(False, "the record was returned: register again to read it")
    if now < entry.registered_at:
        return Decision(False, "the register entry is not in force yet")
    if now >= entry.valid_until:
        if entry.mode == LoanMode.loan:
            return Decision(False, "the loan is overdue: return the record and register again")
        return Decision(False, "the register entry has expired: register again")
    if entry.basis == AccessBasis.custodian and not _is_custodian(actor, record_estate, policy):
        return Decision(False, f"self-registration needs customer-service staff of estate {record_estate}")
    return Decision(True, f"registered {entry.mode.value} ({entry.basis.value})")


def return_loan(entry: RegisterEntry, now: dt.datetime) -> RegisterEntry:
    _require_aware(now, "now")
    if entry.returned_at is not None:
        raise refusal("already_returned", f"register entry {entry.loan_id} was already closed")
    return entry.model_copy(update={"returned_at": _utc(now)})


def overdue_loans(loans: Iterable[RegisterEntry], now: dt.datetime) -> list[RegisterEntry]:
    """Loans past their due date and not returned, most overdue first (to chase, 001 第6篇 1.3.5)."""
    _require_aware(now, "now")
    late = [
        e for e in loans
        if e.mode == LoanMode.loan and e.returned_at is None and e.due_back is not None and now > e.due_back
    ]
    return sorted(late, key=lambda e: (e.due_back, e.loan_id))


def outstanding_loans(loans: Iterable[RegisterEntry], borrower: str) -> list[RegisterEntry]:
    """A person's loans not yet returned: staff leaving must return them first (001 第6篇 1.2.7)."""
    return sorted(
        (e for e in loans if e.borrower == borrower and e.mode == LoanMode.loan and e.returned_at is None),
        key=lambda e: (e.registered_at, e.loan_id),
    )


# --- destruction 销毁 -----------------------------------------------------------------------


class DestructionLogEntry(_Frozen):
    """Survives the record: what was destroyed, when, on whose approval (001 第6篇 1.5)."""

    estate: str
    record_number: str
    sequence: int
    ticket_id: str
    form_number: str
    retention_class: RetentionClass
    archived_at: UtcDatetime
    retention_expired_at: UtcDatetime
    destroyed_at: UtcDatetime
    approved_by: str
    approval_reference: str
    content_hash: str
    # Owner files are confidential: paper is shredded, electronic content erased.
    method: str = "paper shredded; electronic content erased"


def check_destruction(
    record: ArchivedRecord,
    now: dt.datetime,
    approved_by: str,
    approved_by_roles: Iterable[str],
    approval_reference: str | None,
    policy: Policy = DEFAULT_POLICY,
    open_loans: Iterable[RegisterEntry] = (),
) -> DestructionLogEntry:
    """The destruction log entry, or RuleViolation: not before retention expires, only
    with the general manager's approval and its reference, never while out on loan."""
    _require_aware(now, "now")
    if record.destroyed:
        raise refusal("already_destroyed", f"record {record.record_number} was already destroyed")
    expires = retention_expires(record.archived_at, record.retention_class, policy)
    if now < expires:
        raise refusal(
            "retention_not_expired",
            f"record {record.record_number} ({record.retention_class.value}) is kept until "
            f"{expires.isoformat()}; it cannot be destroyed before",
        )
    if not set(approved_by_roles) & set(policy.archive.destruction_approver_roles):
        raise refusal("general_manager_approval_required", "destruction needs the general manager's approval")
    reference = (approval_reference or "").strip()
    if not reference:
        raise refusal("approval_reference_required", "give the reference of the general manager's approval")
    out = [e.loan_id for e in open_loans if e.record_number == record.record_number and e.returned_at is None and e.mode == LoanMode.loan]
    if out:
        raise refusal("on_loan", f"record {record.record_number} is out on loan ({', '.join(sorted(out))})")
    return DestructionLogEntry(
        estate=record.estate,
        record_number=record.record_number,
        sequence=record.sequence,
        ticket_id=record.ticket_id,
        form_number=record.form_number,
        retention_class=record.retention_class,
        archived_at=record.archived_at,
        retention_expired_at=expires,
        destroyed_at=now,
        approved_by=approved_by,
        approval_reference=reference,
        content_hash=record.content_hash,
    )


# --- the archive's calendar: when a month or quarter may be organised ---------------------


def period_end(period: str, tz: str | ZoneInfo) -> dt.datetime:
    """The first local instant after a month ("2026-11") or a quarter ("2026Q4")."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    if QUARTER.match(period):
        last_month = months_of_quarter(period)[-1]
    elif MONTH.match(period):
        last_month = period
    else:
        raise ValueError(f"{period!r} is neither a month like 2026-11 nor a quarter like 2026Q4")
    year, month = int(last_month[:4]), int(last_month[5:])
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return dt.datetime(year, month, 1, tzinfo=zone)


def check_period_over(period: str, now: dt.datetime, tz: str | ZoneInfo) -> None:
    """A month is organised, a quarter archived, only once it is over in the estate."""
    _require_aware(now, "now")
    end = period_end(period, tz)
    if now < end:
        raise refusal(
            "period_not_over", f"{period} is not over yet in the estate's time zone (it ends {end.isoformat()})"
        )


def scheduled_run_due(period: str, now: dt.datetime, tz: str | ZoneInfo, policy: Policy = DEFAULT_POLICY) -> bool:
    """The schedule organises a period `organise_grace_hours` after it ends, so forms
    closed on its last evening have been archived by then."""
    _require_aware(now, "now")
    return now >= period_end(period, tz) + dt.timedelta(hours=policy.archive.organise_grace_hours)


def handled_by_company(form: ArchivedForm, policy: Policy = DEFAULT_POLICY) -> bool:
    """The company's general management dept took the opinion over (002 §4.8.4)."""
    rungs = set(policy.archive.company_handled_rungs)
    return any(e.rung in rungs for r in form.rounds for e in r.escalations)


# --- monthly organisation 月度整理 ----------------------------------------------------------


class ManifestLine(_Frozen):
    record_number: str
    sequence: int
    ticket_id: str
    form_number: str
    title: str
    retention_class: RetentionClass
    archived_at: UtcDatetime
    content_hash: str
    record_hash: str


class MonthManifest(_Frozen):
    """One month's organised set: what was archived, with the hashes to check a backup by."""

    estate: str
    month: str
    part: int = Field(ge=1)  # 1, then supplements for forms archived after the month was organised
    organised_at: UtcDatetime
    records: tuple[ManifestLine, ...]

    def digest(self) -> str:
        return hashlib.sha256(
            json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()


def month_manifest(
    estate: str, month: str, part: int, organised_at: dt.datetime, lines: Iterable[ManifestLine]
) -> MonthManifest:
    if not MONTH.match(month):
        raise ValueError(f"{month!r} is not a month like 2026-11")
    return MonthManifest(
        estate=estate, month=month, part=part, organised_at=organised_at,
        records=tuple(sorted(lines, key=lambda line: line.sequence)),
    )


def supplementary_plan(plan: VolumePlan, *, first_index: int, part: int) -> VolumePlan:
    """A quarter archived again after forms arrived late: the new volumes continue the
    quarter's numbering (V04, V05, ...) and are titled as a supplement, so the volumes
    already bound are never renumbered."""
    if first_index < 1 or part < 1:
        raise ValueError("volume index and part start at 1")
    if first_index == 1 and part == 1:
        return plan
    renamed: dict[str, str] = {}
    volumes = []
    for offset, volume in enumerate(plan.volumes):
        number = volume_number(plan.estate, plan.quarter, first_index + offset)
        renamed[volume.catalogue.volume_number] = number
        catalogue = volume.catalogue.model_copy(
            update={"volume_number": number, "title": f"{volume.catalogue.title}(补充归档第{part}批)"}
        )
        items = tuple(item.model_copy(update={"volume_number": number}) for item in volume.items)
        volumes.append(Volume(catalogue=catalogue, items=items))
    general = tuple(
        entry.model_copy(update={"volume_numbers": tuple(renamed[n] for n in entry.volume_numbers)})
        for entry in plan.general_catalogue
    )
    return plan.model_copy(
        update={"volumes": tuple(volumes), "volume_catalogue": tuple(v.catalogue for v in volumes),
                "general_catalogue": general}
    )


# --- auditing the stored archive ------------------------------------------------------------


def _record_order(number: str) -> tuple[int, int, str]:
    try:
        _, year, sequence = parse_record_number(number)
    except ValueError:
        return (0, 0, number)
    return (year, sequence, number)


class Anchor(_Frozen):
    """What the `archived` event published about a record when it was sealed."""

    record_number: str
    content_hash: str
    archived_at: UtcDatetime


def verify_archive(
    records: Sequence[ChainRecord],
    catalogue: Sequence[ArchivedRecord],
    *,
    estate: str,
    head: tuple[int, str] | None,
    destruction_log: Sequence[DestructionLogEntry],
    anchors: Mapping[str, Anchor] | None,
) -> VerifyResult:
    """verify_chain, then what the chain alone cannot see:
    - the chain head (last sequence and hash kept apart) must match the last record, or
      records were cut off the end;
    - every catalogue line must say what its content says (ticket, form number, kind,
      title, closing month) and be archived when its `archived` event says (retention
      runs from that moment, so a forged date would allow an early destruction);
    - every record published as archived must still be there."""
    by_sequence = sorted(records, key=lambda r: r.sequence)
    result = verify_chain(
        by_sequence, estate=estate, destruction_log=destruction_log,
        anchors=None if anchors is None else {n: a.content_hash for n, a in anchors.items()},
    )
    if not result:
        return result
    checked = len(by_sequence)

    def broken(number: str, reason: str) -> VerifyResult:
        return VerifyResult(ok=False, first_broken=number, reason=reason, records_checked=checked)

    lines = {line.record_number: line for line in catalogue}
    for record in by_sequence:
        line = lines.get(record.record_number)
        if line is None:
            return broken(record.record_number, "record has no catalogue line")
        if line.sequence != record.sequence or line.content_hash != record.content_hash or line.destroyed != record.destroyed:
            return broken(record.record_number, "catalogue line disagrees with the chain")
        if record.content is not None:
            try:
                form = form_from_bytes(record.content)
            except ValueError:
                return broken(record.record_number, "content is not a countersign form")
            facts = {
                "ticket_id": form.ticket_id, "form_number": form.form_number, "kind": form.intake.kind,
                "title": record_title(form), "closed_month": closed_month(form.closed_at, form.timezone)
                if form.closed_at else None, "estate": form.estate,
            }
            wrong = sorted(k for k, v in facts.items() if getattr(line, k) != v)
            if wrong:
                return broken(record.record_number, f"catalogue {', '.join(wrong)} differ from the archived content")
        if anchors is not None and record.record_number in anchors:
            if anchors[record.record_number].archived_at != line.archived_at:
                return broken(record.record_number, "archiving time differs from the one published when it was archived")
    if head is not None:
        last = by_sequence[-1] if by_sequence else None
        expected = (last.sequence, last.stored_hash) if last else (0, genesis_hash(estate))
        if tuple(head) != expected:
            where = last.record_number if last else "(empty chain)"
            return broken(where, f"the chain head records {head[0]} records but the store ends at "
                                 f"{expected[0]}: records were removed from the end")
    if anchors is not None:
        present = {r.record_number for r in by_sequence}
        missing = sorted((n for n in anchors if n not in present), key=_record_order)
        if missing:
            return broken(missing[0], "published as archived but missing from the store")
    return result
