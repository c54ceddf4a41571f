"""Running one service as its own process (`estatedesk run SERVICE`)."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import sys

import orjson
import uvicorn

from shared.settings import SERVICES, Settings


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, carrying estate, ticket and event ids when known."""

    CONTEXT = ("service", "estate", "ticket", "event_id", "actor", "status")

    def __init__(self, service: str):
        super().__init__()
        self.service = service
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, as formatted

    def _time(self, record: logging.LogRecord) -> str:
        # Every consumed event logs a line: the clock's text is made once a second.
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, self.formatTime(record, "%Y-%m-%dT%H:%M:%S"))
        return self._second[1]

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self._time(record),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in self.CONTEXT[1:]:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # text orjson refuses (a lone surrogate): the slower encoder escapes it
            return json.dumps(entry, ensure_ascii=True, default=str)


# Idle kept-alive connections stay open this long: clients (the gateway, nginx, tests)
# reuse them, and a short timeout races a request arriving on a loaded machine.
KEEP_ALIVE_SECONDS = 30


def configure_logging(service: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The JSON line uses none of the process, thread and multiprocessing facts a record
    # gathers on every call (a system call or two each; the logging HOWTO's "Optimization").
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    # Per-message access and broker lines would drown the business log, which already
    # has one line per processed event with its estate, ticket and event id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger(f"estatedesk.{service}.broker").setLevel(logging.WARNING)


def load_service_module(name: str):
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{name}.app")


# uvicorn's server wakes ten times a second to look for a shutdown request (and once a
# second renews the Date header): half of what an idle service spent. Twice a second does
# both; SIGTERM is noticed within this many seconds.
TICK_SECONDS = 0.5
STARTUP_FAILURE = 3  # uvicorn's exit status when the server did not start


class Server(uvicorn.Server):
    """uvicorn's server with its housekeeping tick every `TICK_SECONDS` (uvicorn: 0.1 s)."""

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            await asyncio.sleep(TICK_SECONDS)
            # uvicorn renews the Date header on ticks whose counter is a multiple of 10.
            counter = (counter + 10) % 864000
            should_exit = await self.on_tick(counter)


def serve(app, **options) -> None:
    """`uvicorn.run(app, **options)` for one process (no reload, no workers) on `Server`;
    exits with uvicorn's status when the server could not start."""
    server = Server(uvicorn.Config(app, **options))
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def run_service(name: str, settings: Settings | None = None) -> None:
    module = load_service_module(name)
    settings = settings or Settings.from_env(service=name)
    configure_logging(name)
    module.service.bind(settings)
    app = module.create_app()
    # What the imports and the app built stays for the process's life: moved out of the
    # collector's sight, a full collection no longer rescans it (one took ~60 ms in
    # intake, a pause for every request in flight).
    gc.collect()
    gc.freeze()
    serve(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False,
          timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_SECONDS)
