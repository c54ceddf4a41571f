"""Intake: every request from every channel is registered here, gets its countersign-form
number and its first-contact owner, and is announced as `accepted`. Intake also keeps the
night shift's handover list, complaint validity, progress updates to owners, the owners
and units of each estate (with masked personal numbers) and the directory API through
which authorised roles change policies, the company calendar and estate definitions.

Statuses shown here: open (registered, in handling) → completed (every department signed
back) → closed; invalid (a complaint judged invalid; handling ended). A reopened request
is open again in its new round.

Wiring only: the `service`, who may call each write route, and the modules that register
routes (api, units_api, directory_api, duty_api, accounts, console, owners, owner_api),
consumers (consumers.py, owners.py) and jobs (jobs.py). The ticket aggregate is in
domain.py, the steps in handlers.py, the SQL in store.py / duty_store.py / owner_store.py.
"""

from __future__ import annotations

from services.intake import store
from shared.auth import STAFF_ROLES
from shared.service import Service, create_http_app

service = Service(
    "intake", store.metadata, title="Intake 受理",
    description="Registers owners' requests from every channel; first-contact responsibility; countersign-form "
    "numbers; night-shift handover; complaint validity; progress updates; owners and units; the directory API.",
)

REGISTRAR_ROLES = ("customer_service", "customer_service_supervisor", "duty_staff", "department_staff",
                   "department_head", "estate_director")
JUDGE_ROLES = ("customer_service", "customer_service_supervisor", "estate_director", "quality_manager")
OWNER_DESK_ROLES = ("customer_service", "customer_service_supervisor", "estate_director")
HANDOVER_ROLES = ("customer_service", "customer_service_supervisor", "duty_staff")
ACCOUNT_ADMIN_ROLES = ("company_admin", "estate_director")
MANAGER_ROLES = ("customer_service_supervisor", "estate_director", "department_head", "quality_manager",
                 "general_manager")
DUTY_ROLES = ("duty_staff", "customer_service", "customer_service_supervisor", "estate_director")
POLICY_ROLES_ESTATE = ("estate_director", "quality_manager")
POLICY_ROLES_COMPANY = ("quality_manager",)

# Who may call each write route (RULES §1; printed in the README by `estatedesk roles`).
# Finer rules (a manager's confirmation, the next shift taking over) are checked inside.
service.write_roles = {
    ("POST", "/estates/{estate}/requests"): REGISTRAR_ROLES,
    ("POST", "/estates/{estate}/requests/{ticket_id}/validity"): JUDGE_ROLES,
    ("POST", "/estates/{estate}/requests/{ticket_id}/progress"): REGISTRAR_ROLES,
    ("POST", "/estates/{estate}/requests/{ticket_id}/signature"): REGISTRAR_ROLES,
    ("POST", "/estates/{estate}/handover/{item_id}/take-over"): HANDOVER_ROLES,
    ("POST", "/estates/{estate}/units"): OWNER_DESK_ROLES,
    ("POST", "/estates/{estate}/owners"): OWNER_DESK_ROLES,
    ("PUT", "/estates/{estate}/policy"): POLICY_ROLES_ESTATE,
    ("PUT", "/company/policy"): POLICY_ROLES_COMPANY,
    ("PUT", "/company/calendar"): POLICY_ROLES_COMPANY,
    ("PUT", "/estates/{estate}"): ("company_admin",),
    # Sign-in (services/intake/accounts.py): anyone on the staff renews, signs out and
    # changes their own password; accounts are the admin's and estate directors'.
    ("POST", "/auth/renew"): STAFF_ROLES,
    ("POST", "/auth/logout"): STAFF_ROLES,
    ("POST", "/auth/password"): STAFF_ROLES,
    ("PUT", "/accounts/{staff_id}/password"): ACCOUNT_ADMIN_ROLES,
    ("DELETE", "/accounts/{staff_id}"): ACCOUNT_ADMIN_ROLES,
    # Validity confirmation, duty roster and shift handover (issue 10): who of these may act
    # on a given judgement or shift (the policy's confirming roles, the shift's staff) is
    # checked inside.
    ("POST", "/estates/{estate}/requests/{ticket_id}/validity/confirmation"): MANAGER_ROLES,
    ("PUT", "/estates/{estate}/roster/{month}"): ("customer_service_supervisor", "estate_director"),
    ("POST", "/estates/{estate}/shifts/{shift_id}/log"): DUTY_ROLES,
    ("POST", "/estates/{estate}/shifts/{shift_id}/handover"): DUTY_ROLES,
    ("POST", "/estates/{estate}/shift-handover-items/{item_id}/claim"): DUTY_ROLES,
}
# Signing in is the one write that needs no token.
service.public_routes = {("POST", "/auth/login")}
# Owners' data: a refusal here also lands in the archive's access log (shared.service).
service.audited_routes = ("/estates/{estate}/owners", "/estates/{estate}/units")

# Route modules in the order their routes were declared (the OpenAPI document keeps it).
from services.intake import api  # noqa: E402,F401  (requests and the night-shift handover)
from services.intake import units_api  # noqa: E402,F401  (owners and units)
from services.intake import directory_api  # noqa: E402,F401  (policies, calendar, estates)
from services.intake import duty_api  # noqa: E402,F401  (duty roster, duty log, shift handover)
from services.intake import consumers  # noqa: E402,F401
from services.intake import jobs  # noqa: E402,F401
from services.intake import accounts  # noqa: E402,F401  (registers the sign-in routes)
from services.intake import console  # noqa: E402,F401  (the console's server clock)
from services.intake import owners  # noqa: E402,F401  (owners' self-service at the desk, issue 15)
from services.intake import owner_api  # noqa: E402,F401  (owners' own routes, issue 15)


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
