"""The registration's input contract: a request as the first employee (or another
service's decision) hands it to intake. Field limits from shared.limits; categories in
their one canonical form (shared.periods)."""

from __future__ import annotations

from pydantic import Field, field_validator

from shared import limits
from shared.events import AcceptedBy, Channel, Kind, RepairClass, ReplyMethod, Severity, Urgency
from shared.limits import Category, Contract, Identifier, Instant, Money, UnitPart, text
from shared.periods import canonical_category


class RequestIn(Contract):
    """A request as the first employee registers it."""

    kind: Kind
    channel: Channel
    description: text(limits.DESCRIPTION_MAX)
    category: Category = "general"
    repair_class: RepairClass | None = None
    severity: Severity = Severity.not_serious
    urgency: Urgency = Urgency.not_urgent
    accepted_by: AcceptedBy = AcceptedBy.department
    building: UnitPart | None = None
    unit: str | None = Field(None, max_length=limits.UNIT_CODE_MAX, description="building-entrance-room, e.g. 1-2-301")
    location: str | None = Field(None, max_length=limits.SHORT_TEXT_MAX)
    reply_method: ReplyMethod = ReplyMethod.phone
    reply_agreed_by: Instant | None = Field(None, description="The reply time agreed with the owner at intake")
    appointment_at: Instant | None = None
    anonymous: bool = False
    owner_id: Identifier | None = None
    about_role: str | None = Field(None, max_length=limits.CODE_MAX, description="A complaint about staff: "
                                   "supervisor_or_above, customer_service_staff or company_staff")
    owner_loss_cny: Money | None = None
    client_request_id: str | None = Field(
        None, min_length=1, max_length=limits.CLIENT_ID_MAX,
        description="Caller's id for this submission; a repeat returns the first ticket.",
    )
    occurred_at: Instant | None = Field(None, description="When it happened")
    cause: str | None = Field(None, max_length=limits.TEXT_MAX)
    people: list[str] = Field(default_factory=list, max_length=50, description="People involved")
    attachments: list[str] = Field(default_factory=list, max_length=50,
                                   description="Attachments by reference (document ids or URLs)")
    owner_signed: bool = Field(False, description="The owner signed the form at intake (required for walk-ins)")

    @field_validator("people", "attachments")
    @classmethod
    def _short_items(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip() or len(value) > limits.SHORT_TEXT_MAX:
                raise ValueError(f"each entry must be 1–{limits.SHORT_TEXT_MAX} characters")
        return values

    @field_validator("category")
    @classmethod
    def _canonical_category(cls, value: str) -> str:
        # Every service compares categories in this one form (shared.periods).
        canonical = canonical_category(value)
        if not canonical:
            raise ValueError("a category needs a visible character")
        return canonical
