"""destruction requests 销毁申请 and the general manager's decisions

Revision ID: b4d2e8f1c903
Revises: a7c3e1f0b2d4
Create Date: 2026-12-01 07:10:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = 'b4d2e8f1c903'
down_revision = 'a7c3e1f0b2d4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "destruction_requests",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("estate", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("record_numbers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refusal_reason", sa.Text(), nullable=True),
        # The states of shared.lifecycle.DestructionRequestState.
        sa.CheckConstraint("status IN ('requested', 'approved', 'refused')", name="ck_destruction_requests_status"),
        sa.PrimaryKeyConstraint("request_id"),
        schema="archive",
    )
    op.create_index("ix_archive_destruction_requests_estate", "destruction_requests", ["estate"], unique=False,
                    schema="archive")


def downgrade() -> None:
    op.drop_index("ix_archive_destruction_requests_estate", table_name="destruction_requests", schema="archive")
    op.drop_table("destruction_requests", schema="archive")
