"""The handler tier's own fixtures behave like the live ones."""

from shared.events import AccessRefused
from tests.handlers.conftest import ESTATE, START


def test_the_context_answers_from_the_directory_in_memory(ctx, clock):
    assert ctx.now() == START
    clock.advance(minutes=5)
    assert (ctx.now() - START).total_seconds() == 300
    assert ctx.estate(ESTATE).code == ESTATE and ctx.estate("nowhere") is None
    assert str(ctx.timezone(ESTATE)) == ctx.policy(ESTATE).timezone


async def test_recorded_events_keep_order_time_and_payloads(sink, clock):
    def refused(path: str) -> AccessRefused:
        return AccessRefused(service="archive", method="GET", path=path, route=path, status=403,
                             reason="not yours", roles=[], record_number=None)

    await sink.emit(refused("/a"), estate=ESTATE, actor="x")
    clock.advance(seconds=1)
    await sink.emit(refused("/b"), estate=ESTATE, actor="y")
    assert sink.names() == ["access_refused", "access_refused"]
    assert [p.path for p in sink.payloads("access_refused")] == ["/a", "/b"]
    assert [e.actor for e in sink.events] == ["x", "y"]
    assert (sink.events[1].time - sink.events[0].time).total_seconds() == 1
    assert sink.events[0].time == START and sink.events[0].estate == ESTATE
