"""Intake's aggregate: the ticket (a registered request) as intake sees it, owning its state
and its transitions. Pure: no I/O, no clock reads (every time is an argument); refusals
raise `shared.errors.RuleViolation`; states are `shared.lifecycle.TicketState` and moves
are checked there. The rules it applies live in `rules.py` (form numbers, office hours,
validity, signatures) and are called from here.

The ticket's life at intake (RULES §1; seeds 002 §4.2, 000 §五):
registration (the first employee is its first-contact owner 首问, fixed for life) →
in_handling → completed (every department signed back, `completed` event) → closed
(`closed` event); a reopened round (`reopened`) takes it back to in_handling; a complaint
judged invalid and confirmed by a manager → invalid (handling ends, the owner is told why).

Shapes: `Registration` (one request as registered: the caller's facts, who registered
it and when), `Ticket` (identity, `record` = the registered facts that never change, and
the state fields below); `Ticket.changes()` is what a repository writes back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from services.intake import rules
from shared.calendar import WorkingCalendar
from shared.errors import RuleViolation
from shared.events import Accepted, Kind, ProgressUpdated, RepairClass, ValidityJudged
from shared.lifecycle import TicketState, require_transition
from shared.policy import Policy

# The columns a ticket's transitions change; everything else is fixed at registration.
STATE_FIELDS = (
    "status", "round", "current_handler", "owner_signature", "signed_at", "reminders_sent", "last_reminded_at",
    "next_reminder_at", "valid", "validity_reason", "judged_by", "confirmed_by", "judged_at", "validity_state",
    "validity_decided_at", "notify_owner_by", "notify_provisional", "owner_notified_at", "completed_at", "closed_at",
)
IDENTITY_FIELDS = ("id", "estate", "form_number", "kind", "channel", "first_contact", "received_at")
# The registered facts the `accepted` event carries (besides id, number, name and signature).
ACCEPTED_FIELDS = (
    "kind", "channel", "category", "repair_class", "severity", "urgency", "accepted_by", "building", "unit",
    "location", "description", "first_contact", "received_at", "reply_method", "reply_agreed_by", "appointment_at",
    "off_hours", "anonymous", "owner_id", "about_role", "owner_loss_cny", "occurred_at", "cause", "people",
    "attachments",
)


def _aware(value: dt.datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise RuleViolation(f"{name} must carry its timezone (e.g. 2026-11-23T09:00:00+08:00)", status=422)


def check_request(facts: dict[str, Any], estate: str, buildings: list[str], now: dt.datetime) -> None:
    """What the later clocks rely on, checked where the caller can still fix it (422): aware
    times, a building of the estate, a repair class only on repairs, an appointment repair's
    future appointment, a future agreed reply time, no occurrence in the future."""
    for name in ("reply_agreed_by", "appointment_at", "occurred_at"):
        _aware(facts.get(name), name)
    building = facts.get("building")
    if building and buildings and building not in buildings:
        raise RuleViolation(f"estate {estate} has no building {building!r} (it has: {', '.join(buildings)})",
                            status=422)
    kind, repair_class = Kind(facts["kind"]), facts.get("repair_class")
    if repair_class is not None and kind is not Kind.repair:
        raise RuleViolation(f"a repair class belongs to repairs, not to a {kind.value}", status=422)
    appointment_at, reply_agreed_by = facts.get("appointment_at"), facts.get("reply_agreed_by")
    if repair_class == RepairClass.appointment:
        if appointment_at is None:
            raise RuleViolation("an appointment repair needs appointment_at", status=422)
        if appointment_at < now:
            raise RuleViolation(f"the appointment {appointment_at.isoformat()} has already passed", status=422)
    if reply_agreed_by is not None and reply_agreed_by < now:
        raise RuleViolation(f"the agreed reply time {reply_agreed_by.isoformat()} has already passed", status=422)
    occurred_at = facts.get("occurred_at")
    if occurred_at is not None and occurred_at > now + dt.timedelta(minutes=5):
        raise RuleViolation("occurred_at lies in the future", status=422)


@dataclass(frozen=True)
class Registration:
    """One request to register: `facts` are the caller's fields (RequestIn's, by name),
    `staff_id`/`staff_name`/`duty_staff` who registers it, `received_at` when."""

    estate: str
    facts: dict[str, Any]
    staff_id: str
    staff_name: str | None
    duty_staff: bool
    received_at: dt.datetime
    client_request_id: str | None = None


@dataclass
class Ticket:
    id: str
    estate: str
    form_number: str
    kind: str
    channel: str
    first_contact: str
    received_at: dt.datetime
    record: dict[str, Any] = field(default_factory=dict)
    status: TicketState = TicketState.in_handling
    round: int = 1
    current_handler: str | None = None
    owner_signature: str = rules.SignatureRequirement.not_required.value
    signed_at: dt.datetime | None = None
    reminders_sent: int = 0
    last_reminded_at: dt.datetime | None = None
    next_reminder_at: dt.datetime | None = None
    valid: bool | None = None
    validity_reason: str | None = None
    judged_by: str | None = None
    confirmed_by: str | None = None
    judged_at: dt.datetime | None = None
    validity_state: str | None = None
    validity_decided_at: dt.datetime | None = None
    notify_owner_by: dt.datetime | None = None
    notify_provisional: bool = False
    owner_notified_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    _loaded: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    # --- loading and saving (for repositories) -----------------------------------------------
    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> "Ticket":
        """A stored ticket (all its columns by name) as the aggregate."""
        known = set(STATE_FIELDS) | set(IDENTITY_FIELDS)
        ticket = cls(**{k: columns[k] for k in IDENTITY_FIELDS},
                     record={k: v for k, v in columns.items() if k not in known},
                     **{k: columns[k] for k in STATE_FIELDS if k in columns})
        ticket.status = TicketState(ticket.status)
        ticket.notify_provisional = bool(ticket.notify_provisional)
        ticket.reminders_sent = ticket.reminders_sent or 0
        ticket.mark_saved()
        return ticket

    def columns(self) -> dict[str, Any]:
        """Every column of the stored ticket, by name (what the API shows)."""
        return {**self.record, **{k: getattr(self, k) for k in IDENTITY_FIELDS + STATE_FIELDS}}

    def changes(self) -> dict[str, Any]:
        """The state fields changed since it was loaded or saved."""
        loaded = self._loaded or {}
        return {k: getattr(self, k) for k in STATE_FIELDS if k not in loaded or loaded[k] != getattr(self, k)}

    def mark_saved(self) -> None:
        self._loaded = {k: getattr(self, k) for k in STATE_FIELDS}

    # --- registration (RULES §1 Registration, Record content, First contact) ----------------------
    @classmethod
    def register(cls, command: Registration, ticket_id: str, sequence: int, policy: Policy,
                 calendar: WorkingCalendar, year: int) -> "Ticket":
        """The registered ticket: form number ESTATE-YEAR-SEQUENCE (`sequence` from the
        estate's gapless counter), the registrant as first-contact owner and current
        handler, the owner's signature state (walk-ins sign now; phone and letter later,
        reminded every policy.intake.signature_reminder_hours) and whether it came in
        off hours. Raises RuleViolation 422 for a walk-in without the owner's signature."""
        facts, now = command.facts, command.received_at
        requirement = rules.check_signature_at_intake(
            facts["channel"], facts.get("owner_signed", False), policy, anonymous=facts.get("anonymous", False),
            reply_method=facts.get("reply_method"))
        signed = bool(facts.get("owner_signed"))
        signature = "signed" if signed else requirement.value
        record = {k: facts.get(k) for k in ACCEPTED_FIELDS if k not in IDENTITY_FIELDS and k != "off_hours"}
        record.update(first_contact_name=command.staff_name, off_hours=rules.is_off_hours(now, policy, calendar),
                      client_request_id=command.client_request_id, created_at=now)
        ticket = cls(
            id=ticket_id, estate=command.estate, form_number=rules.form_number(command.estate, year, sequence, policy),
            kind=facts["kind"], channel=facts["channel"], first_contact=command.staff_id, received_at=now,
            record=record, status=TicketState.in_handling, round=1, current_handler=command.staff_id,
            owner_signature=signature, signed_at=now if signed else None,
            next_reminder_at=rules.next_signature_reminder(now, None, now, policy)
            if signature == rules.SignatureRequirement.later else None,
        )
        ticket.mark_saved()
        return ticket

    @property
    def off_hours(self) -> bool:
        return bool(self.record.get("off_hours"))

    def accepted(self) -> Accepted:
        """The `accepted` event announcing this registration."""
        columns = self.columns()
        return Accepted(ticket_id=self.id, form_number=self.form_number,
                        first_contact_name=self.record.get("first_contact_name"),
                        owner_signature=self.owner_signature, **{k: columns[k] for k in ACCEPTED_FIELDS})

    # --- the status other services decide (projections of their facts) ---------------------------
    def complete(self, round_: int, at: dt.datetime) -> bool:
        """Every department signed back this round (`completed`): in_handling → completed.
        An event of another round, or a ticket no longer in handling, changes nothing."""
        if round_ != self.round or self.status is not TicketState.in_handling:
            return False
        require_transition(self.status, TicketState.completed, f"request {self.form_number}")
        self.status, self.completed_at = TicketState.completed, at
        return True

    def reopen(self, round_: int) -> bool:
        """The owner was not satisfied (`reopened`): in handling again in the newer round.
        The round is the callback service's fact, so intake follows it; an older or the
        same round changes nothing (a redelivered event)."""
        if round_ <= self.round:
            return False
        self.status, self.round, self.completed_at, self.closed_at = TicketState.in_handling, round_, None, None
        return True

    def close(self, at: dt.datetime) -> bool:
        """The owner is satisfied or the window elapsed (`closed`)."""
        if self.status is not TicketState.closed:
            require_transition(self.status, TicketState.closed, f"request {self.form_number}")
        self.status, self.closed_at = TicketState.closed, at
        return True

    # --- complaint validity (RULES §1 Complaint validity, Invalid complaint) -----------------------
    def judge(self, valid: bool, reason: str, judge: str, confirmed_by: str | None, now: dt.datetime,
              policy: Policy, calendar: WorkingCalendar) -> ValidityJudged | None:
        """Judge a complaint (rules.judge_validity). Valid is final at once and returns
        its `validity_judged` event; invalid waits for a manager (returns None). Raises
        409 when a judgement exists or awaits confirmation, or the request is closed."""
        if self.validity_state == rules.ValidityState.awaiting_confirmation:
            raise RuleViolation("this complaint's invalid judgement awaits a manager's confirmation", status=409)
        if self.valid is not None:
            raise RuleViolation(f"this complaint was already judged {'valid' if self.valid else 'invalid'}", status=409)
        judgement = rules.judge_validity(self.kind, valid, reason, judge, confirmed_by, now, policy, calendar)
        if self.status is TicketState.closed:
            raise RuleViolation("the request is closed", status=409)
        self.valid = True if judgement.valid else None
        self.validity_reason, self.judged_by, self.confirmed_by = judgement.reason, judgement.judged_by, None
        self.judged_at, self.notify_owner_by = now, judgement.notify_owner_by
        self.notify_provisional, self.validity_state = judgement.provisional, judgement.state
        return judgement.to_payload(self.id) if judgement.valid else None

    def decide_validity(self, manager: str, roles, confirm: bool, note: str | None, now: dt.datetime,
                        policy: Policy) -> ValidityJudged:
        """A manager (own sign-in) confirms an invalid judgement (handling ends: invalid)
        or rejects it with a reason (the complaint is valid). Raises 409/403 from
        rules.confirm_invalid, 422 for a rejection without a reason."""
        state = rules.confirm_invalid(self.validity_state, self.judged_by, manager, roles, confirm, policy)
        note = (note or "").strip()
        if state is rules.ValidityState.rejected and not note:
            raise RuleViolation("rejecting an invalid judgement needs the manager's reason", status=422)
        valid = state is rules.ValidityState.rejected
        if not valid and self.status is not TicketState.invalid:
            require_transition(self.status, TicketState.invalid, f"request {self.form_number}")
            self.status = TicketState.invalid
        self.valid, self.confirmed_by, self.validity_state, self.validity_decided_at = valid, manager, state, now
        self.validity_reason = note if valid else self.validity_reason
        if valid:
            self.notify_owner_by, self.notify_provisional = None, False
        return ValidityJudged(ticket_id=self.id, valid=valid, reason=self.validity_reason, judged_by=self.judged_by,
                              confirmed_by=manager, notify_owner_by=self.notify_owner_by)

    def recount_notice(self, policy: Policy, calendar: WorkingCalendar) -> bool:
        """Count an owed invalid-complaint notice's deadline again from its judgement
        (after a calendar change); True when it moved."""
        if self.notify_owner_by is None or self.owner_notified_at is not None or self.judged_at is None:
            return False
        notice = rules.invalid_notice_due(self.judged_at, policy, calendar)
        if (notice.value, notice.provisional) == (self.notify_owner_by, self.notify_provisional):
            return False
        self.notify_owner_by, self.notify_provisional = notice.value, notice.provisional
        return True

    # --- updates to the owner, signatures, handing on ----------------------------------------------
    def give_progress(self, note: str, method: str, staff_id: str, now: dt.datetime) -> ProgressUpdated:
        """An update given to the owner. A closed request takes none, except the reason an
        invalid complaint was refused (that update is the owed notice). Raises 409."""
        notice_owed = self.valid is False and self.owner_notified_at is None
        if self.status is TicketState.closed and not notice_owed:
            raise RuleViolation("the request is closed", status=409)
        if notice_owed:
            self.owner_notified_at = now
        return ProgressUpdated(ticket_id=self.id, note=note, method=method, updated_by=staff_id)

    def sign(self, now: dt.datetime) -> None:
        """The owner supplied the later signature (补签); reminders stop. Raises 409."""
        if self.owner_signature == "signed":
            raise RuleViolation("the owner already signed this form", status=409)
        if self.owner_signature != rules.SignatureRequirement.later:
            raise RuleViolation(f"a {self.channel} request owes no owner signature", status=409)
        self.owner_signature, self.signed_at, self.next_reminder_at = "signed", now, None

    def remind_signature(self, now: dt.datetime, policy: Policy) -> None:
        """One reminder to get the owner's signature was sent; schedule the next."""
        self.reminders_sent += 1
        self.last_reminded_at = now
        self.next_reminder_at = rules.next_signature_reminder(self.received_at, now, now, policy)

    def hand_to(self, staff_id: str) -> None:
        """The next shift took it over; the first-contact owner never changes."""
        self.current_handler = staff_id

    @property
    def handled(self) -> bool:
        """Done with, for the shift handover (completed, closed or invalid)."""
        return (self.completed_at is not None or self.closed_at is not None
                or self.status in (TicketState.closed, TicketState.invalid))

