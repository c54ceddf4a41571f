"""The nats-py fetch shim: a bare asyncio timeout becomes nats' own TimeoutError, the
one faststream's batch loop handles (see shared.bus)."""

import asyncio
import json

import nats
import pytest
from nats.js.client import JetStreamContext

import shared.bus  # noqa: F401  (installs the shim)


async def test_bare_timeout_from_fetch_is_raised_as_nats_timeout(monkeypatch):
    async def fetch_n(self, batch, expires, timeout, heartbeat=None):
        raise asyncio.TimeoutError

    monkeypatch.setattr(JetStreamContext.PullSubscription, "_fetch_n", fetch_n)
    subscription = JetStreamContext.PullSubscription.__new__(JetStreamContext.PullSubscription)
    subscription._sub = object()
    with pytest.raises(nats.errors.TimeoutError):
        await subscription.fetch(batch=10, timeout=0.01)


async def test_messages_pass_through_untouched(monkeypatch):
    async def fetch_n(self, batch, expires, timeout, heartbeat=None):
        return ["m1", "m2"]

    monkeypatch.setattr(JetStreamContext.PullSubscription, "_fetch_n", fetch_n)
    subscription = JetStreamContext.PullSubscription.__new__(JetStreamContext.PullSubscription)
    subscription._sub = object()
    assert await subscription.fetch(batch=10, timeout=0.01) == ["m1", "m2"]


class _Down:
    is_connected = False


async def test_fetch_while_disconnected_waits_instead_of_spinning(monkeypatch):
    """A closed or reconnecting connection: no pull request is queued, the caller is held
    for a moment and sees an empty batch (faststream's loop then tries again)."""
    calls = []

    async def fetch_n(self, batch, expires, timeout, heartbeat=None):
        calls.append(batch)
        return ["m1"]

    monkeypatch.setattr(JetStreamContext.PullSubscription, "_fetch_n", fetch_n)
    subscription = JetStreamContext.PullSubscription.__new__(JetStreamContext.PullSubscription)
    subscription._sub = object()
    subscription._nc = _Down()
    started = asyncio.get_running_loop().time()
    with pytest.raises(nats.errors.TimeoutError):
        await subscription.fetch(batch=10, timeout=0.01)
    assert asyncio.get_running_loop().time() - started >= shared.bus.FETCH_WAIT_WHILE_DISCONNECTED_SECONDS * 0.9
    assert calls == []


class _Message:
    """A delivered message as nats-py's inbox holds it (no headers: no status)."""

    def __init__(self, name: str):
        self.data = name.encode()
        self.headers = None


class _Inbox:
    def __init__(self, messages):
        self._pending_queue = asyncio.Queue()
        for message in messages:
            self._pending_queue.put_nowait(message)
        self._pending_size = sum(len(m.data) for m in messages)


async def test_a_long_fetch_takes_no_more_from_the_inbox_than_it_hands_over():
    """Messages an earlier pull request left in the inbox: a fetch takes at most its
    batch; the rest stay for the next fetch (one taken and dropped would wait for its
    redelivery, ACK_WAIT_SECONDS)."""
    subscription = JetStreamContext.PullSubscription.__new__(JetStreamContext.PullSubscription)
    subscription._sub = _Inbox([_Message(f"m{i}") for i in range(5)])
    first = await shared.bus._long_fetch(subscription, 3, timeout=1)
    second = await shared.bus._long_fetch(subscription, 3, timeout=1)
    assert [m.data for m in first] == [b"m0", b"m1", b"m2"]
    assert [m.data for m in second] == [b"m3", b"m4"]


class _Delivered:
    """A message in a batch being handled: counts the in-progress answers it sends."""

    def __init__(self, connection=None, acked: bool = False):
        self._client = connection
        self.is_acked = acked
        self.progress = 0

    async def in_progress(self):
        self.progress += 1


class _Up:
    is_connected = True


async def test_a_batch_in_hand_is_told_in_progress_until_answered():
    """While a batch is handled, its messages not yet acked are reported in progress every
    `every` seconds, so a batch slower than ACK_WAIT_SECONDS is not delivered again (with
    the short ack wait that brings a delivery lost in flight back within seconds). Nothing
    is sent for an acked message, on a connection that is down, or after the block."""
    held, acked, cut_off = _Delivered(_Up()), _Delivered(_Up(), acked=True), _Delivered(_Down())
    async with shared.bus._in_progress_until_answered([held, acked, cut_off], every=0.05):
        started = asyncio.get_running_loop().time()
        while held.progress < 3:  # told again and again while the block runs (a slow machine: later)
            assert asyncio.get_running_loop().time() - started < 5, held.progress
            await asyncio.sleep(0.01)
    told = held.progress
    assert acked.progress == cut_off.progress == 0
    await asyncio.sleep(0.1)
    assert held.progress == told


