"""progress-update weeks: a complaint's weekly owner-update duty as dispatch clocks

Dispatch decides each week of the progress-update duty met or missed (RULES §2 Progress
updates; 002 §4.4.1 b; issue 11) as a `progress_update` clock, one per week, so a round
holds several clocks of that name: one per week, not one per round.

Revision ID: c3e9a7b51d02
Revises: f44fb9dde845
Create Date: 2026-12-01 03:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'c3e9a7b51d02'
down_revision = 'f44fb9dde845'
branch_labels = None
depends_on = None

TICKET_CLOCKS = "assignment_id IS NULL AND clock <> 'progress_update'"
PROGRESS_WEEKS = "clock = 'progress_update'"


def upgrade() -> None:
    op.drop_index('uq_deadlines_ticket_clock', table_name='deadlines', schema='dispatch')
    op.create_index('uq_deadlines_ticket_clock', 'deadlines', ['ticket_id', 'round', 'clock'], unique=True,
                    schema='dispatch', postgresql_where=sa.text(TICKET_CLOCKS))
    op.create_index('uq_deadlines_progress_week', 'deadlines', ['ticket_id', 'round', 'due_at'], unique=True,
                    schema='dispatch', postgresql_where=sa.text(PROGRESS_WEEKS))


def downgrade() -> None:
    op.execute("DELETE FROM dispatch.deadlines WHERE clock = 'progress_update'")
    op.drop_index('uq_deadlines_progress_week', table_name='deadlines', schema='dispatch')
    op.drop_index('uq_deadlines_ticket_clock', table_name='deadlines', schema='dispatch')
    op.create_index('uq_deadlines_ticket_clock', 'deadlines', ['ticket_id', 'round', 'clock'], unique=True,
                    schema='dispatch', postgresql_where=sa.text('assignment_id IS NULL'))
