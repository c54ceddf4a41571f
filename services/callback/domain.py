"""The callback service's aggregates (issue 11): what callback knows of a ticket, a
completed round, one scheduled callback 回访 and a recurrence watch, each owning its state
and its transitions. Pure: no I/O, no clock reads (every time is an argument).

States are `shared.lifecycle`'s (TicketState, CallbackState) and every move is checked
there; a refused move raises `shared.errors.RuleViolation` (409). The rules the moves
apply (what a completion leads to, what the owner's answers mean) stay in `rules.py`.
Fields are named as the columns of `store.py` so the repositories load and save them
as they are. Sources: RULES §3 (callback, not satisfied, no callback path), 002 §4.4.2.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from services.callback import rules
from services.callback.rules import CallbackAnswers, CallbackPurpose, Outcome
from shared.errors import RuleViolation
from shared.events import Accepted, AttitudeComplaintRaised, Completed, ReplyMethod
from shared.lifecycle import CallbackState, TicketState, require_transition
from shared.policy import Policy
from shared.rows import Row


def _value(item):
    """Plain strings for storage (enums arrive as StrEnum members)."""
    return getattr(item, "value", item)


@dataclass
class Ticket(Row):
    """The part of a ticket's life callback sees, assembled from accepted, validity_judged,
    assigned and completed in whatever order they arrive (a later fact fills what an
    earlier one left empty; it never overwrites a kind or category already known)."""

    ticket_id: str
    estate: str
    raised_at: dt.datetime
    updated_at: dt.datetime
    status: TicketState = TicketState.in_handling
    current_round: int = 1
    departments: list[str] = field(default_factory=list)
    form_number: str | None = None
    kind: str | None = None
    category: str | None = None
    category_key: str | None = None
    channel: str | None = None
    repair_class: str | None = None
    reply_method: str | None = None
    first_contact: str | None = None
    owner_id: str | None = None
    unit: str | None = None
    appointment_at: dt.datetime | None = None
    accepted_seen: bool = False
    valid: bool | None = None
    validity_reason: str | None = None
    first_assigned_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    closed_round: int | None = None
    closed_reason: str | None = None
    closed_satisfied: bool | None = None
    progress_weeks_missed: int = 0

    def __post_init__(self):
        self.status = TicketState(self.status)
        self.departments = list(self.departments or [])

    @classmethod
    def first_news(cls, ticket_id: str, estate: str, seen_at: dt.datetime, now: dt.datetime) -> "Ticket":
        """A ticket callback has just heard of: raised (for now) when the event says."""
        return cls(ticket_id=ticket_id, estate=estate, raised_at=seen_at, updated_at=now)

    @property
    def closed(self) -> bool:
        return self.status is TicketState.closed

    def _move(self, to: TicketState, now: dt.datetime) -> None:
        if self.status is not to:
            require_transition(self.status, to, f"ticket {self.ticket_id}")
            self.status = to
        self.updated_at = now

    def learn_accepted(self, accepted: Accepted, category_key: str, now: dt.datetime) -> None:
        self.form_number = accepted.form_number
        self.channel = _value(accepted.channel)
        self.owner_id = accepted.owner_id
        self.unit = accepted.unit
        self.appointment_at = accepted.appointment_at
        self.raised_at = accepted.received_at
        self.accepted_seen = True
        # Facts from a `completed` that arrived first are kept.
        self.kind = self.kind or _value(accepted.kind)
        self.category = self.category or accepted.category
        self.category_key = self.category_key or category_key
        self.repair_class = self.repair_class or _value(accepted.repair_class)
        self.reply_method = self.reply_method or _value(accepted.reply_method)
        self.first_contact = self.first_contact or accepted.first_contact
        self.updated_at = now

    def learn_validity(self, valid: bool, reason: str, now: dt.datetime) -> None:
        self.valid, self.validity_reason, self.updated_at = valid, reason, now

    def learn_assigned(self, departments: list[str], at: dt.datetime, now: dt.datetime) -> None:
        self.departments = sorted(set(self.departments) | set(departments))
        self.first_assigned_at = self.first_assigned_at or at
        self.updated_at = now

    def learn_completed(self, completed: Completed, category_key: str, now: dt.datetime) -> None:
        self.kind = self.kind or _value(completed.kind)
        self.category = self.category or completed.category
        self.category_key = self.category_key or category_key
        # The completion's repair class is the more precise one (the work is done).
        self.repair_class = _value(completed.repair_class) or self.repair_class
        self.reply_method = self.reply_method or _value(completed.reply_method)
        self.first_contact = self.first_contact or completed.first_contact
        self.departments = sorted(set(self.departments) | set(completed.departments))
        self.current_round = max(self.current_round, completed.round)
        self.updated_at = now

    def opinion_facts(self) -> tuple | None:
        """What the recurrence rule reads of this ticket as a later opinion (RULES §3 No
        callback path; `Tickets.opinions`): estate, category, departments, when raised and
        kind; None while it is no opinion yet (no category or no department known)."""
        if not self.category_key or not self.departments:
            return None
        return (self.estate, self.category_key, self.category, tuple(self.departments), self.raised_at, self.kind)

    def round_already_judged(self, round_: int) -> bool:
        """A late copy of a `completed` for a round the ticket was closed in (or before)."""
        return self.closed and (self.closed_round or 0) >= round_

    def await_callback(self, now: dt.datetime) -> None:
        self._move(TicketState.awaiting_callback, now)

    def await_verdict(self, now: dt.datetime) -> None:
        self._move(TicketState.awaiting_verdict, now)

    def close(self, round_: int, reason: str, satisfied: bool | None, now: dt.datetime) -> None:
        """Satisfied, judged by the recurrence rule, or closed without a judgement."""
        if self.closed:
            raise RuleViolation(f"ticket {self.ticket_id} is already closed", status=409, zh="该报事已关闭")
        self._move(TicketState.closed, now)
        self.closed_at, self.closed_round, self.closed_reason, self.closed_satisfied = now, round_, reason, satisfied

    def reopen(self, round_: int, now: dt.datetime) -> None:
        """Not satisfied: the form goes round again (RULES §3 Not satisfied)."""
        self._move(TicketState.in_handling, now)
        self.current_round = round_

    def count_missed_progress_week(self, now: dt.datetime) -> None:
        self.progress_weeks_missed += 1
        self.updated_at = now

    def repair_class_enum(self):
        return rules.RepairClass(self.repair_class) if self.repair_class else None


@dataclass
class Round(Row):
    """One completed round; its outcome is what its callback (or the recurrence rule) decided."""

    ticket_id: str
    round: int
    estate: str
    kind: str
    category: str
    departments: list[str]
    reply_method: str
    completed_at: dt.datetime
    completed_event_id: str
    outcome: str | None = None
    outcome_reason: str | None = None
    outcome_at: dt.datetime | None = None
    outcome_by: str | None = None

    def settle(self, outcome: str, reason: str, at: dt.datetime, by: str) -> bool:
        """Record the round's outcome once; False when it was already settled."""
        if self.outcome is not None:
            return False
        self.outcome, self.outcome_reason, self.outcome_at, self.outcome_by = outcome, reason, at, by
        return True

    def facts(self, repair_class, complaint_valid: bool | None) -> rules.CompletionFacts:
        return rules.CompletionFacts(
            ticket_id=self.ticket_id, kind=rules.Kind(self.kind), completed_at=self.completed_at, round=self.round,
            repair_class=repair_class, reply_method=ReplyMethod(self.reply_method), complaint_valid=complaint_valid,
        )


