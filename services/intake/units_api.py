"""The desk's owners and units (RULES §1 Privacy): units of an estate's buildings, owners
and residents with contacts, phone and ID numbers masked except for the roles the policy
allows, whose every unmasked view is logged (owner files are level-1 confidential)."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import Depends, Query
from prometheus_client import Counter
from pydantic import BaseModel, Field

from services.intake import rules
from services.intake.app import service
from services.intake.owner_store import OwnerDirectory
from shared.auth import Principal
from shared.errors import RuleViolation
from shared.limits import Contract, UnitPart
from shared.policy import Policy
from shared.service import LocalTime, known_estate, require_estate

unmasked_views_total = Counter(
    "estatedesk_owner_disclosures", "Owner records shown with phone or ID numbers unmasked",
    ["estate"], registry=service.registry,
)


class UnitIn(Contract):
    """A unit's parts; its code joins them with "-" (so no part may contain one)."""

    building: UnitPart
    entrance: UnitPart = Field(description="单元")
    room: UnitPart


class UnitOut(UnitIn):
    code: str = Field(description="building-entrance-room")


class ContactIn(Contract):
    name: str = Field(min_length=1, max_length=128)
    phone: str = Field(min_length=3, max_length=32)
    relation: str | None = Field(None, max_length=32)


class OwnerIn(Contract):
    name: str = Field(min_length=1, max_length=128)
    unit: str = Field(min_length=1, max_length=64)
    relation: Literal["owner", "resident"] = "owner"
    phone: str | None = Field(None, min_length=3, max_length=32)
    id_number: str | None = Field(None, min_length=6, max_length=32)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=10)


class OwnerOut(BaseModel):
    id: str
    name: str
    unit: str
    relation: str
    phone: str | None
    id_number: str | None
    contacts: list[dict]
    masked: bool = Field(description="True when phone and ID numbers are shown masked for this viewer")


@service.http.post("/estates/{estate}/units", status_code=201, response_model=UnitOut, tags=["owners"])
async def add_unit(estate: str, body: UnitIn, who: Principal = Depends(require_estate)) -> UnitOut:
    known_estate(service, estate)
    buildings = service.directory.estate(estate).buildings
    if buildings and body.building not in buildings:
        raise RuleViolation(f"estate {estate} has no building {body.building!r} (it has: {', '.join(buildings)})", status=422)
    code = f"{body.building}-{body.entrance}-{body.room}"
    async with service.db.transaction() as session:
        inserted = await OwnerDirectory(session).add_unit(estate, code, body.model_dump(), service.clock.now())
    if not inserted:
        raise RuleViolation(f"unit {code} already exists", status=409)
    return UnitOut(code=code, **body.model_dump())


@service.http.get("/estates/{estate}/units", response_model=list[UnitOut], tags=["owners"])
async def list_units(estate: str, building: str | None = Query(None, max_length=32),
                     who: Principal = Depends(require_estate)) -> list[UnitOut]:
    known_estate(service, estate)
    async with service.db.transaction() as session:
        rows = await OwnerDirectory(session).units(estate, building)
    return [UnitOut(code=r.code, building=r.building, entrance=r.entrance, room=r.room) for r in rows]


def _owner_out(row, who: Principal, policy: Policy) -> OwnerOut:
    unmasked = rules.may_unmask(who.roles, policy)
    contacts = [
        {**c, "phone": rules.phone_for_viewer(c.get("phone"), who.roles, policy)} for c in (row.contacts or [])
    ]
    return OwnerOut(
        id=row.id, name=row.name, unit=row.unit, relation=row.relation,
        phone=rules.phone_for_viewer(row.phone, who.roles, policy) if row.phone else None,
        id_number=rules.id_number_for_viewer(row.id_number, who.roles, policy) if row.id_number else None,
        contacts=contacts, masked=not unmasked,
    )


