"""Paid household services (RULES §2 Paid services): the estate's catalogue, repair bills
in three copies, settled through finance only. Routes, their shapes and their handlers
(handlers in handlers.py; the catalogue and bills repository is `store.BillRepository`)."""

from __future__ import annotations

from decimal import Decimal

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from services.dispatch import handlers, rules
from services.dispatch.app import open_uow, service
from shared.auth import Principal
from shared.errors import RuleViolation
from shared.limits import Contract, Money, Quantity
from shared.service import LocalTime, known_estate, require_estate

CATALOGUE_ROLES = ("estate_director", "customer_service_supervisor", "quality_manager")
BILLING_ROLES = ("department_staff", "department_head", "customer_service", "customer_service_supervisor")


class ServiceItemIO(Contract):
    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    paid: bool
    price_cny: Money | None = Field(None, description="None for a paid item charged case by case")


class ServiceLineIn(Contract):
    code: str = Field(min_length=1, max_length=32)
    quantity: Quantity = Decimal(1)
    agreed_price_cny: Money | None = Field(None)
    agreed_by: list[str] | None = Field(
        None, description="(engineering supervisor, customer-service supervisor) who set an unpublished price"
    )


class MaterialLineIn(Contract):
    name: str = Field(min_length=1, max_length=200)
    quantity: Quantity
    unit_price_cny: Money


class BillIn(Contract):
    ticket_id: str = Field(min_length=1, max_length=64)
    services: list[ServiceLineIn] = Field(default_factory=list)
    materials: list[MaterialLineIn] = Field(default_factory=list)


class SettleIn(Contract):
    channel: str = Field(description="finance_counter or bank_collection; technicians take no cash")


class BillLineOut(BaseModel):
    kind: str
    description: str
    code: str | None
    quantity: Decimal
    unit_price_cny: Decimal
    amount_cny: Decimal
    price_agreed_by: list[str]


class BillOut(BaseModel):
    number: str
    ticket_id: str
    lines: list[BillLineOut]
    services_cny: Decimal
    materials_cny: Decimal
    total_cny: Decimal
    copies: list[str] = Field(description="owner (业户联), finance (财务联), stub (存根联): the same lines on each")
    created_by: str
    created_at: LocalTime
    settled_channel: str | None
    settled_by: str | None
    settled_at: LocalTime | None


def _bill_out(row) -> BillOut:
    bill = rules.Bill(row.number, row.ticket_id, handlers.bill_lines(row.lines))
    return BillOut(
        number=row.number, ticket_id=row.ticket_id,
        lines=[BillLineOut(kind=l.kind.value, description=l.description, code=l.code, quantity=l.quantity,
                           unit_price_cny=l.unit_price_cny, amount_cny=l.amount_cny,
                           price_agreed_by=list(l.price_agreed_by)) for l in bill.lines],
        services_cny=bill.services_cny, materials_cny=bill.materials_cny, total_cny=bill.total_cny,
        copies=[c.value for c in bill.copies], created_by=row.created_by, created_at=row.created_at,
        settled_channel=row.settled_channel, settled_by=row.settled_by, settled_at=row.settled_at,
    )


# --- routes ---------------------------------------------------------------------------------


@service.http.get("/estates/{estate}/service-items", response_model=list[ServiceItemIO], tags=["bills"])
async def list_service_items(estate: str, who: Principal = Depends(require_estate)) -> list[ServiceItemIO]:
    """The estate's household-service catalogue (free and paid items)."""
    known_estate(service, estate)
    async with open_uow() as uow:
        rows = await uow.bills.catalogue(estate)
    return [ServiceItemIO(code=r.code, name=r.name, paid=r.paid, price_cny=r.price_cny) for r in rows]


@service.http.put("/estates/{estate}/service-items", response_model=list[ServiceItemIO], tags=["bills"])
async def put_service_items(estate: str, body: list[ServiceItemIO], who: Principal = Depends(require_estate)) -> list[ServiceItemIO]:
    """Replace the estate's catalogue."""
    known_estate(service, estate)
    codes = [item.code for item in body]
    if len(set(codes)) != len(codes):
        raise RuleViolation("a service item code appears twice", status=422)
    for item in body:
        rules.ServiceItem(item.code, item.name, item.price_cny, item.paid)  # refuses a priced free item
    async with open_uow() as uow:
        await uow.bills.replace_catalogue(estate, [item.model_dump() for item in body])
    return body


@service.http.post("/estates/{estate}/bills", status_code=201, response_model=BillOut, tags=["bills"])
async def create_bill(estate: str, body: BillIn, who: Principal = Depends(require_estate)) -> BillOut:
    """A repair bill for a form: catalogue services and materials bought for the owner,
    in three copies. It is settled through finance, never in cash with the technician."""
    known_estate(service, estate)
    async with open_uow() as uow:
        number = await handlers.handle_create_bill(estate, body, who.staff_id, uow, service.context)
        return _bill_out(await uow.bills.get(estate, number))


@service.http.get("/estates/{estate}/bills", response_model=list[BillOut], tags=["bills"])
async def list_bills(estate: str, ticket_id: str | None = Query(None, max_length=64),
                     who: Principal = Depends(require_estate)) -> list[BillOut]:
    known_estate(service, estate)
    async with open_uow() as uow:
        return [_bill_out(r) for r in await uow.bills.list_for_estate(estate, ticket_id)]


@service.http.get("/estates/{estate}/bills/{number}", response_model=BillOut, tags=["bills"])
async def get_bill(estate: str, number: str, who: Principal = Depends(require_estate)) -> BillOut:
    known_estate(service, estate)
    async with open_uow() as uow:
        row = await uow.bills.get(estate, number)
    if row is None:
        raise RuleViolation(f"no bill {number!r} in estate {estate!r}", status=404)
    return _bill_out(row)


@service.http.post("/estates/{estate}/bills/{number}/settle", response_model=BillOut, tags=["bills"])
async def settle_bill(estate: str, number: str, body: SettleIn, who: Principal = Depends(require_estate)) -> BillOut:
    """Finance books and collects the bill (finance counter or bank collection)."""
    known_estate(service, estate)
    role = rules.FINANCE_ROLE if rules.FINANCE_ROLE in who.departments else (sorted(who.roles)[0] if who.roles else "none")
    async with open_uow() as uow:
        await handlers.handle_settle_bill(estate, number, body.channel, who.staff_id, role, uow, service.context)
        return _bill_out(await uow.bills.get(estate, number))


service.write_roles |= {
    ("PUT", "/estates/{estate}/service-items"): CATALOGUE_ROLES,
    ("POST", "/estates/{estate}/bills"): BILLING_ROLES,
    ("POST", "/estates/{estate}/bills/{number}/settle"): ("department_staff", "department_head"),
}