async def test_a_quick_batch_sends_no_progress():
    quick = _Delivered(_Up())
    async with shared.bus._in_progress_until_answered([quick], every=0.2):
        await asyncio.sleep(0.01)
    assert quick.progress == 0


def test_a_delivery_lost_in_flight_comes_back_within_seconds():
    """A message the server wrote to a connection that was already dead (after a freeze)
    comes back only after the ack wait: it must stay well inside the 15 s in which the
    fault tests want everything flowing again; the in-progress reports come often enough
    that a slow batch is never redelivered."""
    assert shared.bus.ACK_WAIT_SECONDS <= 8
    assert shared.bus.ACK_PROGRESS_SECONDS <= shared.bus.ACK_WAIT_SECONDS / 3


class FakeConnection:
    def __init__(self):
        self.is_connected = True
        self.stats = {"reconnects": 0}


async def test_a_long_fetch_is_abandoned_the_moment_the_connection_drops_and_wakes_for_nothing_else(monkeypatch):
    """With `ConnectionChanges` (nats-py's disconnected/reconnected callbacks), a long
    fetch waits on the server and the callback only: no look every so often."""
    from shared.bus import ConnectionChanges, _while_connected

    monkeypatch.setattr(shared.bus, "FETCH_CONNECTION_CHECK_SECONDS", 0.001)  # would spin if it polled
    looks = 0

    class Counted(FakeConnection):
        @property
        def stats(self):
            nonlocal looks
            looks += 1
            return {"reconnects": 0}

        @stats.setter
        def stats(self, value):
            pass

    connection = Counted()
    changes = ConnectionChanges()
    changes.watch(connection)
    answer = asyncio.get_running_loop().create_future()
    fetch = asyncio.create_task(_while_connected(connection, answer))
    await asyncio.sleep(0.05)
    assert not fetch.done() and looks == 2  # the two looks before waiting, none while waiting
    connection.is_connected = False
    await changes.changed()  # nats-py's disconnected_cb
    with pytest.raises(nats.errors.TimeoutError):
        await asyncio.wait_for(fetch, 1)
    assert answer.cancelled()  # the fetch itself was given up

    # A fetch answered before any change returns its messages; a drop seen before waiting
    # ends the fetch at once.
    connection.is_connected = True
    answered = asyncio.get_running_loop().create_future()
    answered.set_result(["m"])
    assert await _while_connected(connection, answered) == ["m"]
    connection.is_connected = False
    with pytest.raises(nats.errors.TimeoutError):
        await asyncio.wait_for(_while_connected(connection, asyncio.sleep(10)), 1)


async def test_a_connection_without_changes_is_looked_at(monkeypatch):
    from shared.bus import _while_connected

    monkeypatch.setattr(shared.bus, "FETCH_CONNECTION_CHECK_SECONDS", 0.01)
    connection = FakeConnection()
    fetch = asyncio.create_task(_while_connected(connection, asyncio.sleep(10)))
    await asyncio.sleep(0.05)
    connection.stats = {"reconnects": 1}  # came back in between: the pull request is gone
    with pytest.raises(nats.errors.TimeoutError):
        await asyncio.wait_for(fetch, 1)


async def test_a_batchs_acks_and_the_next_pull_request_leave_in_one_write():
    """Between the end of a handled batch (its acks queued on the connection) and the next
    pull request queued after them, nothing gives the event loop a turn: nats-py's flusher
    (a task) then writes both at once. Shown here by a callback scheduled before the batch
    ends, which must not have run when the pull request is queued."""
    sent = []

    class Connection:
        async def publish(self, subject, payload, reply=""):
            sent.append(json.loads(payload))

    subscription = JetStreamContext.PullSubscription.__new__(JetStreamContext.PullSubscription)
    subscription._nc, subscription._nms, subscription._deliver = Connection(), "$JS.API.CONSUMER.MSG.NEXT.S.C", "_INBOX.x"
    turns = []
    asyncio.get_running_loop().call_soon(turns.append, "the flusher's turn")
    async with shared.bus._in_progress_until_answered([_Delivered(_Up())], every=10):
        pass  # the batch is handled and acked here
    deadline = await shared.bus._request_pull(subscription, 100, 30)
    assert turns == [] and sent == [{"batch": 100, "no_wait": True, "expires": sent[0]["expires"]}]
    assert deadline > asyncio.get_running_loop().time() + 29
    await asyncio.sleep(0)
    assert turns == ["the flusher's turn"]
