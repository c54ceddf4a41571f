"""The archive's aggregates (issue 11): an estate's chain head, an archived record (with its
important-events mark, its destruction and its side chain of addenda), a lending-register
entry, and a closed ticket waiting to be sealed. Each owns its state and its moves; a
refused move raises `shared.errors.RuleViolation` (through `rules.refusal`, with a stable
`code`). Pure: no I/O, no clock reads (time is an argument). The rules they apply live
in `services/archive/rules/` (RULES §5; 001 第5篇 1.7, 第6篇; 002 §4.8).

Fields are named as the columns of `store.py`, so the repositories load and save them as
they are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.archive import rules
from shared.errors import RuleViolation
from shared.lifecycle import DestructionRequestState, require_transition
from shared.rows import Row




@dataclass
class ChainHead(Row):
    """The end of an estate's append-only chain: sequence 1, 2, 3, ... without gaps."""

    estate: str
    last_sequence: int
    last_hash: str
    updated_at: dt.datetime

    @classmethod
    def genesis(cls, estate: str, now: dt.datetime) -> "ChainHead":
        return cls(estate=estate, last_sequence=0, last_hash=rules.genesis_hash(estate), updated_at=now)

    def append(self, record_number: str, content: bytes, now: dt.datetime) -> rules.ChainRecord:
        """Link the next record after this head and move the head to it."""
        link = rules.seal_record(self.last_hash, self.last_sequence + 1, record_number, content)
        self.last_sequence, self.last_hash, self.updated_at = link.sequence, link.stored_hash, now
        return link


@dataclass
class Addendum(Row):
    """An event that arrived after its ticket was archived, appended to the record's side
    chain (never merged into the frozen form, never dropped)."""

    record_number: str
    number: int
    estate: str
    event_id: str
    event: str
    time: dt.datetime
    content: bytes
    content_hash: str
    previous_hash: str
    addendum_hash: str
    appended_at: dt.datetime

    def link(self) -> rules.AddendumLink:
        return rules.AddendumLink(number=self.number, content=self.content, content_hash=self.content_hash,
                                  previous_hash=self.previous_hash, stored_hash=self.addendum_hash)


@dataclass
class CatalogueEntry(Row):
    """A record's line in the catalogue: every column but the sealed content (listing the
    catalogue never loads the forms; reading one needs a register entry)."""

    estate: str
    sequence: int
    record_number: str
    ticket_id: str
    form_number: str
    kind: str
    title: str
    closed_at: dt.datetime
    closed_month: str
    archived_class: str
    retention_class: str
    archived_at: dt.datetime
    content_hash: str
    previous_hash: str
    record_hash: str
    destroyed: bool = False
    destroyed_at: dt.datetime | None = None
    month_part: int | None = None
    volume_number: str | None = None
    volume_item: int | None = None

    @property
    def important(self) -> bool:
        return self.retention_class == rules.RetentionClass.important_event.value


