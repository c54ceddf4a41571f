"""dead letter replays

Revision ID: 74276fa38f09
Revises: 7b17ac4b4d9b
Create Date: 2026-12-01 00:30:00
"""

from alembic import op

from shared.db import dead_letter_replays_columns

revision = '74276fa38f09'
down_revision = '7b17ac4b4d9b'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("dead_letter_replays", *dead_letter_replays_columns(), schema="callback")


def downgrade() -> None:
    op.drop_table("dead_letter_replays", schema="callback")
