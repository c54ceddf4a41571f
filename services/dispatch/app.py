"""Dispatch: routes each accepted form to its departments, keeps the handover ledger and
the clocks, escalates breaches, and collects the departments' sign-backs."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import store
from shared.events import Accepted, Assigned, CloudEvent, Deadline
from shared.service import Service, create_http_app

service = Service(
    "dispatch", store.metadata, title="Dispatch 派工与会签",
    description="Routing, handover ledger, SLA clocks, escalation and department sign-back.",
)

# Routing until an estate configures its own rules (RULES §2 Departments).
FALLBACK_DEPARTMENT_BY_KIND = {
    "repair": "engineering",
    "complaint": "customer_service",
    "special_service": "engineering",
}


def route(accepted: Accepted, routing_rules: list[dict]) -> list[str]:
    for rule in routing_rules:
        if rule.get("kind") in (None, accepted.kind) and rule.get("category") in (None, accepted.category):
            return list(rule["departments"])
    return [FALLBACK_DEPARTMENT_BY_KIND.get(accepted.kind, "customer_service")]


@service.consumer("accepted", description="Route the accepted form and start its clocks.")
async def on_accepted(session: AsyncSession, event: CloudEvent) -> None:
    accepted: Accepted = event.payload()
    estate = service.directory.estate(event.estate)
    policy = service.directory.policy_for(event.estate)
    departments = route(accepted, estate.routing_rules if estate else [])
    now = service.clock.now()
    deadlines = [
        Deadline(clock="acknowledge", department=d, due_at=now + dt.timedelta(minutes=policy.clocks.acknowledge_minutes))
        for d in departments
    ]
    await session.execute(
        sa.insert(store.forms).values(
            ticket_id=accepted.ticket_id, estate=event.estate, form_number=accepted.form_number,
            kind=accepted.kind, category=accepted.category, repair_class=accepted.repair_class,
            reply_method=accepted.reply_method, first_contact=accepted.first_contact,
            facts=accepted.model_dump(mode="json"), round=1, status="in_handling",
            accepted_at=accepted.received_at, updated_at=now,
        )
    )
    await session.execute(
        sa.insert(store.assignments),
        [dict(ticket_id=accepted.ticket_id, round=1, department=d, estate=event.estate, assigned_at=now,
              assigned_by="system") for d in departments],
    )
    await session.execute(
        sa.insert(store.deadlines),
        [dict(ticket_id=accepted.ticket_id, estate=event.estate, round=1, clock=d.clock,
              department=d.department or "", due_at=d.due_at, provisional=d.provisional) for d in deadlines],
    )
    await service.emit(
        session,
        Assigned(ticket_id=accepted.ticket_id, round=1, departments=departments, assigned_by="system",
                 deadlines=deadlines),
        estate=event.estate, actor="system", time=now,
    )


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
