"""work list indexes: the staff's lists and the SLA scan stay flat as history grows (issue 12)

The work lists are "the estate's forms, filtered, newest first, LIMIT n"; read through an
index on `estate` alone they fetched and sorted every form the estate ever had (24 k pages
at 1 M tickets). An index ending in `accepted_at` reads the newest n backwards and stops
(it replaces the one on `estate` alone, which it serves too); the open list and the
department queue read a partial one of the forms in handling, and the overdue list one of
an estate's running clocks by due time.

Plain CREATE INDEX, inside the migration's transaction: right for the embedded default; a
large production table would be indexed with CREATE INDEX CONCURRENTLY, outside a
transaction, before this revision is stamped.

Revision ID: a7c3e5f90b16
Revises: d5a1c7e9b214
Create Date: 2026-12-01 11:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'a7c3e5f90b16'
down_revision = 'd5a1c7e9b214'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_forms_estate_accepted', 'forms', ['estate', 'accepted_at'], unique=False, schema='dispatch')
    op.create_index('ix_forms_estate_open', 'forms', ['estate', 'accepted_at'], unique=False, schema='dispatch',
                    postgresql_where=sa.text("status = 'in_handling'"))
    op.drop_index('ix_dispatch_forms_estate', table_name='forms', schema='dispatch')
    op.create_index('ix_deadlines_estate_open', 'deadlines', ['estate', 'due_at'], unique=False, schema='dispatch',
                    postgresql_where=sa.text('met_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_deadlines_estate_open', table_name='deadlines', schema='dispatch')
    op.create_index('ix_dispatch_forms_estate', 'forms', ['estate'], unique=False, schema='dispatch')
    op.drop_index('ix_forms_estate_open', table_name='forms', schema='dispatch')
    op.drop_index('ix_forms_estate_accepted', table_name='forms', schema='dispatch')
