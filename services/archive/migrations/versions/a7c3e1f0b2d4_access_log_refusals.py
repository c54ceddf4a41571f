"""access log: refusals at the door (owners' data, archive) from every service

Revision ID: a7c3e1f0b2d4
Revises: ee98da448f3c
Create Date: 2026-12-01 03:30:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'a7c3e1f0b2d4'
down_revision = 'ee98da448f3c'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A refusal at the door may concern no record (an owner's data, a list of records).
    op.alter_column("access_log", "record_number", existing_type=sa.String(64), nullable=True, schema="archive")
    op.add_column("access_log", sa.Column("service", sa.String(32)), schema="archive")
    op.add_column("access_log", sa.Column("request", sa.Text()), schema="archive")


def downgrade() -> None:
    op.drop_column("access_log", "request", schema="archive")
    op.drop_column("access_log", "service", schema="archive")
    op.alter_column("access_log", "record_number", existing_type=sa.String(64), nullable=False, schema="archive")
