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
import logging
import re
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Awaitable, Callable
from urllib.parse import unquote_to_bytes
from zoneinfo import ZoneInfo

import asyncpg
import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.encoders import ENCODERS_BY_TYPE
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from faststream.nats import NatsBroker, NatsRouter
from faststream.nats.prometheus import NatsPrometheusMiddleware
from pydantic import BaseModel, Field, PlainSerializer
from starlette.exceptions import HTTPException as StarletteHTTPException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import AuthError, Principal, principal_from_header
from shared.bus import (
    BatchFlush, BatchPrepare, ConnectionChanges, EventConsumer, EventHandler, OutboxRelay, ReconnectPolicy, ensure_stream,
    probe_nats,
)
from shared.clock import Clock, SystemClock, clock_from_spec
from shared.db import Database
from shared.directory import Directory
from shared.errors import RuleViolation
from shared import limits
from shared.events import STREAM_NAME, AccessRefused, CloudEvent, Payload, make_event
from shared.limits import text_problem
from shared.owner_auth import owner_of_request
from shared.policy import DEFAULT_POLICY
from shared.settings import Settings
from shared.uow import HandlerContext

log = logging.getLogger("estatedesk.service")
MAX_BODY_BYTES = 1024 * 1024
DOCS_ASSETS = "/docs-assets"  # where every service (and the gateway) serves Swagger UI's and ReDoc's files
STORED_FACTS_REFRESH_SECONDS = 15.0
STOP_SECONDS = 5.0
# How long the outbox relay waits for JetStream's ack of one publication before the row
# stays for the next pass (nats-py's own default for a JetStream publish).
PUBLISH_ACK_SECONDS = 5.0


