"""The owners' projection (owner_handlers): ticket events of an owner's online request move
the stage the owner sees and send the owner a message, once per event; other tickets'
events and events without a ticket change nothing."""

from __future__ import annotations

import pytest

from services.intake import handlers, owner_rules
from services.intake.owner_handlers import (ONLINE_PREFIX, concerns_no_owner, handle_ticket_event_for_owner,
                                             prepare_ticket_events_for_owner, record_stage)
from shared.events import Assigned, Closed, Completed, Kind, ProgressUpdated, Reopened, make_event
from tests.handlers.conftest import ESTATE, START
from tests.handlers.intake.fakes import FakeIntakeUnitOfWork, Row
from tests.handlers.intake.test_handlers import CS, request


@pytest.fixture
def uow(sink):
    return FakeIntakeUnitOfWork(sink)


async def online_request(uow, ctx):
    """An owner's submission opened by the desk: registered with the online key, accepted."""
    [found] = await handlers.handle_register([request(channel="online", key=f"{ONLINE_PREFIX}s1")], uow, ctx)
    uow.owners.submissions["s1"] = Row(id="s1", estate=ESTATE, unit="1-1-101", binding_id="b1", stage="submitted",
                                       round=1, ticket_id=found.ticket.id)
    await record_stage(uow, ctx, await uow.owners.submission("s1"), owner_rules.Stage.accepted, 1, "opened-s1",
                       form_number=found.ticket.form_number)
    return found.ticket


def event(payload, clock):
    return make_event(payload, estate=ESTATE, actor="dispatch", source="test", time=clock.now())


async def test_each_event_moves_the_owners_stage_once_and_tells_the_owner(uow, ctx, clock):
    ticket = await online_request(uow, ctx)
    done = event(Completed(ticket_id=ticket.id, kind=Kind.repair, departments=["engineering"], completed_at=START),
                 clock)
    await handle_ticket_event_for_owner(done, uow, ctx)
    await handle_ticket_event_for_owner(done, uow, ctx)  # redelivered: no second stage, no second message
    assert uow.owners.submissions["s1"].stage == "completed"
    assert [s.stage for s in uow.owners.stages] == ["accepted", "completed"]
    assert len(uow.messages) == 2 and ticket.form_number in uow.messages[-1].text
    assert uow.messages[-1].recipient == "业主（1-1-101）" and uow.messages[-1].purpose == "progress"


async def test_a_progress_update_is_passed_on_and_a_new_round_reopens_the_owners_view(uow, ctx, clock):
    ticket = await online_request(uow, ctx)
    await handle_ticket_event_for_owner(event(ProgressUpdated(ticket_id=ticket.id, note="师傅明早到",
                                                              method="phone", updated_by=CS), clock), uow, ctx)
    assert uow.messages[-1].text.endswith("进展：师傅明早到")
    assert uow.owners.submissions["s1"].stage == "accepted"  # an update moves no stage
    await handle_ticket_event_for_owner(event(Closed(ticket_id=ticket.id, closed_by=CS, reason="满意"), clock), uow, ctx)
    assert uow.owners.submissions["s1"].stage == "closed"
    reopened = event(Reopened(ticket_id=ticket.id, round=2, reason="还漏", reopened_by=CS), clock)
    await handle_ticket_event_for_owner(reopened, uow, ctx)
    assert uow.owners.submissions["s1"].stage == "closed"  # closed is where the owner's view ends


async def test_events_of_other_tickets_change_nothing_for_owners(uow, ctx, clock):
    [desk_ticket] = [v.ticket for v in await handlers.handle_register([request()], uow, ctx)]
    for payload in (Completed(ticket_id=desk_ticket.id, kind=Kind.repair, departments=[], completed_at=START),
                    Completed(ticket_id="unknown", kind=Kind.repair, departments=[], completed_at=START)):
        await handle_ticket_event_for_owner(event(payload, clock), uow, ctx)
    assert uow.messages == [] and uow.owners.stages == []


async def test_a_batch_reads_its_tickets_once_and_ends_as_event_by_event(sink, ctx, clock):
    """The read-ahead (one query for the batch) gives the stored result of handling each
    event alone; an `accepted` of a desk request needs no read at all."""
    outcomes = []
    for prepared in (True, False):
        uow = FakeIntakeUnitOfWork(sink)
        online = await online_request(uow, ctx)
        desk = [v.ticket for v in await handlers.handle_register([request(), request()], uow, ctx)]
        batch = [event(payload, clock) for ticket in (online, *desk) for payload in (
            ticket.accepted(),
            Assigned(ticket_id=ticket.id, departments=["engineering"], assigned_by="dispatch"),
            Completed(ticket_id=ticket.id, kind=Kind.repair, departments=["engineering"], completed_at=START))]
        if prepared:
            await prepare_ticket_events_for_owner(batch, uow)
        for each in batch:
            await handle_ticket_event_for_owner(each, uow, ctx)
        # Prepared: one query for the batch; alone: one per event but desk `accepted`s.
        assert uow.owners.ticket_reads == (1 if prepared else 7)
        outcomes.append(([(s.stage, s.round) for s in uow.owners.stages], [m.text for m in uow.messages],
                         uow.owners.submissions["s1"].stage))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2] == "completed"


async def test_a_batch_of_desk_acceptances_reads_nothing(uow, ctx, clock):
    desk = [v.ticket for v in await handlers.handle_register([request(), request()], uow, ctx)]
    batch = [event(ticket.accepted(), clock) for ticket in desk]
    await prepare_ticket_events_for_owner(batch, uow)
    for each in batch:
        await handle_ticket_event_for_owner(each, uow, ctx)
    assert uow.owners.ticket_reads == 0 and uow.messages == []


async def test_what_concerns_no_owner_is_told_without_a_query(uow, ctx, clock):
    """The consumer acks these untouched: an `accepted` of a desk request, an event without
    a ticket, an event of a ticket whose key is known not to be an online request's."""
    online = await online_request(uow, ctx)
    [desk] = [v.ticket for v in await handlers.handle_register([request()], uow, ctx)]
    known = {desk.id: None, online.id: f"{ONLINE_PREFIX}s1"}

    def assigned(ticket_id):
        return event(Assigned(ticket_id=ticket_id, departments=["engineering"], assigned_by="dispatch"), clock)

    assert concerns_no_owner(event(desk.accepted(), clock), {})
    assert concerns_no_owner(assigned(desk.id), known)
    assert not concerns_no_owner(assigned(desk.id), {})  # not known: read
    assert not concerns_no_owner(assigned(online.id), known)
    assert not concerns_no_owner(event(online.accepted(), clock), known)
