"""Port choice for the embedded servers never collides with a server already listening."""

import socket

from estatedesk.embedded import free_port


def test_a_port_in_use_is_never_chosen():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        chosen = free_port(preferred=taken)
        assert chosen != taken
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", chosen))  # and the chosen one is really free


def test_a_remembered_free_port_is_kept():
    port = free_port()
    assert free_port(preferred=port) == port
