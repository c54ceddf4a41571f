"""archive catalogue: a month's page by (estate, closed_month, sequence)

The catalogue is read a page at a time, newest first, mostly of one month: an index that
ends in the sort column reads the page's rows only, not the whole month sorted. It serves
every (estate, closed_month) look-up ix_records_month served, so that index goes.

Revision ID: c5e9a2d7f610
Revises: b4d2e8f1c903
Create Date: 2026-12-01 11:40:00
"""

from alembic import op

revision = 'c5e9a2d7f610'
down_revision = 'b4d2e8f1c903'
branch_labels = None
depends_on = None


# Plain CREATE INDEX (inside the migration's transaction) is fine for the embedded
# database; a large production table would build it CONCURRENTLY, outside a transaction.
def upgrade() -> None:
    op.create_index("ix_records_month_sequence", "records", ["estate", "closed_month", "sequence"], schema="archive")
    op.drop_index("ix_records_month", table_name="records", schema="archive")


def downgrade() -> None:
    op.create_index("ix_records_month", "records", ["estate", "closed_month"], schema="archive")
    op.drop_index("ix_records_month_sequence", table_name="records", schema="archive")
