"""Read models of the console's screens (the form, the work list): plain queries over
dispatch's tables, read in the route's transaction. Writes go through store.py's
repositories."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import store
from shared.errors import RuleViolation
from shared.lifecycle import TicketState as S

F, A, D, E, NC, P = store.forms, store.assignments, store.deadlines, store.escalations, store.nonconformities, \
    store.progress_log


@dataclass(frozen=True)
class FormDetail:
    """The form row with every ledger line, deadline, escalation, its nonconformity
    record (or None) and the times the owner was updated."""

    form: Any
    lines: list
    deadlines: list
    escalations: list
    nonconformity: Any
    updates: list[dt.datetime]


async def form_row(session: AsyncSession, estate: str, ticket_id: str):
    """The form's row: 404 when the estate has no such form."""
    form = (await session.execute(sa.select(F).where(F.c.ticket_id == ticket_id, F.c.estate == estate))).first()
    if form is None:
        raise RuleViolation(f"no countersign form for ticket {ticket_id!r} in estate {estate!r}", status=404)
    return form


async def form_detail(session: AsyncSession, estate: str, ticket_id: str) -> FormDetail:
    form = await form_row(session, estate, ticket_id)

    async def rows(query):
        return list((await session.execute(query)).all())

    return FormDetail(
        form=form,
        lines=await rows(sa.select(A).where(A.c.ticket_id == ticket_id).order_by(A.c.id)),
        deadlines=await rows(sa.select(D).where(D.c.ticket_id == ticket_id).order_by(D.c.round, D.c.due_at, D.c.id)),
        escalations=await rows(sa.select(E).where(E.c.ticket_id == ticket_id).order_by(E.c.id)),
        nonconformity=(await session.execute(sa.select(NC).where(NC.c.ticket_id == ticket_id))).first(),
        updates=list((await session.execute(
            sa.select(P.c.updated_at).where(P.c.ticket_id == ticket_id).order_by(P.c.updated_at))).scalars().all()),
    )


async def nonconformity_row(session: AsyncSession, estate: str, ticket_id: str):
    await form_row(session, estate, ticket_id)
    row = (await session.execute(sa.select(NC).where(NC.c.ticket_id == ticket_id))).first()
    if row is None:
        raise RuleViolation(f"ticket {ticket_id} has no nonconformity record", status=404)
    return row


@dataclass(frozen=True)
class WorkList:
    forms: list
    lines: list  # (ticket_id, round, department) of active lines
    open_clocks: list  # (ticket_id, due_at, breached_at, department)


async def work_list(session: AsyncSession, estate: str, department: str | None, status: str, limit: int,
                    now: dt.datetime, ticket_ids: Sequence[str] | None = None) -> WorkList:
    """A department's (or the estate's) forms: open (in handling; for `department` its
    line not yet signed back), overdue (an open clock has run out), completed, closed,
    invalid or all, newest first; only the forms of `ticket_ids` when given (the Mine
    view's own requests, read by key whatever the estate's history)."""
    query = sa.select(F).where(F.c.estate == estate).order_by(F.c.accepted_at.desc()).limit(limit)
    if ticket_ids is not None:
        query = query.where(store.any_of(F.c.ticket_id, ticket_ids))
    if status == "open":
        # Written into the statement, not bound: a generic plan of `status = $1` could not
        # use the partial index of the open forms (ix_forms_estate_open).
        query = query.where(F.c.status == sa.literal(S.in_handling.value, literal_execute=True))
    elif status in (S.completed, S.closed, S.invalid):
        query = query.where(F.c.status == status)
    elif status == "overdue":
        late = sa.select(D.c.ticket_id).where(D.c.estate == estate, D.c.met_at.is_(None), D.c.due_at < now)
        # A week of owner updates that ended short is a breached clock like any other.
        query = query.where(store.any_of(F.c.status, (S.in_handling.value, S.completed.value)), F.c.ticket_id.in_(late))
    if department is not None:
        active = sa.select(A.c.ticket_id).where(
            A.c.estate == estate, A.c.department == department, A.c.transferred_at.is_(None), A.c.round == F.c.round,
            *([A.c.signed_back_at.is_(None)] if status in ("open", "overdue") else []),
        )
        query = query.where(F.c.ticket_id.in_(active))
    forms = list((await session.execute(query)).all())
    ids = [f.ticket_id for f in forms]
    if not ids:
        return WorkList([], [], [])
    lines = (await session.execute(
        sa.select(A.c.ticket_id, A.c.round, A.c.department).where(store.any_of(A.c.ticket_id, ids),
                                                                  A.c.transferred_at.is_(None))
    )).all()
    open_clocks = (await session.execute(
        sa.select(D.c.ticket_id, D.c.due_at, D.c.breached_at, D.c.department)
        .where(store.any_of(D.c.ticket_id, ids), D.c.met_at.is_(None))
    )).all()
    return WorkList(forms, list(lines), list(open_clocks))
