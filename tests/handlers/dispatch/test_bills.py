"""Paid household services' handlers over fake repositories (RULES §2 Paid services):
a bill for a routed form from the estate's catalogue, numbered per estate and year, and
settled once, through finance only."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.dispatch import handlers
from services.dispatch.bills import BillIn
from services.dispatch.handlers import handle_create_bill, handle_settle_bill
from shared.errors import RuleViolation
from tests.handlers.conftest import ESTATE
from tests.handlers.dispatch.conftest import accepted, event


def refused(status: int):
    return pytest.raises(RuleViolation, check=lambda error: error.status == status)


@pytest.fixture
async def catalogue(uow, ctx, clock):
    await handlers.handle_accepted(event(accepted(clock), clock, "intake"), uow, ctx)
    await uow.bills.replace_catalogue(ESTATE, [dict(code="pipe", name="换水管", paid=True, price_cny=Decimal("80.00")),
                                               dict(code="look", name="查看", paid=False, price_cny=None)])


async def test_a_bill_is_numbered_per_estate_and_year_and_settled_once_by_finance(uow, ctx, catalogue, clock):
    body = BillIn(ticket_id="T1", services=[{"code": "pipe", "quantity": 2}],
                  materials=[{"name": "阀门", "quantity": 1, "unit_price_cny": "12.50"}])
    first = await handle_create_bill(ESTATE, body, "e1-eng01", uow, ctx)
    second = await handle_create_bill(ESTATE, body, "e1-eng01", uow, ctx)
    year = clock.now().astimezone(ctx.timezone(ESTATE)).year
    assert (first, second) == (f"E1-{year}-B000001", f"E1-{year}-B000002")
    assert uow.bills.rows[first].total_cny == Decimal("172.50")
    with refused(403):
        await handle_settle_bill(ESTATE, first, "finance_counter", "e1-eng01", "department_staff", uow, ctx)
    with refused(422):  # technicians take no cash
        await handle_settle_bill(ESTATE, first, "cash", "e1-fin01", "finance", uow, ctx)
    await handle_settle_bill(ESTATE, first, "finance_counter", "e1-fin01", "finance", uow, ctx)
    row = uow.bills.rows[first]
    assert (row.settled_channel, row.settled_by, row.settled_at) == ("finance_counter", "e1-fin01", clock.now())
    with refused(409):
        await handle_settle_bill(ESTATE, first, "bank_collection", "e1-fin01", "finance", uow, ctx)
    with refused(404):
        await handle_settle_bill(ESTATE, "nope", "finance_counter", "e1-fin01", "finance", uow, ctx)


async def test_a_bill_needs_a_form_and_items_of_the_catalogue(uow, ctx, catalogue):
    with refused(404):
        await handle_create_bill(ESTATE, BillIn(ticket_id="T404", services=[{"code": "pipe"}]), "x", uow, ctx)
    with refused(422):
        await handle_create_bill(ESTATE, BillIn(ticket_id="T1", services=[{"code": "gold"}]), "x", uow, ctx)
    with refused(422):  # a free service cannot be charged
        await handle_create_bill(ESTATE, BillIn(ticket_id="T1", services=[
            {"code": "look", "agreed_price_cny": "5.00", "agreed_by": ["a", "b"]}]), "x", uow, ctx)
    with refused(422):  # a bill needs at least one line
        await handle_create_bill(ESTATE, BillIn(ticket_id="T1"), "x", uow, ctx)
