"""The whole system on one machine: servers (embedded or external), migrations, the five
services as supervised processes, and `endpoints.json` for scripts and integrations.
Used by `estatedesk up` and by the integration tests alike.

Past one machine (issue 13, docs/multi-site.md): `nats_cluster=3` starts an embedded
three-node NATS cluster (ticket stream and directory bucket R3); `replicas=N` runs every
service N times (sharing its durable consumers; the gateway balances across them);
`postgres_servers=2` starts a second embedded PostgreSQL and splits the services between
them; `database_urls` gives services their own databases (else
ESTATEDESK_DATABASE_URL_<SERVICE>, else the shared one)."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from estatedesk.embedded import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres, free_port, read_state, write_json
from estatedesk.supervisor import ServiceProcess, Supervisor, service_env
from shared.db import migrate
from shared.settings import SERVICES, load_signing_key, nats_replicas, service_database_variable


@dataclass
class Stack:
    data_dir: Path
    nats_url: str | None = None
    database_url: str | None = None
    clock_spec: str = "system"
    services: tuple[str, ...] = SERVICES
    embedded_nats: EmbeddedNats | None = None
    embedded_postgres: EmbeddedPostgres | None = None
    supervisor: Supervisor = field(default_factory=Supervisor)
    signing_key: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    nats_cluster: int = 0  # 3: an embedded three-node cluster instead of one nats-server
    nats_replicas: int = 0  # copies of the stream and bucket; 0: the cluster's size (or $ESTATEDESK_NATS_REPLICAS)
    replicas: int = 1  # processes per service
    postgres_servers: int = 1  # embedded PostgreSQL servers the services are split across
    database_urls: dict[str, str] = field(default_factory=dict)  # service → its own database
    embedded_cluster: EmbeddedNatsCluster | None = None
    extra_postgres: list[EmbeddedPostgres] = field(default_factory=list)

    @property
    def endpoints(self) -> dict:
        return {
            "nats": self.nats_url,
            "database": self.database_url,
            "databases": {name: self.database_of(name) for name in SERVICES},
            "services": {s.name: s.url for s in self.supervisor.services if s.name in SERVICES and not s.replica},
            "replicas": {name: [s.url for s in self.supervisor.services if s.name == name] for name in self.services},
            "console": self.console_url,
            "clock": self.clock_spec,
        }

    def start_servers(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # endpoints.json means "running here now"; a stale one would mislead scripts.
        (self.data_dir / "endpoints.json").unlink(missing_ok=True)
        remembered = read_state(self.data_dir)
        if not self.nats_url and self.nats_cluster > 1:
            self.embedded_cluster = EmbeddedNatsCluster(self.data_dir, self.nats_cluster).start(remembered)
            self.embedded_cluster.remember(remembered)
            self.nats_url = self.embedded_cluster.url
            self.nats_replicas = self.nats_replicas or min(3, self.nats_cluster)
        elif not self.nats_url:
            self.embedded_nats = EmbeddedNats(self.data_dir).start(remembered)
            self.nats_url = self.embedded_nats.url
        self.nats_replicas = self.nats_replicas or nats_replicas()
        if not self.database_url:
            self.embedded_postgres = EmbeddedPostgres(self.data_dir).start()
            self.database_url = self.embedded_postgres.url
            for i in range(2, self.postgres_servers + 1):
                server = EmbeddedPostgres(self.data_dir / f"postgres{i}").start()
                server.name = f"postgresql {i}"
                self.extra_postgres.append(server)
            # Services split across the servers in turn: intake → 1, dispatch → 2, …
            urls = [self.database_url] + [server.url for server in self.extra_postgres]
            for i, name in enumerate(SERVICES):
                if i % len(urls):
                    self.database_urls.setdefault(name, urls[i % len(urls)])
        self.signing_key = os.environ.get("ESTATEDESK_SIGNING_KEY") or load_signing_key(self.data_dir, create=True)
        nodes = self.embedded_cluster.nodes if self.embedded_cluster else []
        self.supervisor.servers = [s for s in (self.embedded_nats, *nodes, self.embedded_postgres, *self.extra_postgres)
                                   if s is not None]
        if self.embedded_nats:
            remembered.update(nats_port=self.embedded_nats.port, nats_monitor_port=self.embedded_nats.monitor_port)
        write_json(self.data_dir / "ports.json", remembered)

    def database_of(self, name: str) -> str:
        """The database of service `name`: its own when given (`database_urls`, else
        ESTATEDESK_DATABASE_URL_<SERVICE>), else the shared one."""
        return self.database_urls.get(name) or os.environ.get(service_database_variable(name)) or self.database_url

    def migrate(self) -> None:
        for name in SERVICES:
            migrate(name, self.database_of(name))

    def service_env(self, name: str, port: int, replica: int = 0) -> dict[str, str]:
        own_database = {service_database_variable(name): self.database_of(name)} if name in SERVICES else {}
        return service_env(
            os.environ,
            ESTATEDESK_NATS_URL=self.nats_url,
            ESTATEDESK_NATS_REPLICAS=str(self.nats_replicas or 1),
            ESTATEDESK_DATABASE_URL=self.database_of(name) if name in SERVICES else self.database_url,
            **own_database,
            ESTATEDESK_DATA_DIR=str(self.data_dir),
            ESTATEDESK_CLOCK=self.clock_spec,
            ESTATEDESK_SIGNING_KEY=self.signing_key,
            ESTATEDESK_HTTP_PORT=str(port),
            ESTATEDESK_REPLICA=str(replica),
            **self.extra_env,
        )

    def start_services(self, wait: bool = True) -> None:
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        remembered = read_state(self.data_dir)
        for name in self.services:
            for replica in range(self.replicas):
                key = f"{name}_port" if not replica else f"{name}_{replica}_port"
                port = free_port(remembered.get(key))
                remembered[key] = port
                log_name = f"{name}.log" if not replica else f"{name}-{replica}.log"
                self.supervisor.services.append(
                    ServiceProcess(name, port, self.service_env(name, port, replica), logs / log_name, replica=replica)
                )
        # The gateway: one address for the console and every API (issue 16), balancing
        # across each service's replicas.
        port = free_port(remembered.get("gateway_port"))
        remembered["gateway_port"] = port
        upstreams: dict[str, list[str]] = {}
        for s in self.supervisor.services:
            upstreams.setdefault(s.name, []).append(s.url)
        self.supervisor.services.append(ServiceProcess(
            "gateway", port, self.service_env("gateway", port) | {"ESTATEDESK_GATEWAY_UPSTREAMS": json.dumps(upstreams)},
            logs / "gateway.log", module="estatedesk.gateway"))
        write_json(self.data_dir / "ports.json", remembered)
        self.supervisor.start_all()
        if wait:
            self.supervisor.wait_healthy()
        write_json(self.data_dir / "endpoints.json", self.endpoints)

    @property
    def console_url(self) -> str | None:
        gateway = next((s for s in self.supervisor.services if s.name == "gateway"), None)
        return gateway.url + "/" if gateway else None

    @property
    def service_processes(self) -> list[ServiceProcess]:
        """The five services' processes (the gateway is not a service: no NATS, no database)."""
        return [s for s in self.supervisor.services if s.name in SERVICES]

    def service(self, name: str, replica: int = 0) -> ServiceProcess:
        return next(s for s in self.supervisor.services if s.name == name and s.replica == replica)

    def start(self) -> "Stack":
        self.start_servers()
        self.migrate()
        self.start_services()
        return self

    def stop(self) -> None:
        (self.data_dir / "endpoints.json").unlink(missing_ok=True)
        self.supervisor.stop_all()
        if self.embedded_nats:
            self.embedded_nats.stop()
        if self.embedded_cluster:
            self.embedded_cluster.stop()
        for server in [self.embedded_postgres, *self.extra_postgres]:
            if server:
                server.stop()


async def wait_until_intake_knows(client, intake_url: str, estate: str, token: str, timeout: float = 10) -> bool:
    """Every service watches the directory; True once intake knows `estate` (a lookup
    of a missing request then says "no request", not "unknown estate")."""
    for _ in range(int(timeout / 0.05)):
        r = await client.get(f"{intake_url}/v1/estates/{estate}/requests/none",
                             headers={"Authorization": f"Bearer {token}"})
        if r.status_code == 404 and "unknown estate" not in r.text:
            return True
        await asyncio.sleep(0.05)
    return False
