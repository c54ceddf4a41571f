"""The callback service's bus consumers: one durable consumer per event of `HANDLERS`,
each running its handler in the batch's transaction with the service's unit of work."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback.app import service, unit_of_work
from services.callback.handlers import HANDLERS
from shared.events import CloudEvent

DESCRIPTIONS = {
    "accepted": "Learn the ticket's kind, category, reply method and first-contact owner; a later opinion may "
                "decide an earlier one's recurrence.",
    "validity_judged": "Invalid complaints need no callback (RULES §3 Who).",
    "assigned": "Learn which departments handle the ticket (recurrence rule) and plan a special service's "
                "mid-way callback.",
    "completed": "Schedule the callbacks the estate's policy asks for, watch an opinion without a callback path, "
                 "or close what needs no callback.",
    "progress_updated": "Keep the twice-weekly progress updates of long-running complaints visible on the worklist.",
    "clock_settled": "Count the weeks of owner updates dispatch settled as missed (dispatch decides the "
                     "progress-update duty).",
}


def register(name: str) -> None:
    handler = HANDLERS[name]

    async def consume(session: AsyncSession, event: CloudEvent) -> None:
        await handler(event, unit_of_work(session), service.context)

    consume.__name__ = f"on_{name}"
    service.consumer(name, description=DESCRIPTIONS[name])(consume)


for _name in HANDLERS:
    register(_name)
