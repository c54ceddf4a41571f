"""status checks: a ticket's status and a callback's in shared.lifecycle's vocabulary

Every status column carries a CHECK built from the same enum (issue 11). Callback's
spellings did not change.

Revision ID: e9f2a4c6b018
Revises: d5a1c8e2f417
Create Date: 2026-12-01 03:55:00
"""

from alembic import op


revision = 'e9f2a4c6b018'
down_revision = 'd5a1c8e2f417'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_check_constraint(
        'ck_tickets_status', 'tickets', "status IN ('in_handling', 'awaiting_callback', 'awaiting_verdict', 'closed')",
        schema='callback')
    op.create_check_constraint('ck_callbacks_status', 'callbacks', "status IN ('pending', 'done', 'cancelled')",
                               schema='callback')


def downgrade() -> None:
    op.drop_constraint('ck_callbacks_status', 'callbacks', type_='check', schema='callback')
    op.drop_constraint('ck_tickets_status', 'tickets', type_='check', schema='callback')
