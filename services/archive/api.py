"""The archive's routes and their schemas (RULES §5): the item catalogue, reading a record
(with a running register entry), the lending register, the important-events file,
destruction, the access log, verification, monthly sets and quarterly volumes, and the
ticket's timeline. A route parses, authorises (`require_estate`, role checks, the role
table in app.py), opens the transaction, builds the unit of work, calls a handler, maps
the result."""

from __future__ import annotations

import asyncio
import json

from fastapi import Depends, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from services.archive import handlers, organisation, render, rules
from services.archive.app import data_dir, reads_refused, service, transaction
from services.archive.domain import CatalogueEntry, DestructionRequest, Loan, Record
from services.archive.verify import destruction_entry, verify_estate
from shared.auth import Principal
from shared.errors import RuleViolation
from shared import limits
from shared.lifecycle import DestructionRequestState
from shared.limits import Contract, Identifier
from shared.service import LocalTime, known_estate, require_estate

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class RecordOut(BaseModel):
    """A catalogue line: metadata only, never the content."""

    record_number: str
    sequence: int
    ticket_id: str
    form_number: str
    kind: str
    title: str
    closed_month: str
    retention_class: str
    archived_class: str
    important: bool
    archived_at: LocalTime
    retention_expires: LocalTime
    content_hash: str
    previous_hash: str
    record_hash: str
    destroyed: bool
    destroyed_at: LocalTime | None
    month_part: int | None
    volume_number: str | None
    volume_item: int | None


def record_out(record: CatalogueEntry, policy) -> RecordOut:
    return RecordOut(
        **{k: getattr(record, k) for k in RecordOut.model_fields if k not in ("important", "retention_expires")},
        important=record.important,
        retention_expires=rules.retention_expires(record.archived_at, record.retention_class, policy),
    )


class ExternalBorrower(Contract):
    name: str = Field(min_length=1, max_length=100)
    organisation: str | None = Field(None, max_length=200)


class LoanIn(Contract):
    """A line of the lending register: the caller borrows, unless an outsider is named."""

    record_number: str = Field(min_length=1, max_length=64)
    purpose: str = Field(max_length=2000)
    mode: str = Field("consult", description="consult, loan, copy or export")
    approver: str | None = Field(None, max_length=64, description="staff id of the approving estate director/manager")
    approval_reference: str | None = Field(None, max_length=200, description="reference of the written approval")
    external_borrower: ExternalBorrower | None = None


class LoanOut(BaseModel):
    loan_id: str
    record_number: str
    ticket_id: str
    borrower: str
    borrower_external: bool
    borrower_organisation: str | None
    purpose: str
    mode: str
    basis: str
    registered_at: LocalTime
    registered_by: str
    valid_until: LocalTime
    due_back: LocalTime | None
    approved_by: str | None
    approval_reference: str | None
    returned_at: LocalTime | None
    returned_to: str | None
    overdue: bool


def loan_out(loan: Loan, overdue: bool) -> LoanOut:
    return LoanOut(**{k: getattr(loan, k) for k in LoanOut.model_fields if k != "overdue"}, overdue=overdue)


class ImportantIn(Contract):
    reason: str = Field(min_length=1, max_length=2000)


class DestructionRequestIn(Contract):
    """A destruction request 销毁申请: the records past retention and why."""

    reason: str = Field(max_length=limits.TEXT_MAX, description="Why the records may go (retention expired, ...)")
    record_numbers: list[Identifier] = Field(min_length=1, max_length=500, description="Record numbers to destroy")


class RefusalIn(Contract):
    reason: str = Field(max_length=limits.TEXT_MAX, description="Why the general manager refuses")


class DestructionRequestOut(BaseModel):
    request_id: str
    estate: str
    reason: str
    record_numbers: list[str]
    requested_by: str
    requested_at: LocalTime
    status: DestructionRequestState = Field(description="requested, approved or refused")
    decided_by: str | None
    decided_at: LocalTime | None
    refusal_reason: str | None


class DestructionOut(BaseModel):
    """A destruction log entry 销毁登记 (001 第6篇 1.5): survives the record; the approval
    reference names the destruction request the general manager approved."""

    estate: str
    record_number: str
    sequence: int
    ticket_id: str
    form_number: str
    retention_class: str
    archived_at: LocalTime
    retention_expired_at: LocalTime
    destroyed_at: LocalTime
    approved_by: str
    approval_reference: str
    content_hash: str
    method: str


