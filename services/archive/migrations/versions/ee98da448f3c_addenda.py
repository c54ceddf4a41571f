"""addenda: late events appended to archived records

Revision ID: ee98da448f3c
Revises: 19002f1e9a3e
Create Date: 2026-12-01 01:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'ee98da448f3c'
down_revision = '19002f1e9a3e'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "addenda",
        sa.Column("record_number", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("estate", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("addendum_hash", sa.String(64), nullable=False),
        sa.Column("appended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("record_number", "number"),
        sa.UniqueConstraint("event_id"),
        schema="archive",
    )


def downgrade() -> None:
    op.drop_table("addenda", schema="archive")
