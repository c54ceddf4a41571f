"""The gateway's proxy against stand-in services (no NATS, no database): replica failover
only when a replica refuses the connection, 503 with the reason otherwise, and bodies
streamed both ways — an event stream arrives event by event and ends at the service when
the caller leaves, a large download and an upload of the services' largest body arrive
whole, a larger body is a 413 — with paths, query strings and headers passed on as sent."""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from estatedesk.embedded import free_port
from estatedesk.gateway import create_gateway

DOWNLOAD = bytes(range(256)) * (3 * 4096)  # 3 MiB: an archive PDF or an export's size
STREAM = "/v1/dashboard/stream"  # analytics' server-sent events
REGISTER = "/v1/estates/e1/requests"  # intake


@asynccontextmanager
async def serving(app):
    """`app` on a free local port, served by uvicorn in this event loop: its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class StandIn:
    """A service replica: tells what reached it, streams events and large bodies."""

    def __init__(self, name: str):
        self.name = name
        self.seen: list[str] = []
        self.next_event = asyncio.Event()
        self.streams_open = 0
        self.app = Starlette(routes=[
            Route(STREAM, self.stream),
            Route("/v1/estates/e1/archive/records/{record}/form.pdf", self.download),
            Route("/v1/{path:path}", self.echo, methods=["GET", "POST"]),
        ])

    async def echo(self, request: Request) -> JSONResponse:
        self.seen.append(request.url.path)
        body = await request.body()
        answer = JSONResponse(
            {"replica": self.name, "raw_path": request.scope["raw_path"].decode(),
             "query": request.url.query, "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
             "forwarded_for": request.headers.get("x-forwarded-for"), "marker": request.headers.get("x-marker")},
            status_code=201 if request.method == "POST" else 200)
        answer.set_cookie("a", "1")
        answer.set_cookie("b", "2")
        return answer

    async def stream(self, request: Request) -> StreamingResponse:
        self.seen.append(request.url.path)

        async def events():
            self.streams_open += 1
            try:
                yield b"data: one\n\n"
                await self.next_event.wait()  # the second comes only when the test has seen the first
                yield b"data: two\n\n"
            finally:
                self.streams_open -= 1

        return StreamingResponse(events(), media_type="text/event-stream")

    async def download(self, request: Request) -> StreamingResponse:
        async def chunks():
            for start in range(0, len(DOWNLOAD), 65536):
                yield DOWNLOAD[start:start + 65536]

        return StreamingResponse(chunks(), media_type="application/pdf")


class Refusing:
    """A replica that takes the connection and the request, then hangs up unanswered."""

    def __init__(self):
        self.requests = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        writer.close()


@asynccontextmanager
async def gateway_for(upstreams, tmp_path):
    async with serving(create_gateway(upstreams, console_dist=tmp_path)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield client


def nothing_listens() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_a_refused_connection_goes_to_the_next_replica(tmp_path):
    good = StandIn("good")
    async with serving(good.app) as good_url:
        dead = nothing_listens()
        async with gateway_for({"intake": [dead, good_url]}, tmp_path) as client:
            body = b'{"description": "' + b"x" * 5000 + b'"}'
            for _ in range(2):  # the dead replica's turn first, then the good one's
                answer = await client.post(REGISTER + "?echo=1", content=body, headers={"x-marker": "m"})
                assert answer.status_code == 201
                seen = answer.json()
                assert seen["replica"] == "good" and seen["length"] == len(body)
                assert seen["sha256"] == hashlib.sha256(body).hexdigest()
                assert seen["query"] == "echo=1" and seen["marker"] == "m" and seen["forwarded_for"] == "127.0.0.1"
                assert answer.headers.get_list("set-cookie") == ["a=1; Path=/; SameSite=lax", "b=2; Path=/; SameSite=lax"]
    assert good.seen == [REGISTER, REGISTER]


async def test_a_request_that_reached_a_replica_is_not_sent_to_another(tmp_path):
    good, broken = StandIn("good"), Refusing()
    server = await asyncio.start_server(broken, "127.0.0.1", 0)
    broken_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with serving(good.app) as good_url:
            async with gateway_for({"intake": [broken_url, good_url]}, tmp_path) as client:
                answer = await client.post(REGISTER, json={"description": "once"})
    finally:
        server.close()
    assert answer.status_code == 503
    assert answer.json()["error"].startswith("intake is not answering: ")
    assert broken.requests == 1 and good.seen == []


async def test_a_body_over_the_services_limit_is_a_413_before_any_replica_is_asked(tmp_path):
    """With replicas the gateway holds a body to send it again: never more than the
    services' own 1 MiB, by Content-Length or while a chunked body streams in."""
    one, two = StandIn("one"), StandIn("two")
    async with serving(one.app) as one_url, serving(two.app) as two_url:
        async with gateway_for({"intake": [one_url, two_url]}, tmp_path) as client:
            too_big = b"x" * (1024 * 1024 + 1)
            answer = await client.post(REGISTER, content=too_big)
            assert answer.status_code == 413
            assert answer.json()["error"] == f"request body of {len(too_big)} bytes exceeds the 1 MiB limit"

            async def chunks():
                for _ in range(3):
                    yield b"y" * (512 * 1024)

            answer = await client.post(REGISTER, content=chunks())
            assert answer.status_code == 413 and "exceeds the 1 MiB limit" in answer.json()["error"]
            answer = await client.post(REGISTER, content=b"z" * (1024 * 1024))  # the limit itself passes
            assert answer.status_code == 201 and answer.json()["length"] == 1024 * 1024
    assert one.seen + two.seen == [REGISTER]


