"""Intake: every request from every channel is registered here, gets its countersign-form
number and its first-contact owner, and is announced as `accepted`."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.intake import store
from shared.auth import Principal
from shared.events import (
    AcceptedBy, Accepted, Channel, Kind, RepairClass, ReplyMethod, Severity, Urgency,
)
from shared.errors import RuleViolation
from shared.service import Service, create_http_app, known_estate, require_estate

service = Service(
    "intake", store.metadata, title="Intake 受理",
    description="Registers owners' requests from every channel; first-contact responsibility; countersign-form numbers.",
)


class RequestIn(BaseModel):
    """A request as the first employee registers it."""

    model_config = ConfigDict(extra="forbid")
    kind: Kind
    channel: Channel
    description: str = Field(min_length=1, max_length=20000)
    category: str = Field("general", min_length=1, max_length=64)
    repair_class: RepairClass | None = None
    severity: Severity = Severity.not_serious
    urgency: Urgency = Urgency.not_urgent
    accepted_by: AcceptedBy = AcceptedBy.department
    building: str | None = Field(None, max_length=32)
    unit: str | None = Field(None, max_length=64)
    location: str | None = Field(None, max_length=500)
    reply_method: ReplyMethod = ReplyMethod.phone
    reply_agreed_by: dt.datetime | None = None
    appointment_at: dt.datetime | None = None
    anonymous: bool = False
    owner_id: str | None = Field(None, max_length=64)
    about_role: str | None = Field(None, max_length=64)
    owner_loss_cny: float | None = Field(None, ge=0)
    client_request_id: str | None = Field(
        None, max_length=128, description="Caller's id for this submission; a repeat returns the first ticket."
    )


class TicketOut(BaseModel):
    id: str
    estate: str
    form_number: str
    kind: str
    channel: str
    category: str
    status: str
    round: int
    first_contact: str
    first_contact_name: str | None
    received_at: dt.datetime
    description: str


def form_number(estate: str, year: int, sequence: int) -> str:
    return f"{estate.upper()}-{year}-{sequence:06d}"


async def next_form_sequence(session, estate: str, year: int) -> int:
    seq = store.form_sequences
    result = await session.execute(
        pg_insert(seq).values(estate=estate, year=year, last=1)
        .on_conflict_do_update(index_elements=[seq.c.estate, seq.c.year], set_={"last": seq.c.last + 1})
        .returning(seq.c.last)
    )
    return result.scalar_one()


def _ticket_out(row) -> TicketOut:
    return TicketOut.model_validate(dict(row._mapping))


@service.http.post("/estates/{estate}/requests", status_code=201, response_model=TicketOut, tags=["requests"])
async def register_request(estate: str, body: RequestIn, who: Principal = Depends(require_estate)) -> TicketOut:
    """Register a request; the caller becomes its first-contact owner for its whole life."""
    known_estate(service, estate)
    tz = service.directory.timezone_for(estate)
    now = service.clock.now()
    async with service.db.transaction() as session:
        if body.client_request_id:
            existing = (
                await session.execute(
                    sa.select(store.tickets).where(
                        store.tickets.c.estate == estate, store.tickets.c.client_request_id == body.client_request_id
                    )
                )
            ).first()
            if existing:
                return _ticket_out(existing)
        year = now.astimezone(tz).year
        number = form_number(estate, year, await next_form_sequence(session, estate, year))
        ticket_id = str(uuid.uuid4())
        row = dict(
            id=ticket_id, estate=estate, form_number=number, kind=body.kind, channel=body.channel,
            category=body.category, repair_class=body.repair_class, severity=body.severity,
            urgency=body.urgency, accepted_by=body.accepted_by, building=body.building, unit=body.unit,
            location=body.location, description=body.description, first_contact=who.staff_id,
            first_contact_name=who.name, received_at=now, reply_method=body.reply_method,
            reply_agreed_by=body.reply_agreed_by, appointment_at=body.appointment_at, off_hours=False,
            anonymous=body.anonymous, owner_id=body.owner_id, about_role=body.about_role,
            owner_loss_cny=body.owner_loss_cny, status="open", round=1,
            client_request_id=body.client_request_id, created_at=now,
        )
        await session.execute(sa.insert(store.tickets).values(**row))
        await service.emit(
            session,
            Accepted(
                ticket_id=ticket_id, form_number=number, kind=body.kind, channel=body.channel,
                category=body.category, repair_class=body.repair_class, severity=body.severity,
                urgency=body.urgency, accepted_by=body.accepted_by, building=body.building, unit=body.unit,
                location=body.location, description=body.description, first_contact=who.staff_id,
                first_contact_name=who.name, received_at=now, reply_method=body.reply_method,
                reply_agreed_by=body.reply_agreed_by, appointment_at=body.appointment_at,
                anonymous=body.anonymous, owner_id=body.owner_id, about_role=body.about_role,
                owner_loss_cny=body.owner_loss_cny,
            ),
            estate=estate, actor=who.staff_id, time=now,
        )
    return TicketOut.model_validate(row)


@service.http.get("/estates/{estate}/requests/{ticket_id}", response_model=TicketOut, tags=["requests"])
async def get_request(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> TicketOut:
    known_estate(service, estate)
    async with service.db.transaction() as session:
        row = (
            await session.execute(
                sa.select(store.tickets).where(store.tickets.c.estate == estate, store.tickets.c.id == ticket_id)
            )
        ).first()
    if row is None:
        raise RuleViolation(f"no request {ticket_id!r} in estate {estate!r}", status=404)
    return _ticket_out(row)


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
