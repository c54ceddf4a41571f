"""Routing (RULES.md §2 Departments): which departments a form goes to, from the estate's
routing table or the defaults, and which of them the estate actually has."""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.errors import RuleViolation
from shared.events import Kind
from services.dispatch.rules.facts import TicketFacts


# --- routing (RULES §2 Departments) -----------------------------------------------------------


@dataclass(frozen=True)
class RoutingRule:
    """One line of an estate's routing table.

    `kind` None matches every kind. `category` and `location` are case-insensitive
    shell-style patterns (`*`, `?`), several alternatives separated by `|`; None matches
    anything. `location` is tried against the ticket's location and its building. Among
    matching rules the highest `priority` wins, then the more specific rule (more
    patterns set), then the earlier line.
    """

    kind: Kind | None
    category: str | None
    location: str | None
    departments: tuple[str, ...]
    priority: int = 0

    def __post_init__(self) -> None:
        if not self.departments:
            raise RuleViolation("a routing rule must name at least one department", 422)
        object.__setattr__(self, "departments", tuple(self.departments))
        if self.kind is not None:
            object.__setattr__(self, "kind", Kind(self.kind))

    @property
    def specificity(self) -> int:
        return sum(p is not None for p in (self.kind, self.category, self.location))

    def matches(self, facts: TicketFacts) -> bool:
        if self.kind is not None and self.kind != facts.kind:
            return False
        if not _pattern_matches(self.category, facts.category):
            return False
        if self.location is not None:
            places = [p for p in (facts.location, facts.building) if p]
            if not any(_pattern_matches(self.location, place) for place in places):
                return False
        return True

    def to_data(self) -> dict:
        return {
            "kind": self.kind.value if self.kind else None,
            "category": self.category,
            "location": self.location,
            "departments": list(self.departments),
            "priority": self.priority,
        }

    @classmethod
    def from_data(cls, data: dict) -> "RoutingRule":
        try:
            return cls(
                kind=Kind(data["kind"]) if data.get("kind") else None,
                category=data.get("category"),
                location=data.get("location"),
                departments=tuple(data["departments"]),
                priority=int(data.get("priority", 0)),
            )
        except (KeyError, ValueError) as exc:
            raise RuleViolation(f"bad routing rule {data!r}: {exc}", 422) from None


@functools.lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern | None:
    """`pattern`'s alternatives (`|`-separated shell-style patterns, case-insensitive) as one
    compiled expression, made once per pattern (every routed form asks every rule); None
    when it has no alternative (matches nothing)."""
    alternatives = [alternative.strip().casefold() for alternative in pattern.split("|") if alternative.strip()]
    if not alternatives:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(alternative)})" for alternative in alternatives))


def _pattern_matches(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    if not value:
        return False
    regex = _pattern_regex(pattern)
    return regex is not None and regex.match(value.casefold()) is not None


def routing_rules_from_data(rows: Iterable[dict]) -> tuple[RoutingRule, ...]:
    return tuple(RoutingRule.from_data(row) for row in rows)


_SECURITY = "*noise*|*security*|*theft*|*stolen*|*intrud*|*stranger*|*parking*|*fire*|*噪音*|*噪声*|*安全*|*治安*|*盗*|*停车*|*消防*"
_CLEANING = "*clean*|*garbage*|*rubbish*|*trash*|*hygiene*|*sanitation*|*pest*|*保洁*|*清洁*|*垃圾*|*卫生*"
_GREENING = "*greening*|*garden*|*tree*|*lawn*|*plant*|*绿化*|*花木*|*草坪*"
_FEES = "*fee*|*fees*|*bill*|*charge*|*payment*|*invoice*|*收费*|*物业费*|*缴费*|*发票*"
_FACILITIES = "*repair*|*maintenance*|*facility*|*elevator*|*lift*|*water*|*power*|*electric*|*维修*|*设施*|*电梯*"

# Sensible defaults for a property company (003 流程图: engineering, cleaning, security,
# finance, customer service; 000 §五 plus greening). Each estate may replace them.
DEFAULT_ROUTING_RULES: tuple[RoutingRule, ...] = (
    # Inquiries and praise are answered and recorded by customer service itself.
    RoutingRule(Kind.inquiry, None, None, ("customer_service",), 30),
    RoutingRule(Kind.praise, None, None, ("customer_service",), 30),
    # Subject matter decides for every other kind.
    RoutingRule(None, _SECURITY, None, ("security",), 20),
    RoutingRule(None, _CLEANING, None, ("cleaning",), 20),
    RoutingRule(None, _GREENING, None, ("greening",), 20),
    RoutingRule(None, _FEES, None, ("finance",), 20),
    RoutingRule(Kind.complaint, _FACILITIES, None, ("engineering",), 20),
    # A repair without a more specific subject goes to engineering.
    RoutingRule(Kind.repair, None, None, ("engineering",), 10),
    RoutingRule(Kind.special_service, None, None, ("engineering",), 5),
)
DEFAULT_DEPARTMENTS: tuple[str, ...] = ("customer_service",)


def route(
    facts: TicketFacts,
    rules: Sequence[RoutingRule] = DEFAULT_ROUTING_RULES,
    default_departments: Sequence[str] = DEFAULT_DEPARTMENTS,
) -> list[str]:
    """The departments a form goes to: the best matching rule's, else the default."""
    best: RoutingRule | None = None
    for rule in rules:
        if rule.matches(facts) and (
            best is None or (rule.priority, rule.specificity) > (best.priority, best.specificity)
        ):
            best = rule
    departments = list(dict.fromkeys(best.departments if best else default_departments))
    if not departments:
        raise RuleViolation("no routing rule matched and the estate has no default department", 422)
    return departments


def departments_in_estate(routed: Sequence[str], estate_departments: Sequence[str]) -> list[str]:
    """The routed departments the estate actually has. An estate that lists no
    departments takes the routing as it is; when none of the routed ones exists there,
    the form goes to customer service (or the estate's first department), which hands it
    on — a form is never left with nobody."""
    routed = list(dict.fromkeys(routed))
    if not estate_departments:
        return routed
    present = [d for d in routed if d in estate_departments]
    if present:
        return present
    fallback = "customer_service" if "customer_service" in estate_departments else estate_departments[0]
    return [fallback]
