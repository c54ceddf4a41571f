"""Destruction 销毁 after the retention period, on the general manager's approval (001 第5篇 1.7)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from shared.policy import DEFAULT_POLICY, Policy
from services.archive.rules.common import UtcDatetime, _Frozen, _require_aware, refusal
from services.archive.rules.retention import RetentionClass, retention_expires
from services.archive.rules.catalogue import ArchivedRecord
from services.archive.rules.lending import LoanMode, RegisterEntry


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


def check_destructible(
    record: ArchivedRecord,
    now: dt.datetime,
    policy: Policy = DEFAULT_POLICY,
    open_loans: Iterable[RegisterEntry] = (),
) -> dt.datetime:
    """When the record's retention expired, or RuleViolation 409 (with `zh`): already
    destroyed, retention not expired, out on loan. Checked when a destruction request
    names the record and again when the general manager approves it."""
    _require_aware(now, "now")
    number = record.record_number
    if record.destroyed:
        raise refusal("already_destroyed", f"record {number} was already destroyed", f"档案 {number} 已经销毁")
    expires = retention_expires(record.archived_at, record.retention_class, policy)
    if now < expires:
        raise refusal(
            "retention_not_expired",
            f"record {number} ({record.retention_class.value}) is kept until "
            f"{expires.isoformat()}; it cannot be destroyed before",
            f"档案 {number} 保管期至 {expires.date().isoformat()},期满前不得销毁",
        )
    out = [e.loan_id for e in open_loans if e.record_number == number and e.returned_at is None and e.mode == LoanMode.loan]
    if out:
        raise refusal("on_loan", f"record {number} is out on loan ({', '.join(sorted(out))})",
                      f"档案 {number} 正在外借,归还后方可销毁")
    return expires


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
    with the general manager's approval (policy `archive.destruction_approver_roles`) and
    its reference (the destruction request's id), never while out on loan."""
    expires = check_destructible(record, now, policy, open_loans)
    if not set(approved_by_roles) & set(policy.archive.destruction_approver_roles):
        raise refusal("general_manager_approval_required", "destruction needs the general manager's approval",
                      "销毁须经总经理批准")
    reference = (approval_reference or "").strip()
    if not reference:
        raise refusal("approval_reference_required", "give the reference of the general manager's approval",
                      "请填写总经理批准的编号")
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
