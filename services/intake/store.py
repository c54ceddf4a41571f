"""Intake's tables: requests as registered, countersign-form numbering, shift handover,
progress updates to owners, and the owners/units directory with its disclosure log."""

import sqlalchemy as sa

from shared import limits

from shared.db import service_metadata

metadata = service_metadata("intake")

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("urgency", sa.String(16), nullable=False),
    sa.Column("accepted_by", sa.String(16), nullable=False),
    sa.Column("building", sa.String(limits.BUILDING_MAX)),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX)),
    sa.Column("location", sa.Text),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("first_contact", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("first_contact_name", sa.String(limits.NAME_MAX)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reply_method", sa.String(16), nullable=False),
    sa.Column("reply_agreed_by", sa.DateTime(timezone=True)),
    sa.Column("appointment_at", sa.DateTime(timezone=True)),
    sa.Column("off_hours", sa.Boolean, nullable=False, default=False),
    sa.Column("anonymous", sa.Boolean, nullable=False, default=False),
    sa.Column("owner_id", sa.String(limits.ID_MAX)),
    sa.Column("about_role", sa.String(64)),
    sa.Column("owner_loss_cny", sa.Numeric(12, 2)),
    sa.Column("status", sa.String(16), nullable=False, default="open"),
    sa.Column("round", sa.Integer, nullable=False, default=1),
    sa.Column("client_request_id", sa.String(limits.CLIENT_ID_MAX)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Record content (RULES §1): when, why, who was involved, attachments by reference.
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("cause", sa.Text),
    sa.Column("people", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("attachments", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    # The owner's signature: signed / later (补签, reminded until supplied) / not_required.
    sa.Column("owner_signature", sa.String(16), nullable=False, server_default="not_required"),
    sa.Column("signed_at", sa.DateTime(timezone=True)),
    sa.Column("reminders_sent", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_reminded_at", sa.DateTime(timezone=True)),
    sa.Column("next_reminder_at", sa.DateTime(timezone=True)),
    # Who holds it now; handing it on never changes first_contact.
    sa.Column("current_handler", sa.String(64)),
    # Complaint validity.
    sa.Column("valid", sa.Boolean),
    sa.Column("validity_reason", sa.Text),
    sa.Column("judged_by", sa.String(64)),
    sa.Column("confirmed_by", sa.String(64)),  # the manager who confirmed or rejected an invalid judgement
    sa.Column("judged_at", sa.DateTime(timezone=True)),
    # rules.ValidityState; an invalid judgement is final only once a manager confirms it.
    sa.Column("validity_state", sa.String(24)),
    sa.Column("validity_decided_at", sa.DateTime(timezone=True)),
    sa.Column("notify_owner_by", sa.DateTime(timezone=True)),
    sa.Column("notify_provisional", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("owner_notified_at", sa.DateTime(timezone=True)),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("estate", "client_request_id", name="uq_tickets_client_request"),
    sa.Index("ix_tickets_signature_due", "next_reminder_at", postgresql_where=sa.text("next_reminder_at IS NOT NULL")),
)

# Gapless numbering: one row per estate and year, incremented under its row lock.
form_sequences = sa.Table(
    "form_sequences",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)

# Off-hours registrations by duty staff wait here until the next shift takes each over.
handover_items = sa.Table(
    "handover_items",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, unique=True),
    sa.Column("registered_by", sa.String(64), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("handover_due", sa.DateTime(timezone=True), nullable=False),
    sa.Column("taken_over_by", sa.String(64)),
    sa.Column("taken_over_at", sa.DateTime(timezone=True)),
    sa.Index("ix_handover_unclaimed", "estate", postgresql_where=sa.text("taken_over_at IS NULL")),
)

progress_updates = sa.Table(
    "progress_updates",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Units are building-entrance-room ("1-2-301") in one of the estate's buildings.
units = sa.Table(
    "units",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("building", sa.String(limits.BUILDING_MAX), nullable=False),
    sa.Column("entrance", sa.String(16), nullable=False),
    sa.Column("room", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Owners and residents (level-1 confidential: phone and ID numbers are shown masked).
owners = sa.Table(
    "owners",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("relation", sa.String(16), nullable=False),  # owner / resident
    sa.Column("phone", sa.String(limits.PHONE_MAX)),
    sa.Column("id_number", sa.String(limits.ID_NUMBER_MAX)),
    sa.Column("contacts", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_owners_estate_unit", "estate", "unit"),
)

# Every time someone saw an owner's phone or ID number unmasked.
disclosures = sa.Table(
    "disclosures",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("owner_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("viewer", sa.String(64), nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("purpose", sa.String(200)),
    sa.Column("disclosed_at", sa.DateTime(timezone=True), nullable=False),
)

# Staff sign-in (issue 16): the password hash lives here, never in the directory bucket.
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("staff_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
    sa.Column("disabled_at", sa.DateTime(timezone=True)),
    sa.Column("password_set_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("password_set_by", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("last_login_at", sa.DateTime(timezone=True)),
)

# One row per sign-in (the token's `jti`): renewal needs a live session; sign-out ends it.
auth_sessions = sa.Table(
    "auth_sessions",
    metadata,
    sa.Column("id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("staff_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

# Duty roster (排班表): one row per rostered shift of a post (001 第7篇 1.1.4, 1.2.1).
roster_shifts = sa.Table(
    "roster_shifts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("post", sa.String(32), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("shift", sa.String(16), nullable=False),
    sa.Column("staff", sa.JSON, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("set_by", sa.String(64), nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("estate", "post", "day", "shift", name="uq_roster_shift"),
)

# Duty log (值班记录): what happened on a shift and how it was handled (第2篇 1.3).
duty_log = sa.Table(
    "duty_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("shift_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("entry", sa.Text, nullable=False),
)

# A shift's handover to the next one, and its items, each claimed by the incoming shift.
shift_handovers = sa.Table(
    "shift_handovers",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("shift_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("handed_over_by", sa.String(64), nullable=False),
    sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claim_due", sa.DateTime(timezone=True), nullable=False),
)

shift_handover_items = sa.Table(
    "shift_handover_items",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("handover_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX)),
    sa.Column("kind", sa.String(32)),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("urgency", sa.String(16)),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("claim_due", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("escalated_to", sa.String(64)),
    sa.Column("escalated_at", sa.DateTime(timezone=True)),
    sa.Index("ix_shift_items_unclaimed", "claim_due",
             postgresql_where=sa.text("claimed_at IS NULL AND escalated_at IS NULL")),
)
from services.intake import owner_store  # noqa: E402,F401  (owners self-service tables, issue 15)