@dataclass
class Callback(Row):
    """One planned callback 回访 and, once made, its record (002 §4.4.2 d): pending until
    made (done) or no longer owed (cancelled); reported overdue once past its due time."""

    callback_id: str
    ticket_id: str
    estate: str
    round: int
    rule: str
    purpose: str
    kind: str
    category: str
    departments: list[str]
    method: str
    counts_in_rate: bool
    due_at: dt.datetime
    scheduled_at: dt.datetime
    status: CallbackState = CallbackState.pending
    completed_at: dt.datetime | None = None
    provisional: bool = False
    assigned_to: str | None = None
    overdue_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None
    cancel_reason: str | None = None
    done_at: dt.datetime | None = None
    done_by: str | None = None
    record_method: str | None = None
    handled_in_time: bool | None = None
    result_satisfied: bool | None = None
    attitude_satisfied: bool | None = None
    suggestions: str | None = None
    owner_confirmed: bool | None = None
    on_time: bool | None = None
    submission_key: str | None = None
    outcome: str | None = None
    outcome_round: int | None = None
    outcome_reason: str | None = None
    attitude_complaint: bool = False

    def __post_init__(self):
        self.status = CallbackState(self.status)
        self.departments = list(self.departments or [])

    @classmethod
    def plan(cls, planned: rules.PlannedCallback, *, estate: str, kind: str, category: str, departments: list[str],
             completed_at: dt.datetime | None, assignee: str | None, now: dt.datetime) -> "Callback":
        return cls(
            callback_id=planned.callback_id, ticket_id=planned.ticket_id, estate=estate, round=planned.round,
            rule=_value(planned.rule), purpose=_value(planned.purpose), kind=kind, category=category,
            departments=list(departments), method=_value(planned.method),
            counts_in_rate=rules.counts_in_rate(planned.purpose), completed_at=completed_at, due_at=planned.due_at,
            provisional=planned.provisional, assigned_to=assignee, scheduled_at=now,
        )

    @property
    def pending(self) -> bool:
        return self.status is CallbackState.pending

    def answerable_online(self) -> bool:
        """What the owner may answer on the owners' page: a pending satisfaction callback
        the owner chose to get online (issue 15)."""
        return (self.pending and self.purpose == CallbackPurpose.satisfaction.value
                and self.method == ReplyMethod.online.value)

    def cancel(self, reason: str, now: dt.datetime) -> None:
        require_transition(self.status, CallbackState.cancelled, f"callback {self.callback_id}")
        self.status, self.cancelled_at, self.cancel_reason = CallbackState.cancelled, now, reason

    def report_overdue(self, now: dt.datetime) -> bool:
        """Mark it overdue once; False when it is not (or was already reported)."""
        if not self.pending or self.overdue_at is not None or not now > self.due_at:
            return False
        self.overdue_at = now
        return True

    def recorded_answers(self) -> CallbackAnswers | None:
        if self.status is not CallbackState.done:
            return None
        return CallbackAnswers(
            handled_in_time=self.handled_in_time, result_satisfied=self.result_satisfied,
            attitude_satisfied=self.attitude_satisfied, suggestions=self.suggestions or "",
            owner_confirmed=self.owner_confirmed, method=ReplyMethod(self.record_method),
        )

    def record(self, answers: CallbackAnswers, ticket: Ticket, *, actor: str, now: dt.datetime, policy: Policy,
               answered_by_owner: bool = False) -> Outcome | None:
        """Record the owner's answers (RULES §3 Questions, Not satisfied): done, on time or
        not, and what they mean for the ticket (None when they only inform). A cancelled
        callback is refused (409); a done one is the caller's `check_resubmission` case."""
        rules.check_call_method(answers.method)
        rules.check_recordable(self.status.value, self.cancel_reason)
        require_transition(self.status, CallbackState.done, f"callback {self.callback_id}")
        outcome = rules.record_outcome(
            CallbackPurpose(self.purpose), ReplyMethod(self.method), answers, self.round,
            current_round=ticket.current_round, ticket_closed=ticket.closed, policy=policy,
            answered_by_owner=answered_by_owner,
        )
        self.status, self.done_at, self.done_by, self.record_method = CallbackState.done, now, actor, answers.method.value
        self.handled_in_time, self.result_satisfied = answers.handled_in_time, answers.result_satisfied
        self.attitude_satisfied, self.suggestions = answers.attitude_satisfied, answers.suggestions
        self.owner_confirmed, self.on_time = answers.owner_confirmed, now <= self.due_at
        self.submission_key = rules.callback_submission_key(self.ticket_id, self.callback_id, self.round)
        if outcome:
            self.outcome, self.outcome_round, self.outcome_reason = outcome.event, outcome.round, outcome.reason
            self.attitude_complaint = outcome.open_attitude_complaint
        return outcome

    def attitude_client_request_id(self) -> str:
        """The one idempotency key of the attitude complaint this record raised (intake)."""
        return f"attitude-{self.callback_id}"

    def attitude_complaint_raised(self, ticket: Ticket, *, answered_by_owner: bool) -> AttitudeComplaintRaised:
        """The attitude complaint this record raised (`attitude_complaint` set by `record`)."""
        return AttitudeComplaintRaised(
            ticket_id=self.ticket_id, callback_id=self.callback_id, round=self.round, form_number=ticket.form_number,
            unit=ticket.unit, owner_id=ticket.owner_id, reply_method=ReplyMethod(self.method),
            answered_by=ReplyMethod(self.record_method), answered_by_owner=answered_by_owner,
            recorded_by=self.done_by, first_contact=ticket.first_contact, departments=list(self.departments),
            suggestions=self.suggestions or "", client_request_id=self.attitude_client_request_id())


@dataclass
class Watch(Row):
    """RULES §3 No callback path: an opinion waiting for the recurrence rule's verdict."""

    ticket_id: str
    round: int
    estate: str
    category: str
    category_key: str
    departments: list[str]
    kind: str
    completed_at: dt.datetime
    window_ends_at: dt.datetime
    verdict: str | None = None
    decided_at: dt.datetime | None = None
    recurring_ticket_id: str | None = None

    def decide(self, verdict: str, now: dt.datetime, recurring_ticket_id: str | None) -> None:
        if self.verdict is not None:
            raise RuleViolation(f"the recurrence of {self.ticket_id} round {self.round} is already decided")
        self.verdict, self.decided_at, self.recurring_ticket_id = verdict, now, recurring_ticket_id

    def answered_by_owner(self, now: dt.datetime) -> None:
        """The owner's own answers judged the round: nothing is left to judge."""
        if self.verdict is None:
            self.verdict, self.decided_at = "answered", now

    def first_opinions(self) -> list[rules.OpinionFact]:
        return [
            rules.OpinionFact(ticket_id=self.ticket_id, category=self.category, department=department,
                              estate=self.estate, completed_at=self.completed_at, kind=rules.Kind(self.kind))
            for department in (self.departments or [""])
        ]
