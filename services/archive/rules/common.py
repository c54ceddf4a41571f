"""Shared pieces of the archive rules: refusals with stable codes, UTC times, frozen models, and
the privacy filter for free text (001 第11篇 §3, 004 篇5 §4.2)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from shared.errors import RuleViolation


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
    "own_destruction_request": 403,
    "requester_not_authorised": 403,
    "not_closed": 409,
    "record_destroyed": 409,
    "already_returned": 409,
    "already_destroyed": 409,
    "retention_not_expired": 409,
    "on_loan": 409,
    "already_requested": 409,
    "period_not_over": 409,
    "unknown_mode": 422,
    "purpose_required": 422,
    "reason_required": 422,
    "records_required": 422,
}


def refusal(code: str, reason: str, zh: str | None = None) -> RuleViolation:
    """A request the archive rules refuse: `reason` for the person who asked (`zh` the
    same in Chinese), `code` a stable slug for API clients; the status follows the code
    (REFUSAL_STATUS)."""
    return RuleViolation(reason, status=REFUSAL_STATUS.get(code, 409), zh=zh, code=code)


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


