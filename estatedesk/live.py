"""Live lists (issue 16): one server-sent-event stream per open console screen, so lists
update when ticket events arrive instead of being polled.

`GET /v1/live?estate=CODE` (served by the gateway; nginx sends it there unbuffered) with
the bearer token in the Authorization header. Events:
- `ready` once: `{"estate": …}`;
- `ticket` for every ticket event of the estate: `{"event": "acknowledged", "ticket_id": …,
  "estate": …, "time": ISO}` (the CloudEvent's own time; the screens re-read their list,
  the event only says that something changed);
- `end` when the token expires, its sign-in is ended, or its staff member leaves the
  estate's staff list (`shared.service.no_longer_valid`, the dashboard stream's rule):
  `{"reason": …}`; the stream then closes and the console asks for a sign-in.

The hub reads the ticket subjects with plain core-NATS subscriptions (what JetStream
stores is also delivered to core subscribers), one per estate that has a screen open,
taken when its first screen opens (`ready` is sent once the server has it) and dropped
when its last one closes: the gateway receives no event nobody watches. A screen that
misses an event while reconnecting re-reads its list on `ready`, so nothing needs
replaying.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

import nats
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from shared.auth import AuthError, Principal, principal_from_header
from shared.directory import Directory
from shared.events import SUBJECT_PREFIX
from shared.service import error_response, no_longer_valid, require_known_staff
from shared.settings import nats_servers

log = logging.getLogger("estatedesk.live")
START_RETRY_SECONDS = 2.0  # NATS not there yet: the gateway serves the console meanwhile
RECHECK_SECONDS = 2.0  # how soon an open stream notices its token is no longer good
QUEUE_LIMIT = 1000  # a client this far behind gets `resync` instead of every event
PING_SECONDS = 15


@dataclass(eq=False)
class LiveClient:
    who: Principal
    estate: str
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))


class LiveHub:
    """The ticket events of every estate, fanned out to the open streams of that estate."""

    def __init__(self, nats_url: str, signing_key: str):
        self.nats_url = nats_url
        self.signing_key = signing_key
        self.directory = Directory()
        self.clients: set[LiveClient] = set()
        self._nc = None
        self._starting: asyncio.Task | None = None
        self.ready = False
        # Estate -> the task taking its subscription (its result the subscription).
        self._watched: dict[str, asyncio.Task] = {}

    async def start(self) -> None:
        """Connects in the background, retrying, so the gateway (and the console) never
        waits for NATS; until connected the stream answers 503."""
        self._starting = asyncio.create_task(self._connect(), name="live-connect")

    async def _connect(self) -> None:
        while True:
            try:
                await self.directory.start(self.nats_url, {})
                self._nc = await nats.connect(nats_servers(self.nats_url), name="estatedesk-live", max_reconnect_attempts=-1)
                self.ready = True
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("live lists: NATS not reachable (%s); retrying", error.__class__.__name__)
                await self.directory.stop()
                await asyncio.sleep(START_RETRY_SECONDS)

    async def stop(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._nc is not None:
            await self._nc.drain()
        await self.directory.stop()

    async def watch(self, estate: str) -> None:
        """Subscribe to `estate`'s ticket events unless subscribed already; returns once
        the server has the subscription (a PING round trip). Raises what nats-py raises."""
        task = self._watched.get(estate)
        if task is None:
            task = self._watched[estate] = asyncio.ensure_future(self._subscribe(estate))
        try:
            await asyncio.shield(task)
        except Exception:
            if self._watched.get(estate) is task:
                del self._watched[estate]
            raise

    async def _subscribe(self, estate: str):
        subscription = await self._nc.subscribe(f"{SUBJECT_PREFIX}.{estate}.ticket.*", cb=self._on_event)
        await self._nc.flush(timeout=5)
        return subscription

    def unwatch_if_unwatched(self, estate: str) -> None:
        """Drop `estate`'s subscription once none of its screens is open."""
        if any(client.estate == estate for client in self.clients):
            return
        task = self._watched.pop(estate, None)
        if task is not None:
            asyncio.ensure_future(self._unsubscribe(task))

    @staticmethod
    async def _unsubscribe(task: asyncio.Task) -> None:
        try:
            await (await task).unsubscribe()
        except Exception:  # never subscribed, or the connection is gone: nothing to drop
            pass

    async def _on_event(self, msg) -> None:
        _, estate, _, event = msg.subject.split(".", 3)
        watching = [client for client in self.clients if client.estate == estate]
        if not watching:  # most events: nobody has the estate's lists open
            return
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = {}
        notice = {"event": event, "estate": estate, "ticket_id": body.get("subject"), "time": body.get("time")}
        for client in watching:
            try:
                client.queue.put_nowait(notice)
            except asyncio.QueueFull:
                pass  # the screen re-reads its list anyway on the next notice

    def refusal(self, who: Principal) -> str | None:
        """Why `who` may no longer watch (expired, signed out, left the staff), or None."""
        return no_longer_valid(self, who)

    async def stream(self, request: Request) -> Response:
        estate = request.query_params.get("estate", "")
        if not self.ready:
            return error_response(503, "live lists are starting: NATS is not reachable yet", message_zh="实时更新暂不可用，请稍候")
        try:
            who = principal_from_header(self.signing_key, request.headers.get("authorization"))
            if not estate:
                raise AuthError(422, "name the estate: /v1/live?estate=CODE", "请指定小区")
            who.require_estate(estate)
            known = self.directory.estate(estate)
            if known is None:
                return error_response(404, f"unknown estate {estate!r}")
            require_known_staff(self.directory, known, who)
            ended = self.refusal(who)
            if ended:
                raise AuthError(401, ended)
        except AuthError as error:
            return error_response(error.status, error.reason, message_zh=error.reason_zh,
                                  headers={"WWW-Authenticate": "Bearer"} if error.status == 401 else None)
        client = LiveClient(who, estate)
        self.clients.add(client)
        try:
            await self.watch(estate)
        except BaseException as error:  # the request cancelled too: nothing of it stays
            self.clients.discard(client)
            self.unwatch_if_unwatched(estate)
            if not isinstance(error, Exception):
                raise
            log.warning("live lists: could not subscribe to %s's events (%s)", estate, error.__class__.__name__)
            return error_response(503, "live lists: NATS did not answer", message_zh="实时更新暂不可用，请稍候")

        async def events():
            try:
                yield {"event": "ready", "data": json.dumps({"estate": estate})}
                while True:
                    try:
                        notice = await asyncio.wait_for(client.queue.get(), RECHECK_SECONDS)
                    except asyncio.TimeoutError:
                        notice = None
                    ended = self.refusal(who)
                    if ended:
                        yield {"event": "end", "data": json.dumps({"reason": ended}, ensure_ascii=False)}
                        return
                    if notice is not None:
                        yield {"event": "ticket", "data": json.dumps(notice, ensure_ascii=False)}
            finally:
                self.clients.discard(client)
                self.unwatch_if_unwatched(estate)

        return EventSourceResponse(events(), ping=PING_SECONDS,
                                   headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