class ApprovalOut(BaseModel):
    request: DestructionRequestOut
    destroyed: list[DestructionOut]


def request_out(request: DestructionRequest) -> DestructionRequestOut:
    return DestructionRequestOut(**request.values())


class TimelineEntryOut(BaseModel):
    event_id: str
    event: str = Field(description="accepted, assigned, acknowledged, … (the event's name)")
    time: LocalTime
    source: str = Field(description="The service that emitted it")
    actor: str
    data: dict = Field(description="The event's payload as published (shared/events.py)")


class TimelineOut(BaseModel):
    ticket_id: str
    estate: str
    events: list[TimelineEntryOut] = Field(description="Every event of the ticket from every service, in time order")
    record_number: str | None = Field(description="The archived form's number once the ticket is archived")
    record: RecordOut | None = Field(description="The archived form's catalogue line (no content) once archived")


def person(who: Principal, estate: str) -> rules.Person:
    # require_estate has already checked the token covers the estate ("*" included).
    return rules.Person(who.staff_id, who.roles, frozenset({estate}) if who.may_act_for(estate) else who.estates)


def directory_person(estate: str, staff_id: str) -> rules.Person:
    """An approver named in a request, with the roles the directory gives them in that
    estate (the director, and staff by their roles); unknown people have none."""
    found = service.directory.estate(estate)
    roles: set[str] = set()
    if found is not None:
        if found.director == staff_id:
            roles.add("estate_director")
        for member in found.staff:
            if member.id == staff_id:
                roles |= set(member.roles)
    return rules.Person(staff_id, frozenset(roles), frozenset({estate}) if roles else frozenset())


@service.http.get("/estates/{estate}/archive/records", response_model=list[RecordOut], tags=["archive"])
async def list_records(
    estate: str,
    month: str | None = Query(None, pattern=MONTH_PATTERN,
                              description="Only the records closed in this month (YYYY-MM); all months when absent"),
    retention_class: rules.RetentionClass | None = None,
    before: int | None = Query(None, ge=1, le=limits.ROW_ID_MAX,
                               description="Walk back: only the records whose `sequence` is below this (the last "
                                           "line's `sequence` of the page shown); from the newest when absent"),
    limit: int = Query(limits.PAGE_DEFAULT, ge=1, le=limits.PAGE_MAX,
                       description=f"Lines per page, 1 – {limits.PAGE_MAX}"),
    who: Principal = Depends(require_estate),
) -> list[RecordOut]:
    """One page of the item catalogue of the estate's archive, newest first (sequence
    descending): numbers, titles, months, retention classes and hashes. Without `month`
    it is the estate's newest records whatever their month (what a clerk looks at first,
    never empty while the month is young); a page shorter than `limit` is the last one.
    No content: reading a record needs a register entry."""
    known_estate(service, estate)
    async with transaction() as uow:
        entries = await uow.chain.catalogue(estate, month=month,
                                            retention_class=retention_class.value if retention_class else None,
                                            before=before, limit=limit)
    policy = service.context.policy(estate)
    return [record_out(entry, policy) for entry in entries]


async def authorised_read(estate: str, number: str, who: Principal, what: str) -> Record:
    """The record when the caller holds a running register entry for it; otherwise the
    refusal is logged (committed) and answered 403 with the reason."""
    known_estate(service, estate)
    command = handlers.ReadCommand(estate, number, who.staff_id, frozenset(who.roles), person(who, estate), what)
    async with transaction() as uow:
        decision = await handlers.handle_read(command, uow, service.context)
    if not decision.allowed and not decision.record.destroyed:
        reads_refused.labels(estate).inc()
    return decision.raise_if_refused()


@service.http.get("/estates/{estate}/archive/records/{record_number}", tags=["archive"])
async def read_record(estate: str, record_number: str, who: Principal = Depends(require_estate)) -> dict:
    """The archived form's content; needs a running register entry for the caller."""
    record = await authorised_read(estate, record_number, who, "content")
    form = rules.form_from_bytes(record.content)
    async with transaction() as uow:
        addenda = await uow.chain.addenda(record.record_number)
    return {"record": record_out(record, service.context.policy(estate)).model_dump(mode="json"),
            "form": form.model_dump(mode="json"),
            # What the frozen form covers, and what arrived after it (appended, never merged).
            "covers": {"events_up_to": form.closed_at.isoformat() if form.closed_at else None,
                       "source_events": len(form.source_events), "addenda": len(addenda)},
            "addenda": [{"number": a.number, "event": a.event, "event_id": a.event_id, "time": a.time.isoformat(),
                         "addendum_hash": a.addendum_hash, "previous_hash": a.previous_hash,
                         "envelope": json.loads(a.content)} for a in addenda]}


