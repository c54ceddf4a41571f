"""The callback service's tables: what it learned about each ticket from the lifecycle's
events, each completed round, the callback schedule and records, recurrence watches,
progress updates and walk-around visits. Filled only from events and its own API: it
never reads another service's tables."""

import sqlalchemy as sa

from shared import limits
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from shared.db import service_metadata

metadata = service_metadata("callback")

Departments = ARRAY(sa.String(limits.DEPARTMENT_CODE_MAX))

# One row per ticket, assembled from accepted / validity_judged / assigned / completed in
# whatever order they arrive (every consumer is independent). Handlers lock this row first
# so that events of one ticket are applied one at a time.
tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN)),
    sa.Column("kind", sa.String(32)),
    sa.Column("category", sa.String(limits.CATEGORY_MAX)),
    # Category as the recurrence rule compares it (rules.recurrence_key).
    sa.Column("category_key", sa.String(limits.CATEGORY_MAX)),
    sa.Column("channel", sa.String(32)),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("reply_method", sa.String(16)),
    sa.Column("first_contact", sa.String(limits.ID_MAX)),
    sa.Column("owner_id", sa.String(limits.ID_MAX)),
    # The unit the request is about (accepted.unit): an owner answers only their unit's callbacks.
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX)),
    sa.Column("appointment_at", sa.DateTime(timezone=True)),
    # When the opinion was raised (accepted.received_at; until that is seen, the time of
    # the first event that mentioned the ticket).
    sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("accepted_seen", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("valid", sa.Boolean),  # complaints: None until judged
    sa.Column("validity_reason", sa.Text),
    # Every department the form was sent to (the recurrence rule's "same department").
    sa.Column("departments", Departments, nullable=False, server_default="{}"),
    sa.Column("first_assigned_at", sa.DateTime(timezone=True)),
    sa.Column("current_round", sa.Integer, nullable=False, server_default="1"),
    # in_handling / awaiting_callback / awaiting_verdict / closed
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("closed_round", sa.Integer),
    sa.Column("closed_reason", sa.Text),
    sa.Column("closed_satisfied", sa.Boolean),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_callback_tickets_estate_category", "estate", "category_key"),
    sa.Index("ix_callback_tickets_long_running", "estate", "raised_at",
             postgresql_where=sa.text("kind = 'complaint' AND status = 'in_handling'")),
)

# One row per completed round: a redelivered or re-emitted `completed` finds it and does
# nothing. The outcome is what the round's callback (or the recurrence rule) decided.
rounds = sa.Table(
    "rounds",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("departments", Departments, nullable=False),
    sa.Column("reply_method", sa.String(16), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("completed_event_id", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16)),  # closed / reopened
    sa.Column("outcome_reason", sa.Text),
    sa.Column("outcome_at", sa.DateTime(timezone=True)),
    sa.Column("outcome_by", sa.String(64)),
)

# The schedule and the record: one row per planned callback, id from rules.callback_id_for.
callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("callback_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("departments", Departments, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),  # the owner's chosen method
    sa.Column("counts_in_rate", sa.Boolean, nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True)),  # the round's completion (metrics month)
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("provisional", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("assigned_to", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),  # pending / done / cancelled
    sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("overdue_at", sa.DateTime(timezone=True)),  # callback_overdue emitted (once)
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    sa.Column("cancel_reason", sa.Text),
    # The record (002 §4.4.2 d).
    sa.Column("done_at", sa.DateTime(timezone=True)),
    sa.Column("done_by", sa.String(64)),
    sa.Column("record_method", sa.String(16)),
    sa.Column("handled_in_time", sa.Boolean),
    sa.Column("result_satisfied", sa.Boolean),
    sa.Column("attitude_satisfied", sa.Boolean),
    sa.Column("suggestions", sa.Text),
    sa.Column("owner_confirmed", sa.Boolean),
    sa.Column("on_time", sa.Boolean),
    sa.Column("submission_key", sa.String(64), unique=True),
    sa.Column("outcome", sa.String(16)),  # closed / reopened, when this record decided one
    sa.Column("outcome_round", sa.Integer),
    sa.Column("outcome_reason", sa.Text),
    sa.Column("attitude_complaint", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_callbacks_worklist", "estate", "due_at", postgresql_where=sa.text("status = 'pending'")),
    # The overdue scan looks only at pending callbacks not yet reported overdue.
    sa.Index("ix_callbacks_overdue_scan", "due_at",
             postgresql_where=sa.text("status = 'pending' AND overdue_at IS NULL")),
)

# RULES §3 No callback path: an opinion waiting for the recurrence rule's verdict.
recurrence_watches = sa.Table(
    "recurrence_watches",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("category_key", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("departments", Departments, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("verdict", sa.String(16)),  # satisfied / not_satisfied
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("recurring_ticket_id", sa.String(64)),
    sa.Index("ix_recurrence_open", "estate", "category_key", postgresql_where=sa.text("verdict IS NULL")),
    sa.Index("ix_recurrence_due", "window_ends_at", postgresql_where=sa.text("verdict IS NULL")),
)

# RULES §2 Progress updates, as `progress_updated` reports them.
progress_updates = sa.Table(
    "progress_updates",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)

# RULES §3 Walk-around visits 走访.
visits = sa.Table(
    "visits",
    metadata,
    sa.Column("visit_id", sa.String(64), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("staff_id", sa.String(64), nullable=False),
    sa.Column("visited_on", sa.Date, nullable=False),  # estate-local date
    sa.Column("owner_id", sa.String(limits.ID_MAX)),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX)),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("raised_request", JSONB),  # the request handed to intake, if the visit raised one
    sa.Column("client_visit_id", sa.String(128)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("estate", "staff_id", "client_visit_id", name="uq_visits_client_visit"),
    sa.Index("ix_visits_estate_day", "estate", "visited_on"),
)
