"""ticket status in shared.lifecycle's vocabulary: "open" becomes in_handling, with a CHECK

Issue 11: intake wrote a ticket in handling as "open", dispatch and callback as
"in_handling". Existing rows are rewritten to the one spelling; the column then only
accepts intake's states (in_handling, completed, invalid, closed).

Revision ID: f3c7b9d1e624
Revises: de4821a4c86d
Create Date: 2026-12-01 03:50:00
"""

from alembic import op


revision = 'f3c7b9d1e624'
down_revision = 'de4821a4c86d'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE intake.tickets SET status = 'in_handling' WHERE status = 'open'")
    op.create_check_constraint('ck_tickets_status', 'tickets', "status IN ('in_handling', 'completed', 'invalid', 'closed')",
                               schema='intake')


def downgrade() -> None:
    op.drop_constraint('ck_tickets_status', 'tickets', type_='check', schema='intake')
    op.execute("UPDATE intake.tickets SET status = 'open' WHERE status = 'in_handling'")
