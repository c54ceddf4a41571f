"""Alembic environment of the archive service: its own schema, its own version table."""

from services.archive.store import metadata
from shared.db import run_alembic_env

run_alembic_env(metadata)
