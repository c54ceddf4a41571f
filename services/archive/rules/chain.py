"""The estate's hash chain and each record's side chain of addenda (RULES §5 Integrity; the
design is in the package docstring)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from typing import TYPE_CHECKING
from services.archive.rules.common import _Frozen

if TYPE_CHECKING:
    from services.archive.rules.destruction import DestructionLogEntry


# --- the hash chain -------------------------------------------------------------------------


def genesis_hash(estate: str) -> str:
    """The previous_hash of an estate's first record."""
    return hashlib.sha256(f"estatedesk:{estate}:genesis".encode()).hexdigest()


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def chain_hash(previous_hash: str, sequence: int, record_number: str, content_hash: str) -> str:
    """record_hash = sha256("<previous_hash>|<sequence>|<record_number>|<content_hash>")."""
    return hashlib.sha256(f"{previous_hash}|{sequence}|{record_number}|{content_hash}".encode()).hexdigest()


# --- addenda: events that arrive after their ticket was archived ---------------------------


def addendum_content(envelope: Mapping[str, Any]) -> bytes:
    """An addendum's content: the late event's CloudEvents envelope as canonical JSON."""
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def addendum_hash(previous_hash: str, record_number: str, number: int, content_hash: str) -> str:
    """sha256("<previous_hash>|<record_number>+<number>|<content_hash>"); the first
    addendum's previous_hash is its record's stored hash, each later one the addendum
    before it: a side chain hanging from the record, never changing the record itself."""
    return hashlib.sha256(f"{previous_hash}|{record_number}+{number}|{content_hash}".encode()).hexdigest()


@dataclass(frozen=True)
class AddendumLink:
    number: int
    content: bytes
    content_hash: str
    previous_hash: str
    stored_hash: str


def verify_addenda(record_number: str, record_hash: str, addenda: Sequence[AddendumLink]) -> str | None:
    """None when the record's addenda (in number order) are intact and linked to it, else
    the reason naming the first broken one."""
    previous = record_hash
    for expected, link in enumerate(addenda, start=1):
        where = f"addendum {link.number} of {record_number}"
        if link.number != expected:
            return f"{where}: numbered out of turn (expected {expected})"
        if content_hash(link.content) != link.content_hash:
            return f"{where}: content altered (hash differs)"
        if link.previous_hash != previous:
            return f"{where}: not linked to what precedes it"
        if addendum_hash(previous, record_number, link.number, link.content_hash) != link.stored_hash:
            return f"{where}: stored hash does not match"
        previous = link.stored_hash
    return None


class ChainRecord(_Frozen):
    """One link of an estate's chain; `content` is None once the record is destroyed."""

    sequence: int = Field(ge=1)
    record_number: str
    content: bytes | None
    content_hash: str
    previous_hash: str
    stored_hash: str
    destroyed: bool = False


def seal_record(previous_hash: str, sequence: int, record_number: str, content: bytes) -> ChainRecord:
    """The next link: `previous_hash` is the last record's stored_hash (or the genesis hash)."""
    digest = content_hash(content)
    return ChainRecord(
        sequence=sequence,
        record_number=record_number,
        content=content,
        content_hash=digest,
        previous_hash=previous_hash,
        stored_hash=chain_hash(previous_hash, sequence, record_number, digest),
    )


def tombstone(record: ChainRecord) -> ChainRecord:
    """The record after destruction: content gone, every hash kept, chain intact."""
    return record.model_copy(update={"content": None, "destroyed": True})


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_broken: str | None
    reason: str
    records_checked: int

    def __bool__(self) -> bool:
        return self.ok


def verify_chain(
    records: Sequence[ChainRecord],
    *,
    estate: str | None = None,
    destruction_log: Sequence["DestructionLogEntry"] | None = None,
    anchors: Mapping[str, str] | None = None,
) -> VerifyResult:
    """Check an estate's whole chain; see the module docstring for what is detected.

    estate: when given, record 1 must link to the estate's genesis hash.
    destruction_log: when given, every destroyed record needs an entry with its hash.
    anchors: record_number → content_hash as published elsewhere (the archived events)."""
    ordered = sorted(records, key=lambda r: r.sequence)
    logged = None if destruction_log is None else {e.record_number: e for e in destruction_log}
    seen_numbers: set[str] = set()
    expected_sequence = 1
    expected_previous = genesis_hash(estate) if estate is not None else None

    def broken(record: ChainRecord, reason: str, checked: int) -> VerifyResult:
        return VerifyResult(ok=False, first_broken=record.record_number, reason=reason, records_checked=checked)

    for index, record in enumerate(ordered):
        checked = index + 1
        if record.sequence != expected_sequence:
            if record.sequence < expected_sequence:
                return broken(record, f"sequence {record.sequence} appears twice", checked)
            missing = (
                f"{expected_sequence}" if record.sequence == expected_sequence + 1
                else f"{expected_sequence}–{record.sequence - 1}"
            )
            return broken(record, f"gap in the chain: sequence {missing} missing before {record.sequence}", checked)
        if record.record_number in seen_numbers:
            return broken(record, f"record number {record.record_number} appears twice", checked)
        seen_numbers.add(record.record_number)
        if expected_previous is not None and record.previous_hash != expected_previous:
            what = "the estate's genesis hash" if index == 0 else f"record {ordered[index - 1].record_number}"
            return broken(record, f"broken link: previous_hash does not match {what}", checked)
        if record.destroyed:
            if record.content is not None:
                return broken(record, "record is marked destroyed but still holds its content", checked)
            if logged is not None:
                entry = logged.get(record.record_number)
                if entry is None:
                    return broken(record, "record was destroyed without a destruction log entry", checked)
                if entry.content_hash != record.content_hash:
                    return broken(record, "destruction log entry names another content hash", checked)
        else:
            if record.content is None:
                return broken(record, "content missing from a record that was never destroyed", checked)
            if content_hash(record.content) != record.content_hash:
                return broken(record, "content altered: its sha256 differs from the stored content hash", checked)
        if anchors is not None and record.record_number in anchors and anchors[record.record_number] != record.content_hash:
            return broken(record, "content hash differs from the one published when the record was archived", checked)
        if chain_hash(record.previous_hash, record.sequence, record.record_number, record.content_hash) != record.stored_hash:
            return broken(record, "record hash does not recompute from its link and content hash", checked)
        expected_previous = record.stored_hash
        expected_sequence += 1
    return VerifyResult(ok=True, first_broken=None, reason="chain intact", records_checked=len(ordered))


