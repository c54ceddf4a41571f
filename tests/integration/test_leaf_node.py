"""The NATS side of a multi-site estate (docs/multi-site.md, issue 13), with no EstateDesk
service: an estate's leaf node with its own JetStream domain keeps storing its events
while the head-office hub is down, and the hub's stream, which sources the estate's,
catches up with every event once when the hub returns."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from pathlib import Path

import nats
import pytest
from nats.js.api import ExternalStream, StreamConfig, StreamSource

from estatedesk.embedded import free_port, nats_server_binary

pytestmark = pytest.mark.integration
EVENTS_WHILE_DOWN = 200


class ConfiguredNats:
    """A nats-server started from a config file (leaf nodes and domains need one)."""

    def __init__(self, directory: Path, name: str, config: str):
        self.path = directory / f"{name}.conf"
        self.path.write_text(config)
        self.log = directory / f"{name}.log"
        self.monitor = int(config.split("http: 127.0.0.1:")[1].split()[0])
        self.process: subprocess.Popen | None = None

    def start(self) -> "ConfiguredNats":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([nats_server_binary(), "-c", str(self.path)], stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{self.path.name} not healthy")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


async def test_leaf_keeps_storing_while_the_hub_is_down_and_the_hub_catches_up(tmp_path):
    hub_port, hub_http, leaf_listen, leaf_port, leaf_http = (free_port() for _ in range(5))
    hub = ConfiguredNats(tmp_path, "hub", f"""
listen: 127.0.0.1:{hub_port}
http: 127.0.0.1:{hub_http}
server_name: hub
jetstream {{ store_dir: "{tmp_path / 'hub'}", domain: hub }}
leafnodes {{ listen: 127.0.0.1:{leaf_listen} }}
""").start()
    leaf = ConfiguredNats(tmp_path, "leaf", f"""
listen: 127.0.0.1:{leaf_port}
http: 127.0.0.1:{leaf_http}
server_name: hx01
jetstream {{ store_dir: "{tmp_path / 'leaf'}", domain: hx01 }}
leafnodes {{ remotes: [ {{ url: "nats-leaf://127.0.0.1:{leaf_listen}" }} ] }}
""").start()
    estate_nc = hub_nc = None
    try:
        estate_nc = await nats.connect(f"nats://127.0.0.1:{leaf_port}")
        estate_js = estate_nc.jetstream()
        await estate_js.add_stream(StreamConfig(name="ESTATEDESK_TICKETS_HX01", subjects=["estatedesk.hx01.>"]))
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        hub_js = hub_nc.jetstream()
        await hub_js.add_stream(StreamConfig(name="ESTATEDESK_TICKETS", sources=[StreamSource(
            name="ESTATEDESK_TICKETS_HX01", external=ExternalStream(api="$JS.hx01.API"))]))
        await hub_nc.close()

        async def publish(count: int, start: int) -> None:
            for i in range(start, start + count):
                ack = await estate_js.publish("estatedesk.hx01.ticket.accepted", f"{i}".encode(),
                                              headers={"Nats-Msg-Id": f"event-{i}"})
                assert not ack.duplicate

        async def hub_count(expected: int, timeout: float = 60) -> int:
            nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
            try:
                deadline = time.monotonic() + timeout
                while True:
                    found = (await nc.jetstream().stream_info("ESTATEDESK_TICKETS")).state.messages
                    if found >= expected or time.monotonic() > deadline:
                        return found
                    await asyncio.sleep(0.2)
            finally:
                await nc.close()

        await publish(10, 0)
        assert await hub_count(10) == 10  # link up: sourced at once
        hub.stop()  # the link (or head office) is down
        await publish(EVENTS_WHILE_DOWN, 10)  # the estate goes on storing
        assert (await estate_js.stream_info("ESTATEDESK_TICKETS_HX01")).state.messages == 10 + EVENTS_WHILE_DOWN
        hub.start()
        back = time.monotonic()
        assert await hub_count(10 + EVENTS_WHILE_DOWN) == 10 + EVENTS_WHILE_DOWN  # caught up, each once
        print(f"hub caught up {EVENTS_WHILE_DOWN} events in {time.monotonic() - back:.1f} s")
        hub_nc = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        sub = await hub_nc.jetstream().subscribe("estatedesk.hx01.>", stream="ESTATEDESK_TICKETS", ordered_consumer=True)
        bodies = [int((await sub.next_msg(timeout=5)).data) for _ in range(10 + EVENTS_WHILE_DOWN)]
        assert bodies == list(range(10 + EVENTS_WHILE_DOWN))  # in order, none twice
    finally:
        for nc in (estate_nc, hub_nc):
            if nc is not None and not nc.is_closed:
                await nc.close()
        leaf.stop()
        hub.stop()
