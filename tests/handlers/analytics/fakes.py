"""In-memory stand-ins for analytics' repositories and unit of work (same methods as
`services.analytics.store`): tickets' facts in a dict, sign-offs in a dict, events raised
into `RecordedEvents`. The batch is `store.Batch` itself (plain data, no I/O), and
`flush` moves it into the "stored" dicts as `write_batch` would into the tables."""

from __future__ import annotations

import datetime as dt

from services.analytics import rules, store
from shared.uow import RecordedEvents


class FakeTicketFacts:
    def __init__(self, batch: store.Batch):
        self.batch = batch
        self.stored: dict[tuple[str, str], rules.TicketFacts] = {}
        self.prepared: list[rules.RepeatSearch] = []  # what `prepare` was asked to search
        self.searched: list[rules.RepeatSearch] = []  # what the handlers searched

    async def prepare(self, keys, searches) -> None:
        self.prepared += searches

    async def get_for_update(self, estate: str, ticket_id: str) -> rules.TicketFacts | None:
        key = (estate, ticket_id)
        return self.batch.facts.get(key, self.stored.get(key))

    async def load_many(self, keys) -> None:
        pass

    async def recent_same_category(self, search: rules.RepeatSearch) -> list[rules.RecentTicket]:
        """As the SQL one: the latest `limit` stored (and of the building), plus every
        matching ticket of the batch."""
        self.searched.append(search)
        estate, new, kinds, since, limit = search

        def earlier(tickets) -> list[rules.RecentTicket]:
            return sorted(
                (rules.RecentTicket(f.ticket_id, f.category, f.building, f.accepted_at)
                 for (e, _), f in tickets.items()
                 if e == estate and f.category == new.category and f.kind in kinds and f.accepted_at is not None
                 and since < f.accepted_at and (f.accepted_at, f.ticket_id) < (new.accepted_at, new.ticket_id)),
                key=lambda t: (t.accepted_at, t.ticket_id), reverse=True)

        stored = earlier(self.stored)
        found = stored[:limit] + [t for t in stored if t.building == new.building][:limit]
        found = [t for t in found if (estate, t.ticket_id) not in self.batch.facts] + earlier(self.batch.facts)
        return list({t.ticket_id: t for t in found}.values())

    def save(self, event, after, deltas, policy) -> None:
        self.batch.add(event, after, deltas, policy)


class FakeSignOffs:
    def __init__(self):
        self.rows: dict[tuple[str, str, str], dict] = {}

    async def save(self, row: dict) -> None:
        self.rows[(row["estate"], row["month"], row["department"])] = row


class FakeAnalyticsUnitOfWork:
    def __init__(self, sink: RecordedEvents):
        self.sink = sink
        self.batch = store.Batch()
        self.facts = FakeTicketFacts(self.batch)
        self.signoffs = FakeSignOffs()
        self.counters: dict[tuple[str, str, str, str, str], int] = {}  # what write_batch adds up
        self.alerts: dict[str, dict] = {}
        self.suggestions: dict[str, dict] = {}

    async def emit(self, payload, *, estate: str, actor: str, time: dt.datetime | None = None):
        return await self.sink.emit(payload, estate=estate, actor=actor, time=time)

    async def flush(self, now: dt.datetime) -> None:
        self.facts.stored.update(self.batch.facts)
        for counter, value in self.batch.totals().items():
            self.counters[counter] = self.counters.get(counter, 0) + value
        self.alerts.update(self.batch.alerts)
        self.suggestions.update(self.batch.suggestions)
        self.batch = self.facts.batch = store.Batch()
