"""dead letter replays

Revision ID: 753d2c906069
Revises: 238b1fbcf23c
Create Date: 2026-12-01 00:30:00
"""

from alembic import op

from shared.db import dead_letter_replays_columns

revision = '753d2c906069'
down_revision = '238b1fbcf23c'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("dead_letter_replays", *dead_letter_replays_columns(), schema="analytics")


def downgrade() -> None:
    op.drop_table("dead_letter_replays", schema="analytics")
