"""status checks: a form's status and a nonconformity record's state in shared.lifecycle's vocabulary

Every status column carries a CHECK built from the same enum (issue 11). Dispatch's
spellings did not change; a row outside the vocabulary would refuse the constraint, so
none is guessed here.

Revision ID: e8b4d2a6c913
Revises: c3e9a7b51d02
Create Date: 2026-12-01 03:45:00
"""

from alembic import op


revision = 'e8b4d2a6c913'
down_revision = 'c3e9a7b51d02'
branch_labels = None
depends_on = None

FORM_STATES = ('in_handling', 'awaiting_nc', 'completed', 'invalid', 'closed')
NONCONFORMITY_STATES = ('opened', 'approved', 'corrective_action', 'closed')


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.create_check_constraint('ck_forms_status', 'forms', f"status IN ({_in(FORM_STATES)})", schema='dispatch')
    op.create_check_constraint('ck_nonconformities_state', 'nonconformities',
                               f"state IN ({_in(NONCONFORMITY_STATES)})", schema='dispatch')


def downgrade() -> None:
    op.drop_constraint('ck_nonconformities_state', 'nonconformities', type_='check', schema='dispatch')
    op.drop_constraint('ck_forms_status', 'forms', type_='check', schema='dispatch')
