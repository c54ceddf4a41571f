"""progress weeks missed: dispatch's verdicts on a complaint's weekly owner updates, counted

Dispatch decides each week of the progress-update duty (RULES §2 Progress updates; issue
11) and publishes it as clock_settled; the callback worklist counts the missed weeks
instead of judging them again.

Revision ID: d5a1c8e2f417
Revises: 4e8cefbf8e4a
Create Date: 2026-12-01 03:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'd5a1c8e2f417'
down_revision = '4e8cefbf8e4a'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tickets', sa.Column('progress_weeks_missed', sa.Integer(), server_default='0', nullable=False),
                  schema='callback')


def downgrade() -> None:
    op.drop_column('tickets', 'progress_weeks_missed', schema='callback')
