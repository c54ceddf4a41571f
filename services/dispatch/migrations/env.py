"""Alembic environment of the dispatch service: its own schema, its own version table."""

from services.dispatch.store import metadata
from shared.db import run_alembic_env

run_alembic_env(metadata)
