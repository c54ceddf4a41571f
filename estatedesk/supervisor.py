"""Starts the five services as separate OS processes and restarts any that dies."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Supervisor:
    services: list[ServiceProcess] = field(default_factory=list)
    stopping: bool = False

    def start_all(self) -> None:
        for service in self.services:
            service.start()

    def check_once(self) -> None:
        """Restart every service that has exited (with a short back-off if it keeps dying)."""
        for service in self.services:
            code = service.process.poll() if service.process else None
            if code is None or self.stopping:
                continue
            quick_death = time.time() - service.started_at < 5
            service.restarts += 1
            log.warning("%s exited with %s; restarting (restart #%d)", service.name, code, service.restarts)
            print(f"[supervisor] {service.name} exited with code {code}; restarting (#{service.restarts}); "
                  f"log: {service.log_path}", flush=True)
            if quick_death:
                time.sleep(min(10, service.restarts))
            service.start()

    def wait_healthy(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.time() + timeout
        pending = {s.name: s for s in self.services}
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
