"""duty roster, duty log and shift handover (issue 10 "Also build" 2)

Revision ID: c10e7a9b3d52
Revises: b10d2c4e8a31
Create Date: 2026-12-01 00:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = 'c10e7a9b3d52'
down_revision = 'b10d2c4e8a31'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('roster_shifts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('estate', sa.String(length=32), nullable=False),
    sa.Column('post', sa.String(length=32), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('shift', sa.String(length=16), nullable=False),
    sa.Column('staff', sa.JSON(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('set_by', sa.String(length=64), nullable=False),
    sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('estate', 'post', 'day', 'shift', name='uq_roster_shift'),
    schema='intake'
    )
    op.create_table('duty_log',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('shift_id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('entry', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='intake'
    )
    op.create_index('ix_intake_duty_log_shift_id', 'duty_log', ['shift_id'], unique=False, schema='intake')
    op.create_table('shift_handovers',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('shift_id', sa.BigInteger(), nullable=False),
    sa.Column('estate', sa.String(length=32), nullable=False),
    sa.Column('handed_over_by', sa.String(length=64), nullable=False),
    sa.Column('handed_over_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claim_due', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('shift_id'),
    schema='intake'
    )
    op.create_table('shift_handover_items',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('handover_id', sa.BigInteger(), nullable=False),
    sa.Column('estate', sa.String(length=32), nullable=False),
    sa.Column('ticket_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('repair_class', sa.String(length=32), nullable=True),
    sa.Column('urgency', sa.String(length=16), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('claim_due', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_to', sa.String(length=64), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    schema='intake'
    )
    op.create_index('ix_intake_shift_handover_items_handover_id', 'shift_handover_items', ['handover_id'],
                    unique=False, schema='intake')
    op.create_index('ix_shift_items_unclaimed', 'shift_handover_items', ['claim_due'], unique=False, schema='intake',
                    postgresql_where=sa.text('claimed_at IS NULL AND escalated_at IS NULL'))


def downgrade() -> None:
    op.drop_table('shift_handover_items', schema='intake')
    op.drop_table('shift_handovers', schema='intake')
    op.drop_index('ix_intake_duty_log_shift_id', table_name='duty_log', schema='intake')
    op.drop_table('duty_log', schema='intake')
    op.drop_table('roster_shifts', schema='intake')
