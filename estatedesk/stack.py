"""The whole system on one machine: servers (embedded or external), migrations, the five
services as supervised processes, and `endpoints.json` for scripts and integrations.
Used by `estatedesk up` and by the integration tests alike."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from estatedesk.embedded import EmbeddedNats, EmbeddedPostgres, free_port, read_state, write_json
from estatedesk.supervisor import ServiceProcess, Supervisor, service_env
from shared.db import migrate
from shared.settings import SERVICES, load_signing_key


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

    @property
    def endpoints(self) -> dict:
        return {
            "nats": self.nats_url,
            "database": self.database_url,
            "services": {s.name: s.url for s in self.supervisor.services if s.name in SERVICES},
            "console": self.console_url,
            "clock": self.clock_spec,
        }

    def start_servers(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # endpoints.json means "running here now"; a stale one would mislead scripts.
        (self.data_dir / "endpoints.json").unlink(missing_ok=True)
        remembered = read_state(self.data_dir)
        if not self.nats_url:
            self.embedded_nats = EmbeddedNats(self.data_dir).start(remembered)
            self.nats_url = self.embedded_nats.url
        if not self.database_url:
            self.embedded_postgres = EmbeddedPostgres(self.data_dir).start()
            self.database_url = self.embedded_postgres.url
        self.signing_key = os.environ.get("ESTATEDESK_SIGNING_KEY") or load_signing_key(self.data_dir, create=True)
        if self.embedded_nats:
            remembered.update(nats_port=self.embedded_nats.port, nats_monitor_port=self.embedded_nats.monitor_port)
        write_json(self.data_dir / "ports.json", remembered)

    def migrate(self) -> None:
        for name in SERVICES:
            migrate(name, self.database_url)

    def service_env(self, name: str, port: int, replica: int = 0) -> dict[str, str]:
        return service_env(
            os.environ,
            ESTATEDESK_NATS_URL=self.nats_url,
            ESTATEDESK_DATABASE_URL=self.database_url,
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
            port = free_port(remembered.get(f"{name}_port"))
            remembered[f"{name}_port"] = port
            self.supervisor.services.append(
                ServiceProcess(name, port, self.service_env(name, port), logs / f"{name}.log")
            )
        # The gateway: one address for the console and every API (issue 16).
        port = free_port(remembered.get("gateway_port"))
        remembered["gateway_port"] = port
        upstreams = {s.name: s.url for s in self.supervisor.services}
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

    def service(self, name: str) -> ServiceProcess:
        return next(s for s in self.supervisor.services if s.name == name)

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
        if self.embedded_postgres:
            self.embedded_postgres.stop()


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