@service.http.get("/estates/{estate}/archive/records/{record_number}/form.html", response_class=HTMLResponse,
                  tags=["archive"])
async def record_html(estate: str, record_number: str, who: Principal = Depends(require_estate)) -> HTMLResponse:
    """The printable countersign form (HTML); needs a running register entry."""
    record = await authorised_read(estate, record_number, who, "form.html")
    return HTMLResponse(render.form_html(rules.form_from_bytes(record.content), record.record_number,
                                         record.content_hash))


@service.http.get("/estates/{estate}/archive/records/{record_number}/form.pdf", tags=["archive"])
async def record_pdf(estate: str, record_number: str, who: Principal = Depends(require_estate)) -> Response:
    """The countersign form as an A4 PDF; needs a running register entry."""
    record = await authorised_read(estate, record_number, who, "form.pdf")
    pdf = await asyncio.to_thread(render.form_pdf, rules.form_from_bytes(record.content), record.record_number,
                                  record.content_hash)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{record.record_number}.pdf"'})


@service.http.post("/estates/{estate}/archive/loans", status_code=201, response_model=LoanOut, tags=["archive"])
async def register_loan(estate: str, body: LoanIn, who: Principal = Depends(require_estate)) -> LoanOut:
    """Register a consultation, loan, copy or export (借阅登记); emits `lent`."""
    known_estate(service, estate)
    if body.external_borrower:
        borrower = rules.Person(body.external_borrower.name.strip(), frozenset(), frozenset(), external=True,
                                organisation=body.external_borrower.organisation)
    else:
        borrower = person(who, estate)
    approver = directory_person(estate, body.approver.strip()) if body.approver and body.approver.strip() else None
    command = handlers.LoanCommand(estate, body.record_number, borrower, body.purpose, body.mode, approver,
                                   body.approval_reference, who.staff_id)
    async with transaction() as uow:
        loan = await handlers.handle_register_loan(command, uow, service.context)
    return loan_out(loan, overdue=False)


@service.http.post("/estates/{estate}/archive/loans/{loan_id}/return", response_model=LoanOut, tags=["archive"])
async def return_loan(estate: str, loan_id: str, who: Principal = Depends(require_estate)) -> LoanOut:
    """Close a register entry (the record came back); emits `returned`."""
    known_estate(service, estate)
    policy = service.context.policy(estate)
    keepers = set(policy.archive.self_register_roles) | set(policy.archive.approver_roles)
    async with transaction() as uow:
        loan = await handlers.handle_return_loan(estate, loan_id, who.staff_id,
                                                 who.has_role(*keepers, "company_admin"), uow, service.context)
    return loan_out(loan, loan.overdue(service.context.now()))


@service.http.get("/estates/{estate}/archive/loans", response_model=list[LoanOut], tags=["archive"])
async def list_loans(
    estate: str,
    overdue: bool = False,
    outstanding: bool = False,
    record_number: str | None = None,
    borrower: str | None = None,
    who: Principal = Depends(require_estate),
) -> list[LoanOut]:
    """The lending register; `overdue=true` flags loans past due, `outstanding=true` the
    loans not returned (staff leaving must return theirs, 001 第6篇 1.2.7)."""
    known_estate(service, estate)
    now = service.context.now()
    async with transaction() as uow:
        loans = await uow.loans.register(estate, record_number, borrower)
    by_id = {loan.loan_id: loan for loan in loans}
    entries = [loan.entry() for loan in loans]
    if overdue:
        entries = rules.overdue_loans(entries, now)
    if outstanding:
        entries = rules.outstanding_loans(entries, borrower)
    return [loan_out(by_id[e.loan_id], by_id[e.loan_id].overdue(now)) for e in entries]


@service.http.post("/estates/{estate}/archive/records/{record_number}/important", status_code=201, tags=["archive"])
async def mark_important(estate: str, record_number: str, body: ImportantIn,
                         who: Principal = Depends(require_estate)) -> dict:
    """Put a record into the important-events file (major complaint, liability accident,
    legal matter, major defect, contract). The mark sits beside the frozen record and
    raises its retention class; the content and its hash never change."""
    known_estate(service, estate)
    policy = service.context.policy(estate)
    who.require_role(*policy.archive.important_mark_roles)
    now = service.context.now()
    async with transaction() as uow:
        record, _ = await handlers.handle_mark_important(estate, record_number, body.reason, who.staff_id, uow,
                                                         service.context)
    return {"record": record_out(record, policy).model_dump(mode="json"), "reason": body.reason.strip(),
            "marked_by": who.staff_id, "marked_at": now, "previous_class": record.archived_class}


