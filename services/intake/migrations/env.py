"""Alembic environment of the intake service: its own schema, its own version table."""

from services.intake.store import metadata
from shared.db import run_alembic_env

run_alembic_env(metadata)
