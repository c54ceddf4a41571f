"""The archive's unit of work: the repositories of one transaction, plus `emit` (outbox)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.archive.queries import Organisation
from services.archive.registers import DestructionRequests, Marks
from services.archive.store import AccessLog, Chain, CollectedEvents, Loans, PendingSeals
from shared.uow import SqlUnitOfWork


class ArchiveUnitOfWork(SqlUnitOfWork):
    def __init__(self, session: AsyncSession, emit):
        super().__init__(session, emit)
        self.collected = CollectedEvents(session)
        self.pending = PendingSeals(session)
        self.chain = Chain(session)
        self.loans = Loans(session)
        self.marks = Marks(session)
        self.destruction_requests = DestructionRequests(session)
        self.access = AccessLog(session)
        self.organisation = Organisation(session)

    async def flush(self) -> None:
        """Write what the repositories hold in memory (the collected events): before the
        transaction commits, once per consumer batch."""
        await self.collected.flush()