@dataclass
class PeriodicJob:
    """A job every replica schedules. Unless `each_replica`, a run happens only in the
    replica holding the job's advisory lock (`Database.advisory_lock`): replicas never
    scan at once, and since a run commits what it did before letting go, each due item
    fires once across replicas (issue 13). `each_replica` jobs keep this process's own
    state current (gauges, a live feed) and run everywhere."""

    name: str
    every_seconds: float
    run: Callable[[], Awaitable[object]]
    each_replica: bool = False
    # Awaited between runs instead of sleeping `every_seconds`, for a job that knows when
    # it next has work (dispatch's SLA scan sleeps until its next due clock, issue 12).
    wait: Callable[[], Awaitable[object]] | None = None


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
        self.events_published = Counter(
            "estatedesk_events_published", "Events the outbox relay published and JetStream acknowledged",
            ["service"], registry=self.registry,
        )
        self.dead_letter_gauge = Gauge(
            "estatedesk_dead_letters", "Dead letters held in the service's store (read from it at start)",
            ["service"], registry=self.registry,
        )
        # (method, OpenAPI path) → roles that may call each write route; see `authorize`.
        self.write_roles: RoleTable = {}
        self.public_routes: set[tuple[str, str]] = set()  # writes that need no token (signing in)
        # Writes made by a bound owner with an owner token (shared.owner_auth), never by staff.
        self.owner_routes: set[tuple[str, str]] = set()
        # Route templates (without /v1) under which owners' data or archived records live:
        # a refusal there also goes to the archive's access log (`record_refused_access`).
        self.audited_routes: tuple[str, ...] = ()
        self.settings: Settings | None = None
        self.clock: Clock = SystemClock()
        self.db: Database | None = None
        self.broker: NatsBroker | None = None
        self.directory = Directory()
        self.relay: OutboxRelay | None = None
        self.reconnect = ReconnectPolicy()
        # Last answer of the broker probe (see `_probe_broker`); /healthz reads it.
        self.nats_status = "error: not started"
        self._jetstream = None  # (connection, its JetStream context) for the relay's publications
        self._tasks: list[asyncio.Task] = []

    # --- declaration -----------------------------------------------------------------
    def consumer(self, *events: str, description: str = "", exclusive: bool = False,
                 flush: BatchFlush | None = None,
                 prepare: BatchPrepare | None = None,
                 gather_seconds: float = 0.0,
                 ignore: Callable[[CloudEvent], bool] | None = None) -> Callable[[EventHandler], EventHandler]:
        """Declare a durable consumer of one event (or of every event when none given);
        `exclusive`: its replicas commit one batch at a time; `flush`: writes what the
        handlers held in memory, before the batch commits; `prepare`: loads what a batch's
        events touch before its handlers run; `gather_seconds`: how long a batch keeps
        gathering after its first message; `ignore`: events acked untouched (see
        EventConsumer)."""

        def register(handler: EventHandler) -> EventHandler:
            consumer = EventConsumer(
                service=self, handler=handler, events=tuple(events) or None,
                on_processed=lambda event: self.events_consumed.labels(self.name, event.estate, event.event_name).inc(),
                on_dead_letter=lambda: self.dead_letter_gauge.labels(self.name).inc(),
                exclusive=exclusive, flush=flush, prepare=prepare, gather_seconds=gather_seconds,
                ignore=ignore,
            )
            consumer.register(self.router, description)
            self.consumers.append(consumer)
            return handler

        return register

    def periodic(self, name: str, every_seconds: float, each_replica: bool = False,
                 wait: Callable[[], Awaitable[object]] | None = None):
        """Declare a periodic job; once across replicas unless `each_replica` (see PeriodicJob)."""

        def register(fn):
            self.jobs.append(PeriodicJob(name, every_seconds, fn, each_replica, wait))
            return fn

        return register

    # --- running ---------------------------------------------------------------------
    def bind(self, settings: Settings, clock: Clock | None = None) -> "Service":
        self.settings = settings
        self.clock = clock or clock_from_spec(settings.clock_spec)
        self.db = Database(settings.database_url, self.metadata)
        self.reconnect = ReconnectPolicy.from_env()
        self.connection_changes = ConnectionChanges()
        self.broker = NatsBroker(
            settings.nats_servers,
            **self.reconnect.connect_options(),
            # The consumers' long fetches hear of a drop or a return at once (shared.bus).
            disconnected_cb=self.connection_changes.changed, reconnected_cb=self.connection_changes.changed,
            middlewares=[NatsPrometheusMiddleware(registry=self.registry, app_name=self.name)],
            logger=logging.getLogger(f"estatedesk.{self.name}.broker"),
        )
        self.broker.include_router(self.router)
        self.relay = OutboxRelay(self.db, self._publish, ready=self.broker_connected,
                                 on_published=self.events_published.labels(self.name).inc)
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
        """One outbox row to the stream on the broker's connection: JetStream's PubAck.
        Raises what JetStream answered (a refusal) or TimeoutError after
        `PUBLISH_ACK_SECONDS` without an ack. nats-py's `publish_async` (acks arrive on one
        reply subscription), not a request with an inbox, a timer and faststream's
        correlation id for each row: those were half the relay's CPU."""
        connection = self.nats_connection
        if self._jetstream is None or self._jetstream[0] is not connection:
            self._jetstream = (connection, connection.jetstream())
        ack = await self._jetstream[1].publish_async(subject, body, stream=STREAM_NAME, headers=headers)
        try:
            async with asyncio.timeout(PUBLISH_ACK_SECONDS):
                return await ack
        finally:
            ack.cancel()  # no ack in time: its place among publish_async's pending is freed

    async def start(self) -> None:
        assert self.settings is not None, "bind() the service first"
        await self.read_stored_facts()
        await ensure_stream(self.settings.nats_url, self.settings.nats_replicas,
                            [consumer.durable for consumer in self.consumers])
        await self.directory.start(self.settings.nats_url, self.reconnect.connect_options(), self.settings.nats_replicas)
        await self.broker.connect()
        self.connection_changes.watch(self.nats_connection)  # before the consumers' first fetch
        await self.broker.start()
        self.nats_status = await probe_nats(self.nats_connection, self.reconnect.probe_timeout_seconds)
        self._tasks.append(asyncio.create_task(self._probe_broker(), name=f"{self.name}-broker-probe"))
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-outbox-relay"))
        # Rows removed by an operator (a replay) show at the next refresh.
        jobs = self.jobs + [PeriodicJob("stored-facts", STORED_FACTS_REFRESH_SECONDS, self.read_stored_facts,
                                        each_replica=True)]
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
                if job.each_replica:
                    await job.run()
                else:
                    await self.run_once_across_replicas(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic job %s failed; next run as scheduled", job.name)
            try:
                await (job.wait() if job.wait else asyncio.sleep(job.every_seconds))
            except asyncio.CancelledError:
                raise
            except Exception:  # a job's own wait must not end the job
                log.exception("periodic job %s: its wait failed; next run in %g s", job.name, job.every_seconds)
                await asyncio.sleep(job.every_seconds)

    async def run_once_across_replicas(self, job: PeriodicJob) -> bool:
        """Run `job` if no other replica is running it now; True when it ran here."""
        async with self.db.advisory_lock(f"estatedesk:{self.name}:{job.name}") as held:
            if held:
                await job.run()
            return held

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
    @property
    def context(self) -> HandlerContext:
        """The clock and directory handlers are given (`shared.uow`)."""
        return HandlerContext(self.clock, self.directory)

    async def emit(self, session: AsyncSession, payload: Payload, *, estate: str, actor: str,
                   time: dt.datetime | None = None) -> CloudEvent:
        return (await self.emit_many(session, [(payload, estate, actor, time)]))[0]

    async def emit_many(self, session: AsyncSession, drafts: list[tuple[Payload, str, str, dt.datetime | None]],
                        ) -> list[CloudEvent]:
        """Like `emit` for several (payload, estate, actor, time) at once: one outbox
        statement for a batch (intake's registration desk)."""
        events = [make_event(payload, estate=estate, actor=actor, source=self.name, time=time or self.clock.now())
                  for payload, estate, actor, time in drafts]
        await self.db.emit_many(session, events)
        for event in events:
            self.events_emitted.labels(self.name, event.estate, event.event_name).inc()
        return events

    def audits(self, route_path: str) -> bool:
        """Whether `route_path` (a route template without /v1) is owners' data or archive."""
        return any(route_path == p or route_path.startswith(p + "/") for p in self.audited_routes)

    async def record_refused_access(self, request: Request, error: AuthError, who: str,
                                    estate: str | None, roles: list[str]) -> bool:
        """Publish `access_refused` for a refusal on an audited route of an estate the
        directory knows (the archive keeps it in its access log); True when written.
        Best effort: a database that is down costs the audit record, never the answer."""
        route = request.scope.get("route")
        template = getattr(route, "path_format", None)
        if template is None or estate is None or self.directory.estate(estate) is None or self.db is None:
            return False
        if not self.audits(template.removeprefix(API_PREFIX)):
            return False
        payload = AccessRefused(
            service=self.name, method=request.method, path=request.url.path[:limits.TEXT_MAX],
            route=template, status=error.status, reason=error.reason[:limits.TEXT_MAX], roles=roles,
            record_number=request.path_params.get("record_number"),
        )
        try:
            async with self.db.transaction() as session:
                await self.emit(session, payload, estate=estate, actor=who[:limits.ID_MAX])
        except Exception:
            log.exception("refusal of %s %s not written to the access log", request.method, request.url.path)
            return False
        return True

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

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/v1"
RoleTable = dict[tuple[str, str], tuple[str, ...]]
"""(method, path under /v1) → the roles that may call a write route."""

# The zone every datetime of the current answer is shown in: the estate's, set by the
# estate dependency; the company's for company-wide answers.
response_zone: ContextVar[ZoneInfo] = ContextVar("response_zone", default=ZoneInfo(DEFAULT_POLICY.timezone))


def local_iso(value: dt.datetime) -> str:
    """An instant in the zone of the answer being built, ISO 8601 with its offset."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(response_zone.get()).isoformat()


LocalTime = Annotated[dt.datetime, PlainSerializer(local_iso, return_type=str, when_used="json")]
"""A datetime the API returns: always with the estate's offset (+08:00 for Asia/Shanghai)."""
# Answers built as plain dicts go through FastAPI's encoder: the same rule there.
ENCODERS_BY_TYPE[dt.datetime] = local_iso


# Dependencies are coroutines so FastAPI does not hop to a worker thread for each request.
async def principal(request: Request) -> Principal:
    service: Service = request.app.state.service
    who = principal_from_header(service.settings.signing_key, request.headers.get("authorization"))
    refused = refusal_of(service.directory, who, estates=())  # expiry is the token's own check
    if refused is not None:
        raise refused
    response_zone.set(_zone(service, None))
    return who


def _zone(service: "Service", estate: str | None) -> ZoneInfo:
    """The estate's zone, or the company's when `estate` is None."""
    return service.directory.timezone_for(estate or "")


async def require_estate(estate: str, request: Request, who: Principal = Depends(principal)) -> Principal:
    """Dependency for routes under /estates/{estate}: the estate must be in the token's
    scope, and a staff member must be one the directory knows for that estate."""
    service: Service = request.app.state.service
    who.require_estate(estate)
    refused = refusal_of(service.directory, who, estates=(estate,))
    if refused is not None:
        raise refused
    if service.directory.estate(estate) is not None:
        response_zone.set(_zone(service, estate))
    return who


def require_known_staff(directory: Directory, estate, who: Principal) -> None:
    """Raises AuthError(403) unless `who` is on the estate's staff (its list, its director,
    a department head) or the company's head-office staff acting for every estate;
    company-wide roles for every estate and integrations, nobody's staff, are exempt."""
    if "*" in who.estates and (who.company_wide or directory.company_staff(who.staff_id)):
        return
    if who.has_role("integration") or estate.knows(who.staff_id):
        return
    raise AuthError(403, f"{who.staff_id} is not on the staff of estate {estate.code!r} in the directory",
                    f"您不在小区 {estate.code} 的员工名单中")


def refusal_of(directory: Directory, who: Principal, *, estates=None,
               now: dt.datetime | None = None) -> AuthError | None:
    """The one answer to "is this principal (still) good?": the refusal, or None.

    Checks, in order: the token has not expired (`now` given), its sign-in was not ended
    (401), its staff member is on the staff of each of `estates` the directory knows
    (default: every estate of the token, and head-office staff when it acts for every
    estate; 403). `principal`, `require_estate` and `no_longer_valid` all ask here."""
    if now is not None and who.expires_at is not None and who.expires_at <= now:
        return AuthError(401, "token expired", "登录已过期，请重新登录")
    if who.session and who.session in directory.revoked:
        return AuthError(401, "signed out: sign in again", "已退出登录，请重新登录")
    for code in sorted(who.estates - {"*"}) if estates is None else estates:
        estate = directory.estate(code)
        if estate is not None:
            try:
                require_known_staff(directory, estate, who)
            except AuthError as error:
                return error
    if estates is None and "*" in who.estates and not who.company_wide \
            and not directory.company_staff(who.staff_id) and not who.has_role("integration"):
        return AuthError(403, f"{who.staff_id} is no longer head-office staff", "您已不是总部员工")
    return None


def no_longer_valid(service: "Service", who: Principal, now: dt.datetime | None = None) -> str | None:
    """Why a principal accepted earlier is refused now (for streams that outlive the
    request that opened them): expired, signed out, or no longer on an estate's staff."""
    refused = refusal_of(service.directory, who, now=now or dt.datetime.now(dt.timezone.utc))
    return refused.reason if refused is not None else None


# Declares the bearer scheme in every OpenAPI document (the Authorize button of /docs);
# the token itself is read by `principal`, which also accepts what this would refuse.
BEARER = HTTPBearer(auto_error=False, description="A token from sign-in or `estatedesk token`")


async def authorize(request: Request, _: HTTPAuthorizationCredentials | None = Security(BEARER)) -> None:
    """The one gate of every write route: the caller must hold one of the roles the
    service's role table names for the route (the table is printed in the README)."""
    if request.method not in WRITE_METHODS:
        return
    service: Service = request.app.state.service
    route = request.scope.get("route")
    path = getattr(route, "path_format", request.url.path).removeprefix(API_PREFIX)
    if (request.method, path) in service.public_routes:
        return
    if (request.method, path) in service.owner_routes:
        owner_of_request(request)
        return
    roles = service.write_roles.get((request.method, path))
    who = await principal(request)

    def check() -> None:
        if roles is None:
            raise AuthError(403, f"no role may call {request.method} {path}")
        who.require_role(*roles)

    check()


def known_estate(service: Service, estate: str) -> None:
    if service.directory.estate(estate) is None:
        raise RuleViolation(f"unknown estate {estate!r}", status=404)


class Problem(BaseModel):
    field: str = Field(description="Where in the request: body.description, query.limit, path.estate …")
    message: str
    message_zh: str


class ErrorOut(BaseModel):
    """The one shape of every error answer (4xx and 5xx), in English and Chinese."""

    status: int
    error: str = Field(description="What went wrong, in English")
    error_zh: str = Field(description="出错原因（中文）")
    problems: list[str] = Field(default_factory=list, description="One line per invalid field: 'field: message'")
    details: list[Problem] = Field(default_factory=list)


STATUS_ZH = {
    400: "请求格式有误", 401: "未登录或登录已失效，请重新登录", 403: "无权执行此操作", 404: "未找到", 405: "不支持此请求方法",
    409: "当前状态不允许此操作", 410: "记录已不存在（已销毁）", 413: "请求内容过大", 415: "不支持的内容类型",
    422: "输入内容不符合要求", 500: "服务器内部错误", 503: "服务暂不可用",
}
PYDANTIC_ZH = {
    "missing": "缺少此项", "extra_forbidden": "不允许此项", "string_too_long": "内容过长", "string_too_short": "内容过短",
    "string_pattern_mismatch": "格式不正确", "too_long": "条目过多", "too_short": "条目过少",
    "greater_than_equal": "数值过小", "less_than_equal": "数值过大", "greater_than": "数值过小", "less_than": "数值过大",
    "decimal_max_places": "小数位过多", "decimal_max_digits": "数值位数过多", "enum": "不是允许的取值",
    "literal_error": "不是允许的取值", "timezone_aware": "须带时区（如 +08:00）", "value_error": "取值不正确",
    "int_parsing": "须为整数", "bool_parsing": "须为 true 或 false", "datetime_parsing": "须为 ISO 8601 时间",
    "date_from_datetime_parsing": "须为日期 YYYY-MM-DD", "json_invalid": "不是有效的 JSON", "model_attributes_type": "须为对象",
    "dict_type": "须为对象", "list_type": "须为列表", "string_type": "须为文本", "decimal_parsing": "须为数字",
}


# SQLSTATE classes and codes meaning "the database is not there right now": connection
# exceptions (08), admin/crash shutdown and "starting up" (57P01-57P03).
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
DATABASE_RETRY_AFTER_SECONDS = 5


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database is unreachable, stopping or starting (as
    opposed to a statement it refused): a socket error, an invalidated connection, or
    one of `UNAVAILABLE_SQLSTATES`."""
    if isinstance(error, OSError):
        return True
    if isinstance(error, sa.exc.PendingRollbackError):
        # A shared transaction (intake's registration batch) whose connection broke
        # under an earlier statement: this request's work never reached the database.
        return True
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        causes = [error.orig, getattr(error.orig, "__cause__", None)]
        # A pooled connection broken by the server's restart: asyncpg's client-side
        # errors (no such connection, "another operation is in progress").
        if any(isinstance(c, (OSError, asyncpg.exceptions.InterfaceError, asyncpg.exceptions.InternalClientError,
                              asyncpg.exceptions.PostgresConnectionError)) for c in causes):
            return True
        codes = [getattr(c, "sqlstate", None) or "" for c in causes]
        return any(code.startswith(UNAVAILABLE_SQLSTATES) for code in codes if code)
    return False


def error_response(status: int, message: str, details: list[Problem] | None = None,
                   headers: dict[str, str] | None = None, message_zh: str | None = None) -> JSONResponse:
    """The one error shape; `message_zh` is the reason in Chinese where the raiser gave
    one, else the status's own Chinese title."""
    details = details or []
    body = ErrorOut(status=status, error=message, error_zh=message_zh or STATUS_ZH.get(status, "请求未能完成"),
                    problems=[f"{d.field}: {d.message}" for d in details], details=details)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


ERROR_RESPONSES = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (401, "No valid bearer token"), (403, "The token's roles or estates do not allow this"),
        (404, "No such thing"), (409, "The current state does not allow this"),
        (422, "The input breaks a limit or a rule; `problems` names each field"),
    )
}


