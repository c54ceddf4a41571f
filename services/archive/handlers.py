"""The archive's handlers (issue 11): plain async functions `(message, uow, ctx)`.

Event handlers (`HANDLERS`): every ticket event is collected until its ticket is sealed
(`"*"`: the catch-all consumer); a late one is appended to the record as an addendum
(RULES §5 Integrity: the frozen form never changes); `access_refused` lands in the access
log. Commands: sealing a closed ticket into the estate's chain, the lending register
(lend, return, who may read), the important-events file, and destruction requests with
the general manager's approval (RULES §5; 001 第5篇 1.7, 第6篇 1.2, 1.5; 002 §4.8). Errors: RuleViolation (404, 403, 409, 410, 422; the
archive's refusals carry a `code`), ValueError for a form that cannot be made yet.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.archive import rules
from services.archive.domain import DestructionRequest, Loan, PendingSeal, Record
from services.archive.uow import ArchiveUnitOfWork
from shared.errors import RuleViolation
from shared.events import AccessRefused, Archived, CloudEvent, Destroyed, Lent, Returned
from shared.uow import HandlerContext

SYSTEM = "system"
Handler = Callable[[CloudEvent, ArchiveUnitOfWork, HandlerContext], Awaitable[object]]


# --- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collected:
    """What became of a ticket event: ignored (never part of a form), collected, queued
    for sealing (`closed`), or appended to its archived record as addendum `number`."""

    outcome: str
    record_number: str | None = None
    number: int | None = None


async def handle_ticket_event(event: CloudEvent, uow: ArchiveUnitOfWork, ctx: HandlerContext) -> Collected:
    """Collect every ticket event; a `closed` ticket is queued for sealing into the chain."""
    if event.event_name in rules.NOT_PART_OF_FORM:
        return Collected("ignored")  # the archive's own events, analytics' suggestions
    number = await uow.chain.number_of_ticket(event.estate, event.subject)
    if number is not None:
        # `closed` is final: the frozen form does not change; the late event is appended
        # to the record as an addendum in its side chain, never dropped.
        return Collected("addendum", number, await append_addendum(uow, event, number, ctx.now()))
    now = ctx.now()
    await uow.collected.add(event.id, ticket_id=event.subject, estate=event.estate, time=event.time,
                            event=event.event_name, envelope=event.model_dump(mode="json"), collected_at=now)
    if event.event_name != "closed":
        return Collected("collected")
    # Sealed by the seal job once every earlier event is collected: a redelivered
    # message can arrive after the `closed` that followed it.
    await uow.pending.add(PendingSeal(estate=event.estate, ticket_id=event.subject, closed_event_id=event.id,
                                      closed_at=event.time, noted_at=now, next_try_at=now))
    return Collected("closed")


async def prepare_ticket_events(events: list[CloudEvent], uow: ArchiveUnitOfWork) -> None:
    """Load what `handle_ticket_event` reads for a batch of events (fresh, in stream
    order) in one statement: whether each one's ticket is archived already. Optional:
    without it each event reads its own ticket's."""
    await uow.chain.load_numbers([(event.estate, event.subject) for event in events
                                  if event.event_name not in rules.NOT_PART_OF_FORM])


async def append_addendum(uow: ArchiveUnitOfWork, event: CloudEvent, record_number: str, now: dt.datetime) -> int:
    """Append `event` to the archived record as its next addendum (the record row is
    locked, so addenda of one record are numbered 1, 2, ... without gaps)."""
    record = await uow.chain.lock_record(record_number)
    addendum = record.next_addendum(await uow.chain.last_addendum(record_number), event.model_dump(mode="json"),
                                    event.id, event.event_name, event.time, now)
    await uow.chain.add_addendum(addendum)
    return addendum.number


async def handle_access_refused(event: CloudEvent, uow: ArchiveUnitOfWork, ctx: HandlerContext) -> None:
    """One `access_refused` event → one refused row of the estate's access log (what =
    "door"; RULES § archive access log)."""
    refused: AccessRefused = event.payload()
    await uow.access.add(
        estate=event.estate, record_number=refused.record_number, actor=event.actor[:64], roles=refused.roles,
        what="door", allowed=False, reason=f"{refused.status}: {refused.reason}", service=refused.service[:32],
        request=f"{refused.method} {refused.path}", at=event.time)


