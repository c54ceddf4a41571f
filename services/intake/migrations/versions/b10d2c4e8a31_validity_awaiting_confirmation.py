"""validity state: an invalid judgement awaits the manager's confirmation

Issue 10: a clerk's invalid judgement is no longer final; it waits as
"awaiting_confirmation" until a manager confirms or rejects it with their own sign-in.
Judgements already stored were final: valid → "valid", invalid → "confirmed". The
manager who confirmed or rejected is `confirmed_by`; `validity_decided_at` is when.

Revision ID: b10d2c4e8a31
Revises: e1a7c9d2f405
Create Date: 2026-12-01 00:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'b10d2c4e8a31'
down_revision = 'e1a7c9d2f405'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tickets', sa.Column('validity_state', sa.String(length=24), nullable=True), schema='intake')
    op.add_column('tickets', sa.Column('validity_decided_at', sa.DateTime(timezone=True), nullable=True),
                  schema='intake')
    op.execute("UPDATE intake.tickets SET validity_state = CASE WHEN valid THEN 'valid' ELSE 'confirmed' END "
               "WHERE valid IS NOT NULL")


def downgrade() -> None:
    op.drop_column('tickets', 'validity_decided_at', schema='intake')
    op.drop_column('tickets', 'validity_state', schema='intake')
