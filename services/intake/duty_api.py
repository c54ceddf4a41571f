"""Duty roster, duty log and shift handover (issue 10 "Also build" 2): 001 第1篇 (handover
rules, 2.4 when it is refused), 第2篇 (duty log, holiday duty), 第7篇 (monthly roster,
三班制), 第11、14篇 (front desk and security handover); 002 §4.2.4; 004 篇3 §3.4.
Routes only: the rules are in rules.py, the steps in handlers.py, the SQL in duty_store.py."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from services.intake import handlers, rules
from services.intake.app import service
from services.intake.uow import IntakeUnitOfWork
from shared.auth import Principal
from shared.limits import Contract, Day, RowId
from shared.service import LocalTime, known_estate, require_estate


class RosterEntryIn(Contract):
    day: Day
    post: str = Field(min_length=1, max_length=32, description="customer_service_desk / security_control_centre")
    shift: str = Field(min_length=1, max_length=16, description="A shift of the estate's policy (early/middle/night)")
    staff: list[str] = Field(min_length=1, max_length=20)


class RosterShiftOut(BaseModel):
    id: int
    day: dt.date
    post: str
    shift: str
    staff: list[str]
    starts_at: LocalTime
    ends_at: LocalTime


class DutyLogIn(Contract):
    entry: str = Field(min_length=1, max_length=5000, description="What happened, how it was handled (值班记录)")


class HandoverItemIn(Contract):
    note: str = Field(min_length=1, max_length=5000)
    ticket_id: str | None = Field(None, max_length=64)


class ShiftHandoverIn(Contract):
    items: list[HandoverItemIn] = Field(default_factory=list, max_length=200,
                                        description="Leaders' instructions, keys, equipment… (open requests are added)")


class ShiftItemOut(BaseModel):
    id: int
    ticket_id: str | None
    kind: str | None
    repair_class: str | None
    urgency: str | None
    note: str
    claim_due: LocalTime
    claimed_by: str | None
    claimed_at: LocalTime | None
    escalated_to: str | None
    escalated_at: LocalTime | None
    overdue: bool


def _shift_out(row) -> RosterShiftOut:
    return RosterShiftOut(id=row.id, day=row.day, post=row.post, shift=row.shift, staff=list(row.staff),
                          starts_at=row.starts_at, ends_at=row.ends_at)


def _item_out(row, now: dt.datetime) -> ShiftItemOut:
    return ShiftItemOut(id=row.id, ticket_id=row.ticket_id, kind=row.kind, repair_class=row.repair_class,
                        urgency=row.urgency, note=row.note, claim_due=row.claim_due, claimed_by=row.claimed_by,
                        claimed_at=row.claimed_at, escalated_to=row.escalated_to, escalated_at=row.escalated_at,
                        overdue=rules.handover_item_overdue(row.claimed_at, row.claim_due, now))


def _uow(session) -> IntakeUnitOfWork:
    return IntakeUnitOfWork(session, service.emit)


@service.http.put("/estates/{estate}/roster/{month}", response_model=list[RosterShiftOut], tags=["duty"])
async def put_roster(estate: str, month: str, entries: list[RosterEntryIn],
                     who: Principal = Depends(require_estate)) -> list[RosterShiftOut]:
    """Set a month's roster (排班表) of every duty post, holidays included; replaces the
    month's shifts that have no handover yet (a changed roster is re-issued, 第7篇 1.1.7)."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        rows = await handlers.handle_set_roster(estate, month, [e.model_dump(mode="json") for e in entries],
                                                who.staff_id, _uow(session), service.context)
    return [_shift_out(r) for r in rows]


@service.http.get("/estates/{estate}/roster/{month}", response_model=list[RosterShiftOut], tags=["duty"])
async def get_roster(estate: str, month: str, who: Principal = Depends(require_estate)) -> list[RosterShiftOut]:
    known_estate(service, estate)
    rules.roster_for_month(month, [], service.directory.policy_for(estate))  # validates the month
    async with service.db.transaction() as session:
        rows = await _uow(session).roster.month(estate, month)
    return [_shift_out(r) for r in rows]


@service.http.post("/estates/{estate}/shifts/{shift_id}/log", status_code=201, tags=["duty"])
async def add_duty_log(estate: str, shift_id: RowId, body: DutyLogIn, who: Principal = Depends(require_estate)) -> dict:
    """A line of the shift's duty log (值班记录: who, when, what happened, how handled)."""
    known_estate(service, estate)
    async with service.db.transaction() as session:
        return await handlers.handle_duty_log(estate, shift_id, body.entry, who.staff_id, who.roles, _uow(session),
                                              service.context)


@service.http.post("/estates/{estate}/shifts/{shift_id}/handover", status_code=201, response_model=list[ShiftItemOut],
                   tags=["duty"])
async def hand_over_shift(estate: str, shift_id: RowId, body: ShiftHandoverIn,
                          who: Principal = Depends(require_estate)) -> list[ShiftItemOut]:
    """The outgoing shift hands over item by item: the given items plus every request its
    staff registered on the shift and not yet handled (with kind, repair class and
    urgency). Refused (409) while a major or emergency incident of the shift is still open
    (001 第1篇 2.4). The incoming shift must claim each item by its start."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        items = await handlers.handle_shift_handover(estate, shift_id, [i.model_dump() for i in body.items],
                                                     who.staff_id, who.roles, _uow(session), service.context)
    return [_item_out(i, now) for i in items]


@service.http.get("/estates/{estate}/shift-handover-items", response_model=list[ShiftItemOut], tags=["duty"])
async def list_shift_items(estate: str, status: Literal["open", "overdue", "all"] = Query("open"),
                           who: Principal = Depends(require_estate)) -> list[ShiftItemOut]:
    """Handover items: unclaimed (`open`), unclaimed past the incoming shift's start
    (`overdue`, escalated to the customer-service supervisor), or all."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        return [_item_out(r, now) for r in await _uow(session).roster.items(estate, status, now)]


@service.http.post("/estates/{estate}/shift-handover-items/{item_id}/claim", response_model=ShiftItemOut,
                   tags=["duty"])
async def claim_shift_item(estate: str, item_id: RowId, who: Principal = Depends(require_estate)) -> ShiftItemOut:
    """The incoming shift claims one item (签字确认)."""
    known_estate(service, estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        row = await handlers.handle_claim_item(estate, item_id, who.staff_id, who.roles, _uow(session),
                                               service.context)
    return _item_out(row, now)
