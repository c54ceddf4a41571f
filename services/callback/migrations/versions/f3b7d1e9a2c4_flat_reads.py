"""flat reads: the staff's callback reads touch the same pages whatever the history (issue 12)

The done worklist reads `(estate, done_at) WHERE status = 'done'` newest first (it read
every callback and showed the oldest done); a month's callback metrics read
`(estate, completed_at)` (a scan of every estate's callbacks) and the recurrence
verdicts `(estate, completed_at) WHERE verdict IS NOT NULL` (a scan of every estate's
watches); the recurrence rule reads an estate's category from the earliest open window
on, `(estate, category_key, raised_at)`, which serves what `(estate, category_key)`
served and replaces it.

Plain CREATE INDEX (in the migration's transaction) suits the embedded database; a large
production table would take CREATE INDEX CONCURRENTLY, outside a transaction, instead.

Revision ID: f3b7d1e9a2c4
Revises: e9f2a4c6b018
Create Date: 2026-12-01 11:45:00
"""

import sqlalchemy as sa
from alembic import op


revision = 'f3b7d1e9a2c4'
down_revision = 'e9f2a4c6b018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_callbacks_done', 'callbacks', ['estate', 'done_at'], unique=False, schema='callback',
                    postgresql_where=sa.text("status = 'done'"))
    op.create_index('ix_callbacks_completed', 'callbacks', ['estate', 'completed_at'], unique=False,
                    schema='callback')
    op.create_index('ix_recurrence_decided', 'recurrence_watches', ['estate', 'completed_at'], unique=False,
                    schema='callback', postgresql_where=sa.text("verdict IS NOT NULL"))
    op.create_index('ix_callback_tickets_opinions', 'tickets', ['estate', 'category_key', 'raised_at'],
                    unique=False, schema='callback')
    op.drop_index('ix_callback_tickets_estate_category', table_name='tickets', schema='callback')


def downgrade() -> None:
    op.create_index('ix_callback_tickets_estate_category', 'tickets', ['estate', 'category_key'], unique=False,
                    schema='callback')
    op.drop_index('ix_callback_tickets_opinions', table_name='tickets', schema='callback')
    op.drop_index('ix_recurrence_decided', table_name='recurrence_watches', schema='callback',
                  postgresql_where=sa.text("verdict IS NOT NULL"))
    op.drop_index('ix_callbacks_completed', table_name='callbacks', schema='callback')
    op.drop_index('ix_callbacks_done', table_name='callbacks', schema='callback',
                  postgresql_where=sa.text("status = 'done'"))
