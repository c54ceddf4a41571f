"""Paid household services (RULES.md §2 Paid services): the catalogue's free and paid items,
bill lines for services and materials bought for the owner, the bill in three copies and
its settlement, through finance only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from shared.errors import RuleViolation
from shared.limits import MONEY_MAX
from services.dispatch.rules.common import _aware, _money, _required


# --- paid household services (RULES §2 Paid services) -----------------------------------------

CENT = Decimal("0.01")
FINANCE_ROLE = "finance"


@dataclass(frozen=True)
class ServiceItem:
    """A line of the estate's household-service catalogue (free or paid). A paid item
    without a published price is charged case by case."""

    code: str
    name: str
    price_cny: Decimal | None
    paid: bool

    def __post_init__(self) -> None:
        if self.price_cny is not None:
            price = _money(self.price_cny, f"price of {self.name}")
            if price < 0:
                raise RuleViolation(f"price of {self.name} cannot be negative", 422)
            object.__setattr__(self, "price_cny", price)
        if not self.paid and self.price_cny not in (None, Decimal(0)):
            raise RuleViolation(f"{self.name} is a free service and cannot carry a price", 422)


class LineKind(StrEnum):
    service = "service"
    material = "material"  # bought on the owner's behalf (代购材料)


@dataclass(frozen=True)
class BillLine:
    kind: LineKind
    description: str
    quantity: Decimal
    unit_price_cny: Decimal
    code: str | None = None
    price_agreed_by: tuple[str, ...] = ()

    @property
    def amount_cny(self) -> Decimal:
        return (self.quantity * self.unit_price_cny).quantize(CENT)


def _quantity(value) -> Decimal:
    quantity = _money(value, "quantity")
    if quantity <= 0:
        raise RuleViolation(f"a bill line needs a positive quantity, got {value}", 422)
    return quantity


def service_line(
    item: ServiceItem,
    quantity=1,
    *,
    agreed_price_cny=None,
    agreed_by: tuple[str, str] | None = None,
) -> BillLine:
    """A catalogue service on the bill. Free items cost nothing; published prices are
    not negotiable; an unpriced paid item needs a price set together by the engineering
    supervisor and the customer-service supervisor (004 篇2 二.五.3), `agreed_by` =
    (engineering supervisor, customer-service supervisor)."""
    qty = _quantity(quantity)
    if not item.paid:
        if agreed_price_cny is not None:
            raise RuleViolation(f"{item.name} is a free service; it cannot be charged", 422)
        return BillLine(LineKind.service, item.name, qty, Decimal(0), item.code)
    if item.price_cny is not None:
        if agreed_price_cny is not None and _money(agreed_price_cny, "agreed price") != item.price_cny:
            raise RuleViolation(f"{item.name} has a published price of {item.price_cny} CNY", 422)
        return BillLine(LineKind.service, item.name, qty, item.price_cny, item.code)
    if agreed_price_cny is None:
        raise RuleViolation(
            f"{item.name} has no published price; the engineering and customer-service supervisors must set it", 422
        )
    people = tuple(p.strip() for p in (agreed_by or ()) if p and p.strip())
    if len(people) != 2 or people[0] == people[1]:
        raise RuleViolation(
            f"the price of {item.name} must be set by both the engineering and the customer-service supervisor", 422
        )
    price = _money(agreed_price_cny, "agreed price")
    if price < 0:
        raise RuleViolation(f"the agreed price of {item.name} cannot be negative", 422)
    return BillLine(LineKind.service, item.name, qty, price, item.code, people)


def material_line(name: str, quantity, unit_price_cny) -> BillLine:
    price = _money(unit_price_cny, f"price of {name}")
    if price < 0:
        raise RuleViolation(f"the price of material {name} cannot be negative", 422)
    return BillLine(LineKind.material, _required(name, "the material's name"), _quantity(quantity), price)


class BillCopy(StrEnum):
    owner = "owner"  # 业户联: handed to the owner
    finance = "finance"  # 财务联: to the finance clerk, who books and collects
    stub = "stub"  # 存根联: numbered and bound in the archive


class SettlementChannel(StrEnum):
    finance_counter = "finance_counter"
    bank_collection = "bank_collection"  # 委托银行代收 / one-card payment
    technician_cash = "technician_cash"  # never allowed: technicians take no cash


@dataclass(frozen=True)
class Settlement:
    channel: SettlementChannel
    received_by: str
    settled_at: dt.datetime


@dataclass(frozen=True)
class Bill:
    """A repair bill in three copies (owner, finance, stub), all with the same lines."""

    number: str
    ticket_id: str
    lines: tuple[BillLine, ...]
    copies: tuple[BillCopy, ...] = (BillCopy.owner, BillCopy.finance, BillCopy.stub)
    settlement: Settlement | None = None

    @property
    def total_cny(self) -> Decimal:
        return sum((line.amount_cny for line in self.lines), Decimal(0)).quantize(CENT)

    @property
    def services_cny(self) -> Decimal:
        return sum((l.amount_cny for l in self.lines if l.kind is LineKind.service), Decimal(0)).quantize(CENT)

    @property
    def materials_cny(self) -> Decimal:
        return sum((l.amount_cny for l in self.lines if l.kind is LineKind.material), Decimal(0)).quantize(CENT)


def make_bill(number: str, ticket_id: str, lines: Sequence[BillLine]) -> Bill:
    if not lines:
        raise RuleViolation("a bill needs at least one line", 422)
    total = sum((line.amount_cny for line in lines), Decimal(0))
    if total > MONEY_MAX:
        raise RuleViolation(f"a bill of {total} CNY exceeds the largest amount recorded, {MONEY_MAX} CNY", 422)
    return Bill(_required(number, "the bill number"), _required(ticket_id, "the ticket"), tuple(lines))


def settle_bill(
    bill: Bill, channel: SettlementChannel | str, received_by: str, received_by_role: str, settled_at: dt.datetime
) -> Bill:
    """Settlement goes through finance only: technicians never take cash (004 篇2 二.二.3)."""
    try:
        channel = SettlementChannel(channel)
    except ValueError:
        raise RuleViolation(f"unknown settlement channel {channel!r}", 422) from None
    if bill.settlement is not None:
        raise RuleViolation(f"bill {bill.number} is already settled", 409)
    if channel is SettlementChannel.technician_cash:
        raise RuleViolation("technicians take no cash: the bill is settled through finance", 422)
    if received_by_role != FINANCE_ROLE:
        raise RuleViolation(f"only finance settles a bill, not a {received_by_role}", 403)
    return replace(bill, settlement=Settlement(channel, _required(received_by, "who received"), _aware(settled_at, "settled_at")))
