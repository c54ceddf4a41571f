"""Alembic environment of the callback service: its own schema, its own version table."""

from services.callback.store import metadata
from shared.db import run_alembic_env

run_alembic_env(metadata)
