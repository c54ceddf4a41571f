"""dead letter replays

Revision ID: eedc5f2d6716
Revises: c10e7a9b3d52
Create Date: 2026-12-01 00:30:00
"""

from alembic import op

from shared.db import dead_letter_replays_columns

revision = 'eedc5f2d6716'
down_revision = 'c10e7a9b3d52'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("dead_letter_replays", *dead_letter_replays_columns(), schema="intake")


def downgrade() -> None:
    op.drop_table("dead_letter_replays", schema="intake")
