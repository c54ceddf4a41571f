"""The services' HTTP server: uvicorn's, with a slower housekeeping tick (idle CPU, issue 12)."""

from __future__ import annotations

import asyncio

import uvicorn

from estatedesk import runner


async def test_each_tick_renews_the_date_header_and_a_shutdown_request_ends_the_loop(monkeypatch):
    monkeypatch.setattr(runner, "TICK_SECONDS", 0.01)
    server = runner.Server(uvicorn.Config(app=lambda scope, receive, send: None))
    ticks: list[int] = []
    original = server.on_tick

    async def on_tick(counter: int) -> bool:
        ticks.append(counter)
        server.server_state.default_headers = []
        stop = await original(counter)
        assert any(name == b"date" for name, _ in server.server_state.default_headers)  # renewed on every tick
        if len(ticks) == 3:
            server.should_exit = True
        return stop

    server.on_tick = on_tick
    await asyncio.wait_for(server.main_loop(), 2)
    assert ticks[:3] == [0, 10, 20] and len(ticks) == 4
