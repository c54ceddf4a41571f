"""dead letter replays

Revision ID: 74276fa38f09
Revises: c3e4a2b5d503
Create Date: 2026-12-01 00:30:00
"""

from alembic import op

from shared.db import dead_letter_replays_columns

revision = '74276fa38f09'
down_revision = 'c3e4a2b5d503'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("dead_letter_replays", *dead_letter_replays_columns(), schema="callback")


def downgrade() -> None:
    op.drop_table("dead_letter_replays", schema="callback")