async def test_a_service_with_no_replica_answering_is_a_503_with_the_reason(tmp_path):
    async with gateway_for({"intake": [nothing_listens(), nothing_listens()]}, tmp_path) as client:
        answer = await client.get(REGISTER)
    assert answer.status_code == 503
    assert answer.json()["error"] == "intake is not answering: ClientConnectorError"


async def test_events_arrive_one_by_one_and_large_bodies_whole(tmp_path):
    analytics, archive, intake = StandIn("analytics"), StandIn("archive"), StandIn("intake")
    async with serving(analytics.app) as analytics_url, serving(archive.app) as archive_url, \
            serving(intake.app) as intake_url:
        async with gateway_for({"analytics": analytics_url, "archive": archive_url, "intake": intake_url},
                               tmp_path) as client:
            async with client.stream("GET", STREAM) as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                received = answer.aiter_bytes()
                assert await asyncio.wait_for(anext(received), 5) == b"data: one\n\n"  # before the stream ends
                analytics.next_event.set()
                assert b"".join([chunk async for chunk in received]) == b"data: two\n\n"
            analytics.next_event.clear()
            async with client.stream("GET", STREAM) as answer:  # left after the first event
                assert await asyncio.wait_for(anext(answer.aiter_bytes()), 5) == b"data: one\n\n"
            for _ in range(100):  # the gateway hung up on the service too
                if not analytics.streams_open:
                    break
                await asyncio.sleep(0.05)
            assert analytics.streams_open == 0

            download = await client.get("/v1/estates/e1/archive/records/R-1/form.pdf")
            assert download.status_code == 200 and download.content == DOWNLOAD

            largest = DOWNLOAD[:1024 * 1024]  # the services' (and the gateway's) limit

            async def upload():  # a body of unknown length, streamed (one replica: not read first)
                for start in range(0, len(largest), 65536):
                    yield largest[start:start + 65536]

            seen = (await client.post(REGISTER, content=upload())).json()
            assert seen["length"] == len(largest) and seen["sha256"] == hashlib.sha256(largest).hexdigest()
            # curl's way with a large body: the service's "100 Continue" lets it through.
            seen = (await client.post(REGISTER, content=largest, headers={"expect": "100-continue"})).json()
            assert seen["length"] == len(largest)

            # The path reaches the service as the client encoded it.
            seen = (await client.get("/v1/estates/e1/requests/a%20b", params={"q": "x y"})).json()
            assert seen["raw_path"] == "/v1/estates/e1/requests/a%20b" and seen["query"] == "q=x+y"
