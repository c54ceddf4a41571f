"""The duty roster's repository (issue 10): rostered shifts, the duty log, shift handovers
and their items, each claimed by the incoming shift. Tables are in `store.py`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import rules
from services.intake.store import duty_log, roster_shifts, shift_handover_items, shift_handovers
from shared.periods import month_parts

RS, DL, SH, SHI = roster_shifts, duty_log, shift_handovers, shift_handover_items


def roster_of(rows) -> list[rules.RosterShift]:
    return [rules.RosterShift(r.day, r.post, r.shift, tuple(r.staff), r.starts_at, r.ends_at) for r in rows]


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """[first day, first day of the next month) of "YYYY-MM"; RuleViolation(422) otherwise."""
    year, number = month_parts(month)
    first = dt.date(year, number, 1)
    return first, (first + dt.timedelta(days=32)).replace(day=1)


class Roster:
    def __init__(self, session: AsyncSession):
        self.session = session

    # --- shifts -------------------------------------------------------------------------------------
    async def around(self, estate: str, now: dt.datetime) -> list[rules.RosterShift]:
        """Shifts from a day before `now` to two weeks after (an off-hours registration's handover)."""
        rows = (await self.session.execute(sa.select(RS).where(
            RS.c.estate == estate, RS.c.ends_at > now - dt.timedelta(days=1),
            RS.c.starts_at < now + dt.timedelta(days=14)))).all()
        return roster_of(rows)

    async def month(self, estate: str, month: str) -> list:
        first, after = month_bounds(month)
        return (await self.session.execute(sa.select(RS).where(RS.c.estate == estate, RS.c.day >= first,
                                                               RS.c.day < after)
                                           .order_by(RS.c.starts_at, RS.c.post))).all()

    async def replace_month(self, estate: str, month: str, shifts: list[rules.RosterShift], set_by: str,
                            now: dt.datetime) -> None:
        """The month's shifts without a handover yet give way to `shifts` (a re-issued roster)."""
        first, after = month_bounds(month)
        await self.session.execute(sa.delete(RS).where(RS.c.estate == estate, RS.c.day >= first, RS.c.day < after,
                                                       RS.c.id.not_in(sa.select(SH.c.shift_id))))
        for s in shifts:
            await self.session.execute(pg_insert(RS).values(
                estate=estate, post=s.post, day=s.day, shift=s.shift, staff=list(s.staff), starts_at=s.starts_at,
                ends_at=s.ends_at, set_by=set_by, set_at=now,
            ).on_conflict_do_nothing(constraint="uq_roster_shift"))

    async def shift(self, estate: str, shift_id: int):
        return (await self.session.execute(sa.select(RS).where(RS.c.id == shift_id, RS.c.estate == estate))).first()

    async def post_from(self, estate: str, post: str, starts_from: dt.datetime) -> list[rules.RosterShift]:
        """The post's shifts starting at or after `starts_from`."""
        return roster_of((await self.session.execute(sa.select(RS).where(
            RS.c.estate == estate, RS.c.post == post, RS.c.starts_at >= starts_from))).all())

    async def starting_at(self, estate: str, post: str, starts_at: dt.datetime):
        return (await self.session.execute(sa.select(RS).where(
            RS.c.estate == estate, RS.c.post == post, RS.c.starts_at == starts_at))).first()

    # --- the duty log -------------------------------------------------------------------------------
    async def log(self, shift_id: int, at: dt.datetime, by: str, entry: str) -> int:
        return (await self.session.execute(sa.insert(DL).values(shift_id=shift_id, at=at, by=by, entry=entry)
                                           .returning(DL.c.id))).scalar_one()

    # --- shift handovers ----------------------------------------------------------------------------
    async def handed_over(self, shift_id: int) -> bool:
        return (await self.session.execute(sa.select(SH.c.id).where(SH.c.shift_id == shift_id))).first() is not None

    async def hand_over(self, shift_id: int, estate: str, by: str, at: dt.datetime, claim_due: dt.datetime,
                        items: list[dict[str, Any]]) -> list:
        """Record the handover and its items; returns the items as stored."""
        handover_id = (await self.session.execute(sa.insert(SH).values(
            shift_id=shift_id, estate=estate, handed_over_by=by, handed_over_at=at, claim_due=claim_due,
        ).returning(SH.c.id))).scalar_one()
        if items:
            await self.session.execute(sa.insert(SHI), [dict(i, handover_id=handover_id, estate=estate,
                                                             claim_due=claim_due) for i in items])
        return (await self.session.execute(sa.select(SHI).where(SHI.c.handover_id == handover_id)
                                           .order_by(SHI.c.id))).all()

    async def handover(self, handover_id: int):
        return (await self.session.execute(sa.select(SH).where(SH.c.id == handover_id))).one()

    async def items(self, estate: str, status: str, now: dt.datetime) -> list:
        """Items unclaimed (`open`), unclaimed past their claim time (`overdue`) or `all`."""
        query = sa.select(SHI).where(SHI.c.estate == estate).order_by(SHI.c.claim_due, SHI.c.id).limit(500)
        if status == "open":
            query = query.where(SHI.c.claimed_at.is_(None))
        elif status == "overdue":
            query = query.where(SHI.c.claimed_at.is_(None), SHI.c.claim_due < now)
        return (await self.session.execute(query)).all()

    async def item_for_update(self, estate: str, item_id: int):
        return (await self.session.execute(sa.select(SHI).where(SHI.c.id == item_id, SHI.c.estate == estate)
                                           .with_for_update())).first()

    async def claim(self, item_id: int, staff_id: str, now: dt.datetime):
        await self.session.execute(sa.update(SHI).where(SHI.c.id == item_id).values(claimed_by=staff_id,
                                                                                    claimed_at=now))
        return (await self.session.execute(sa.select(SHI).where(SHI.c.id == item_id))).one()

    async def unclaimed_due(self, now: dt.datetime, limit: int = 500) -> list:
        """Items unclaimed past their claim time and not yet escalated, locked (skip locked)."""
        return (await self.session.execute(
            sa.select(SHI.c.id, SHI.c.estate).where(SHI.c.claimed_at.is_(None), SHI.c.escalated_at.is_(None),
                                                    SHI.c.claim_due < now)
            .order_by(SHI.c.claim_due).limit(limit).with_for_update(skip_locked=True))).all()

    async def escalate(self, item_id: int, to: str, now: dt.datetime) -> None:
        await self.session.execute(sa.update(SHI).where(SHI.c.id == item_id).values(escalated_to=to,
                                                                                    escalated_at=now))
