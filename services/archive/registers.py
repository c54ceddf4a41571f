"""The repositories of the archive's registers beside the chain (issue 11): the important-
events file 重要事件资料档案, the destruction log 销毁登记 and the destruction requests
销毁申请 with the general manager's decisions (RULES §5; 001 第5篇 1.7, 第6篇 1.5). The
tables are declared in store.py with the others."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.archive.domain import DestructionRequest
from services.archive.store import destruction_log, destruction_requests, important_marks, records
from shared.lifecycle import DestructionRequestState


class Marks:
    """The important-events file and the destruction log, kept beside the records."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def important(self, record_number: str):
        return (await self.session.execute(
            sa.select(important_marks).where(important_marks.c.record_number == record_number))).first()

    async def add_important(self, **values) -> None:
        await self.session.execute(sa.insert(important_marks).values(**values))

    async def important_file(self, estate: str) -> list:
        m, r = important_marks, records
        return (await self.session.execute(
            sa.select(r, m.c.reason, m.c.marked_by, m.c.marked_at, m.c.previous_class)
            .join(m, m.c.record_number == r.c.record_number).where(r.c.estate == estate)
            .order_by(m.c.marked_at))).all()

    async def add_destruction(self, entry: dict) -> None:
        await self.session.execute(sa.insert(destruction_log).values(**entry))

    async def destructions(self, estate: str) -> list:
        d = destruction_log
        return (await self.session.execute(sa.select(d).where(d.c.estate == estate).order_by(d.c.destroyed_at))).all()


class DestructionRequests:
    """Destruction requests 销毁申请, newest first in the list."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def lock_estate(self, estate: str) -> None:
        """Serialise the estate's new requests until commit, so two asked at once cannot
        both find a record in no open request."""
        await self.session.execute(sa.select(sa.func.pg_advisory_xact_lock(
            sa.func.hashtext(f"archive-destruction-requests/{estate}"))))

    async def add(self, request: DestructionRequest) -> None:
        await self.session.execute(sa.insert(destruction_requests).values(**request.values()))

    async def get(self, estate: str, request_id: str, *, lock: bool = False) -> DestructionRequest | None:
        d = destruction_requests
        query = sa.select(d).where(d.c.estate == estate, d.c.request_id == request_id)
        row = (await self.session.execute(query.with_for_update() if lock else query)).first()
        return DestructionRequest.from_row(row) if row else None

    async def save(self, request: DestructionRequest) -> None:
        d = destruction_requests
        await self.session.execute(sa.update(d).where(d.c.request_id == request.request_id).values(**request.values()))

    async def list_for_estate(self, estate: str, status: str | None = None) -> list[DestructionRequest]:
        d = destruction_requests
        query = sa.select(d).where(d.c.estate == estate).order_by(d.c.requested_at.desc(), d.c.request_id)
        if status:
            query = query.where(d.c.status == status)
        return [DestructionRequest.from_row(row) for row in (await self.session.execute(query)).all()]

    async def open_record_numbers(self, estate: str) -> set[str]:
        """The records named in the estate's requests still waiting for a decision."""
        d = destruction_requests
        rows = (await self.session.execute(sa.select(d.c.record_numbers).where(
            d.c.estate == estate, d.c.status == DestructionRequestState.requested.value))).scalars()
        return {number for numbers in rows for number in numbers}
