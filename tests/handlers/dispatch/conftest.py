from __future__ import annotations

import pytest

from shared.events import Accepted, Channel, Kind, RepairClass, make_event
from tests.handlers.conftest import ESTATE
from tests.handlers.dispatch.fakes import FakeUnitOfWork


@pytest.fixture
def uow(sink) -> FakeUnitOfWork:
    return FakeUnitOfWork(sink)


def accepted(clock, ticket_id: str = "T1", **overrides) -> Accepted:
    """A general repair (routed to engineering) received now, unless overridden."""
    data = dict(ticket_id=ticket_id, form_number=f"F-{ticket_id}", kind=Kind.repair, channel=Channel.phone,
                category="water leak", repair_class=RepairClass.general, description="kitchen pipe leaks",
                first_contact=f"{ESTATE}-cs01", received_at=clock.now())
    return Accepted(**{**data, **overrides})


def event(payload, clock, actor: str = "someone"):
    return make_event(payload, estate=ESTATE, actor=actor, source="test", time=clock.now())