async def _log_disclosures(directory: OwnerDirectory, estate: str, rows, who: Principal, policy: Policy,
                           purpose: str | None) -> None:
    """Every unmasked view of an owner's numbers is logged (owner files are level-1 confidential)."""
    if not rules.may_unmask(who.roles, policy):
        return
    entries = []
    for row in rows:
        fields = [name for name in ("phone", "id_number") if getattr(row, name)]
        fields += ["contacts.phone"] if any(c.get("phone") for c in (row.contacts or [])) else []
        if fields:
            entries.append(dict(estate=estate, owner_id=row.id, viewer=who.staff_id, roles=sorted(who.roles),
                                fields=fields, purpose=purpose, disclosed_at=service.clock.now()))
    if entries:
        await directory.log_disclosures(entries)
        unmasked_views_total.labels(estate).inc(len(entries))


@service.http.post("/estates/{estate}/owners", status_code=201, response_model=OwnerOut, tags=["owners"])
async def add_owner(estate: str, body: OwnerIn, who: Principal = Depends(require_estate)) -> OwnerOut:
    """An owner or resident of a unit, with contacts."""
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    owner_id = str(uuid.uuid4())
    async with service.db.transaction() as session:
        directory = OwnerDirectory(session)
        if not await directory.has_unit(estate, body.unit):
            raise RuleViolation(f"no unit {body.unit!r} in estate {estate}; register the unit first", status=422)
        row = await directory.add_owner(dict(
            id=owner_id, estate=estate, unit=body.unit, name=body.name, relation=body.relation, phone=body.phone,
            id_number=body.id_number, contacts=[c.model_dump() for c in body.contacts], created_by=who.staff_id,
            created_at=service.clock.now(),
        ))
    return _owner_out(row, who, policy)


@service.http.get("/estates/{estate}/owners", response_model=list[OwnerOut], tags=["owners"])
async def list_owners(estate: str, unit: str | None = Query(None, max_length=64),
                      purpose: str | None = Query(None, max_length=200, description="Why the numbers are looked up"),
                      who: Principal = Depends(require_estate)) -> list[OwnerOut]:
    """Owners and residents; phone and ID numbers are masked except for the roles the
    policy allows (customer service by default), whose every view is logged."""
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    async with service.db.transaction() as session:
        directory = OwnerDirectory(session)
        rows = await directory.owners(estate, unit)
        await _log_disclosures(directory, estate, rows, who, policy, purpose)
    return [_owner_out(r, who, policy) for r in rows]


@service.http.get("/estates/{estate}/owners/{owner_id}", response_model=OwnerOut, tags=["owners"])
async def get_owner(estate: str, owner_id: str, purpose: str | None = Query(None, max_length=200),
                    who: Principal = Depends(require_estate)) -> OwnerOut:
    known_estate(service, estate)
    policy = service.directory.policy_for(estate)
    async with service.db.transaction() as session:
        directory = OwnerDirectory(session)
        row = await directory.owner(estate, owner_id)
        if row is None:
            raise RuleViolation(f"no owner {owner_id!r} in estate {estate!r}", status=404)
        await _log_disclosures(directory, estate, [row], who, policy, purpose)
    return _owner_out(row, who, policy)


class DisclosureOut(BaseModel):
    owner_id: str
    viewer: str
    roles: list[str]
    fields: list[str]
    purpose: str | None
    disclosed_at: LocalTime


@service.http.get("/estates/{estate}/disclosures", response_model=list[DisclosureOut], tags=["owners"])
async def list_disclosures(estate: str, owner_id: str | None = Query(None, max_length=64),
                           who: Principal = Depends(require_estate)) -> list[DisclosureOut]:
    """The log of unmasked views, for the estate director and the quality manager."""
    known_estate(service, estate)
    who.require_role("estate_director", "customer_service_supervisor", "quality_manager")
    async with service.db.transaction() as session:
        rows = await OwnerDirectory(session).disclosures(estate, owner_id)
    return [DisclosureOut.model_validate(dict(r._mapping)) for r in rows]
