"""Process settings, read from the environment (the supervisor passes them to services)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

SERVICES = ("intake", "dispatch", "callback", "archive", "analytics")


@dataclass(frozen=True)
class Settings:
    nats_url: str
    database_url: str
    data_dir: Path
    clock_spec: str = "system"
    http_host: str = "127.0.0.1"
    http_port: int = 0
    signing_key: str = ""
    replica: str = "0"
    nats_replicas: int = 1

    @property
    def nats_servers(self) -> list[str]:
        return nats_servers(self.nats_url)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, service: str | None = None) -> "Settings":
        """The settings of `service` (its own database URL when
        `ESTATEDESK_DATABASE_URL_<SERVICE>` is set, see `database_url_for`)."""
        env = dict(os.environ if env is None else env)
        missing = [k for k in ("ESTATEDESK_NATS_URL", "ESTATEDESK_DATABASE_URL") if not env.get(k)]
        if service and env.get(service_database_variable(service)):
            missing = [k for k in missing if k != "ESTATEDESK_DATABASE_URL"]
        if missing:
            raise SystemExit(
                f"missing {', '.join(missing)}: run `estatedesk up` for the embedded servers, "
                "or set the URLs of your NATS and PostgreSQL servers"
            )
        data_dir = Path(env.get("ESTATEDESK_DATA_DIR", ".estatedesk")).resolve()
        return cls(
            nats_url=env["ESTATEDESK_NATS_URL"],
            database_url=database_url_for(service, env) if service else env["ESTATEDESK_DATABASE_URL"],
            data_dir=data_dir,
            clock_spec=env.get("ESTATEDESK_CLOCK", "system"),
            http_host=env.get("ESTATEDESK_HTTP_HOST", "127.0.0.1"),
            http_port=int(env.get("ESTATEDESK_HTTP_PORT", "0")),
            signing_key=env.get("ESTATEDESK_SIGNING_KEY") or load_signing_key(data_dir),
            replica=env.get("ESTATEDESK_REPLICA", "0"),
            nats_replicas=nats_replicas(env),
        )


def nats_servers(url: str) -> list[str]:
    """The servers of a NATS URL list as nats-py takes them: "nats://a:4222,nats://b:4222"
    (comma-separated, as the NATS tools write it) → ["nats://a:4222", "nats://b:4222"].
    nats-py itself would read a comma-separated string as one (invalid) host."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError(f"no NATS server in {url!r}")
    return servers


def nats_replicas(env: dict[str, str] | None = None) -> int:
    """Copies of the ticket stream and the directory bucket: ESTATEDESK_NATS_REPLICAS
    (3 on a three-node cluster), 1 when unset."""
    env = os.environ if env is None else env
    return int(env.get("ESTATEDESK_NATS_REPLICAS") or 1)


def service_database_variable(service: str) -> str:
    return f"ESTATEDESK_DATABASE_URL_{service.upper()}"


def database_url_for(service: str, env: dict[str, str] | None = None) -> str | None:
    """The database of one service: `ESTATEDESK_DATABASE_URL_<SERVICE>` (e.g.
    ESTATEDESK_DATABASE_URL_ANALYTICS) when set, else the shared ESTATEDESK_DATABASE_URL;
    None when neither is. Each service keeps its tables in its own schema, so one shared
    database and a database (or server) per service both work."""
    env = os.environ if env is None else env
    return env.get(service_database_variable(service)) or env.get("ESTATEDESK_DATABASE_URL") or None


def load_signing_key(data_dir: Path, create: bool = False) -> str:
    """The token signing key of an installation lives in its data directory."""
    path = data_dir / "signing.key"
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise SystemExit(f"no signing key at {path}: set ESTATEDESK_SIGNING_KEY or run `estatedesk up`")
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def asyncpg_url(url: str) -> str:
    """SQLAlchemy URL for asyncpg from a plain postgresql:// URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError(f"not a PostgreSQL URL: {url!r}")