@service.http.get("/estates/{estate}/archive/important", tags=["archive"])
async def important_events_file(estate: str, who: Principal = Depends(require_estate)) -> list[dict]:
    """The important-events file 重要事件资料档案, kept apart from the ordinary records."""
    known_estate(service, estate)
    policy = service.context.policy(estate)
    async with transaction() as uow:
        rows = await uow.marks.important_file(estate)
    return [{"record": record_out(Record.from_row(row), policy).model_dump(mode="json"), "reason": row.reason,
             "marked_by": row.marked_by, "marked_at": row.marked_at, "previous_class": row.previous_class}
            for row in rows]


@service.http.post("/estates/{estate}/archive/destruction-requests", status_code=201,
                   response_model=DestructionRequestOut, tags=["archive"])
async def request_destruction(estate: str, body: DestructionRequestIn,
                              who: Principal = Depends(require_estate)) -> DestructionRequestOut:
    """Ask the general manager to destroy records past retention (销毁申请; RULES §5
    Destruction, 001 第5篇 1.7): the archive's keepers or the estate's director, with the
    reason. 409 for a record not yet expired, destroyed, out on loan or already asked."""
    known_estate(service, estate)
    command = handlers.DestructionRequestCommand(estate, body.record_numbers, body.reason, who.staff_id,
                                                 frozenset(who.roles))
    async with transaction() as uow:
        request = await handlers.handle_request_destruction(command, uow, service.context)
    return request_out(request)


@service.http.get("/estates/{estate}/archive/destruction-requests", response_model=list[DestructionRequestOut],
                  tags=["archive"])
async def destruction_requests(estate: str, status: DestructionRequestState | None = None,
                               who: Principal = Depends(require_estate)) -> list[DestructionRequestOut]:
    """The estate's destruction requests, newest first (optionally of one state)."""
    known_estate(service, estate)
    async with transaction() as uow:
        found = await uow.destruction_requests.list_for_estate(estate, status.value if status else None)
    return [request_out(request) for request in found]


@service.http.post("/estates/{estate}/archive/destruction-requests/{request_id}/approve", response_model=ApprovalOut,
                   tags=["archive"])
async def approve_destruction(estate: str, request_id: str, who: Principal = Depends(require_estate)) -> ApprovalOut:
    """The general manager approves (not their own request): every listed record is
    destroyed: content erased, hashes kept as the tombstone so the chain still verifies,
    a destruction log entry naming the request and the approver; emits `destroyed` per
    record. 409 (the request stays open) when a record may no longer be destroyed."""
    known_estate(service, estate)
    async with transaction() as uow:
        request, entries = await handlers.handle_approve_destruction(estate, request_id, who.staff_id, who.roles, uow,
                                                                     service.context)
    return ApprovalOut(request=request_out(request),
                       destroyed=[DestructionOut(**entry.model_dump()) for entry in entries])


@service.http.post("/estates/{estate}/archive/destruction-requests/{request_id}/refuse",
                   response_model=DestructionRequestOut, tags=["archive"])
async def refuse_destruction(estate: str, request_id: str, body: RefusalIn,
                             who: Principal = Depends(require_estate)) -> DestructionRequestOut:
    """The general manager refuses, with the reason; the records stay."""
    known_estate(service, estate)
    async with transaction() as uow:
        request = await handlers.handle_refuse_destruction(estate, request_id, who.staff_id, who.roles, body.reason,
                                                           uow, service.context)
    return request_out(request)


@service.http.get("/estates/{estate}/archive/destructions", response_model=list[DestructionOut], tags=["archive"])
async def destruction_log(estate: str, who: Principal = Depends(require_estate)) -> list[DestructionOut]:
    """The destruction log 销毁登记: survives the records it names."""
    known_estate(service, estate)
    async with transaction() as uow:
        rows = await uow.marks.destructions(estate)
    return [DestructionOut(**destruction_entry(row).model_dump()) for row in rows]


