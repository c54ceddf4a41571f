"""`IntakeUnitOfWork`: intake's repositories over the one transaction a route or consumer
opened; `emit` writes to intake's outbox in that transaction (shared.uow.SqlUnitOfWork)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.duty_store import Roster
from services.intake.store import FormNumbers, HandoverItems, ProgressUpdates, Tickets
from shared.uow import SqlUnitOfWork


class IntakeUnitOfWork(SqlUnitOfWork):
    """uow.tickets, uow.form_numbers, uow.handovers (night-shift items), uow.progress,
    uow.roster (duty roster, shift handovers)."""

    def __init__(self, session: AsyncSession, emit):
        super().__init__(session, emit)
        self.tickets = Tickets(session)
        self.form_numbers = FormNumbers(session)
        self.handovers = HandoverItems(session)
        self.progress = ProgressUpdates(session)
        self.roster = Roster(session)