@dataclass(kw_only=True)
class Record(CatalogueEntry):
    """An archived countersign form, frozen in its estate's chain (RULES §5): its catalogue
    line and its content (None once destroyed)."""

    content: bytes | None

    @classmethod
    def sealed(cls, estate: str, ticket_id: str, form: rules.ArchivedForm, content: bytes, link: rules.ChainRecord,
               retention: rules.RetentionClass, now: dt.datetime) -> "Record":
        catalogue = rules.archived_record(form, sequence=link.sequence, record_number=link.record_number,
                                          retention_class=retention, archived_at=now, content_hash=link.content_hash)
        return cls(
            estate=estate, sequence=link.sequence, record_number=link.record_number, ticket_id=ticket_id,
            form_number=form.form_number, kind=catalogue.kind.value, title=catalogue.title, closed_at=form.closed_at,
            closed_month=catalogue.closed_month, archived_class=retention.value, retention_class=retention.value,
            archived_at=now, content=content, content_hash=link.content_hash, previous_hash=link.previous_hash,
            record_hash=link.stored_hash,
        )

    def catalogue(self) -> rules.ArchivedRecord:
        return rules.ArchivedRecord(
            estate=self.estate, sequence=self.sequence, record_number=self.record_number, ticket_id=self.ticket_id,
            form_number=self.form_number, kind=self.kind, title=self.title, closed_month=self.closed_month,
            retention_class=self.retention_class, archived_at=self.archived_at, content_hash=self.content_hash,
            destroyed=self.destroyed,
        )

    def chain_link(self) -> rules.ChainRecord:
        return rules.ChainRecord(
            sequence=self.sequence, record_number=self.record_number, content=self.content,
            content_hash=self.content_hash, previous_hash=self.previous_hash, stored_hash=self.record_hash,
            destroyed=self.destroyed,
        )

    def next_addendum(self, last: Addendum | None, envelope: dict, event_id: str, event: str, time: dt.datetime,
                      now: dt.datetime) -> Addendum:
        """The record's next addendum, linked to the last one (or to the record's hash)."""
        number, previous = (1, self.record_hash) if last is None else (last.number + 1, last.addendum_hash)
        content = rules.addendum_content(envelope)
        digest = rules.content_hash(content)
        return Addendum(record_number=self.record_number, number=number, estate=self.estate, event_id=event_id,
                        event=event, time=time, content=content, content_hash=digest, previous_hash=previous,
                        addendum_hash=rules.addendum_hash(previous, self.record_number, number, digest),
                        appended_at=now)

    def mark_important(self, reason: str, already_marked_at: dt.datetime | None, already_reason: str | None) -> str:
        """Put it in the important-events file (001 第6篇 1.1.2): the mark sits beside the
        frozen record and raises its retention class; content and hash never change.
        Returns the class it had. 409 when destroyed or already marked."""
        if not reason.strip():
            raise RuleViolation("give the reason the record is an important event", status=422)
        if self.destroyed:
            raise RuleViolation(f"record {self.record_number} was destroyed", status=409)
        if already_marked_at is not None:
            raise RuleViolation(
                f"record {self.record_number} is already in the important-events file since "
                f"{already_marked_at.isoformat()} ({already_reason})", status=409)
        previous = self.retention_class
        self.retention_class = rules.RetentionClass.important_event.value
        return previous

    def destroy(self, now: dt.datetime, approver: str, roles, approval_reference: str, policy,
                open_loans: list[rules.RegisterEntry]) -> rules.DestructionLogEntry:
        """Destroy after the retention period on the general manager's approval (001 第5篇
        1.7): the content goes, the hashes stay as a tombstone so the chain still verifies;
        the returned log entry survives the record. Refusals carry their rules code."""
        entry = rules.check_destruction(self.catalogue(), now, approver, roles, approval_reference, policy, open_loans)
        self.content, self.destroyed, self.destroyed_at = None, True, now
        return entry

    def check_integrity(self) -> None:
        """Content that no longer hashes to its content_hash is refused (409): run verify."""
        if rules.content_hash(self.content) != self.content_hash:
            raise RuleViolation(f"record {self.record_number} failed its integrity check (content hash differs): "
                                "run verify", status=409)


@dataclass
class Loan(Row):
    """A line of the lending register 借阅登记 (001 第6篇 1.2)."""

    loan_id: str
    estate: str
    record_number: str
    ticket_id: str
    borrower: str
    borrower_external: bool
    borrower_organisation: str | None
    purpose: str
    mode: str
    basis: str
    registered_at: dt.datetime
    registered_by: str
    valid_until: dt.datetime
    due_back: dt.datetime | None = None
    approved_by: str | None = None
    approval_reference: str | None = None
    returned_at: dt.datetime | None = None
    returned_to: str | None = None

    @classmethod
    def registered(cls, entry: rules.RegisterEntry, *, estate: str, ticket_id: str, by: str) -> "Loan":
        return cls(
            loan_id=entry.loan_id, estate=estate, record_number=entry.record_number, ticket_id=ticket_id,
            borrower=entry.borrower, borrower_external=entry.borrower_external,
            borrower_organisation=entry.borrower_organisation, purpose=entry.purpose, mode=entry.mode.value,
            basis=entry.basis.value, registered_at=entry.registered_at, registered_by=by,
            valid_until=entry.valid_until, due_back=entry.due_back, approved_by=entry.approved_by,
            approval_reference=entry.approval_reference,
        )

    def entry(self) -> rules.RegisterEntry:
        return rules.RegisterEntry(
            loan_id=self.loan_id, record_number=self.record_number, record_estate=self.estate, borrower=self.borrower,
            borrower_external=self.borrower_external, borrower_organisation=self.borrower_organisation,
            purpose=self.purpose, mode=self.mode, basis=self.basis, registered_at=self.registered_at,
            valid_until=self.valid_until, due_back=self.due_back, approved_by=self.approved_by,
            approval_reference=self.approval_reference, returned_at=self.returned_at,
        )

    def may_receive_return(self, staff_id: str, is_keeper: bool) -> bool:
        """The borrower, the person who registered it, or the estate's archive keepers."""
        borrower = self.borrower if not self.borrower_external else None
        return staff_id in (borrower, self.registered_by) or is_keeper

    def give_back(self, staff_id: str, is_keeper: bool, now: dt.datetime) -> None:
        """The record came back (403 for someone who may not receive it; 409 twice)."""
        if not self.may_receive_return(staff_id, is_keeper):
            raise RuleViolation(
                f"{staff_id} may not close register entry {self.loan_id}: the borrower, the person who registered "
                "it or the estate's archive keepers receive returns", status=403)
        self.returned_at = rules.return_loan(self.entry(), now).returned_at
        self.returned_to = staff_id

    def overdue(self, now: dt.datetime) -> bool:
        return bool(rules.overdue_loans([self.entry()], now))


