"""What the dispatch rules know about a ticket (`TicketFacts`), as plain data taken from
intake's `accepted` event: kind, category, repair class, urgency, who accepted it, the
agreed reply and appointment, the complaint's subject and the owner's loss. Routing, the
clocks and escalation decide from it (RULES.md §1 Kinds, Agreed reply; §2)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from shared.errors import RuleViolation
from shared.events import (
    Accepted,
    AcceptedBy,
    Kind,
    RepairClass,
    ReplyMethod,
    Severity,
    Urgency,
)


# --- ticket facts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketFacts:
    """What the rules need to know about a ticket, as plain data."""

    kind: Kind
    category: str = "general"
    repair_class: RepairClass | None = None
    severity: Severity = Severity.not_serious
    urgency: Urgency = Urgency.not_urgent
    accepted_by: AcceptedBy = AcceptedBy.department
    building: str | None = None
    location: str | None = None
    reply_method: ReplyMethod = ReplyMethod.phone
    reply_agreed_by: dt.datetime | None = None
    appointment_at: dt.datetime | None = None
    about_role: str | None = None
    owner_loss_cny: Decimal | float | int | None = None

    def __post_init__(self) -> None:
        # Accept the enums' string values (as stored in JSON) and compare by identity later.
        coerce = {
            "kind": Kind, "repair_class": RepairClass, "severity": Severity, "urgency": Urgency,
            "accepted_by": AcceptedBy, "reply_method": ReplyMethod,
        }
        for name, enum in coerce.items():
            value = getattr(self, name)
            if value is not None:
                try:
                    object.__setattr__(self, name, enum(value))
                except ValueError:
                    raise RuleViolation(f"unknown {name.replace('_', ' ')} {value!r}", 422) from None

    @classmethod
    def from_accepted(cls, accepted: Accepted) -> "TicketFacts":
        return cls(
            kind=accepted.kind,
            category=accepted.category,
            repair_class=accepted.repair_class,
            severity=accepted.severity,
            urgency=accepted.urgency,
            accepted_by=accepted.accepted_by,
            building=accepted.building,
            location=accepted.location,
            reply_method=accepted.reply_method,
            reply_agreed_by=accepted.reply_agreed_by,
            appointment_at=accepted.appointment_at,
            about_role=accepted.about_role,
            owner_loss_cny=accepted.owner_loss_cny,
        )