HANDLERS: dict[str, Handler] = {
    "*": handle_ticket_event,  # every ticket event (the catch-all consumer)
    "access_refused": handle_access_refused,
}


# --- sealing ----------------------------------------------------------------------------------------


def ticket_of(body: bytes) -> str | None:
    """The ticket id (CloudEvents `subject`) of a stored event body, None when the body is
    not a JSON object. Parsed here, not cast in SQL: a body PostgreSQL cannot hold as
    JSONB (a NUL character, say) must not fail the query for every other ticket."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    return envelope.get("subject") if isinstance(envelope, dict) else None


@dataclass(frozen=True)
class Sealed:
    record_number: str
    retention_class: str


async def seal_ticket(uow: ArchiveUnitOfWork, ctx: HandlerContext, estate: str, ticket_id: str,
                      closed_at: dt.datetime, dead_letter_consumer: str) -> Sealed | None:
    """Assemble, freeze and chain the ticket's form; emit `archived`. Idempotent per
    ticket: a second call finds the record and does nothing (None). A ValueError (no
    intake yet, a dead letter of the ticket) means: not yet, try again later."""
    now = ctx.now()
    policy = ctx.policy(estate)
    head = await uow.chain.lock_head(estate, now)
    if await uow.chain.number_of_ticket(estate, ticket_id) is not None:
        return None
    # An event of the ticket the archive gave up on would leave a hole in the frozen form.
    for row in await uow.chain.dead_letter_bodies(dead_letter_consumer, estate):
        if ticket_of(row.body) == ticket_id:
            raise ValueError(f"event {row.event_id} of ticket {ticket_id} is a dead letter of the archive "
                             f"({row.reason[:200]}): replay it before the form can be sealed")
    # Events stamped after the closure (a clock scan racing the close) are not the form's.
    envelopes = await uow.collected.envelopes(estate, ticket_id, closed_at)
    form = rules.assemble_form((CloudEvent.model_validate(e) for e in envelopes), timezone=policy.timezone)
    rules.check_archivable(form)
    content = rules.canonical_bytes(form)
    year = int(rules.closed_month(form.closed_at, form.timezone)[:4])
    number = rules.record_number(estate, year, await uow.chain.next_in_year(estate, year))
    link = head.append(number, content, now)
    retention = rules.retention_class(form, marked_important=False,
                                      handled_by_company=rules.handled_by_company(form, policy), policy=policy)
    record = Record.sealed(estate, ticket_id, form, content, link, retention, now)
    await uow.chain.add(record)
    await uow.chain.save_head(head)
    await uow.collected.forget(estate, ticket_id)
    await uow.emit(
        Archived(ticket_id=ticket_id, record_number=number, content_hash=link.content_hash,
                 previous_hash=link.previous_hash, closed_month=record.closed_month, sequence=link.sequence,
                 record_hash=link.stored_hash, retention_class=retention.value),
        estate=estate, actor=SYSTEM, time=now)
    return Sealed(number, retention.value)


# --- lending register 借阅登记 -------------------------------------------------------------------------


async def find_record(uow: ArchiveUnitOfWork, estate: str, number: str, *, lock: bool = False) -> Record:
    """The estate's record, 404 for a malformed number, another estate's or an unknown one."""
    try:
        owner, _, _ = rules.parse_record_number(number)
    except ValueError as error:
        raise RuleViolation(str(error), status=404) from None
    if owner != estate.upper():
        raise RuleViolation(f"record {number} does not belong to estate {estate}", status=404)
    record = await uow.chain.record(estate, number, lock=lock)
    if record is None:
        raise RuleViolation(f"no archived record {number} in estate {estate}", status=404)
    return record


@dataclass(frozen=True)
class LoanCommand:
    estate: str
    record_number: str
    borrower: rules.Person
    purpose: str
    mode: str
    approver: rules.Person | None
    approval_reference: str | None
    registered_by: str


async def handle_register_loan(command: LoanCommand, uow: ArchiveUnitOfWork, ctx: HandlerContext) -> Loan:
    """Register a consultation, loan, copy or export (001 第6篇 1.2); emits `lent`."""
    now = ctx.now()
    record = await find_record(uow, command.estate, command.record_number)
    entry = rules.check_loan_request(
        loan_id=str(uuid.uuid4()), record=record.catalogue(), borrower=command.borrower, purpose=command.purpose,
        mode=command.mode, now=now, approver=command.approver, approval_reference=command.approval_reference,
        policy=ctx.policy(command.estate))
    loan = Loan.registered(entry, estate=command.estate, ticket_id=record.ticket_id, by=command.registered_by)
    await uow.loans.add(loan)
    await uow.emit(Lent(ticket_id=record.ticket_id, loan_id=loan.loan_id, record_number=loan.record_number,
                        borrower=loan.borrower, purpose=loan.purpose, mode=loan.mode, due_back=loan.due_back),
                   estate=command.estate, actor=command.registered_by, time=now)
    return loan


async def handle_return_loan(estate: str, loan_id: str, staff_id: str, is_keeper: bool, uow: ArchiveUnitOfWork,
                             ctx: HandlerContext) -> Loan:
    """Close a register entry (the record came back); emits `returned`."""
    now = ctx.now()
    loan = await uow.loans.get(estate, loan_id, lock=True)
    if loan is None:
        raise RuleViolation(f"no register entry {loan_id!r} in estate {estate}", status=404)
    loan.give_back(staff_id, is_keeper, now)
    await uow.loans.save(loan)
    await uow.emit(Returned(ticket_id=loan.ticket_id, loan_id=loan_id, record_number=loan.record_number),
                   estate=estate, actor=staff_id, time=now)
    return loan


@dataclass(frozen=True)
class ReadCommand:
    estate: str
    record_number: str
    staff_id: str
    roles: frozenset[str]
    reader: rules.Person  # the caller as the rules see them
    what: str  # content, form.html, form.pdf


@dataclass(frozen=True)
class ReadDecision:
    record: Record
    allowed: bool
    reason: str

    def raise_if_refused(self) -> Record:
        """After the access log is committed: 410 destroyed, 403 refused, 409 tampered."""
        if self.record.destroyed:
            raise RuleViolation(f"{self.reason}; its destruction log entry remains", status=410)
        if not self.allowed:
            raise RuleViolation(f"record {self.record.record_number} is level-1 confidential: {self.reason}",
                                status=403)
        self.record.check_integrity()
        return self.record


async def handle_read(command: ReadCommand, uow: ArchiveUnitOfWork, ctx: HandlerContext) -> ReadDecision:
    """Whether the caller holds a running register entry for the record (every consultation
    is registered first, 001 第6篇 1.2); the attempt is logged either way."""
    now = ctx.now()
    policy = ctx.policy(command.estate)
    record = await find_record(uow, command.estate, command.record_number)
    allowed, reason, loan_id = False, "no register entry: every consultation must be registered first", None
    for i, loan in enumerate(await uow.loans.for_reader(command.estate, command.record_number, command.staff_id)):
        entry = loan.entry()
        actor = (rules.Person(entry.borrower, frozenset(), frozenset(), external=True,
                              organisation=entry.borrower_organisation)
                 if entry.borrower_external else command.reader)
        decision = rules.may_read(actor, command.estate, command.record_number, entry, now, policy)
        if decision:
            allowed, reason, loan_id = True, decision.reason, entry.loan_id
            break
        if i == 0:
            reason = decision.reason  # the latest entry says best why it no longer serves
    if record.destroyed:
        allowed, reason = False, f"record {record.record_number} was destroyed on {record.destroyed_at.isoformat()}"
    await uow.access.add(estate=command.estate, record_number=command.record_number, actor=command.staff_id,
                         roles=sorted(command.roles), what=command.what, allowed=allowed, reason=reason,
                         loan_id=loan_id, at=now)
    return ReadDecision(record, allowed, reason)


# --- the important-events file and destruction --------------------------------------------------------


async def handle_mark_important(estate: str, record_number: str, reason: str, by: str, uow: ArchiveUnitOfWork,
                                ctx: HandlerContext) -> tuple[Record, str]:
    """Put a record into the important-events file; returns it and the class it had."""
    if not reason.strip():
        raise RuleViolation("give the reason the record is an important event", status=422)
    record = await find_record(uow, estate, record_number, lock=True)
    existing = await uow.marks.important(record_number)
    previous = record.mark_important(reason, existing.marked_at if existing else None,
                                     existing.reason if existing else None)
    await uow.marks.add_important(record_number=record_number, estate=estate, reason=reason.strip(), marked_by=by,
                                  marked_at=ctx.now(), previous_class=previous)
    await uow.chain.save(record)
    return record, previous


@dataclass(frozen=True)
class DestructionRequestCommand:
    estate: str
    record_numbers: list[str]
    reason: str
    staff_id: str
    roles: frozenset[str]


async def destructible(uow: ArchiveUnitOfWork, estate: str, number: str, now: dt.datetime, policy,
                       lock: bool = False) -> tuple[Record, list[rules.RegisterEntry]]:
    """The record and its open loans when it may be destroyed now (RuleViolation 404/409
    otherwise: unknown, already destroyed, retention not expired, out on loan)."""
    record = await find_record(uow, estate, number, lock=lock)
    open_loans = [loan.entry() for loan in await uow.loans.open_of_record(record.record_number)]
    rules.check_destructible(record.catalogue(), now, policy, open_loans)
    return record, open_loans


async def handle_request_destruction(command: DestructionRequestCommand, uow: ArchiveUnitOfWork,
                                     ctx: HandlerContext) -> DestructionRequest:
    """Ask to destroy records past retention (销毁申请, 001 第5篇 1.7): every record must be
    destructible now and in no other open request (409 with the reason); stored as
    `requested` for the general manager."""
    now = ctx.now()
    policy = ctx.policy(command.estate)
    request = DestructionRequest.asked(f"DR-{uuid.uuid4().hex[:12]}", command.estate, command.reason,
                                       command.record_numbers, command.staff_id, command.roles, policy, now)
    await uow.destruction_requests.lock_estate(command.estate)
    asked = await uow.destruction_requests.open_record_numbers(command.estate)
    for number in request.record_numbers:
        await destructible(uow, command.estate, number, now, policy)
        if number in asked:
            raise rules.refusal("already_requested", f"record {number} is already in a destruction request "
                                "waiting for the general manager", f"档案 {number} 已在待审批的销毁申请中")
    await uow.destruction_requests.add(request)
    return request


async def decided_request(uow: ArchiveUnitOfWork, estate: str, request_id: str) -> DestructionRequest:
    request = await uow.destruction_requests.get(estate, request_id, lock=True)
    if request is None:
        raise RuleViolation(f"no destruction request {request_id!r} in estate {estate}", status=404,
                            zh=f"本小区没有销毁申请 {request_id}")
    return request


async def handle_approve_destruction(estate: str, request_id: str, staff_id: str, roles, uow: ArchiveUnitOfWork,
                                     ctx: HandlerContext) -> tuple[DestructionRequest, list[rules.DestructionLogEntry]]:
    """The general manager approves (policy `archive.destruction_approver_roles`; not the
    requester): every listed record is destroyed as one, the destruction log names the
    request and the approver, one `destroyed` event per record. Any record that may no
    longer be destroyed refuses the whole approval (409), and the request stays open."""
    now = ctx.now()
    policy = ctx.policy(estate)
    request = await decided_request(uow, estate, request_id)
    request.approve(staff_id, roles, policy, now)
    entries = []
    for number in request.record_numbers:
        record, open_loans = await destructible(uow, estate, number, now, policy, lock=True)
        # Content erased, hashes kept as the tombstone; the log entry survives the record.
        entry = record.destroy(now, staff_id, roles, request.request_id, policy, open_loans)
        await uow.marks.add_destruction(entry.model_dump())
        await uow.chain.save(record)
        await uow.emit(Destroyed(ticket_id=record.ticket_id, record_number=number, approved_by=entry.approved_by,
                                 approval_reference=entry.approval_reference), estate=estate, actor=staff_id, time=now)
        entries.append(entry)
    await uow.destruction_requests.save(request)
    return request, entries


async def handle_refuse_destruction(estate: str, request_id: str, staff_id: str, roles, reason: str,
                                    uow: ArchiveUnitOfWork, ctx: HandlerContext) -> DestructionRequest:
    """The general manager refuses, with the reason; the records stay as they are."""
    request = await decided_request(uow, estate, request_id)
    request.refuse(staff_id, roles, reason, ctx.policy(estate), ctx.now())
    await uow.destruction_requests.save(request)
    return request
