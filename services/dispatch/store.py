"""Dispatch's tables: forms in handling, department assignments (the handover ledger),
and deadlines as rows (never in-memory timers) so they survive restarts."""

import sqlalchemy as sa

from shared.db import service_metadata

metadata = service_metadata("dispatch")

forms = sa.Table(
    "forms",
    metadata,
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(32), nullable=False, index=True),
    sa.Column("form_number", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("reply_method", sa.String(16), nullable=False),
    sa.Column("first_contact", sa.String(64), nullable=False),
    sa.Column("facts", sa.JSON, nullable=False),  # the accepted payload, for re-rounds
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # in_handling / completed
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The handover ledger: one line per transfer of a form to a department in a round.
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("department", sa.String(32), primary_key=True),
    sa.Column("estate", sa.String(32), nullable=False, index=True),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("assigned_by", sa.String(64), nullable=False),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
    sa.Column("acknowledged_by", sa.String(64)),
    sa.Column("arrived_at", sa.DateTime(timezone=True)),
    sa.Column("signed_back_at", sa.DateTime(timezone=True)),
    sa.Column("opinion", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("signed_by", sa.String(64)),
    sa.Column("verified_by", sa.String(64)),
)

deadlines = sa.Table(
    "deadlines",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(64), nullable=False, index=True),
    sa.Column("estate", sa.String(32), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("clock", sa.String(32), nullable=False),
    sa.Column("department", sa.String(32), nullable=False, default=""),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("provisional", sa.Boolean, nullable=False, default=False),
    sa.Column("met_at", sa.DateTime(timezone=True)),
    sa.Column("breached_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("ticket_id", "round", "clock", "department", name="uq_deadline_clock"),
    # The breach scan looks only at open deadlines by due time.
    sa.Index("ix_deadlines_open_due", "due_at", postgresql_where=sa.text("met_at IS NULL AND breached_at IS NULL")),
)
