"""Archive 归档 rules (RULES.md §5): the frozen countersign form, the estate's hash chain,
numbering and volumes, retention, the lending register and destruction. Pure functions
over plain data; the service shell does the storage and the messaging.

Hash-chain design
-----------------
Every estate keeps one append-only chain of archived forms, sequence 1, 2, 3, ... without
gaps. For each record:

    content       = canonical_bytes(form)            canonical JSON, UTF-8
    content_hash  = sha256(content)                   hex
    previous_hash = record_hash of the record before, genesis_hash(estate) for record 1
    record_hash   = chain_hash(previous_hash, sequence, record_number, content_hash)
                  = sha256("<previous_hash>|<sequence>|<record_number>|<content_hash>")

The link hashes over the content's *hash*, not the content itself, so a record can be
destroyed after its retention period (with the general manager's approval, 001 第5篇 1.7)
without breaking the chain: its content goes, its content_hash, previous_hash and
record_hash stay as a tombstone (`destroyed=True`), and a `DestructionLogEntry` that
survives the record says who approved it and when. Binding the sequence and the record
number into the link means relabelling or reordering records is detected too.

`verify_chain` reports the first record (in sequence order) that fails any check: a gap
or duplicate in the sequence, a link that does not point at the previous record, content
whose sha256 is not its content_hash, a record_hash that does not recompute, a live
record without content, a destroyed record still holding content, or (when a destruction
log is passed) a destroyed record nobody logged. A forger who rewrites a record's content,
its content_hash and every later record_hash defeats the chain alone; the `archived`
events on the stream carry each record's content_hash, pass them as `anchors` and that
rewrite is pinned to the right record as well.

Numbering: record numbers run per estate and per year of the closing month
("HX01-DA-2026-000001"); the chain sequence runs per estate for ever. A form closed in
a later month than it was opened belongs to its closing month (002 §4.8.1: a request
spanning months is archived with the next month), and volumes are made per quarter
(002 §4.8.2), one retention class per volume (001 第6篇 1.1.2 ⑤).

Privacy: the archived form names the owner only by owner_id; phone and ID-card numbers
written into free text are replaced before freezing, because the record is lent out
and a loan must not leak them (001 第11篇 §3, 004 篇5 §4.2).
"""


from __future__ import annotations

# The rules live by topic in this package's modules; this is their public face, so that
# callers write `rules.assemble_form` whichever module holds it.
from services.archive.rules.common import (
    ID_CARD_REDACTED,
    PHONE_REDACTED,
    RECORD_NUMBER,
    REFUSAL_STATUS,
    SHA256_HEX,
    UtcDatetime,
    redact_personal_numbers,
    refusal,
)
from services.archive.rules.form import (
    AcknowledgementRecord,
    ArchivedForm,
    ArrivalRecord,
    BreachRecord,
    CallbackAnswer,
    CallbackRecord,
    CallbackSchedule,
    ClosureRecord,
    CompletionRecord,
    DeadlineRecord,
    EscalationRecord,
    FORM_SCHEMA,
    IntakeRecord,
    NOT_PART_OF_FORM,
    ProgressRecord,
    ReopenRecord,
    RoundRecord,
    SignBackRecord,
    SourceEvent,
    TransferRecord,
    ValidityRecord,
    assemble_form,
    canonical_bytes,
    check_archivable,
    form_from_bytes,
)
from services.archive.rules.chain import (
    AddendumLink,
    ChainRecord,
    VerifyResult,
    addendum_content,
    addendum_hash,
    chain_hash,
    content_hash,
    genesis_hash,
    seal_record,
    tombstone,
    verify_addenda,
    verify_chain,
)
from services.archive.rules.periods import (
    check_period_over,
    closed_month,
    parse_record_number,
    period_end,
    record_number,
    scheduled_run_due,
)
from services.archive.rules.retention import (
    KIND_LABELS,
    RETENTION_CLASS_LABELS,
    RetentionClass,
    handled_by_company,
    retention_class,
    retention_expires,
    retention_years,
)
from services.archive.rules.catalogue import (
    ArchivedRecord,
    CUSTODIANS,
    GeneralCatalogueEntry,
    ItemCatalogueEntry,
    ManifestLine,
    MonthManifest,
    TITLE_EXCERPT_CHARS,
    Volume,
    VolumeCatalogueEntry,
    VolumePlan,
    archived_record,
    assign_volumes,
    month_manifest,
    record_title,
    supplementary_plan,
    volume_number,
)
from services.archive.rules.lending import (
    AccessBasis,
    Decision,
    LoanMode,
    Person,
    RegisterEntry,
    check_loan_request,
    may_read,
    outstanding_loans,
    overdue_loans,
    return_loan,
)
from services.archive.rules.destruction import (
    DestructionLogEntry,
    check_destructible,
    check_destruction,
)
from services.archive.rules.audit import (
    Anchor,
    verify_archive,
)
from shared.errors import RuleViolation
from shared.periods import months_of_quarter, quarter_of  # defined once in shared (issue 11)

__all__ = [
    "AccessBasis",
    "AcknowledgementRecord",
    "AddendumLink",
    "Anchor",
    "ArchivedForm",
    "ArchivedRecord",
    "ArrivalRecord",
    "BreachRecord",
    "CUSTODIANS",
    "CallbackAnswer",
    "CallbackRecord",
    "CallbackSchedule",
    "ChainRecord",
    "ClosureRecord",
    "CompletionRecord",
    "DeadlineRecord",
    "Decision",
    "DestructionLogEntry",
    "EscalationRecord",
    "FORM_SCHEMA",
    "GeneralCatalogueEntry",
    "ID_CARD_REDACTED",
    "IntakeRecord",
    "ItemCatalogueEntry",
    "KIND_LABELS",
    "LoanMode",
    "ManifestLine",
    "MonthManifest",
    "NOT_PART_OF_FORM",
    "PHONE_REDACTED",
    "Person",
    "ProgressRecord",
    "RECORD_NUMBER",
    "REFUSAL_STATUS",
    "RETENTION_CLASS_LABELS",
    "RegisterEntry",
    "ReopenRecord",
    "RetentionClass",
    "RoundRecord",
    "RuleViolation",
    "SHA256_HEX",
    "SignBackRecord",
    "SourceEvent",
    "TITLE_EXCERPT_CHARS",
    "TransferRecord",
    "UtcDatetime",
    "ValidityRecord",
    "VerifyResult",
    "Volume",
    "VolumeCatalogueEntry",
    "VolumePlan",
    "addendum_content",
    "addendum_hash",
    "archived_record",
    "assemble_form",
    "assign_volumes",
    "canonical_bytes",
    "chain_hash",
    "check_archivable",
    "check_destructible",
    "check_destruction",
    "check_loan_request",
    "check_period_over",
    "closed_month",
    "content_hash",
    "form_from_bytes",
    "genesis_hash",
    "handled_by_company",
    "may_read",
    "month_manifest",
    "months_of_quarter",
    "outstanding_loans",
    "overdue_loans",
    "parse_record_number",
    "period_end",
    "quarter_of",
    "record_number",
    "record_title",
    "redact_personal_numbers",
    "refusal",
    "retention_class",
    "retention_expires",
    "retention_years",
    "return_loan",
    "scheduled_run_due",
    "seal_record",
    "supplementary_plan",
    "tombstone",
    "verify_addenda",
    "verify_archive",
    "verify_chain",
    "volume_number",
]
