"""Dispatch's tables: forms in handling, the handover ledger (one line per transfer of a
form to a department), deadlines as rows (never in-memory timers) so they survive
restarts, escalations, nonconformity records, the owner-update log and paid-service bills."""

import sqlalchemy as sa

from shared import limits
from shared.lifecycle import LineState, NonconformityState, TicketState, check_constraint

from shared.db import service_metadata

metadata = service_metadata("dispatch")

# The part of the ticket's life dispatch sees (shared.lifecycle's vocabulary).
FORM_STATES = (TicketState.in_handling, TicketState.awaiting_approval, TicketState.completed, TicketState.invalid,
               TicketState.closed)

forms = sa.Table(
    "forms",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("form_number", sa.String(limits.FORM_NUMBER_COLUMN), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("repair_class", sa.String(32)),
    sa.Column("reply_method", sa.String(16), nullable=False),
    sa.Column("first_contact", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("facts", sa.JSON, nullable=False),  # the accepted payload, for re-rounds
    sa.Column("round", sa.Integer, nullable=False),
    # in_handling → completed (every department signed back) → closed (owner satisfied);
    # awaiting_nc: signed back, the nonconformity record awaits approval; invalid: a
    # complaint judged invalid ended handling (FORM_STATES).
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("validity", sa.String(8)),  # valid / invalid, complaints only
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    check_constraint("status", FORM_STATES, "ck_forms_status"),
)

# The handover ledger: one line per transfer of a form to a department in a round. A
# department that hands the form on keeps its line (transferred_to is set) and the
# receiver gets a new one; only lines without transferred_at are active.
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("department", sa.String(32), nullable=False),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("assigned_by", sa.String(64), nullable=False),
    sa.Column("transferred_from", sa.String(32)),
    sa.Column("arrival_required", sa.Boolean, nullable=False, server_default=sa.false()),
    # The line's state (shared.lifecycle.LineState), written with each step.
    sa.Column("status", sa.String(16), nullable=False, server_default=LineState.assigned.value),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
    sa.Column("acknowledged_by", sa.String(64)),
    sa.Column("arrived_at", sa.DateTime(timezone=True)),
    sa.Column("arrived_by", sa.String(64)),
    # signed_at: the department signed back (opinion, result); signed_back_at: its head
    # verified, and only then the line counts as signed back for the form.
    sa.Column("signed_at", sa.DateTime(timezone=True)),
    sa.Column("signed_back_at", sa.DateTime(timezone=True)),
    sa.Column("opinion", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("signed_by", sa.String(64)),
    sa.Column("verified_by", sa.String(64)),
    sa.Column("appointment_at", sa.DateTime(timezone=True)),
    sa.Column("notes", sa.JSON, nullable=False, server_default=sa.text("'[]'")),  # notes left, reschedules
    sa.Column("transferred_at", sa.DateTime(timezone=True)),
    sa.Column("transferred_to", sa.String(32)),
    sa.Column("transferred_by", sa.String(64)),
    sa.Index("ix_assignments_ticket_round", "ticket_id", "round"),
    check_constraint("status", LineState, "ck_assignments_status"),
    # A department holds at most one active line per round.
    sa.Index(
        "uq_assignments_active_line", "ticket_id", "round", "department", unique=True,
        postgresql_where=sa.text("transferred_at IS NULL"),
    ),
)

deadlines = sa.Table(
    "deadlines",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("clock", sa.String(32), nullable=False),
    sa.Column("department", sa.String(32), nullable=False, default=""),
    # The ledger line a department clock belongs to; NULL for the ticket's own clocks.
    sa.Column("assignment_id", sa.BigInteger),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("provisional", sa.Boolean, nullable=False, default=False),
    # Day clocks keep what they count from, so a provisional one can be recomputed when
    # the company loads the missing year's calendar.
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("working_days", sa.Integer),
    sa.Column("met_at", sa.DateTime(timezone=True)),  # closed: met, or no longer owed
    sa.Column("outcome", sa.String(16)),  # met / superseded / cancelled / rescheduled
    sa.Column("breached_at", sa.DateTime(timezone=True)),
    # One live clock per line and clock; rescheduled ones stay beside it as history.
    sa.Index(
        "uq_deadlines_line_clock", "assignment_id", "clock", unique=True,
        postgresql_where=sa.text("assignment_id IS NOT NULL AND (outcome IS NULL OR outcome <> 'rescheduled')"),
    ),
    # One of each of the ticket's own clocks a round; the progress-update duty has one
    # clock per week (issue 11).
    sa.Index(
        "uq_deadlines_ticket_clock", "ticket_id", "round", "clock", unique=True,
        postgresql_where=sa.text("assignment_id IS NULL AND clock <> 'progress_update'"),
    ),
    sa.Index(
        "uq_deadlines_progress_week", "ticket_id", "round", "due_at", unique=True,
        postgresql_where=sa.text("clock = 'progress_update'"),
    ),
    # The breach scan looks only at open deadlines by due time.
    sa.Index("ix_deadlines_open_due", "due_at", postgresql_where=sa.text("met_at IS NULL AND breached_at IS NULL")),
)

# Each rung a breach (or the subject of a complaint, or an owner's loss) reached.
escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("deadline_id", sa.BigInteger),  # NULL: escalated by subject or by loss
    sa.Column("clock", sa.String(32)),
    sa.Column("department", sa.String(32)),
    sa.Column("rung", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("nonconformity", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_at", sa.DateTime(timezone=True)),  # the next rung is told then, if unresolved
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Index("uq_escalations_deadline_rung", "deadline_id", "rung", unique=True,
             postgresql_where=sa.text("deadline_id IS NOT NULL")),
    sa.Index("ix_escalations_next", "next_at", postgresql_where=sa.text("next_at IS NOT NULL AND resolved_at IS NULL")),
)

# 不合格品/服务记录处理单: one per ticket.
nonconformities = sa.Table(
    "nonconformities",
    metadata,
    sa.Column("ticket_id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("owner_loss_cny", sa.Numeric(12, 2)),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("opened_by", sa.String(64), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("approved_by", sa.String(64)),
    sa.Column("approved_at", sa.DateTime(timezone=True)),
    sa.Column("corrective_action", sa.Text),
    sa.Column("responsible", sa.String(64)),
    sa.Column("action_started_at", sa.DateTime(timezone=True)),
    sa.Column("closed_by", sa.String(64)),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("result", sa.Text),
    sa.Column("capa_report", sa.Text),
    sa.Column("capa_reported_at", sa.DateTime(timezone=True)),
    check_constraint("state", NonconformityState, "ck_nonconformities_state"),
)

# Updates given to the owner (from intake's progress_updated): they meet the reply clock
# and count towards the week's progress_update clock (the twice-a-week rule).
progress_log = sa.Table(
    "progress_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)

# The estate's household-service catalogue (free and paid items with prices).
service_items = sa.Table(
    "service_items",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("paid", sa.Boolean, nullable=False),
    sa.Column("price_cny", sa.Numeric(12, 2)),
)

# Repair bills (three copies with the same lines); settled through finance only.
bills = sa.Table(
    "bills",
    metadata,
    sa.Column("number", sa.String(48), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False, index=True),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.Column("total_cny", sa.Numeric(12, 2), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("settled_channel", sa.String(32)),
    sa.Column("settled_by", sa.String(64)),
    sa.Column("settled_at", sa.DateTime(timezone=True)),
)

bill_sequences = sa.Table(
    "bill_sequences",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)
