"""Intake's tables: requests as registered, countersign-form numbering, shift handover."""

import sqlalchemy as sa

from shared.db import service_metadata

metadata = service_metadata("intake")

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(32), nullable=False, index=True),
    sa.Column("form_number", sa.String(40), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("urgency", sa.String(16), nullable=False),
    sa.Column("accepted_by", sa.String(16), nullable=False),
    sa.Column("building", sa.String(32)),
    sa.Column("unit", sa.String(64)),
    sa.Column("location", sa.Text),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("first_contact", sa.String(64), nullable=False, index=True),
    sa.Column("first_contact_name", sa.String(128)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reply_method", sa.String(16), nullable=False),
    sa.Column("reply_agreed_by", sa.DateTime(timezone=True)),
    sa.Column("appointment_at", sa.DateTime(timezone=True)),
    sa.Column("off_hours", sa.Boolean, nullable=False, default=False),
    sa.Column("anonymous", sa.Boolean, nullable=False, default=False),
    sa.Column("owner_id", sa.String(64)),
    sa.Column("about_role", sa.String(64)),
    sa.Column("owner_loss_cny", sa.Numeric(12, 2)),
    sa.Column("status", sa.String(16), nullable=False, default="open"),
    sa.Column("round", sa.Integer, nullable=False, default=1),
    sa.Column("client_request_id", sa.String(128)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("estate", "client_request_id", name="uq_tickets_client_request"),
)

# Gapless numbering: one row per estate and year, incremented under its row lock.
form_sequences = sa.Table(
    "form_sequences",
    metadata,
    sa.Column("estate", sa.String(32), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)
