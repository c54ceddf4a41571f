"""request lists read the newest rows first: indexes ending in received_at

Issue 12 (docs/performance.md, "How the cost grows"): the request lists (console
default, open only, complaints, "my requests") read every ticket the estate ever had
through the index on `estate` alone and sorted them for the newest n. Each now has an
index ending in `received_at`, which the list reads backwards and stops after n:
`(estate, received_at)` (it replaces the index on estate alone, its prefix), a partial
one of the open tickets, `(estate, kind, received_at)` for the complaint list, and
`(estate, first_contact, received_at)` in place of the index on first_contact alone.

The statistics: a staff member belongs to one estate, so `estate = … AND first_contact
= …` selects as many rows as `first_contact = …` alone; without them the planner
multiplies the two selectivities, expects a handful of rows and sorts every one of the
staff member's tickets instead of walking the index newest first. Metadata cannot
declare extended statistics (alembic's comparison ignores them), so they live here only.

Plain CREATE INDEX (the transaction's lock on the table is fine for the embedded
default); a large production table would use CREATE INDEX CONCURRENTLY outside a
transaction (`op.get_context().autocommit_block()`).

Revision ID: a4d8e2f61c07
Revises: f3c7b9d1e624
Create Date: 2026-12-01 11:45:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'a4d8e2f61c07'
down_revision = 'f3c7b9d1e624'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_tickets_estate_received', 'tickets', ['estate', 'received_at'], schema='intake')
    op.create_index('ix_tickets_estate_open', 'tickets', ['estate', 'received_at'], schema='intake',
                    postgresql_where=sa.text("status = 'in_handling'"))
    op.create_index('ix_tickets_estate_kind', 'tickets', ['estate', 'kind', 'received_at'], schema='intake')
    op.create_index('ix_tickets_estate_first_contact', 'tickets', ['estate', 'first_contact', 'received_at'],
                    schema='intake')
    op.drop_index('ix_intake_tickets_estate', table_name='tickets', schema='intake')
    op.drop_index('ix_intake_tickets_first_contact', table_name='tickets', schema='intake')
    op.execute("CREATE STATISTICS intake.st_tickets_estate_first_contact (dependencies) "
               "ON estate, first_contact FROM intake.tickets")
    op.execute("ANALYZE intake.tickets")


def downgrade() -> None:
    op.execute("DROP STATISTICS intake.st_tickets_estate_first_contact")
    op.create_index('ix_intake_tickets_first_contact', 'tickets', ['first_contact'], schema='intake')
    op.create_index('ix_intake_tickets_estate', 'tickets', ['estate'], schema='intake')
    op.drop_index('ix_tickets_estate_first_contact', table_name='tickets', schema='intake')
    op.drop_index('ix_tickets_estate_kind', table_name='tickets', schema='intake')
    op.drop_index('ix_tickets_estate_open', table_name='tickets', schema='intake')
    op.drop_index('ix_tickets_estate_received', table_name='tickets', schema='intake')
