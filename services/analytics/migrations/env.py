"""Alembic environment of the analytics service: its own schema, its own version table."""

from services.analytics.store import metadata
from shared.db import run_alembic_env

run_alembic_env(metadata)