@dataclass
class DestructionRequest(Row):
    """A destruction request 销毁申请 (RULES §5 Destruction; 001 第5篇 1.7, 第6篇 1.5): an
    archive keeper or the estate's director asks to destroy records past retention, with
    the reason; the general manager approves (then the records are destroyed) or refuses
    (with the reason). Nobody decides their own request. States: shared.lifecycle's
    DestructionRequestState."""

    request_id: str
    estate: str
    reason: str
    record_numbers: list[str]
    requested_by: str
    requested_at: dt.datetime
    status: str = DestructionRequestState.requested.value
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    refusal_reason: str | None = None

    @classmethod
    def asked(cls, request_id: str, estate: str, reason: str, record_numbers: list[str], by: str, roles,
              policy, now: dt.datetime) -> "DestructionRequest":
        """A new request; 403 for someone who keeps no archive (policy `archive.
        self_register_roles` and `approver_roles`), 422 without a reason or records."""
        keepers = set(policy.archive.self_register_roles) | set(policy.archive.approver_roles)
        if not set(roles) & keepers:
            raise rules.refusal("requester_not_authorised",
                                f"destruction is requested by the archive's keepers ({', '.join(sorted(keepers))})",
                                "销毁申请须由档案管理人员或管理处主任提出")
        if not reason.strip():
            raise rules.refusal("reason_required", "give the reason for the destruction", "请填写销毁理由")
        numbers = list(dict.fromkeys(n.strip() for n in record_numbers if n.strip()))
        if not numbers:
            raise rules.refusal("records_required", "name the records to destroy", "请选择要销毁的档案")
        return cls(request_id=request_id, estate=estate, reason=reason.strip(), record_numbers=numbers,
                   requested_by=by, requested_at=now)

    @property
    def state(self) -> DestructionRequestState:
        return DestructionRequestState(self.status)

    def _decide(self, to: DestructionRequestState, by: str, roles, policy, now: dt.datetime) -> None:
        require_transition(self.state, to, f"destruction request {self.request_id}")
        if by == self.requested_by:
            raise rules.refusal("own_destruction_request", "nobody decides their own destruction request",
                                "不得审批自己提出的销毁申请")
        if not set(roles) & set(policy.archive.destruction_approver_roles):
            raise rules.refusal("general_manager_approval_required", "destruction needs the general manager's approval",
                                "销毁须经总经理批准")
        self.status, self.decided_by, self.decided_at = to.value, by, now

    def approve(self, by: str, roles, policy, now: dt.datetime) -> None:
        """The general manager approves: 409 once decided, 403 for the requester or
        someone without a destruction approver role. The caller destroys the records."""
        self._decide(DestructionRequestState.approved, by, roles, policy, now)

    def refuse(self, by: str, roles, reason: str, policy, now: dt.datetime) -> None:
        """The general manager refuses, with the reason (422 without one)."""
        if not reason.strip():
            raise rules.refusal("reason_required", "give the reason for the refusal", "请填写不予销毁的理由")
        self._decide(DestructionRequestState.refused, by, roles, policy, now)
        self.refusal_reason = reason.strip()


@dataclass
class PendingSeal(Row):
    """A closed ticket waiting until every event before its `closed` is collected."""

    estate: str
    ticket_id: str
    closed_event_id: str
    closed_at: dt.datetime
    noted_at: dt.datetime
    next_try_at: dt.datetime
    attempts: int = 0
    barrier: int | None = None
    last_error: str | None = None

    def failed(self, error: str, retry_at: dt.datetime) -> None:
        """Not sealable yet (no intake, a dead letter...): try again at `retry_at`."""
        self.attempts += 1
        self.last_error = error[:2000]
        self.next_try_at = retry_at
