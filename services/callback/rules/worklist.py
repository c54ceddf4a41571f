"""The callback worklist (RULES.md §3 When): scheduled callbacks not yet made, most urgent
first, and which of them are overdue."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from shared.events import ReplyMethod
from services.callback.rules.common import _require_aware


# --- worklist ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingCallback:
    """A scheduled callback not yet made, as the worklist shows it."""

    callback_id: str
    ticket_id: str
    due_at: dt.datetime
    method: ReplyMethod
    rule: str
    round: int = 1
    provisional: bool = False
    assigned_to: str | None = None


@dataclass(frozen=True)
class WorklistEntry:
    item: PendingCallback
    overdue: bool
    overdue_by: dt.timedelta  # zero unless overdue


def is_overdue(item: PendingCallback, now: dt.datetime) -> bool:
    """A callback is overdue once `now` is past its due time (due exactly now is not)."""
    _require_aware(now, "now")
    return now > item.due_at


def order_worklist(items: Iterable[PendingCallback], now: dt.datetime) -> list[WorklistEntry]:
    """Pending callbacks, most urgent first (earliest due; ties by ticket and callback id
    so every replica shows the same order), each marked overdue or not."""
    _require_aware(now, "now")
    ordered = sorted(items, key=lambda i: (i.due_at, i.ticket_id, i.callback_id))
    return [
        WorklistEntry(
            item=item,
            overdue=is_overdue(item, now),
            overdue_by=max(now - item.due_at, dt.timedelta(0)),
        )
        for item in ordered
    ]
