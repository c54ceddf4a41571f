"""Dispatch's routes for the countersign form and its nonconformity record: each parses,
authorises (the role table below, then who acts for or heads the department), opens the
transaction, builds the unit of work, calls a handler (handlers.py) and answers with the
form as the console shows it (queries.py → schemas.py). No SQL here."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query
from pydantic import Field

from services.dispatch import handlers, queries, rules
from services.dispatch.app import open_uow, service
from services.dispatch.schemas import (
    CapaReportIn, CloseNonconformityIn, CorrectiveActionIn, DepartmentIn, FormOut, FormSummaryOut, NonconformityIn,
    NonconformityOut, RescheduleIn, ReturnSignBackIn, SignBackIn, TransferIn, VerifyIn, form_out, nc_out,
)
from shared import limits
from shared.auth import Principal
from shared.directory import Estate
from shared.errors import RuleViolation
from shared.service import known_estate, require_estate


# The most ticket ids one work-list call may name (the Mine view asks for its own open
# requests' forms: at most the 200 of intake's list default); more is a 422.
TICKET_IDS_MAX = 200


def directory_estate(code: str) -> Estate:
    """The estate as the directory holds it: 404 when unknown."""
    estate = service.directory.estate(code)
    if estate is None:
        raise RuleViolation(f"unknown estate {code!r}", status=404)
    return estate


# --- who acts for a department (RULES §2 Handover ledger, Sign-back) ----------------------------


def _acts_for(who: Principal, estate: Estate, department: str) -> None:
    """Department staff act for their own department (token claim or directory entry);
    its head too; customer service acts for customer service."""
    if who.has_role("company_admin") or department in who.departments:
        return
    member = next((s for s in estate.staff if s.id == who.staff_id), None)
    if member is not None and member.department == department:
        return
    if any(d.code == department and d.head == who.staff_id for d in estate.departments):
        return
    if department == "customer_service" and who.has_role("customer_service", "customer_service_supervisor"):
        return
    raise RuleViolation(f"{who.staff_id} does not act for department {department}", status=403)


def _heads(estate: Estate, department: str) -> set[str]:
    """Who heads `department`: the head the directory names, and any staff member of that
    department holding the department_head role."""
    heads = {d.head for d in estate.departments if d.code == department and d.head}
    return heads | {s.id for s in estate.staff if s.department == department and "department_head" in s.roles}


def _is_head(who: Principal, estate: Estate, department: str) -> bool:
    heads = _heads(estate, department)
    # The directory names no head: a department head acting for the department will do.
    return who.staff_id in heads or (not heads and who.has_role("department_head"))


def _check_head(who: Principal, estate: Estate, department: str) -> None:
    """The department head verifies a sign-back in person (RULES §2 Sign-back): 403 otherwise."""
    if not _is_head(who, estate, department):
        raise RuleViolation(
            f"{who.staff_id} is not the head of department {department}; the department head verifies the sign-back",
            status=403,
        )


def _check_named_head(estate: Estate, department: str, verified_by: str) -> None:
    """An integration's sign-back naming a `verified_by` who does not head the department: 403."""
    if verified_by not in _heads(estate, department):
        raise RuleViolation(
            f"{verified_by!r} is not the head of department {department}; the department head verifies the sign-back",
            status=403,
        )


def _check_department(estate: Estate, department: str) -> None:
    codes = estate.department_codes()
    if codes and department not in codes:
        raise RuleViolation(f"estate {estate.code} has no department {department!r} (it has: {', '.join(codes)})", status=422)


# --- HTTP: the form -------------------------------------------------------------------------------


async def _answer(uow, estate: str, ticket_id: str) -> FormOut:
    detail = await queries.form_detail(uow.session, estate, ticket_id)
    return form_out(detail, service.clock.now(), service.directory.policy_for(estate))


async def _form_step(estate: str, ticket_id: str, act) -> FormOut:
    """Run one form command in one transaction and answer with the form."""
    async with open_uow() as uow:
        await handlers.handle_form_command(handlers.FormCommand(estate, ticket_id, act), uow, service.context)
        return await _answer(uow, estate, ticket_id)


