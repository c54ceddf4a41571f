"""repeat search by building: an index on (estate, category, building, accepted_at)

The building half of repeat detection (RULES §2, 002 §4.3.1 b) looks for the latest
same-category tickets of one building; on the estate-wide index it walked every
same-category ticket of the trailing window to find them (3,549 rows per search after
3,641 tickets in one run of `bench/pipeline.py`), so its cost grew with the estate's
history. On this index it reads at most `limit` rows.

Revision ID: 4e7b2c9d1a05
Revises: 753d2c906069
Create Date: 2026-12-02 14:10:00
"""

from alembic import op

revision = '4e7b2c9d1a05'
down_revision = '753d2c906069'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_ticket_facts_repeats_building', 'ticket_facts', ['estate', 'category', 'building', 'accepted_at'],
                    unique=False, schema='analytics')


def downgrade() -> None:
    op.drop_index('ix_ticket_facts_repeats_building', table_name='ticket_facts', schema='analytics')
