"""The lending register 借阅登记: consultations, loans, copies and exports, who may read (001 第6篇
1.2; 004 篇5 §4.2)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from shared.policy import DEFAULT_POLICY, Policy
from services.archive.rules.common import UtcDatetime, _Frozen, _require_aware, _utc, refusal
from services.archive.rules.catalogue import ArchivedRecord


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


def outstanding_loans(loans: Iterable[RegisterEntry], borrower: str | None = None) -> list[RegisterEntry]:
    """Loans not yet returned (a person's, or everyone's when `borrower` is None): staff
    leaving must return theirs first (001 第6篇 1.2.7)."""
    return sorted(
        (e for e in loans if borrower in (None, e.borrower) and e.mode == LoanMode.loan and e.returned_at is None),
        key=lambda e: (e.registered_at, e.loan_id),
    )