@service.http.get("/estates/{estate}/forms/{ticket_id}", response_model=FormOut, tags=["forms"])
async def get_form(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> FormOut:
    """The countersign form: its ledger lines per department, every deadline (with its
    provisional flag), escalations, nonconformity record and updates given to the owner."""
    known_estate(service, estate)
    async with open_uow() as uow:
        return await _answer(uow, estate, ticket_id)


@service.http.get("/estates/{estate}/forms", response_model=list[FormSummaryOut], tags=["forms"])
async def list_forms(
    estate: str,
    department: str | None = Query(None, max_length=32, description="Only forms with an active line of this department"),
    status: Literal["open", "overdue", "completed", "closed", "invalid", "all"] = Query(
        "open", description="open: in handling (for `department`: its line not yet signed back); overdue: an open "
        "clock has run out, or a long-running complaint lacks owner updates"),
    limit: int = Query(200, ge=1, le=1000),
    ticket_id: list[Annotated[str, Field(min_length=1, max_length=limits.ID_MAX)]] | None = Query(
        None, max_length=TICKET_IDS_MAX, description="Only the forms of these tickets (repeat the parameter, at most "
        f"{TICKET_IDS_MAX}): the Mine view's own requests, found however old"),
    who: Principal = Depends(require_estate),
) -> list[FormSummaryOut]:
    """A department's (or the estate's) work list."""
    known_estate(service, estate)
    now = service.clock.now()
    async with open_uow() as uow:
        work = await queries.work_list(uow.session, estate, department, status, limit, now, ticket_id)
    out = []
    for form in work.forms:
        clocks = [c for c in work.open_clocks if c.ticket_id == form.ticket_id
                  and (department is None or c.department in (department, ""))]
        overdue = any(c.breached_at is not None or c.due_at < now for c in clocks)
        if status == "overdue" and not overdue:
            continue
        out.append(FormSummaryOut(
            ticket_id=form.ticket_id, form_number=form.form_number, kind=form.kind, category=form.category,
            round=form.round, status=form.status, accepted_at=form.accepted_at, overdue=overdue,
            departments=[l.department for l in work.lines if l.ticket_id == form.ticket_id and l.round == form.round],
            next_due_at=min((c.due_at for c in clocks if c.breached_at is None), default=None),
        ))
    return out


@service.http.post("/estates/{estate}/forms/{ticket_id}/acknowledge", response_model=FormOut, tags=["forms"])
async def acknowledge(estate: str, ticket_id: str, body: DepartmentIn, who: Principal = Depends(require_estate)) -> FormOut:
    """The receiving department signs for the form in the handover ledger (签字确认)."""
    _acts_for(who, directory_estate(estate), body.department)
    return await _form_step(estate, ticket_id, handlers.acknowledge(body.department, who.staff_id))


@service.http.post("/estates/{estate}/forms/{ticket_id}/arrive", response_model=FormOut, tags=["forms"])
async def arrive(estate: str, ticket_id: str, body: DepartmentIn, who: Principal = Depends(require_estate)) -> FormOut:
    """The technician or officer is on site."""
    _acts_for(who, directory_estate(estate), body.department)
    return await _form_step(estate, ticket_id, handlers.arrive(body.department, who.staff_id))


@service.http.post("/estates/{estate}/forms/{ticket_id}/sign-back", response_model=FormOut, tags=["forms"])
async def sign_back(estate: str, ticket_id: str, body: SignBackIn, who: Principal = Depends(require_estate)) -> FormOut:
    """The department writes its handling opinion and result (签回); the line waits for its
    head (`awaiting_verify`), who verifies it with POST .../sign-back/verify. A head signing
    back their own department's line verifies it at once. When every assigned department's
    sign-back is verified, the form returns to customer service (`completed`).
    Errors: 403 when the caller does not act for the department or `verified_by` names no
    head of it; 409 out of order. Source: RULES §2 Sign-back; seeds 000 §四, 002 §4.3.1."""
    estate_ = directory_estate(estate)
    _acts_for(who, estate_, body.department)
    head = _is_head(who, estate_, body.department)
    if body.verified_by is not None and not (head and body.verified_by == who.staff_id):
        _check_named_head(estate_, body.department, body.verified_by)
    return await _form_step(estate, ticket_id, handlers.sign_back(body.department, body.opinion, body.result,
                                                                  who.staff_id, head))


@service.http.post("/estates/{estate}/forms/{ticket_id}/sign-back/verify", response_model=FormOut, tags=["forms"])
async def verify_sign_back(estate: str, ticket_id: str, body: VerifyIn,
                           who: Principal = Depends(require_estate)) -> FormOut:
    """The department head verifies the department's sign-back (审核签字): the line is
    signed back (`signed_back` event) and, when every department's is, the form returns to
    customer service. Errors: 403 unless the caller heads the department (the directory's
    head, or a department_head of it); 409 unless the line awaits verification.
    Source: RULES §2 Sign-back; seeds 000 §四, §五.2(2)."""
    _check_head(who, directory_estate(estate), body.department)
    return await _form_step(estate, ticket_id, handlers.verify(body.department, who.staff_id))


@service.http.post("/estates/{estate}/forms/{ticket_id}/sign-back/return", response_model=FormOut, tags=["forms"])
async def return_sign_back(estate: str, ticket_id: str, body: ReturnSignBackIn,
                           who: Principal = Depends(require_estate)) -> FormOut:
    """The department head returns the sign-back to the department with a reason (退回):
    opinion and result are cleared, the line is back in work (`arrived`, or `acknowledged`
    when no one was on site) and the reason is kept in the line's notes. Errors: 403 unless
    the caller heads the department; 409 unless the line awaits verification.
    Source: RULES §2 Sign-back; seeds 002 §4.3.1 e."""
    _check_head(who, directory_estate(estate), body.department)
    return await _form_step(estate, ticket_id, handlers.return_sign_back(body.department, body.reason, who.staff_id))


@service.http.post("/estates/{estate}/forms/{ticket_id}/reschedule", response_model=FormOut, tags=["forms"])
async def reschedule(estate: str, ticket_id: str, body: RescheduleIn, who: Principal = Depends(require_estate)) -> FormOut:
    """Owner not at home: a note was left and a new appointment agreed; the arrival clock
    follows the new appointment and the repair slip is due that many hours after it."""
    estate_ = directory_estate(estate)
    if not who.has_role("customer_service", "customer_service_supervisor"):
        _acts_for(who, estate_, body.department)
    if body.appointment_at.tzinfo is None:
        raise RuleViolation("appointment_at must carry its timezone (e.g. +08:00)", status=422)
    async with open_uow() as uow:
        await handlers.handle_reschedule(estate, ticket_id, body.department, body.appointment_at, body.note,
                                         who.staff_id, uow, service.context)
        return await _answer(uow, estate, ticket_id)


@service.http.post("/estates/{estate}/forms/{ticket_id}/transfer", response_model=FormOut, tags=["forms"])
async def transfer(estate: str, ticket_id: str, body: TransferIn, who: Principal = Depends(require_estate)) -> FormOut:
    """Hand the form on to another department: a new line in the handover ledger, which
    the receiver must acknowledge in its turn."""
    estate_ = directory_estate(estate)
    _check_department(estate_, body.department)

    def acts_for(source: str) -> None:
        if not who.has_role("customer_service", "customer_service_supervisor"):
            _acts_for(who, estate_, source)

    return await _form_step(estate, ticket_id, handlers.transfer(
        body.from_department, body.department, body.note, who.staff_id, sorted(who.departments), acts_for))


# --- HTTP: nonconformity record -------------------------------------------------------------------

MANAGERS = ("estate_director", "customer_service_supervisor", "department_head", "quality_manager")
# Who may ask to approve; whether the caller holds the policy's approver role is checked inside.
NONCONFORMITY_APPROVERS = ("management_representative", "general_manager", *MANAGERS)
DEPARTMENT_ROLES = ("department_staff", "department_head", "duty_staff", "customer_service",
                    "customer_service_supervisor", "estate_director")
# A department's head in the directory may hold any of its department's roles.
HEAD_ROLES = ("department_head", "department_staff", "customer_service", "customer_service_supervisor")


@service.http.get("/estates/{estate}/forms/{ticket_id}/nonconformity", response_model=NonconformityOut,
                  tags=["nonconformity"])
async def get_nonconformity(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> NonconformityOut:
    known_estate(service, estate)
    async with open_uow() as uow:
        return nc_out(await queries.nonconformity_row(uow.session, estate, ticket_id))


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity", status_code=201, response_model=NonconformityOut,
                   tags=["nonconformity"])
async def open_nonconformity(estate: str, ticket_id: str, body: NonconformityIn,
                             who: Principal = Depends(require_estate)) -> NonconformityOut:
    """The estate manager convenes the departments and writes the nonconformity record."""
    known_estate(service, estate)
    async with open_uow() as uow:
        return nc_out(await handlers.handle_open_nonconformity(estate, ticket_id, body.content, body.owner_loss_cny,
                                                               who.staff_id, uow, service.context))


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity/approve", response_model=NonconformityOut,
                   tags=["nonconformity"])