# Bytes that need a closer look: C0 controls (NUL included), DEL and escapes (%).
_NOT_PLAIN = re.compile(rb"[\x00-\x1f\x7f%]")


def unreadable_request(scope) -> str | None:
    """Why a request's path or query cannot be processed (NUL, invalid UTF-8), or None."""
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    for where, raw in (("path", raw_path), ("query", scope.get("query_string", b""))):
        if raw.isascii() and not _NOT_PLAIN.search(raw):
            continue  # printable ASCII without escapes: readable as it is
        try:
            decoded = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return f"the {where} is not valid UTF-8"
        problem = text_problem(decoded.replace("+", " "))
        if problem:
            return f"the {where} {problem}"
    return None


class ReadableRequest:
    """Refuses a request whose path or query holds NUL or is not UTF-8 with 400, before
    any route could hand such text to the database (plain ASGI)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            problem = unreadable_request(scope)
            if problem:
                return await error_response(400, problem)(scope, receive, send)
        return await self.app(scope, receive, send)


class BodySizeLimit:
    """Refuses bodies over `limit` bytes with 413, by Content-Length or while streaming
    (a chunked upload cannot slip past). Plain ASGI: no per-request task hop."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunked = False
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                return await self._refuse(send, int(value))
            if name == b"transfer-encoding":
                chunked = True
        if not chunked:
            # The server reads exactly Content-Length bytes (none without it): nothing
            # more can arrive, so no counting wrapper around every receive and send.
            return await self.app(scope, receive, send)
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
        response = error_response(413, f"request body of {size} bytes exceeds the {self.limit // 1024 // 1024} MiB limit")
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def refusal_context(service: Service, request: Request) -> tuple[str, str | None, list[str]]:
    """(who asked: staff id or "anonymous"/"invalid token", estate of the path or None,
    the token's roles, sorted; none without a valid token) for the log line, the metric
    and the access-log record of a refusal. The token is decoded once, here."""
    estate = request.path_params.get("estate")
    try:
        asker = principal_from_header(service.settings.signing_key, request.headers.get("authorization"))
    except AuthError:
        return ("anonymous" if not request.headers.get("authorization") else "invalid token"), estate, []
    return asker.staff_id, estate, sorted(asker.roles)


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

    # /docs and /redoc with Swagger UI and ReDoc from the fastapi-offline package (assets
    # under DOCS_ASSETS), not a CDN: an intranet without internet still has its docs.
    app = FastAPIOffline(title=f"EstateDesk {service.title}", description=service.description, version="1.0",
                         lifespan=lifespan, static_url=DOCS_ASSETS)
    app.state.service = service

    app.add_middleware(BodySizeLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(ReadableRequest)

    @app.exception_handler(AuthError)
    async def on_auth_error(request: Request, error: AuthError):
        # Every refusal is logged with who, what and which estate, and counted.
        who, estate, roles = refusal_context(service, request)
        # Only estates the directory knows become metric labels (bounded series).
        label = estate if estate is None or service.directory.estate(estate) else "unknown"
        service.refusals.labels(service.name, label or "-", str(error.status)).inc()
        log.warning("refused %s %s: %s", request.method, request.url.path, error.reason,
                    extra={"estate": estate, "actor": who, "status": error.status})
        await service.record_refused_access(request, error, who, estate, roles)
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return error_response(error.status, error.reason, headers=headers, message_zh=error.reason_zh)

    @app.exception_handler(RuleViolation)
    async def on_rule_violation(request: Request, error: RuleViolation):
        return error_response(error.status, str(error), message_zh=error.zh)

    @app.exception_handler(sa.exc.DBAPIError)
    @app.exception_handler(sa.exc.PendingRollbackError)
    @app.exception_handler(OSError)
    async def on_database_error(request: Request, error: Exception):
        # The database away (stopped, restarting, unreachable) is no fault of the caller:
        # 503 with the reason and when to try again, never a bare 500.
        if database_unavailable(error):
            log.warning("database unavailable for %s %s: %s", request.method, request.url.path, error)
            # Usually nothing was stored; when the connection broke during the commit
            # itself nobody can know, so the answer says how to retry safely.
            return error_response(503, "the database is unavailable; try again shortly (a request sent again "
                                  "with the same client_request_id is never registered twice)",
                                  headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
                                  message_zh="数据库暂时不可用，请稍后重试（带相同 client_request_id 重发不会重复登记）")
        log.exception("unexpected database error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error (logged); nothing was stored")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException):
        return error_response(error.status_code, str(error.detail), headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, error: RequestValidationError):
        details = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()))
            message = str(item.get("msg", "invalid"))
            details.append(Problem(field=where or "body", message=message,
                                   message_zh=PYDANTIC_ZH.get(item.get("type", ""), "取值不正确") + f"（{message}）"))
        return error_response(422, "invalid request: " + "; ".join(f"{d.field}: {d.message}" for d in details), details)

    @app.get("/healthz", tags=["operations"])
    async def healthz():
        checks = await service.health()
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse({"service": service.name, "status": "ok" if healthy else "degraded", "checks": checks},
                            status_code=200 if healthy else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics():
        return PlainTextResponse(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(service.http, prefix=API_PREFIX, dependencies=[Depends(authorize)], responses=ERROR_RESPONSES)
    return app
