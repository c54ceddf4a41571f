"""What every service process is made of: a broker with durable consumers, a database
with an outbox relay, the directory, periodic jobs, and an HTTP app with /healthz,
/metrics, bearer-token access and readable 4xx errors.

A service module declares its parts on a module-level `Service` at import time (so the
AsyncAPI document can be generated without connecting anywhere) and `bind()`s it to real
servers when it runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Awaitable, Callable

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream.nats import NatsBroker, NatsRouter
from faststream.nats.prometheus import NatsPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import AuthError, Principal, principal_from_header
from shared.bus import EventConsumer, EventHandler, OutboxRelay, ReconnectPolicy, ensure_stream, probe_nats
from shared.clock import Clock, SystemClock, clock_from_spec
from shared.db import Database
from shared.directory import Directory
from shared.errors import RuleViolation
from shared.events import STREAM_NAME, CloudEvent, Payload, make_event
from shared.settings import Settings

log = logging.getLogger("estatedesk.service")
MAX_BODY_BYTES = 1024 * 1024
STORED_FACTS_REFRESH_SECONDS = 15.0
STOP_SECONDS = 5.0


@dataclass
class PeriodicJob:
    name: str
    every_seconds: float
    run: Callable[[], Awaitable[object]]


class Service:
    def __init__(self, name: str, metadata: sa.MetaData, title: str, description: str = ""):
        self.name = name
        self.metadata = metadata
        self.title = title
        self.description = description
        self.router = NatsRouter()
        self.http = APIRouter()
        self.consumers: list[EventConsumer] = []
        self.jobs: list[PeriodicJob] = []
        self.registry = CollectorRegistry()
        self.events_emitted = Counter(
            "estatedesk_events_emitted", "Ticket events written to the outbox",
            ["service", "estate", "event"], registry=self.registry,
        )
        self.events_consumed = Counter(
            "estatedesk_events_consumed", "Ticket events processed (first delivery only)",
            ["service", "estate", "event"], registry=self.registry,
        )
        self.refusals = Counter(
            "estatedesk_refusals", "Requests refused for want of a token, an estate in scope or a role",
            ["service", "estate", "status"], registry=self.registry,
        )
        self.dead_letter_gauge = Gauge(
            "estatedesk_dead_letters", "Dead letters held in the service's store (read from it at start)",
            ["service"], registry=self.registry,
        )
        self.settings: Settings | None = None
        self.clock: Clock = SystemClock()
        self.db: Database | None = None
        self.broker: NatsBroker | None = None
        self.directory = Directory()
        self.relay: OutboxRelay | None = None
        self.reconnect = ReconnectPolicy()
        # Last answer of the broker probe (see `_probe_broker`); /healthz reads it.
        self.nats_status = "error: not started"
        self._tasks: list[asyncio.Task] = []

    # --- declaration -----------------------------------------------------------------
    def consumer(self, *events: str, description: str = "") -> Callable[[EventHandler], EventHandler]:
        """Declare a durable consumer of one event (or of every event when none given)."""

        def register(handler: EventHandler) -> EventHandler:
            consumer = EventConsumer(
                service=self, handler=handler, events=tuple(events) or None,
                on_processed=lambda event: self.events_consumed.labels(self.name, event.estate, event.event_name).inc(),
                on_dead_letter=lambda: self.dead_letter_gauge.labels(self.name).inc(),
            )
            consumer.register(self.router, description)
            self.consumers.append(consumer)
            return handler

        return register

    def periodic(self, name: str, every_seconds: float):
        def register(fn):
            self.jobs.append(PeriodicJob(name, every_seconds, fn))
            return fn

        return register

    # --- running ---------------------------------------------------------------------
    def bind(self, settings: Settings, clock: Clock | None = None) -> "Service":
        self.settings = settings
        self.clock = clock or clock_from_spec(settings.clock_spec)
        self.db = Database(settings.database_url, self.metadata)
        self.reconnect = ReconnectPolicy.from_env()
        self.broker = NatsBroker(
            settings.nats_url,
            **self.reconnect.connect_options(),
            middlewares=[NatsPrometheusMiddleware(registry=self.registry, app_name=self.name)],
            logger=logging.getLogger(f"estatedesk.{self.name}.broker"),
        )
        self.broker.include_router(self.router)
        self.relay = OutboxRelay(self.db, self._publish, ready=self.broker_connected)
        return self

    @property
    def nats_connection(self):
        return getattr(self.broker, "_connection", None)

    def broker_connected(self) -> bool:
        """True while the broker's connection is up and the last probe was answered."""
        connection = self.nats_connection
        return connection is not None and connection.is_connected and self.nats_status == "ok"

    async def _probe_broker(self) -> None:
        """Keeps `nats_status` current: a PING round trip every few seconds, so a frozen
        server (connection open, nothing answers) shows within one probe timeout."""
        policy = self.reconnect
        while True:
            status = await probe_nats(self.nats_connection, policy.probe_timeout_seconds)
            if status != self.nats_status:
                (log.info if status == "ok" else log.warning)("broker %s", status)
            self.nats_status = status
            # Looked at more often while down, so the relay resumes soon after a return.
            await asyncio.sleep(policy.probe_every_seconds if status == "ok" else policy.probe_every_while_down_seconds)

    async def _publish(self, subject: str, body: bytes, headers: dict[str, str]):
        return await self.broker.publish(body, subject, headers=headers, stream=STREAM_NAME)

    async def start(self) -> None:
        assert self.settings is not None, "bind() the service first"
        await self.read_stored_facts()
        await ensure_stream(self.settings.nats_url)
        await self.directory.start(self.settings.nats_url, self.reconnect.connect_options())
        await self.broker.start()
        self.nats_status = await probe_nats(self.nats_connection, self.reconnect.probe_timeout_seconds)
        self._tasks.append(asyncio.create_task(self._probe_broker(), name=f"{self.name}-broker-probe"))
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-outbox-relay"))
        # Rows removed by an operator (a replay) show at the next refresh.
        jobs = self.jobs + [PeriodicJob("stored-facts", STORED_FACTS_REFRESH_SECONDS, self.read_stored_facts)]
        for job in jobs:
            self._tasks.append(asyncio.create_task(self._run_periodic(job), name=f"{self.name}-{job.name}"))
        log.info("%s started", self.name)

    async def read_stored_facts(self) -> None:
        """Set the gauges of facts the store holds (dead letters: rows in this service's
        `dead_letters`) from the store, so a restart does not show 0 while rows exist.
        Kept current afterwards by each new dead letter and by the refresh job."""
        async with self.db.transaction() as session:
            count = (await session.execute(sa.select(sa.func.count()).select_from(self.db.dead_letters))).scalar_one()
        self.dead_letter_gauge.labels(self.name).set(count)

    async def _run_periodic(self, job: PeriodicJob) -> None:
        while True:
            try:
                await job.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic job %s failed; next run as scheduled", job.name)
            await asyncio.sleep(job.every_seconds)

    async def stop(self) -> None:
        if self.relay:
            self.relay.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.broker:
            await self.broker.stop()
        await self.directory.stop()
        if self.db:
            await self.db.dispose()

    # --- helpers for handlers ------------------------------------------------------------
    async def emit(self, session: AsyncSession, payload: Payload, *, estate: str, actor: str,
                   time: dt.datetime | None = None) -> CloudEvent:
        event = make_event(payload, estate=estate, actor=actor, source=self.name, time=time or self.clock.now())
        await self.db.emit(session, event)
        self.events_emitted.labels(self.name, estate, payload.event_name).inc()
        return event

    async def health(self) -> dict:
        checks = {}
        try:
            await asyncio.wait_for(self.db.ping(), 2)
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"error: {error}"
        checks["nats"] = self.nats_status
        checks["directory"] = "ok" if self.directory.connected else "error: not watching"
        return checks


