"""The gateway's live hub holds one NATS subscription per estate with an open screen: taken
once however many screens open, dropped with the last one, and nothing left behind when
taking it fails or the request is cancelled meanwhile."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from estatedesk.live import LiveClient, LiveHub
from shared.auth import Principal


class FakeSubscription:
    def __init__(self, connection: "FakeConnection", subject: str) -> None:
        self.connection, self.subject = connection, subject

    async def unsubscribe(self) -> None:
        self.connection.subjects.remove(self.subject)


class FakeConnection:
    """What the hub uses of a nats-py connection; `flush` may fail or wait to be released."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.fail: Exception | None = None
        self.release = asyncio.Event()
        self.release.set()

    async def subscribe(self, subject: str, cb=None) -> FakeSubscription:
        self.subjects.append(subject)
        return FakeSubscription(self, subject)

    async def flush(self, timeout: float = 5) -> None:
        await self.release.wait()
        if self.fail is not None:
            raise self.fail


def screen(hub: LiveHub, estate: str) -> LiveClient:
    client = LiveClient(Principal("cs01", "CS", frozenset({"customer_service"}), frozenset({estate})), estate)
    hub.clients.add(client)
    return client


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def hub() -> LiveHub:
    hub = LiveHub("nats://unused", "key")
    hub._nc = FakeConnection()
    return hub


async def test_one_subscription_per_watched_estate_dropped_with_its_last_screen(hub):
    first, second, other = screen(hub, "maple"), screen(hub, "maple"), screen(hub, "birch")
    await asyncio.gather(hub.watch("maple"), hub.watch("maple"), hub.watch("birch"))
    assert sorted(hub._nc.subjects) == ["estatedesk.birch.ticket.*", "estatedesk.maple.ticket.*"]

    hub.clients.discard(first)
    hub.unwatch_if_unwatched("maple")
    await settle()
    assert "estatedesk.maple.ticket.*" in hub._nc.subjects  # a maple screen is still open

    hub.clients.discard(second)
    hub.unwatch_if_unwatched("maple")
    await settle()
    assert hub._nc.subjects == ["estatedesk.birch.ticket.*"] and other in hub.clients


async def test_a_failed_subscription_is_not_kept(hub):
    hub._nc.fail = TimeoutError("no PONG")
    screen(hub, "maple")
    with pytest.raises(TimeoutError):
        await hub.watch("maple")
    assert "maple" not in hub._watched
    hub._nc.fail = None
    await hub.watch("maple")  # the next screen tries afresh
    assert "maple" in hub._watched


async def test_a_cancelled_request_leaves_no_screen_and_no_subscription(hub, monkeypatch):
    import estatedesk.live as live

    monkeypatch.setattr(live, "principal_from_header", lambda key, header: Principal(
        "cs01", "CS", frozenset({"customer_service"}), frozenset({"maple"})))
    monkeypatch.setattr(live, "require_known_staff", lambda directory, estate, who: None)
    monkeypatch.setattr(hub, "refusal", lambda who: None)
    hub.directory = type("Directory", (), {"estate": staticmethod(lambda code: object())})()
    hub.ready = True
    hub._nc.release.clear()  # the subscription's PING round trip hangs
    request = Request({"type": "http", "method": "GET", "path": "/v1/live", "query_string": b"estate=maple",
                       "headers": [(b"authorization", b"Bearer x")]})
    task = asyncio.ensure_future(hub.stream(request))
    await settle()
    assert len(hub.clients) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    hub._nc.release.set()
    await settle()
    assert not hub.clients and "maple" not in hub._watched and hub._nc.subjects == []
