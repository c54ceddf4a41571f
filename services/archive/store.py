"""The archive service's tables.

- collected_events: every ticket event as it arrives, until its ticket is archived (then
  they are deleted: the frozen form is the record, the stream keeps the history, and the
  raw events hold owner details the form has redacted).
- pending_seals: closed tickets waiting for their last events before they are sealed.
- chain_heads: one row per estate, locked FOR UPDATE while a record is appended, so two
  replicas never fork the chain; it also numbers records per year.
- records: the chain itself (content, content_hash, previous_hash, record_hash) plus the
  catalogue facts. Content is NULL once destroyed; the row stays as the tombstone.
- important_marks: the important-events file, kept beside the frozen record (marking
  changes the retention class, never the content).
- monthly_sets / quarterly_runs / volumes: monthly organisation and quarterly archiving.
- loans: the lending register 借阅登记; access_log: every read attempt, allowed or not.
- destruction_log: survives the records it names.
"""

import sqlalchemy as sa

from shared import limits
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import service_metadata

metadata = service_metadata("archive")

collected_events = sa.Table(
    "collected_events",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("envelope", JSONB, nullable=False),
    sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_collected_events_ticket", "estate", "ticket_id"),
)

# A `closed` ticket waits here until every event before its `closed` on the stream has
# been collected (the archive consumer's ack floor has passed it), then it is sealed.
pending_seals = sa.Table(
    "pending_seals",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("closed_event_id", sa.String(64), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("noted_at", sa.DateTime(timezone=True), nullable=False),
    # The consumer's last delivered stream sequence when the seal job first saw the row:
    # the `closed` message is at or below it.
    sa.Column("barrier", sa.BigInteger),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=False),
)

chain_heads = sa.Table(
    "chain_heads",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Record numbers run per estate and year of the closing month; incremented under the
# chain head's lock, so they are gapless too.
record_years = sa.Table(
    "record_years",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)

# Events that arrived after their ticket was archived, appended (never dropped) in a
# side chain hanging from the record: see rules.addendum_hash. Content is bytes (the
# event's canonical JSON), so any event can be kept, whatever PostgreSQL's JSONB refuses.
addenda = sa.Table(
    "addenda",
    metadata,
    sa.Column("record_number", sa.String(64), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("estate", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("previous_hash", sa.String(64), nullable=False),
    sa.Column("addendum_hash", sa.String(64), nullable=False),
    sa.Column("appended_at", sa.DateTime(timezone=True), nullable=False),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("record_number", sa.String(64), nullable=False, unique=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_month", sa.String(7), nullable=False),
    # The class the record was archived with, and the class it has now (an important-
    # events mark raises it); retention runs on the current one.
    sa.Column("archived_class", sa.String(32), nullable=False),
    sa.Column("retention_class", sa.String(32), nullable=False),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("content", sa.LargeBinary),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("previous_hash", sa.String(64), nullable=False),
    sa.Column("record_hash", sa.String(64), nullable=False),
    sa.Column("destroyed", sa.Boolean, nullable=False, default=False),
    sa.Column("destroyed_at", sa.DateTime(timezone=True)),
    # Set by monthly organisation and quarterly archiving; NULL means still to do.
    sa.Column("month_part", sa.Integer),
    sa.Column("volume_number", sa.String(64)),
    sa.Column("volume_item", sa.Integer),
    sa.UniqueConstraint("estate", "ticket_id", name="uq_records_ticket"),
    sa.Index("ix_records_month", "estate", "closed_month"),
    # The scheduler looks only at what is still to organise or to bind.
    sa.Index("ix_records_unorganised", "estate", "closed_month", postgresql_where=sa.text("month_part IS NULL")),
    sa.Index("ix_records_unbound", "estate", "closed_month", postgresql_where=sa.text("volume_number IS NULL")),
)

important_marks = sa.Table(
    "important_marks",
    metadata,
    sa.Column("record_number", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("marked_by", sa.String(64), nullable=False),
    sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("previous_class", sa.String(32), nullable=False),
)

monthly_sets = sa.Table(
    "monthly_sets",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    # Part 1 is the month's organisation; later parts take forms archived after it.
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("organised_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("organised_by", sa.String(64), nullable=False),
    sa.Column("record_count", sa.Integer, nullable=False),
    sa.Column("manifest", JSONB, nullable=False),
    sa.Column("manifest_hash", sa.String(64), nullable=False),
    sa.Column("export_path", sa.Text),
)

quarterly_runs = sa.Table(
    "quarterly_runs",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("quarter", sa.String(6), primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("archived_by", sa.String(64), nullable=False),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("general_catalogue", JSONB, nullable=False),
)

volumes = sa.Table(
    "volumes",
    metadata,
    sa.Column("volume_number", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("quarter", sa.String(6), nullable=False),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("retention_class", sa.String(32), nullable=False),
    sa.Column("retention_years", sa.Integer, nullable=False),
    sa.Column("custodian", sa.String(64), nullable=False),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("first_record", sa.String(64), nullable=False),
    sa.Column("last_record", sa.String(64), nullable=False),
    sa.Column("months", JSONB, nullable=False),
    sa.Column("items", JSONB, nullable=False),  # the item catalogue 卷内目录, as bound
    sa.Index("ix_volumes_quarter", "estate", "quarter"),
)

loans = sa.Table(
    "loans",
    metadata,
    sa.Column("loan_id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("record_number", sa.String(64), nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("borrower", sa.String(128), nullable=False),
    sa.Column("borrower_external", sa.Boolean, nullable=False),
    sa.Column("borrower_organisation", sa.String(200)),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("basis", sa.String(32), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("registered_by", sa.String(64), nullable=False),
    sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_back", sa.DateTime(timezone=True)),
    sa.Column("approved_by", sa.String(64)),
    sa.Column("approval_reference", sa.String(200)),
    sa.Column("returned_at", sa.DateTime(timezone=True)),
    sa.Column("returned_to", sa.String(64)),
    sa.Index("ix_loans_record", "estate", "record_number"),
    sa.Index("ix_loans_open", "estate", "due_back", postgresql_where=sa.text("returned_at IS NULL")),
)

access_log = sa.Table(
    "access_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("record_number", sa.String(64)),  # None: a refusal at the door concerning no record
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("roles", JSONB, nullable=False),
    sa.Column("what", sa.String(32), nullable=False),  # content, form.html, form.pdf; "door": refused at the door
    sa.Column("service", sa.String(32)),  # the service that refused at the door
    sa.Column("request", sa.Text),  # "GET /v1/estates/hx01/owners/o-1"
    sa.Column("allowed", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("loan_id", sa.String(64)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_access_log_record", "estate", "record_number"),
)

destruction_log = sa.Table(
    "destruction_log",
    metadata,
    sa.Column("record_number", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN), nullable=False),
    sa.Column("retention_class", sa.String(32), nullable=False),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("retention_expired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("approved_by", sa.String(64), nullable=False),
    sa.Column("approval_reference", sa.String(200), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
)