@service.http.get("/estates/{estate}/archive/access-log", tags=["archive"])
async def access_log(estate: str, record_number: str | None = None, refused: bool = False,
                     who: Principal = Depends(require_estate)) -> list[dict]:
    """Every attempt to read an archived record, allowed or refused (for the estate's
    approvers and the company)."""
    known_estate(service, estate)
    policy = service.context.policy(estate)
    if not who.company_wide:
        who.require_role(*policy.archive.approver_roles, *policy.archive.self_register_roles)
    async with transaction() as uow:
        rows = await uow.access.entries(estate, record_number, refused)
    return [dict(row._mapping) for row in rows]


@service.http.get("/estates/{estate}/archive/pending", tags=["archive"])
async def pending(estate: str, who: Principal = Depends(require_estate)) -> list[dict]:
    """Closed tickets not sealed yet, with the reason when sealing failed."""
    known_estate(service, estate)
    async with transaction() as uow:
        rows = await uow.pending.of_estate(estate)
    return [dict(row._mapping) for row in rows]


@service.http.get("/estates/{estate}/archive/verify", tags=["archive"])
async def verify(estate: str, who: Principal = Depends(require_estate)) -> dict:
    """Check the estate's whole chain; names the first broken record."""
    known_estate(service, estate)
    return await verify_estate(transaction, estate, service.settings.nats_url, f"estatedesk/{service.name}")


@service.http.get("/estates/{estate}/archive/months", tags=["archive"])
async def months(estate: str, month: str | None = Query(None, pattern=MONTH_PATTERN),
                 who: Principal = Depends(require_estate)) -> list[dict]:
    """Monthly organised sets (manifests with record numbers and hashes)."""
    known_estate(service, estate)
    async with transaction() as uow:
        rows = await uow.organisation.month_sets(estate, month)
    return [organisation.set_out(row) for row in rows]


async def organise_now(run, estate: str, period: str, who: Principal) -> dict:
    """Run the month's organisation or the quarter's archiving now, for someone who may;
    a malformed period is 422."""
    known_estate(service, estate)
    who.require_role(*service.context.policy(estate).archive.self_register_roles, "estate_director",
                     "company_general_management")
    try:
        return await run(transaction, service.context, data_dir(), estate, period, who.staff_id)
    except RuleViolation:
        raise
    except ValueError as error:
        raise RuleViolation(str(error), status=422) from None


@service.http.post("/estates/{estate}/archive/months/{month}/organise", tags=["archive"])
async def organise_month_now(estate: str, month: str, who: Principal = Depends(require_estate)) -> dict:
    """Organise a finished month now (the schedule does it by itself)."""
    return await organise_now(organisation.organise_month, estate, month, who)


@service.http.get("/estates/{estate}/archive/volumes", tags=["archive"])
async def volumes(estate: str, quarter: str = Query(..., pattern=r"^\d{4}Q[1-4]$"),
                  who: Principal = Depends(require_estate)) -> dict:
    """A quarter's volumes with the general, volume and item catalogues."""
    known_estate(service, estate)
    async with transaction() as uow:
        return await organisation.quarter_out(uow, estate, quarter, False)


@service.http.post("/estates/{estate}/archive/quarters/{quarter}/archive", tags=["archive"])
async def archive_quarter_now(estate: str, quarter: str, who: Principal = Depends(require_estate)) -> dict:
    """Archive a finished quarter now (the schedule does it by itself)."""
    return await organise_now(organisation.archive_quarter, estate, quarter, who)


@service.http.get("/estates/{estate}/tickets/{ticket_id}/timeline", response_model=TimelineOut, tags=["archive"])
async def ticket_timeline(estate: str, ticket_id: str, who: Principal = Depends(require_estate)) -> TimelineOut:
    """One timeline of every event of a ticket across all services — archive collects them
    all to assemble the form — and the archived record's number once it is sealed
    (issue 16: the console's ticket detail)."""
    known_estate(service, estate)
    async with transaction() as uow:
        rows = await uow.collected.timeline(estate, ticket_id)
        record = await uow.chain.entry_of_ticket(estate, ticket_id)
    if not rows and record is None:
        raise RuleViolation(f"no ticket {ticket_id!r} known to the archive in estate {estate!r}", status=404)
    events = [TimelineEntryOut(event_id=row.event_id, event=row.event, time=row.time,
                               source=row.envelope.get("source", "").removeprefix("estatedesk/"),
                               actor=row.envelope.get("actor", ""), data=row.envelope.get("data", {}))
              for row in rows]
    return TimelineOut(ticket_id=ticket_id, estate=estate, events=events,
                       record_number=record.record_number if record else None,
                       record=record_out(record, service.context.policy(estate)) if record else None)
