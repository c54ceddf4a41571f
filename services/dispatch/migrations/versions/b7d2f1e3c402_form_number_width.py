"""form numbers as wide as shared.limits allows (a 32-character estate code fits)

Revision ID: b7d2f1e3c402
Revises: 475476db0908
Create Date: 2026-12-01 00:50:00
"""

from alembic import op
import sqlalchemy as sa

from shared import limits

revision = 'b7d2f1e3c402'
down_revision = '475476db0908'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column('forms', 'form_number', type_=sa.String(length=limits.FORM_NUMBER_COLUMN), existing_type=sa.String(length=40),
                    existing_nullable=False, schema='dispatch')


def downgrade() -> None:
    op.alter_column('forms', 'form_number', type_=sa.String(length=40), existing_type=sa.String(length=limits.FORM_NUMBER_COLUMN),
                    existing_nullable=False, schema='dispatch')
