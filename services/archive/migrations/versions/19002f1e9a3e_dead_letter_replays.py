"""dead letter replays

Revision ID: 19002f1e9a3e
Revises: d8f5b3c6e604
Create Date: 2026-12-01 00:30:00
"""

from alembic import op

from shared.db import dead_letter_replays_columns

revision = '19002f1e9a3e'
down_revision = 'd8f5b3c6e604'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("dead_letter_replays", *dead_letter_replays_columns(), schema="archive")


def downgrade() -> None:
    op.drop_table("dead_letter_replays", schema="archive")
