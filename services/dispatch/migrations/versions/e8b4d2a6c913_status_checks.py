"""status checks: a form's status, a ledger line's and a nonconformity record's state in shared.lifecycle's vocabulary

Every status column carries a CHECK built from the same enum (issue 11). A department
line's state was inferred from which of its timestamps were set; it is now a column,
filled here from those timestamps for the lines already written. Dispatch's other
spellings did not change.

Revision ID: e8b4d2a6c913
Revises: c3e9a7b51d02
Create Date: 2026-12-01 03:45:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'e8b4d2a6c913'
down_revision = 'c3e9a7b51d02'
branch_labels = None
depends_on = None

FORM_STATES = ('in_handling', 'awaiting_nc', 'completed', 'invalid', 'closed')
NONCONFORMITY_STATES = ('opened', 'approved', 'corrective_action', 'closed')
LINE_STATES = ('assigned', 'acknowledged', 'arrived', 'signed_back', 'transferred')


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.add_column('assignments', sa.Column('status', sa.String(length=16), server_default='assigned', nullable=False),
                  schema='dispatch')
    op.execute("""
        UPDATE dispatch.assignments SET status = CASE
            WHEN transferred_at IS NOT NULL THEN 'transferred'
            WHEN signed_back_at IS NOT NULL THEN 'signed_back'
            WHEN arrived_at IS NOT NULL THEN 'arrived'
            WHEN acknowledged_at IS NOT NULL THEN 'acknowledged'
            ELSE 'assigned' END
    """)
    op.create_check_constraint('ck_assignments_status', 'assignments', f"status IN ({_in(LINE_STATES)})",
                               schema='dispatch')
    op.create_check_constraint('ck_forms_status', 'forms', f"status IN ({_in(FORM_STATES)})", schema='dispatch')
    op.create_check_constraint('ck_nonconformities_state', 'nonconformities',
                               f"state IN ({_in(NONCONFORMITY_STATES)})", schema='dispatch')


def downgrade() -> None:
    op.drop_constraint('ck_assignments_status', 'assignments', type_='check', schema='dispatch')
    op.drop_column('assignments', 'status', schema='dispatch')
    op.drop_constraint('ck_nonconformities_state', 'nonconformities', type_='check', schema='dispatch')
    op.drop_constraint('ck_forms_status', 'forms', type_='check', schema='dispatch')