async def approve_nonconformity(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> NonconformityOut:
    """Approved by the management representative (管理者代表) only."""
    known_estate(service, estate)
    required = service.directory.policy_for(estate).escalation.nonconformity_approver_role
    role = required if who.has_role(required) else (sorted(who.roles)[0] if who.roles else "none")
    async with open_uow() as uow:
        return nc_out(await handlers.handle_approve_nonconformity(estate, ticket_id, who.staff_id, role, uow,
                                                                  service.context))


async def _nonconformity_step(estate: str, ticket_id: str, step) -> NonconformityOut:
    known_estate(service, estate)
    async with open_uow() as uow:
        return nc_out(await handlers.handle_nonconformity_step(estate, ticket_id, step, uow, service.context))


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity/corrective-action",
                   response_model=NonconformityOut, tags=["nonconformity"])
async def start_corrective_action(estate: str, ticket_id: str, body: CorrectiveActionIn,
                                  who: Principal = Depends(require_estate)) -> NonconformityOut:
    return await _nonconformity_step(
        estate, ticket_id, lambda record, now: rules.start_corrective_action(record, body.action, body.responsible, now))


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity/close", response_model=NonconformityOut,
                   tags=["nonconformity"])
async def close_nonconformity(estate: str, ticket_id: str, body: CloseNonconformityIn,
                              who: Principal = Depends(require_estate)) -> NonconformityOut:
    return await _nonconformity_step(
        estate, ticket_id, lambda record, now: rules.close_nonconformity(record, who.staff_id, body.result, now))


