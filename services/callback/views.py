"""How the callback service shows its aggregates: plain dicts for the HTTP answers, every
datetime already a string in the estate's zone (`iso`). Pure: `now` and the zone are
arguments."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from services.callback import rules
from services.callback.domain import Callback, Ticket
from services.callback.rules import PendingCallback
from shared.attitude import attitude_complaint_request
from shared.events import ReplyMethod
from shared.lifecycle import CallbackState


def iso(moment: dt.datetime | None, tz: ZoneInfo) -> str | None:
    return moment.astimezone(tz).isoformat() if moment else None


def pending_item(callback: Callback) -> PendingCallback:
    return PendingCallback(callback_id=callback.callback_id, ticket_id=callback.ticket_id, due_at=callback.due_at,
                           method=ReplyMethod(callback.method), rule=callback.rule, round=callback.round,
                           provisional=callback.provisional, assigned_to=callback.assigned_to)


def callback_view(callback: Callback, tz: ZoneInfo, now: dt.datetime, form_number: str | None = None) -> dict:
    overdue = callback.pending and rules.is_overdue(pending_item(callback), now)
    view = {
        "callback_id": callback.callback_id,
        "ticket_id": callback.ticket_id,
        "form_number": form_number,
        "round": callback.round,
        "rule": callback.rule,
        "purpose": callback.purpose,
        "kind": callback.kind,
        "category": callback.category,
        "departments": list(callback.departments),
        "method": callback.method,
        "counts_in_rate": callback.counts_in_rate,
        "due_at": iso(callback.due_at, tz),
        "provisional": callback.provisional,
        "assigned_to": callback.assigned_to,
        "status": callback.status.value,
        "overdue": overdue,
        "overdue_by_minutes": int((now - callback.due_at).total_seconds() // 60) if overdue else 0,
        "overdue_reported_at": iso(callback.overdue_at, tz),
        "scheduled_at": iso(callback.scheduled_at, tz),
        "cancel_reason": callback.cancel_reason,
        "record": None,
        "outcome": None,
    }
    if callback.status is CallbackState.done:
        view["record"] = {
            "done_at": iso(callback.done_at, tz), "done_by": callback.done_by, "method": callback.record_method,
            "handled_in_time": callback.handled_in_time, "result_satisfied": callback.result_satisfied,
            "attitude_satisfied": callback.attitude_satisfied, "suggestions": callback.suggestions,
            "owner_confirmed": callback.owner_confirmed, "on_time": callback.on_time,
        }
        if callback.outcome:
            view["outcome"] = {"event": callback.outcome, "round": callback.outcome_round,
                               "reason": callback.outcome_reason}
    return view


def owner_callback_view(callback: Callback, tz: ZoneInfo, now: dt.datetime, form_number: str | None) -> dict:
    """The owner sees answers and outcome, never who at the office made or assigned it."""
    view = callback_view(callback, tz, now, form_number)
    view.pop("assigned_to", None)
    if view["record"]:
        view["record"].pop("done_by", None)
    return {**view, "answerable": callback.answerable_online()}


def record_view(callback: Callback, ticket: Ticket | None, duplicate: bool, tz: ZoneInfo, now: dt.datetime) -> dict:
    """The record, what it decided, and the attitude complaint it raised as a ready-to-submit
    intake request (the same one intake registers from attitude_complaint_raised)."""
    raised = callback.attitude_complaint_raised(ticket, answered_by_owner=False) if callback.attitude_complaint and ticket \
        else None
    return {
        "duplicate": duplicate,
        "callback": callback_view(callback, tz, now, ticket.form_number if ticket else None),
        "outcome": {"event": callback.outcome, "round": callback.outcome_round, "reason": callback.outcome_reason}
        if callback.outcome else None,
        "attitude_complaint_request": attitude_complaint_request(raised) if raised else None,
    }


def progress_view(ticket: Ticket, updates: list[dt.datetime], now: dt.datetime, tz: ZoneInfo, policy) -> dict | None:
    """Where a long-running complaint's owner updates stand (2 a week, 002 §4.4.1 b)."""
    status = rules.weekly_update_status(ticket.raised_at, updates, now, policy)
    if not status.required:
        return None
    return {
        "ticket_id": ticket.ticket_id, "form_number": ticket.form_number, "first_contact": ticket.first_contact,
        "round": ticket.current_round, "opened_at": iso(ticket.raised_at, tz), "updates_total": len(updates),
        "week_start": iso(status.week_start, tz), "week_end": iso(status.week_end, tz),
        "done_this_week": status.done_this_week, "missing_this_week": status.missing_this_week,
        "next_update_due_at": iso(status.next_update_due_at, tz), "overdue": status.overdue,
        "missed_weeks": ticket.progress_weeks_missed,  # dispatch's verdicts, counted
    }


