"""`IntakeUnitOfWork`: intake's repositories over the one transaction a route or consumer
opened; `emit` writes to intake's outbox in that transaction (shared.uow.SqlUnitOfWork),
`emit_many` several events in one statement (a registration batch's `accepted`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.duty_store import Roster
from services.intake.store import FormNumbers, HandoverItems, ProgressUpdates, Tickets
from shared.uow import SqlUnitOfWork


class IntakeUnitOfWork(SqlUnitOfWork):
    """uow.tickets, uow.form_numbers, uow.handovers (night-shift items), uow.progress,
    uow.roster (duty roster, shift handovers); for the owners' projection uow.owners and
    uow.notify (owners.owner_uow)."""

    def __init__(self, session: AsyncSession, emit, emit_many=None, *, owners=None, notify=None):
        super().__init__(session, emit)
        self._emit_many = emit_many
        self.owners = owners  # owner_store.SelfService, for the owners' projection
        self.notify = notify  # the notifier: notify(estate=, unit=, recipient=, purpose=, text=, ...)
        self.tickets = Tickets(session)
        self.form_numbers = FormNumbers(session)
        self.handovers = HandoverItems(session)
        self.progress = ProgressUpdates(session)
        self.roster = Roster(session)

    async def emit_many(self, drafts: list[tuple]) -> None:
        """Raise (payload, estate, actor, time) events in order, in one outbox statement
        when the service offers it."""
        if self._emit_many is not None:
            await self._emit_many(self.session, drafts)
            return
        for payload, estate, actor, time in drafts:
            await self.emit(payload, estate=estate, actor=actor, time=time)
