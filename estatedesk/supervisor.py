"""Starts the five services as separate OS processes and restarts any that dies; restarts
the embedded servers (nats-server, PostgreSQL) the same way."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger("estatedesk.supervisor")


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    module: str | None = None  # default: services.<name>
    replica: int = 0  # which of the service's replicas (0 … N-1)
    restart_at: float | None = None  # when a dead process is due to start again

    @property
    def label(self) -> str:
        """The name in logs and messages: `dispatch`, `dispatch#1` for the second replica."""
        return self.name if not self.replica else f"{self.name}#{self.replica}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module or f"services.{self.name}"],
            env=self.env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.started_at = time.time()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds (said aloud: a service must stop
        on SIGTERM)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("%s ignored SIGTERM for %g s; killing it", self.label, timeout)
                print(f"[supervisor] {self.label} ignored SIGTERM for {timeout:g} s; killed", flush=True)
                self.process.kill()
                self.process.wait()


class EmbeddedServer(Protocol):
    """An embedded server the supervisor watches (see estatedesk.embedded)."""

    name: str

    def exit_code(self) -> int | None: ...  # None while running
    def restart(self) -> None: ...  # raises when it cannot start


@dataclass
class Supervisor:
    services: list[ServiceProcess] = field(default_factory=list)
    servers: list[EmbeddedServer] = field(default_factory=list)
    stopping: bool = False
    server_restarts: dict[str, int] = field(default_factory=dict)

    def check_servers(self) -> None:
        """Restart every embedded server that has died (kill -9, crash). Services keep
        reconnecting meanwhile, so nothing else needs restarting."""
        for server in self.servers:
            code = server.exit_code()
            if code is None or self.stopping:
                continue
            count = self.server_restarts[server.name] = self.server_restarts.get(server.name, 0) + 1
            log.warning("%s exited with %s; restarting (restart #%d)", server.name, code, count)
            print(f"[supervisor] {server.name} exited with code {code}; restarting (#{count})", flush=True)
            started = time.time()
            try:
                server.restart()
            except (Exception, SystemExit) as error:  # tried again at the next check
                log.error("%s did not restart: %s", server.name, error)
                print(f"[supervisor] {server.name} did not restart: {error}; trying again", flush=True)
                continue
            print(f"[supervisor] {server.name} is back after {time.time() - started:.1f} s", flush=True)

    def start_all(self) -> None:
        for service in self.services:
            service.start()

    def check_once(self) -> None:
        """Restart every embedded server, then every service, that has exited (with a
        short back-off for a service that keeps dying)."""
        self.check_servers()
        for service in self.services:
            code = service.process.poll() if service.process else None
            if code is None or self.stopping:
                continue
            if service.restart_at is None:
                quick_death = time.time() - service.started_at < 5
                service.restarts += 1
                log.warning("%s exited with %s; restarting (restart #%d)", service.label, code, service.restarts)
                print(f"[supervisor] {service.label} exited with code {code}; restarting (#{service.restarts}); "
                      f"log: {service.log_path}", flush=True)
                # One that keeps dying waits a little; the others are not held up meanwhile.
                service.restart_at = time.time() + (min(10, service.restarts) if quick_death else 0)
            if time.time() >= service.restart_at:
                service.restart_at = None
                service.start()

    def wait_healthy(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.time() + timeout
        pending = {s.label: s for s in self.services}
        while pending and time.time() < deadline:
            for name, service in list(pending.items()):
                try:
                    with urllib.request.urlopen(service.url + "/healthz", timeout=1) as r:
                        if r.status == 200:
                            del pending[name]
                except OSError:
                    pass
            self.check_once()
            time.sleep(0.2)
        if pending:
            raise SystemExit(f"services not healthy after {timeout:.0f} s: {', '.join(pending)}; see their logs")

    def stop_all(self) -> None:
        self.stopping = True
        for service in self.services:
            if service.process and service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in self.services:
            service.stop()


def service_env(base: dict[str, str], **values: str) -> dict[str, str]:
    env = dict(base)
    env.update({k: str(v) for k, v in values.items()})
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
