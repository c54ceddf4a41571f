"""dead letter replays

Revision ID: f44fb9dde845
Revises: a10c5e0d7f21
Create Date: 2026-12-01 00:30:00
"""

from alembic import op

from shared.db import dead_letter_replays_columns

revision = 'f44fb9dde845'
down_revision = 'a10c5e0d7f21'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("dead_letter_replays", *dead_letter_replays_columns(), schema="dispatch")


def downgrade() -> None:
    op.drop_table("dead_letter_replays", schema="dispatch")
