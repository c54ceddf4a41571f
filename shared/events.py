"""The event contract: one CloudEvents 1.0 envelope, one versioned payload model per event.

Every ticket event travels on `estatedesk.<estate>.ticket.<event>` as structured JSON:

    {"specversion": "1.0", "id": "<uuid>", "source": "estatedesk/<service>",
     "type": "estatedesk.ticket.<event>", "subject": "<ticket id>", "time": "...",
     "datacontenttype": "application/json",
     "dataschema": "urn:estatedesk:ticket.<event>:v<N>",
     "estate": "<estate code>", "actor": "<staff id or system>", "data": {...}}

Refused access to owners' data and archived records travels as
`estatedesk.<estate>.audit.access_refused` on the same stream (`subject` names the resource),
so the archive keeps one access log; no ticket consumer subscribes to it.

Ids never go into subjects (metrics label series by subject). A payload's schema version
changes only when a field is removed or changes meaning; new optional fields keep it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from shared.limits import (
    CATEGORY_MAX, CLIENT_ID_MAX, CODE_MAX, DEPARTMENT_CODE_MAX, DESCRIPTION_MAX, ESTATE_CODE, FORM_NUMBER_MAX, ID_MAX, SHORT_TEXT_MAX, TEXT_MAX, Instant, Money,
    TEXT_CHECKED, StorableText, UNIT_CODE_MAX, json_is_storable_text,
)

SUBJECT_PREFIX = "estatedesk"
STREAM_NAME = "ESTATEDESK_TICKETS"
# Two families of events share the stream: the ticket's life (`ticket`), and the audit
# trail of refused access (`audit`), which no ticket consumer sees.
TICKET = "ticket"
AUDIT = "audit"
STREAM_SUBJECTS = [f"{SUBJECT_PREFIX}.*.{TICKET}.*", f"{SUBJECT_PREFIX}.*.{AUDIT}.*"]


# --- vocabulary (RULES.md §1–§3) -------------------------------------------------------


class Channel(StrEnum):
    walk_in = "walk_in"  # 来访
    phone = "phone"  # 来电
    letter = "letter"  # 来信
    online = "online"  # 网上
    walk_around_visit = "walk_around_visit"  # 走访
    relayed_by_employee = "relayed_by_employee"  # 员工转达
    escalated_from_above = "escalated_from_above"  # 上级/政府转来


class Kind(StrEnum):
    inquiry = "inquiry"  # 咨询
    suggestion = "suggestion"  # 建议
    complaint = "complaint"  # 投诉
    praise = "praise"  # 表扬
    repair = "repair"  # 报修
    special_service = "special_service"  # 特约/委托服务
    situation_report = "situation_report"  # 情况反映
    activity = "activity"  # 社区活动 (callback at the activity rate)


class RepairClass(StrEnum):
    emergency = "emergency"  # water, heating, gas: immediately
    general = "general"
    simple = "simple"
    appointment = "appointment"
    commissioned_immediate = "commissioned_immediate"  # 委托"立即"维修
    project = "project"  # repair project: callback within a month


class Severity(StrEnum):
    serious = "serious"
    not_serious = "not_serious"


class Urgency(StrEnum):
    urgent = "urgent"
    not_urgent = "not_urgent"


class ReplyMethod(StrEnum):
    phone = "phone"
    visit = "visit"
    letter = "letter"
    online = "online"
    none = "none"  # no callback path (anonymous / online without contact)


class AcceptedBy(StrEnum):
    department = "department"  # tracking control 3 working days
    company = "company"  # 7 working days


# --- envelope ---------------------------------------------------------------------------


class CloudEvent(BaseModel):
    """CloudEvents 1.0 structured-mode envelope with EstateDesk's extension attributes."""

    model_config = ConfigDict(extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    subject: str
    time: dt.datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    estate: str
    actor: str
    data: dict[str, Any]

    @field_validator("estate")
    @classmethod
    def _estate_code(cls, value: str) -> str:
        if not ESTATE_CODE.match(value):
            raise ValueError(f"estate code {value!r} must match {ESTATE_CODE.pattern}")
        return value

    @property
    def event_name(self) -> str:
        """`accepted` of `estatedesk.ticket.accepted` (and of any family)."""
        return self.type.rsplit(".", 1)[-1]

    @property
    def nats_subject(self) -> str:
        return subject_for(self.estate, self.event_name)

    # The payload validated once (with the `data` it came from: a replaced `data` is read
    # again), and whether `data` came from JSON already known to hold only storable text.
    _payload: tuple[dict[str, Any], "Payload"] | None = PrivateAttr(default=None)
    _text_checked: bool = PrivateAttr(default=False)

    def payload(self) -> "Payload":
        """The typed payload, validated on the first call and kept (every handler of a
        consumer asks for it); raises pydantic.ValidationError when it breaks the contract.
        The caller must not change it."""
        # Through the private attributes' own dict: pydantic's __getattr__ costs more than
        # the rest of a cached call (a rebuild asks 40,000 times a second).
        private = self.__pydantic_private__
        cached = private["_payload"]
        if cached is None or cached[0] is not self.data:
            context = {TEXT_CHECKED: True} if private["_text_checked"] else None
            cached = private["_payload"] = (self.data, PAYLOADS[self.event_name].model_validate(self.data, context=context))
        return cached[1]


class MalformedEvent(ValueError):
    """A delivered message that breaks the contract; `envelope` is its CloudEvent when that
    much was readable (its id and estate go with the dead letter), else None."""

    def __init__(self, reason: str, envelope: CloudEvent | None = None) -> None:
        super().__init__(reason)
        self.envelope = envelope


def read_envelope(subject: str, body: bytes) -> CloudEvent:
    """The envelope of the event a JetStream message of `subject` carries: a CloudEvent of
    a known type, on its own estate's and type's subject. Its payload is not validated
    yet (`accept_payload`): a consumer that ignores the event never pays for it.

    Raises MalformedEvent, whose message says why (its `envelope` set when the JSON was a
    CloudEvent)."""
    try:
        event = CloudEvent.model_validate_json(body)
    except (ValidationError, ValueError) as error:
        raise MalformedEvent(str(error)) from error
    # The JSON parser refused what it could; when no escape is left, the strings are storable.
    event._text_checked = json_is_storable_text(body)
    if event.event_name not in PAYLOADS:
        raise MalformedEvent(f"unknown event type {event.type!r}", event)
    if event.nats_subject != subject:
        raise MalformedEvent(f"event of estate {event.estate!r} and type {event.type!r} arrived on {subject!r}", event)
    return event


def accept_payload(event: CloudEvent) -> None:
    """Validate `event`'s payload against the contract, every string storable text
    included (see `shared.limits`), and keep it (`CloudEvent.payload`).

    Raises MalformedEvent with the event as its envelope."""
    try:
        event.payload()
    except (ValidationError, ValueError) as error:
        raise MalformedEvent(str(error), event) from error


def read_event(subject: str, body: bytes) -> CloudEvent:
    """The event a JetStream message of `subject` carries, accepted as every consumer (and
    `analytics rebuild`) accepts it: `read_envelope`, then `accept_payload`.

    Raises MalformedEvent, whose message says why."""
    event = read_envelope(subject, body)
    accept_payload(event)
    return event


def family_of(event_name: str) -> str:
    """The family (`ticket` or `audit`) of an event name; `ticket` for a wildcard."""
    model = PAYLOADS.get(event_name)
    return model.family if model is not None else TICKET


def subject_for(estate: str, event_name: str) -> str:
    return f"{SUBJECT_PREFIX}.{estate}.{family_of(event_name)}.{event_name}"


def new_event_id() -> str:
    return str(uuid.uuid4())


# --- payloads ---------------------------------------------------------------------------


class Payload(StorableText):
    """Base of every payload: unknown fields from a newer producer are ignored; every
    string must be storable text (a NUL or lone surrogate makes the event a dead letter)."""

    model_config = ConfigDict(extra="ignore")
    event_name: ClassVar[str]
    family: ClassVar[str] = TICKET
    version: ClassVar[int] = 1
    summary: ClassVar[str] = ""

    @property
    def event_subject(self) -> str:
        """The envelope's `subject`: the ticket id (an audit event names its resource)."""
        return getattr(self, "ticket_id")

    @classmethod
    def dataschema(cls) -> str:
        return f"urn:estatedesk:{cls.family}.{cls.event_name}:v{cls.version}"


class Accepted(Payload):
    event_name = "accepted"
    summary = "A request was registered; its first-contact owner is fixed for its whole life."
    ticket_id: str = Field(max_length=ID_MAX)
    form_number: str = Field(max_length=FORM_NUMBER_MAX)
    kind: Kind
    channel: Channel
    category: str = Field("general", max_length=CATEGORY_MAX)
    repair_class: RepairClass | None = None
    severity: Severity = Severity.not_serious
    urgency: Urgency = Urgency.not_urgent
    accepted_by: AcceptedBy = AcceptedBy.department
    building: str | None = None
    unit: str | None = None
    location: str | None = Field(None, max_length=SHORT_TEXT_MAX)
    description: str = Field(max_length=DESCRIPTION_MAX)
    first_contact: str = Field(max_length=ID_MAX)
    first_contact_name: str | None = None
    received_at: Instant
    reply_method: ReplyMethod = ReplyMethod.phone
    reply_agreed_by: Instant | None = None
    appointment_at: Instant | None = None
    off_hours: bool = False
    anonymous: bool = False
    owner_id: str | None = None
    about_role: str | None = None  # complaint about a supervisor / customer-service staff
    # CNY as a decimal string ("800.00"); readers also accept the numbers older events carry.
    owner_loss_cny: Money | None = None
    # Record content (RULES §1): when it happened, why, who was involved, attachments by
    # reference, and the owner's signature state ("signed", "later" for 补签, "not_required").
    occurred_at: Instant | None = None
    cause: str | None = Field(None, max_length=TEXT_MAX)
    people: list[str] = Field(default_factory=list)
    attachments: list[str] = Field(default_factory=list)
    owner_signature: str | None = None


class ValidityJudged(Payload):
    event_name = "validity_judged"
    summary = "A complaint was judged valid or invalid, with the reason."
    ticket_id: str
    valid: bool
    reason: str
    judged_by: str
    confirmed_by: str | None = None  # invalid needs a manager's confirmation
    notify_owner_by: dt.datetime | None = None


class Deadline(BaseModel):
    clock: str
    due_at: dt.datetime
    department: str | None = None
    provisional: bool = False


class Assigned(Payload):
    event_name = "assigned"
    summary = "The form was routed to one or more departments; the round's clocks started."
    ticket_id: str
    round: int = 1
    departments: list[str]
    assigned_by: str
    deadlines: list[Deadline] = Field(default_factory=list)
    # Set when a department handed the form on within the round (a new ledger line).
    transferred_from: str | None = None


class Acknowledged(Payload):
    event_name = "acknowledged"
    summary = "A receiving department signed for the transfer in the handover ledger."
    ticket_id: str
    round: int = 1
    department: str
    acknowledged_by: str


class Arrived(Payload):
    event_name = "arrived"
    summary = "The technician or officer arrived on site."
    ticket_id: str
    round: int = 1
    department: str
    arrived_by: str
    arrived_at: dt.datetime


class ProgressUpdated(Payload):
    event_name = "progress_updated"
    summary = "The owner was told how the request is going."
    ticket_id: str
    note: str
    method: ReplyMethod = ReplyMethod.phone
    updated_by: str


class Escalated(Payload):
    event_name = "escalated"
    summary = "The form climbed a rung of the escalation ladder."
    ticket_id: str
    round: int = 1
    rung: str
    reason: str
    clock: str | None = None
    nonconformity: bool = False
    department: str | None = None  # the department whose clock ran out, when there is one


class SlaBreached(Payload):
    event_name = "sla_breached"
    summary = "A clock ran out; emitted once per clock and round."
    ticket_id: str
    round: int = 1
    clock: str
    due_at: dt.datetime
    department: str | None = None
    provisional: bool = False


class ClockOutcome(StrEnum):
    """How dispatch settled one SLA clock (RULES §1 Reply deadline, §2 clocks). `met` and
    `breached` are counted (on-time rate); the others ended a clock no longer owed."""

    met = "met"  # stopped by its step at or before its due time
    breached = "breached"  # ran out (the breach scan), or its step came after its due time
    superseded = "superseded"  # a transfer, completion or a new round took its place
    cancelled = "cancelled"  # nothing is owed any more (invalid complaint, ticket closed)
    rescheduled = "rescheduled"  # a new appointment started a fresh clock


# The clock dispatch keeps per week of a long-running complaint's owner-update duty
# (RULES §2 Progress updates): met when the week had its updates, breached when it ended short.
PROGRESS_UPDATE_CLOCK = "progress_update"


class ClockSettled(Payload):
    event_name = "clock_settled"
    summary = ("Dispatch's verdict on one SLA clock: met, breached, superseded, cancelled or "
               "rescheduled; emitted once per clock, the fact every on-time figure counts.")
    ticket_id: str = Field(max_length=ID_MAX)
    clock_id: int = Field(ge=1, description="dispatch's id of the clock: one verdict per id")
    round: int = Field(1, ge=1)
    clock: str = Field(max_length=CODE_MAX)
    department: str | None = Field(None, max_length=DEPARTMENT_CODE_MAX)
    due_at: Instant
    settled_at: Instant
    outcome: ClockOutcome


class SignedBack(Payload):
    event_name = "signed_back"
    summary = "A department wrote its handling opinion and result; its head verified."
    ticket_id: str
    round: int = 1
    department: str
    opinion: str
    result: str
    signed_by: str
    verified_by: str


class Completed(Payload):
    event_name = "completed"
    summary = "Every assigned department signed back; the form returned to customer service."
    ticket_id: str
    round: int = 1
    kind: Kind
    repair_class: RepairClass | None = None
    category: str = "general"
    departments: list[str]
    reply_method: ReplyMethod = ReplyMethod.phone
    first_contact: str | None = None
    completed_at: dt.datetime


class Reopened(Payload):
    event_name = "reopened"
    summary = "The owner was not satisfied; a new round with fresh clocks begins."
    ticket_id: str
    round: int  # the new round's number
    reason: str
    reopened_by: str
    departments: list[str] = Field(default_factory=list)


class CallbackScheduled(Payload):
    event_name = "callback_scheduled"
    summary = "A callback is due by the policy's window."
    ticket_id: str
    callback_id: str
    round: int = 1
    due_at: dt.datetime
    method: ReplyMethod
    assigned_to: str | None = None
    rule: str
    provisional: bool = False


class CallbackDone(Payload):
    event_name = "callback_done"
    summary = "The owner was called back; their answers are recorded."
    ticket_id: str
    callback_id: str
    round: int = 1
    method: ReplyMethod
    handled_in_time: bool
    result_satisfied: bool
    attitude_satisfied: bool
    suggestions: str = ""
    owner_confirmed: bool = False
    done_by: str
    on_time: bool = True


class AttitudeComplaintRaised(Payload):
    """An owner answering a callback (recorded by the desk, or answered by the owner on the
    owners' page) was not satisfied with the staff's attitude, and the estate's policy
    (`callback.attitude_dissatisfied == "new_complaint"`) makes that a new complaint: a
    valid one, since staff attitude is itself a ground (RULES §1 Complaint validity, §3
    Not satisfied; 002 §4.2.2, §4.4.2 d). Callback decides; intake registers the complaint
    (idempotent on `client_request_id`, the same key the record route hands to clients)."""

    event_name = "attitude_complaint_raised"
    summary = "An owner was unhappy with the staff's attitude on a callback: intake registers an attitude complaint."
    ticket_id: str = Field(max_length=ID_MAX)  # the ticket whose callback it was
    callback_id: str = Field(max_length=ID_MAX)
    round: int = 1
    form_number: str | None = Field(None, max_length=FORM_NUMBER_MAX)
    unit: str | None = Field(None, max_length=UNIT_CODE_MAX)
    owner_id: str | None = Field(None, max_length=ID_MAX)
    # How the owner wants the new complaint answered: the method the callback was planned with.
    reply_method: ReplyMethod
    # How the answers were given (phone, visit, letter, online).
    answered_by: ReplyMethod
    answered_by_owner: bool = False
    recorded_by: str = Field(max_length=ID_MAX)  # the staff id, or the owner's actor id online
    # The first-contact owner 首问 of the original ticket, and the departments that handled it.
    first_contact: str | None = Field(None, max_length=ID_MAX)
    departments: list[str] = Field(default_factory=list, max_length=64)
    suggestions: str = Field("", max_length=TEXT_MAX)
    client_request_id: str = Field(max_length=CLIENT_ID_MAX)


class CallbackOverdue(Payload):
    event_name = "callback_overdue"
    summary = "A callback passed its due time without being made."
    ticket_id: str
    callback_id: str
    round: int = 1
    due_at: dt.datetime


class Closed(Payload):
    event_name = "closed"
    summary = "The owner is satisfied (or the recurrence window elapsed); the ticket is closed."
    ticket_id: str
    round: int = 1
    closed_by: str
    reason: str
    # True: the owner was satisfied (callback or recurrence window elapsed); False: counted
    # as not satisfied (a same-category opinion recurred); None: closed without a judgement
    # (no callback required, e.g. an invalid complaint).
    satisfied: bool | None = None


class Archived(Payload):
    event_name = "archived"
    summary = "The closed form was frozen into the estate's hash chain."
    ticket_id: str
    record_number: str
    content_hash: str
    previous_hash: str
    closed_month: str
    # The link itself and the class it was archived with, for auditors re-checking the
    # estate's chain from the stream alone.
    sequence: int | None = None
    record_hash: str | None = None
    retention_class: str | None = None


class Lent(Payload):
    event_name = "lent"
    summary = "An archived record was consulted, lent, copied or exported (register entry)."
    ticket_id: str
    loan_id: str
    record_number: str
    borrower: str
    purpose: str
    mode: str
    due_back: dt.datetime | None = None


class Returned(Payload):
    event_name = "returned"
    summary = "A lent record came back."
    ticket_id: str
    loan_id: str
    record_number: str


class Destroyed(Payload):
    event_name = "destroyed"
    summary = "An archived record was destroyed after its retention period, with approval."
    ticket_id: str
    record_number: str
    approved_by: str
    approval_reference: str


class CorrectiveActionSuggested(Payload):
    event_name = "corrective_action_suggested"
    summary = "The same problem came back often enough to call for corrective action."
    ticket_id: str  # the ticket that crossed the threshold
    category: str
    scope: Literal["estate", "building"]
    building: str | None = None
    count: int
    window_days: int
    tickets: list[str]


class AccessRefused(Payload):
    """A request for owners' data or archived records refused at the door (no token, a
    token for another estate, a missing role, a staff member no longer on the staff list).
    RULES § archive access log (seed 001 §4.4 借阅/查阅 登记): every attempt to reach
    protected records is recorded, refused ones included; the archive keeps the log."""

    event_name = "access_refused"
    family = AUDIT
    summary = "A request for owners' data or archived records was refused (kept in the archive's access log)."
    service: str = Field(max_length=SHORT_TEXT_MAX)
    method: str = Field(max_length=16)
    path: str = Field(max_length=TEXT_MAX)  # the request's path as asked, e.g. /v1/estates/hx01/owners/o-1
    route: str = Field(max_length=TEXT_MAX)  # its route template, e.g. /v1/estates/{estate}/owners/{owner_id}
    status: int  # 401 or 403
    reason: str = Field(max_length=TEXT_MAX)
    roles: list[str] = Field(default_factory=list, max_length=32)
    record_number: str | None = Field(default=None, max_length=FORM_NUMBER_MAX)

    @property
    def event_subject(self) -> str:
        return self.record_number or self.path


PAYLOADS: dict[str, type[Payload]] = {
    model.event_name: model
    for model in (
        Accepted, ValidityJudged, Assigned, Acknowledged, Arrived, ProgressUpdated,
        Escalated, SlaBreached, SignedBack, Completed, Reopened, CallbackScheduled,
        CallbackDone, CallbackOverdue, AttitudeComplaintRaised, Closed, Archived, Lent, Returned, Destroyed,
        CorrectiveActionSuggested, ClockSettled, AccessRefused,
    )
}
EVENT_NAMES = tuple(PAYLOADS)


def make_event(
    payload: Payload,
    *,
    estate: str,
    actor: str,
    source: str,
    time: dt.datetime,
    event_id: str | None = None,
) -> CloudEvent:
    return CloudEvent(
        id=event_id or new_event_id(),
        source=f"estatedesk/{source}",
        type=f"{SUBJECT_PREFIX}.{payload.family}.{payload.event_name}",
        subject=payload.event_subject,
        time=time,
        dataschema=payload.dataschema(),
        estate=estate,
        actor=actor,
        data=payload.model_dump(mode="json"),
    )
