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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        missing = [k for k in ("ESTATEDESK_NATS_URL", "ESTATEDESK_DATABASE_URL") if not env.get(k)]
        if missing:
            raise SystemExit(
                f"missing {', '.join(missing)}: run `estatedesk up` for the embedded servers, "
                "or set the URLs of your NATS and PostgreSQL servers"
            )
        data_dir = Path(env.get("ESTATEDESK_DATA_DIR", ".estatedesk")).resolve()
        return cls(
            nats_url=env["ESTATEDESK_NATS_URL"],
            database_url=env["ESTATEDESK_DATABASE_URL"],
            data_dir=data_dir,
            clock_spec=env.get("ESTATEDESK_CLOCK", "system"),
            http_host=env.get("ESTATEDESK_HTTP_HOST", "127.0.0.1"),
            http_port=int(env.get("ESTATEDESK_HTTP_PORT", "0")),
            signing_key=env.get("ESTATEDESK_SIGNING_KEY") or load_signing_key(data_dir),
            replica=env.get("ESTATEDESK_REPLICA", "0"),
        )


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
