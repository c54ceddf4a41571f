"""form numbers as wide as shared.limits allows (a 32-character estate code fits)

Revision ID: c3e4a2b5d503
Revises: 7b17ac4b4d9b
Create Date: 2026-12-01 00:50:00
"""

from alembic import op
import sqlalchemy as sa

from shared import limits

revision = 'c3e4a2b5d503'
down_revision = '7b17ac4b4d9b'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column('tickets', 'form_number', type_=sa.String(length=limits.FORM_NUMBER_COLUMN), existing_type=sa.String(length=40),
                    existing_nullable=True, schema='callback')


def downgrade() -> None:
    op.alter_column('tickets', 'form_number', type_=sa.String(length=40), existing_type=sa.String(length=limits.FORM_NUMBER_COLUMN),
                    existing_nullable=True, schema='callback')
