"""staff accounts (argon2 password hashes, lock-out) and sign-in sessions

Revision ID: e1a7c9d2f405
Revises: a9c1e0f2b301
Create Date: 2026-12-01 01:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'e1a7c9d2f405'
down_revision = 'a9c1e0f2b301'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('staff_id', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('failed_attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('password_set_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('password_set_by', sa.String(length=64), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('staff_id'),
    schema='intake'
    )
    op.create_table('auth_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.String(length=64), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    schema='intake'
    )
    op.create_index(op.f('ix_intake_auth_sessions_staff_id'), 'auth_sessions', ['staff_id'], unique=False, schema='intake')


def downgrade() -> None:
    op.drop_index(op.f('ix_intake_auth_sessions_staff_id'), table_name='auth_sessions', schema='intake')
    op.drop_table('auth_sessions', schema='intake')
    op.drop_table('accounts', schema='intake')
