"""form numbers as wide as shared.limits allows (a 32-character estate code fits)

Revision ID: d8f5b3c6e604
Revises: fe6725df605c
Create Date: 2026-12-01 00:50:00
"""

from alembic import op
import sqlalchemy as sa

from shared import limits

revision = 'd8f5b3c6e604'
down_revision = 'fe6725df605c'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column('records', 'form_number', type_=sa.String(length=limits.FORM_NUMBER_COLUMN), existing_type=sa.String(length=40),
                    existing_nullable=False, schema='archive')
    op.alter_column('destruction_log', 'form_number', type_=sa.String(length=limits.FORM_NUMBER_COLUMN), existing_type=sa.String(length=40),
                    existing_nullable=False, schema='archive')


def downgrade() -> None:
    op.alter_column('records', 'form_number', type_=sa.String(length=40), existing_type=sa.String(length=limits.FORM_NUMBER_COLUMN),
                    existing_nullable=False, schema='archive')
    op.alter_column('destruction_log', 'form_number', type_=sa.String(length=40), existing_type=sa.String(length=limits.FORM_NUMBER_COLUMN),
                    existing_nullable=False, schema='archive')
