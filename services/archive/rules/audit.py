"""Auditing the stored archive: the chain, the catalogue, the destruction log and the stream's
anchors together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from services.archive.rules.common import UtcDatetime, _Frozen
from services.archive.rules.form import form_from_bytes
from services.archive.rules.chain import ChainRecord, VerifyResult, genesis_hash, verify_chain
from services.archive.rules.periods import closed_month, parse_record_number
from services.archive.rules.catalogue import ArchivedRecord, record_title
from services.archive.rules.destruction import DestructionLogEntry


# --- auditing the stored archive ------------------------------------------------------------


def _record_order(number: str) -> tuple[int, int, str]:
    try:
        _, year, sequence = parse_record_number(number)
    except ValueError:
        return (0, 0, number)
    return (year, sequence, number)


class Anchor(_Frozen):
    """What the `archived` event published about a record when it was sealed."""

    record_number: str
    content_hash: str
    archived_at: UtcDatetime


def verify_archive(
    records: Sequence[ChainRecord],
    catalogue: Sequence[ArchivedRecord],
    *,
    estate: str,
    head: tuple[int, str] | None,
    destruction_log: Sequence[DestructionLogEntry],
    anchors: Mapping[str, Anchor] | None,
) -> VerifyResult:
    """verify_chain, then what the chain alone cannot see:
    - the chain head (last sequence and hash kept apart) must match the last record, or
      records were cut off the end;
    - every catalogue line must say what its content says (ticket, form number, kind,
      title, closing month) and be archived when its `archived` event says (retention
      runs from that moment, so a forged date would allow an early destruction);
    - every record published as archived must still be there."""
    by_sequence = sorted(records, key=lambda r: r.sequence)
    result = verify_chain(
        by_sequence, estate=estate, destruction_log=destruction_log,
        anchors=None if anchors is None else {n: a.content_hash for n, a in anchors.items()},
    )
    if not result:
        return result
    checked = len(by_sequence)

    def broken(number: str, reason: str) -> VerifyResult:
        return VerifyResult(ok=False, first_broken=number, reason=reason, records_checked=checked)

    lines = {line.record_number: line for line in catalogue}
    for record in by_sequence:
        line = lines.get(record.record_number)
        if line is None:
            return broken(record.record_number, "record has no catalogue line")
        if line.sequence != record.sequence or line.content_hash != record.content_hash or line.destroyed != record.destroyed:
            return broken(record.record_number, "catalogue line disagrees with the chain")
        if record.content is not None:
            try:
                form = form_from_bytes(record.content)
            except ValueError:
                return broken(record.record_number, "content is not a countersign form")
            facts = {
                "ticket_id": form.ticket_id, "form_number": form.form_number, "kind": form.intake.kind,
                "title": record_title(form), "closed_month": closed_month(form.closed_at, form.timezone)
                if form.closed_at else None, "estate": form.estate,
            }
            wrong = sorted(k for k, v in facts.items() if getattr(line, k) != v)
            if wrong:
                return broken(record.record_number, f"catalogue {', '.join(wrong)} differ from the archived content")
        if anchors is not None and record.record_number in anchors:
            if anchors[record.record_number].archived_at != line.archived_at:
                return broken(record.record_number, "archiving time differs from the one published when it was archived")
    if head is not None:
        last = by_sequence[-1] if by_sequence else None
        expected = (last.sequence, last.stored_hash) if last else (0, genesis_hash(estate))
        if tuple(head) != expected:
            where = last.record_number if last else "(empty chain)"
            return broken(where, f"the chain head records {head[0]} records but the store ends at "
                                 f"{expected[0]}: records were removed from the end")
    if anchors is not None:
        present = {r.record_number for r in by_sequence}
        missing = sorted((n for n in anchors if n not in present), key=_record_order)
        if missing:
            return broken(missing[0], "published as archived but missing from the store")
    return result