# --- HTTP ---------------------------------------------------------------------------------


# Dependencies are coroutines so FastAPI does not hop to a worker thread for each request.
async def principal(request: Request) -> Principal:
    service: Service = request.app.state.service
    return principal_from_header(service.settings.signing_key, request.headers.get("authorization"))


async def require_estate(estate: str, who: Principal = Depends(principal)) -> Principal:
    """Dependency for routes under /estates/{estate}: the estate must exist and be in scope."""
    who.require_estate(estate)
    return who


def known_estate(service: Service, estate: str) -> None:
    if service.directory.estate(estate) is None:
        raise RuleViolation(f"unknown estate {estate!r}", status=404)


class BodySizeLimit:
    """Refuses bodies over `limit` bytes with 413, by Content-Length or while streaming
    (a chunked upload cannot slip past). Plain ASGI: no per-request task hop."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                return await self._refuse(send, int(value))
        received = 0
        started = refused = False

        async def limited_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answer now; the app sees a disconnect and its own reply is dropped.
                    refused = True
                    if not started:
                        await self._refuse(send, received)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send, size: int):
        body = json.dumps({"error": f"request body of {size} bytes exceeds the 1 MiB limit"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def refusal_context(service: Service, request: Request) -> tuple[str, str | None]:
    """(who asked: staff id or "anonymous"/"invalid token", estate of the path or None)
    for the log line and metric of a refusal."""
    estate = request.path_params.get("estate")
    try:
        who = principal_from_header(service.settings.signing_key, request.headers.get("authorization")).staff_id
    except AuthError:
        who = "anonymous" if not request.headers.get("authorization") else "invalid token"
    return who, estate


def create_http_app(service: Service, *, manage_lifecycle: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if manage_lifecycle:
            await service.start()
        yield
        if manage_lifecycle:
            try:
                # Bounded: what is unacknowledged is redelivered anyway; SIGTERM must end us.
                await asyncio.wait_for(service.stop(), STOP_SECONDS)
            except asyncio.TimeoutError:
                log.warning("%s did not stop cleanly within %g s; exiting anyway", service.name, STOP_SECONDS)

    app = FastAPI(title=f"EstateDesk {service.title}", description=service.description, version="1.0", lifespan=lifespan)
    app.state.service = service

    app.add_middleware(BodySizeLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(AuthError)
    async def on_auth_error(request: Request, error: AuthError):
        who, estate = refusal_context(service, request)
        # Only estates the directory knows become metric labels (bounded series).
        label = estate if estate is None or service.directory.estate(estate) else "unknown"
        service.refusals.labels(service.name, label or "-", str(error.status)).inc()
        log.warning("refused %s %s: %s", request.method, request.url.path, error.reason,
                    extra={"estate": estate, "actor": who, "status": error.status})
        return JSONResponse({"error": error.reason}, status_code=error.status)

    @app.exception_handler(RuleViolation)
    async def on_rule_violation(request: Request, error: RuleViolation):
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, error: RequestValidationError):
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {item.get('msg')}")
        return JSONResponse({"error": "invalid request", "problems": problems}, status_code=422)

    @app.get("/healthz", tags=["operations"])
    async def healthz():
        checks = await service.health()
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse({"service": service.name, "status": "ok" if healthy else "degraded", "checks": checks},
                            status_code=200 if healthy else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics():
        return PlainTextResponse(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(service.http, prefix="/v1")
    return app
