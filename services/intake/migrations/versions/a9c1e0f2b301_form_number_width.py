"""form numbers as wide as shared.limits allows (a 32-character estate code fits)

Revision ID: a9c1e0f2b301
Revises: 24f708135716
Create Date: 2026-12-01 00:50:00
"""

from alembic import op
import sqlalchemy as sa

from shared import limits

revision = 'a9c1e0f2b301'
down_revision = '24f708135716'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column('tickets', 'form_number', type_=sa.String(length=limits.FORM_NUMBER_COLUMN), existing_type=sa.String(length=40),
                    existing_nullable=False, schema='intake')


def downgrade() -> None:
    op.alter_column('tickets', 'form_number', type_=sa.String(length=40), existing_type=sa.String(length=limits.FORM_NUMBER_COLUMN),
                    existing_nullable=False, schema='intake')
