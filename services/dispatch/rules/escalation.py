"""Escalation (RULES.md §2 Escalation by subject, Escalation by authority, Economic loss):
where the ladder starts for a ticket, the rung above, when the next rung is told, and when
an owner's loss needs a nonconformity record."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from shared.errors import RuleViolation
from shared.events import Kind
from shared.policy import Policy
from services.dispatch.rules.common import DEFAULT, _aware, _elapsed, _money
from services.dispatch.rules.facts import TicketFacts


# --- escalation (RULES §2 Escalation by subject / by authority, Economic loss) ------------


def _ladder(policy: Policy) -> tuple[str, ...]:
    ladder = policy.escalation.ladder
    if not ladder:
        raise RuleViolation("policy escalation.ladder is empty", 422)
    return ladder


def first_rung(facts: TicketFacts, policy: Policy = DEFAULT) -> str:
    """Where escalation starts: a complaint about a supervisor-or-above, customer-service
    staff or company staff goes straight to the estate director (000 §五.2(2));
    everything else starts with the department head."""
    ladder = _ladder(policy)
    if facts.kind is Kind.complaint and facts.about_role in policy.escalation.subject_roles:
        rung = policy.escalation.subject_rung
        if rung not in ladder:
            raise RuleViolation(f"policy escalation.subject_rung {rung!r} is not on the ladder", 422)
        return rung
    return ladder[0]


def next_rung(current_rung: str | None, policy: Policy = DEFAULT) -> str | None:
    """The rung above `current_rung` (the first rung for None); None at the top."""
    ladder = _ladder(policy)
    if current_rung is None:
        return ladder[0]
    if current_rung not in ladder:
        raise RuleViolation(f"{current_rung!r} is not a rung of the escalation ladder {list(ladder)}", 422)
    index = ladder.index(current_rung)
    return ladder[index + 1] if index + 1 < len(ladder) else None


def next_escalation_at(escalated_at: dt.datetime, policy: Policy = DEFAULT) -> dt.datetime:
    """When the next rung is told if the breach is still unresolved."""
    return _elapsed(_aware(escalated_at, "escalated_at"), dt.timedelta(minutes=policy.escalation.minutes_per_rung), policy)


def needs_nonconformity(owner_loss_cny, policy: Policy = DEFAULT) -> bool:
    """An owner's economic loss strictly above the threshold (500 CNY) needs a
    nonconformity record approved by the management representative (004 篇3 §4.2.5)."""
    if owner_loss_cny is None:
        return False
    loss = _money(owner_loss_cny, "owner's loss")
    if loss < 0:
        raise RuleViolation(f"an owner's loss cannot be negative, got {owner_loss_cny}", 422)
    return loss > Decimal(str(policy.escalation.nonconformity_loss_cny))
