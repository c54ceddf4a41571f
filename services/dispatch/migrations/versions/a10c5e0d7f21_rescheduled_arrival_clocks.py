"""rescheduled arrival clocks: a line may keep its rescheduled clocks beside the fresh ones

A rescheduled appointment ends the old arrival (and repair-slip) clock with the outcome
"rescheduled" and starts fresh ones on the same ledger line (issue 10; 004 篇2 二.一), so
one open clock per line and clock, not one row.

Revision ID: a10c5e0d7f21
Revises: b7d2f1e3c402
Create Date: 2026-12-01 00:15:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'a10c5e0d7f21'
down_revision = 'b7d2f1e3c402'
branch_labels = None
depends_on = None

RESCHEDULED = "assignment_id IS NOT NULL AND (outcome IS NULL OR outcome <> 'rescheduled')"


def upgrade() -> None:
    op.drop_index('uq_deadlines_line_clock', table_name='deadlines', schema='dispatch')
    op.create_index('uq_deadlines_line_clock', 'deadlines', ['assignment_id', 'clock'], unique=True, schema='dispatch',
                    postgresql_where=sa.text(RESCHEDULED))


def downgrade() -> None:
    op.execute("DELETE FROM dispatch.deadlines WHERE outcome = 'rescheduled'")
    op.drop_index('uq_deadlines_line_clock', table_name='deadlines', schema='dispatch')
    op.create_index('uq_deadlines_line_clock', 'deadlines', ['assignment_id', 'clock'], unique=True, schema='dispatch',
                    postgresql_where=sa.text('assignment_id IS NOT NULL'))
