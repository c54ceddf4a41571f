"""Dispatch: routes each accepted form to its departments, keeps the handover ledger and
the clocks, escalates breaches, and collects the departments' sign-backs.

Wiring only (issue 11): the aggregate is `domain.Form`, repositories and tables are in
`store.py` (screens' reads in `queries.py`), handlers in `handlers.py` (event handlers in
its `HANDLERS` table), routes in `api.py` (paid services in `bills.py`), consumers in
`consumers.py`, periodic jobs in `jobs.py`. Deadlines are rows: a
periodic scan claims the due ones with FOR UPDATE SKIP LOCKED, so a restart or a second
replica never loses one and never fires one twice.

Decisions the issue left open:
- A complaint judged invalid (with the manager's confirmation) ends its handling: every
  open clock of the ticket is cancelled, open escalations are resolved, the form's status
  becomes `invalid` and further acknowledge/arrive/sign-back are refused (409). Its round
  is not `completed`: customer service tells the owner why (intake tracks that notice).
- A transfer closes the giving department's ledger line (its clocks are superseded) and
  opens a new line with fresh department clocks started at the transfer, announced as
  `assigned` with `transferred_from`.
- The reply clock is met by the first update given to the owner (intake's
  `progress_updated`) or by completion; tracking runs to the callback, which ends in
  `closed` (satisfied) or `reopened` (not satisfied, a new round).
- A complaint about staff (policy.escalation.subject_roles) is escalated to the subject
  rung at acceptance, and an owner's loss above the threshold opens a nonconformity record
  and is escalated to its approver at acceptance.
- Sign-back is two steps (RULES §2 Sign-back; seeds 000 §四): the department signs back
  (its line `awaiting_verify`, acknowledge/arrival clocks met), its head verifies (the
  line is `signed_back`, the repair-slip clock met) or returns it with a reason (back to
  `arrived`/`acknowledged`). `signed_back` is emitted at verification, so callback,
  archive and analytics see only verified sign-backs, with the same fields as before. A
  head signing back their own department's line verifies it at once (the old one-step
  call of integrations, `verified_by` = the caller).
"""

from __future__ import annotations

from services.dispatch import jobs, store
from services.dispatch.uow import Metrics, unit_of_work_factory
from shared.calendar_watch import on_calendar_change
from shared.service import Service, create_http_app

service = Service(
    "dispatch", store.metadata, title="Dispatch 派工与会签",
    description="Routing, handover ledger, SLA clocks, escalation, nonconformity, department sign-back "
    "and paid household-service bills.",
)
metrics = Metrics.on(service.registry)
# The SLA scan sleeps until its next due clock; this process's commits of new clocks tell it.
schedule = jobs.ScanSchedule(lambda: service.clock.now())
open_uow = unit_of_work_factory(service, metrics, on_clock_written=schedule.noted)

# The modules below declare their routes and consumers on `service` (they import it).
from services.dispatch import api, bills, consumers, preview  # noqa: E402,F401


@service.periodic("sla-scan", every_seconds=1.0, wait=schedule.wait)
async def scan_clocks() -> int:
    return await jobs.scan_clocks(open_uow, service.context, schedule)


@on_calendar_change(service, "provisional-recompute")
async def recompute_provisional() -> int:
    async with open_uow() as uow:
        return await jobs.recompute_day_clocks(uow, service.context)


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