@service.http.post("/estates/{estate}/forms/{ticket_id}/nonconformity/capa-report", response_model=NonconformityOut,
                   tags=["nonconformity"])
async def attach_capa_report(estate: str, ticket_id: str, body: CapaReportIn,
                             who: Principal = Depends(require_estate)) -> NonconformityOut:
    """After the review meeting, where needed: the corrective/preventive action report."""
    return await _nonconformity_step(
        estate, ticket_id, lambda record, now: rules.attach_capa_report(record, body.report, now))


# Who may call each write route (RULES §2; printed in the README by `estatedesk roles`).
# Which department a caller acts for, and the policy's approver, are checked inside.
service.write_roles |= {
    ("POST", "/estates/{estate}/forms/{ticket_id}/acknowledge"): DEPARTMENT_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/arrive"): DEPARTMENT_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/sign-back"): DEPARTMENT_ROLES,
    # Whether the caller heads that department (the directory's head) is checked inside.
    ("POST", "/estates/{estate}/forms/{ticket_id}/sign-back/verify"): HEAD_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/sign-back/return"): HEAD_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/reschedule"): DEPARTMENT_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/transfer"): DEPARTMENT_ROLES,
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity"): MANAGERS,
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity/approve"): NONCONFORMITY_APPROVERS,
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity/corrective-action"): (*MANAGERS, "management_representative"),
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity/close"): (*MANAGERS, "management_representative"),
    ("POST", "/estates/{estate}/forms/{ticket_id}/nonconformity/capa-report"): (*MANAGERS, "management_representative"),
}
