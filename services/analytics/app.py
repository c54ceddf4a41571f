"""Analytics 统计分析 (RULES §4): the quality office's read model, its reports, and the
live dashboard of the head-office quality manager. Wiring only:

* `consumers`: one consumer folds every ticket event, in stream order, through
  `handlers.HANDLERS` into the read model (`store`); a batch's writes are summed in memory
  and stored with one statement in the transaction that records its events as
  processed; a ticket accepted into a category that keeps coming back raises
  `corrective_action_suggested` in that same transaction;
* `api`: the reports, the sign-off and the dashboard (its change notices: `dashboard`);
* `jobs`: the dashboard feed, the Prometheus business gauges, the pruning of old alerts.
"""

from __future__ import annotations

from services.analytics import store
from shared.service import Service, create_http_app

service = Service(
    "analytics", store.metadata, title="Analytics 统计分析",
    description="Monthly estate reports, company consolidation and the live dashboard.",
)

# Who may call each write route (RULES §4; printed in the README by `estatedesk roles`).
service.write_roles = {
    ("POST", "/estates/{estate}/reports/monthly/{month}/sign-off"): ("department_head", "estate_director"),
}

# Registered on `service` as they are imported (after it exists: they import it from here).
from services.analytics import api, consumers, jobs  # noqa: E402,F401


def create_app(manage_lifecycle: bool = True):
    # The dashboard page itself is a screen of the staff console (console/src/dashboard),
    # signed in the same way; this service gives it /v1/dashboard/summary and /stream.
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
