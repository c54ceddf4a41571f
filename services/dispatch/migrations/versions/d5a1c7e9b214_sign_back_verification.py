"""sign-back verification: a department line waits for its head (awaiting_verify)

The department signs back (opinion, result: `signed_at`), its head verifies (the line is
then `signed_back`, `signed_back_at`) or returns it to work (RULES §2 Sign-back; seeds
000 §四). Lines signed back before this change were verified at once: their `signed_at`
is their `signed_back_at`.

Revision ID: d5a1c7e9b214
Revises: e8b4d2a6c913
Create Date: 2026-12-01 04:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'd5a1c7e9b214'
down_revision = 'e8b4d2a6c913'
branch_labels = None
depends_on = None

OLD_LINE_STATES = ('assigned', 'acknowledged', 'arrived', 'signed_back', 'transferred')
LINE_STATES = ('assigned', 'acknowledged', 'arrived', 'awaiting_verify', 'signed_back', 'transferred')


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.add_column('assignments', sa.Column('signed_at', sa.DateTime(timezone=True), nullable=True), schema='dispatch')
    op.execute("UPDATE dispatch.assignments SET signed_at = signed_back_at WHERE signed_back_at IS NOT NULL")
    op.drop_constraint('ck_assignments_status', 'assignments', type_='check', schema='dispatch')
    op.create_check_constraint('ck_assignments_status', 'assignments', f"status IN ({_in(LINE_STATES)})",
                               schema='dispatch')


def downgrade() -> None:
    # A line still waiting for its head goes back to work (its sign-back is dropped).
    op.execute("""UPDATE dispatch.assignments SET status = CASE WHEN arrived_at IS NOT NULL THEN 'arrived'
                  ELSE 'acknowledged' END, opinion = NULL, result = NULL, signed_by = NULL
                  WHERE status = 'awaiting_verify'""")
    op.drop_constraint('ck_assignments_status', 'assignments', type_='check', schema='dispatch')
    op.create_check_constraint('ck_assignments_status', 'assignments', f"status IN ({_in(OLD_LINE_STATES)})",
                               schema='dispatch')
    op.drop_column('assignments', 'signed_at', schema='dispatch')
