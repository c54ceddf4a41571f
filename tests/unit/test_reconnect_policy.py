"""The reconnect policy every NATS connection of a service uses (shared.bus)."""

import pytest

from shared.bus import ReconnectPolicy


def test_retries_forever_by_default():
    options = ReconnectPolicy().connect_options()
    assert options["max_reconnect_attempts"] == -1  # nats-py's own default gives up after 60
    assert options["allow_reconnect"] is True


def test_waits_double_up_to_the_cap():
    policy = ReconnectPolicy(first_wait_seconds=0.1, max_wait_seconds=2.0, jitter=0.0)
    assert [policy.wait_before(n) for n in range(7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert policy.wait_before(10_000) == 2.0


def test_jitter_adds_at_most_its_fraction():
    policy = ReconnectPolicy(first_wait_seconds=1.0, max_wait_seconds=1.0, jitter=0.1)
    assert policy.wait_before(0, rand=lambda: 0.0) == 1.0
    assert policy.wait_before(0, rand=lambda: 1.0) == pytest.approx(1.1)


class Server:
    def __init__(self, reconnects: int):
        self.reconnects = reconnects


def test_handler_tells_nats_py_how_long_to_wait():
    policy = ReconnectPolicy(first_wait_seconds=0.5, max_wait_seconds=10, jitter=0.0)
    handler = policy.connect_options()["reconnect_to_server_handler"]
    server = Server(3)
    assert handler([server], {}) == (server, 4.0)


def test_handler_moves_on_from_a_dead_cluster_node():
    """nats-py, handed None, would knock on the first server of its pool for ever; the
    handler picks the node that failed least, so a client of a cluster fails over."""
    policy = ReconnectPolicy(first_wait_seconds=0.5, max_wait_seconds=10, jitter=0.0)
    dead, alive, other = Server(4), Server(0), Server(1)
    assert policy.next_server([dead, alive, other], {}) == (alive, 0.5)


def test_read_from_the_environment():
    policy = ReconnectPolicy.from_env({
        "ESTATEDESK_NATS_RECONNECT_MAX_WAIT": "0.25", "ESTATEDESK_NATS_PING_INTERVAL": "2",
        "ESTATEDESK_NATS_MAX_RECONNECTS": "100", "UNRELATED": "x",
    })
    assert (policy.max_wait_seconds, policy.ping_interval_seconds, policy.max_attempts) == (0.25, 2.0, 100)
    assert policy.probe_timeout_seconds == ReconnectPolicy().probe_timeout_seconds
