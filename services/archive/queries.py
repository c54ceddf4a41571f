"""The archive's organisation queries (monthly sets, quarterly runs and volumes, RULES §5;
002 §4.8.2) and what the schedule looks for. All SQL; no rules."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.archive.domain import Record
from services.archive.store import monthly_sets, quarterly_runs, records, volumes


class Organisation:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def lock_estate(self, estate: str) -> None:
        """Replicas and the command may run at once: one organises, the other then finds it done."""
        await self.session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                   {"key": f"archive-organise:{estate}"})

    async def month_sets(self, estate: str, month: str | None = None) -> list:
        m = monthly_sets
        query = sa.select(m).where(m.c.estate == estate).order_by(m.c.month, m.c.part)
        if month:
            query = query.where(m.c.month == month)
        return (await self.session.execute(query)).all()

    async def unorganised(self, estate: str, month: str) -> list[Record]:
        r = records
        return [Record.from_row(row) for row in (await self.session.execute(
            sa.select(r).where(r.c.estate == estate, r.c.closed_month == month, r.c.month_part.is_(None))
            .order_by(r.c.sequence))).all()]

    async def add_month_set(self, **values) -> None:
        await self.session.execute(sa.insert(monthly_sets).values(**values))

    async def set_month_part(self, estate: str, record_numbers: list[str], part: int) -> None:
        r = records
        await self.session.execute(sa.update(r).where(r.c.estate == estate, r.c.record_number.in_(record_numbers))
                                   .values(month_part=part))

    async def quarter_parts(self, estate: str, quarter: str) -> list[int]:
        q = quarterly_runs
        return list((await self.session.execute(
            sa.select(q.c.part).where(q.c.estate == estate, q.c.quarter == quarter))).scalars().all())

    async def unbound(self, estate: str, months: list[str]) -> list[Record]:
        r = records
        return [Record.from_row(row) for row in (await self.session.execute(
            sa.select(r).where(r.c.estate == estate, r.c.closed_month.in_(months), r.c.volume_number.is_(None))
        )).all()]

    async def volumes_bound(self, estate: str, quarter: str) -> int:
        v = volumes
        return (await self.session.execute(
            sa.select(sa.func.count()).select_from(v).where(v.c.estate == estate, v.c.quarter == quarter))).scalar_one()

    async def add_run(self, **values) -> None:
        await self.session.execute(sa.insert(quarterly_runs).values(**values))

    async def add_volume(self, **values) -> None:
        await self.session.execute(sa.insert(volumes).values(**values))

    async def bind(self, record_number: str, volume_number: str, item: int) -> None:
        await self.session.execute(sa.update(records).where(records.c.record_number == record_number)
                                   .values(volume_number=volume_number, volume_item=item))

    async def quarter(self, estate: str, quarter: str) -> tuple[list, list, set[str]]:
        """The quarter's runs and volumes, and which bound records were destroyed since."""
        q, v, r = quarterly_runs, volumes, records
        runs = (await self.session.execute(
            sa.select(q).where(q.c.estate == estate, q.c.quarter == quarter).order_by(q.c.part))).all()
        vols = (await self.session.execute(
            sa.select(v).where(v.c.estate == estate, v.c.quarter == quarter).order_by(v.c.volume_number))).all()
        destroyed = set((await self.session.execute(
            sa.select(r.c.record_number).where(r.c.estate == estate, r.c.destroyed, r.c.volume_number.is_not(None))
        )).scalars())
        return runs, vols, destroyed

    async def still_to_do(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(estate, month) pairs with records not organised yet, and with records not bound yet."""
        r = records
        unorganised = (await self.session.execute(
            sa.select(r.c.estate, r.c.closed_month).where(r.c.month_part.is_(None)).distinct())).all()
        unbound = (await self.session.execute(
            sa.select(r.c.estate, r.c.closed_month).where(r.c.volume_number.is_(None)).distinct())).all()
        return [tuple(x) for x in unorganised], [tuple(x) for x in unbound]