def ticket_history(ticket: Ticket, rounds, callbacks, watches, updates, tz: ZoneInfo, now: dt.datetime) -> dict:
    """Every round of a ticket: its completion, its callbacks and records, and its outcome."""
    rounds_out = {}
    for r in rounds:
        rounds_out[r.round] = {
            "round": r.round, "completed_at": iso(r.completed_at, tz), "departments": list(r.departments),
            "kind": r.kind, "category": r.category, "reply_method": r.reply_method,
            "outcome": r.outcome, "outcome_reason": r.outcome_reason, "outcome_at": iso(r.outcome_at, tz),
            "outcome_by": r.outcome_by, "callbacks": [],
        }
    for c in callbacks:
        # A mid-way callback belongs to a round still in handling (no completion yet).
        bucket = rounds_out.setdefault(c.round, {"round": c.round, "completed_at": None, "callbacks": [],
                                                 "outcome": None})
        bucket["callbacks"].append(callback_view(c, tz, now, ticket.form_number))
    return {
        "ticket_id": ticket.ticket_id, "estate": ticket.estate, "form_number": ticket.form_number, "kind": ticket.kind,
        "category": ticket.category, "reply_method": ticket.reply_method, "first_contact": ticket.first_contact,
        "status": ticket.status.value, "current_round": ticket.current_round,
        "closed": {"at": iso(ticket.closed_at, tz), "round": ticket.closed_round, "reason": ticket.closed_reason,
                   "satisfied": ticket.closed_satisfied} if ticket.closed else None,
        "rounds": [rounds_out[k] for k in sorted(rounds_out)],
        "recurrence": [
            {"round": w.round, "window_ends_at": iso(w.window_ends_at, tz), "verdict": w.verdict,
             "decided_at": iso(w.decided_at, tz), "recurring_ticket_id": w.recurring_ticket_id}
            for w in watches
        ],
        "progress_updates": [
            {"at": iso(u.updated_at, tz), "method": u.method, "note": u.note, "by": u.updated_by} for u in updates
        ],
    }


def visit_view(row, tz: ZoneInfo, estate: str) -> dict:
    return {
        "visit_id": row.visit_id, "estate": row.estate, "staff_id": row.staff_id,
        "visited_on": row.visited_on.isoformat(), "owner_id": row.owner_id, "unit": row.unit, "notes": row.notes,
        "recorded_at": iso(row.recorded_at, tz), "client_visit_id": row.client_visit_id,
        # Submit this to intake (POST intake_endpoint) to register what the visit raised;
        # its client_request_id makes a repeated submission return the first ticket.
        "intake_request": row.raised_request,
        "intake_endpoint": f"/v1/estates/{estate}/requests" if row.raised_request else None,
    }


def _bucket() -> dict:
    return {"required": 0, "done": 0, "done_on_time": 0, "satisfied": 0, "attitude_satisfied": 0,
            "judged_by_recurrence": 0, "recurrence_satisfied": 0}


def _rates(bucket: dict) -> dict:
    answered = bucket["done"] + bucket["judged_by_recurrence"]
    return {
        **bucket,
        "callback_rate": rules.callback_rate(bucket["required"], bucket["done"]),
        "satisfaction_rate": rules.satisfaction_rate(bucket["satisfied"] + bucket["recurrence_satisfied"], answered),
    }


def callback_metrics(estate: str, month: str | None, callbacks, verdicts) -> dict:
    """Callback rate and satisfaction (RULES §3 Metrics) overall, by kind and by department."""
    overall, by_kind, by_department = _bucket(), {}, {}

    def buckets(kind: str, departments: list[str]):
        yield overall
        yield by_kind.setdefault(kind, _bucket())
        for department in departments or [""]:
            yield by_department.setdefault(department, _bucket())

    for c in callbacks:
        for b in buckets(c.kind, c.departments):
            b["required"] += 1
            if c.status is CallbackState.done:
                b["done"] += 1
                b["done_on_time"] += bool(c.on_time)
                b["satisfied"] += bool(c.result_satisfied)
                b["attitude_satisfied"] += bool(c.attitude_satisfied)
    for w in verdicts:
        for b in buckets(w.kind, w.departments):
            b["judged_by_recurrence"] += 1
            b["recurrence_satisfied"] += w.verdict == "satisfied"
    return {
        "estate": estate, "month": month,
        "overall": _rates(overall),
        "by_kind": {k: _rates(v) for k, v in sorted(by_kind.items())},
        "by_department": {k: _rates(v) for k, v in sorted(by_department.items())},
    }
