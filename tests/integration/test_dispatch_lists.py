"""Issue 12: dispatch's work lists and the SLA scan's schedule read through indexes that
do not grow with history (ix_forms_estate_accepted, ix_forms_estate_open,
ix_deadlines_estate_open; next_wake walks ix_deadlines_open_due in order). The rewrites
must answer as the lists are defined: checked here against that definition on a small
estate of every kind of form, line and clock. Real PostgreSQL, rolled back."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import queries, store
from shared.lifecycle import TicketState as S
from tests.handlers.conftest import START

pytestmark = pytest.mark.integration
F, A, D, E = store.forms, store.assignments, store.deadlines, store.escalations
NOW = START + dt.timedelta(days=2)
STATES = [S.in_handling, S.completed, S.closed, S.invalid, S.awaiting_approval]


def _form(ticket_id: str, estate: str, status: S, accepted_at: dt.datetime, round_: int = 1) -> dict:
    return dict(ticket_id=ticket_id, estate=estate, form_number=f"F{ticket_id}", kind="repair", category="plumbing",
                reply_method="phone", first_contact="cs1", facts={}, round=round_, status=status.value,
                accepted_at=accepted_at, updated_at=accepted_at)


def _clock(ticket_id: str, estate: str, due_at: dt.datetime, met_at=None, breached_at=None, clock="reply") -> dict:
    return dict(ticket_id=ticket_id, estate=estate, round=1, clock=clock, department="", due_at=due_at,
                provisional=False, met_at=met_at, breached_at=breached_at)


def history(estate: str) -> tuple[list[dict], list[dict], list[dict]]:
    """Forms of every state (some in a second round), each with engineering or security
    lines (signed back, transferred, of an earlier round) and clocks (met, past due,
    running)."""
    forms, lines, clocks = [], [], []
    for i in range(30):
        ticket = f"W{uuid.uuid4().hex[:12]}"
        form = _form(ticket, estate, STATES[i % len(STATES)], START + dt.timedelta(hours=i), round_=1 + (i % 7 == 0))
        forms.append(form)
        line = dict(ticket_id=ticket, round=form["round"], department=("engineering", "security")[i % 3 == 0],
                    estate=estate, assigned_at=form["accepted_at"], assigned_by="cs1",
                    signed_back_at=form["accepted_at"] if i % 4 == 0 else None,
                    transferred_at=form["accepted_at"] if i % 11 == 0 else None)
        lines.append(line)
        if i % 7 == 0:  # the first round's line, signed off long ago
            lines.append(line | dict(round=1, department="engineering", signed_back_at=None, transferred_at=None))
        due = form["accepted_at"] + dt.timedelta(hours=(-30, 10, 60)[i % 3])
        clocks.append(_clock(ticket, estate, due, met_at=due if i % 5 == 1 else None))
    return forms, lines, clocks


def expected(forms, lines, clocks, department, status, limit) -> list[str]:
    """The lists as defined (queries.work_list's docstring), in Python."""
    def listed(form) -> bool:
        if status == "open" and form["status"] != S.in_handling:
            return False
        if status in (S.completed, S.closed, S.invalid) and form["status"] != status:
            return False
        if status == "overdue" and not (form["status"] in (S.in_handling, S.completed) and any(
                c["ticket_id"] == form["ticket_id"] and c["met_at"] is None and c["due_at"] < NOW for c in clocks)):
            return False
        return department is None or any(
            l["ticket_id"] == form["ticket_id"] and l["round"] == form["round"] and l["department"] == department
            and l["transferred_at"] is None and (status not in ("open", "overdue") or l["signed_back_at"] is None)
            for l in lines)

    newest_first = sorted(forms, key=lambda f: f["accepted_at"], reverse=True)
    return [f["ticket_id"] for f in newest_first if listed(f)][:limit]


async def test_work_lists_answer_as_defined(db):
    estate = f"w{uuid.uuid4().hex[:6]}"
    forms, lines, clocks = history(estate)
    async with AsyncSession(db) as session, session.begin():
        await session.execute(sa.insert(F), forms)
        await session.execute(sa.insert(A), lines)
        await session.execute(sa.insert(D), clocks)
        for department, status, limit in itertools.product(
                (None, "engineering", "security"), ("open", "overdue", "completed", "closed", "invalid", "all"), (4, 100)):
            work = await queries.work_list(session, estate, department, status, limit, NOW)
            assert [f.ticket_id for f in work.forms] == expected(forms, lines, clocks, department, status, limit), \
                (department, status, limit)
        await session.rollback()


async def test_next_wake_is_the_first_owed_clock_or_rung(db):
    """The earliest running clock not fired yet of a form still owed (a closed or invalid
    form's, a fired one's and a met one's come earlier and do not count), or an
    unresolved escalation's next rung if that is earlier; None when there is neither."""
    estate = f"w{uuid.uuid4().hex[:6]}"
    t = [f"W{uuid.uuid4().hex[:12]}" for _ in range(5)]
    at = [NOW + dt.timedelta(hours=h) for h in range(8)]
    async with AsyncSession(db) as session, session.begin():
        # Other tests' committed clocks and escalations are this transaction's to hide.
        await session.execute(sa.delete(E))
        await session.execute(sa.delete(D))
        clocks = store.ClockRepository(session, store.NewRows(session))
        assert await clocks.next_wake() is None
        await session.execute(sa.insert(F), [
            _form(t[0], estate, S.closed, START), _form(t[1], estate, S.invalid, START),
            _form(t[2], estate, S.in_handling, START), _form(t[3], estate, S.awaiting_approval, START),
            _form(t[4], estate, S.completed, START)])
        await session.execute(sa.insert(D), [
            _clock(t[0], estate, at[0]), _clock(t[1], estate, at[1]),
            _clock(t[2], estate, at[1], breached_at=at[1]), _clock(t[2], estate, at[2], met_at=at[0], clock="tracking"),
            _clock(t[2], estate, at[5], clock="acknowledge"), _clock(t[3], estate, at[4]), _clock(t[4], estate, at[6])])
        assert await clocks.next_wake() == at[4]
        await session.execute(sa.insert(E), [
            dict(ticket_id=t[2], estate=estate, round=1, rung="r", reason="x", escalated_at=START, next_at=at[0],
                 resolved_at=START),
            dict(ticket_id=t[2], estate=estate, round=1, rung="s", reason="x", escalated_at=START, next_at=at[3], resolved_at=None)])
        assert await clocks.next_wake() == at[3]
        await session.execute(sa.update(F).where(F.c.ticket_id == t[3]).values(status=S.closed.value))
        await session.execute(sa.update(E).values(next_at=None))
        assert await clocks.next_wake() == at[5]
        await session.rollback()
