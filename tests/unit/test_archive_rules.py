"""Archive 归档 rules (RULES.md §5): form assembly, hash chain, numbering and volumes,
retention, lending register, destruction, and the printed form."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from services.archive import render
from services.archive.rules import (
    ID_CARD_REDACTED,
    PHONE_REDACTED,
    AccessBasis,
    ArchivedForm,
    ArchivedRecord,
    ChainRecord,
    LoanMode,
    Person,
    RetentionClass,
    RuleViolation,
    archived_record,
    assemble_form,
    assign_volumes,
    canonical_bytes,
    chain_hash,
    check_archivable,
    check_destruction,
    check_loan_request,
    closed_month,
    content_hash,
    form_from_bytes,
    genesis_hash,
    may_read,
    months_of_quarter,
    outstanding_loans,
    overdue_loans,
    parse_record_number,
    quarter_of,
    record_number,
    redact_personal_numbers,
    retention_class,
    retention_expires,
    return_loan,
    seal_record,
    tombstone,
    verify_chain,
)
from shared.events import (
    AttitudeComplaintRaised,
    Accepted,
    AcceptedBy,
    Acknowledged,
    Archived,
    Arrived,
    Assigned,
    CallbackDone,
    CallbackOverdue,
    CallbackScheduled,
    Channel,
    Closed,
    CloudEvent,
    Completed,
    Deadline,
    Escalated,
    Kind,
    Lent,
    ProgressUpdated,
    Reopened,
    ReplyMethod,
    SignedBack,
    SlaBreached,
    ValidityJudged,
    make_event,
)
from shared.policy import DEFAULT_POLICY, effective_policy

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
UTC = dt.timezone.utc
ESTATE = "hx01"
TICKET = "T-1001"


def at(day: int, hour: int = 9, minute: int = 0, month: int = 11, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def ev(payload, time: dt.datetime, actor: str = "cs-01", n: int | None = None, estate: str = ESTATE) -> CloudEvent:
    # Ids are deterministic so tests can compare forms byte for byte.
    event_id = f"evt-{payload.event_name}-{n if n is not None else time.isoformat()}"
    return make_event(payload, estate=estate, actor=actor, source="test", time=time, event_id=event_id)


def complaint_events(ticket: str = TICKET, description: str = "楼上漏水,浸湿客厅天花板,请尽快处理。") -> list[CloudEvent]:
    """A valid complaint: two departments, a breach, an escalation, an unsatisfied
    callback, a second round, a satisfied callback, closure."""
    return [
        ev(Accepted(
            ticket_id=ticket, form_number="HX01-2026-11-0042", kind=Kind.complaint, channel=Channel.walk_in,
            category="water_leak", building="3栋", unit="1201", location="客厅", description=description,
            first_contact="cs-01", first_contact_name="王芳", received_at=at(2, 8, 55),
            reply_method=ReplyMethod.phone, owner_id="owner-7788", owner_loss_cny=800.0,
        ), at(2, 9, 0)),
        ev(ValidityJudged(ticket_id=ticket, valid=True, reason="属物业维修责任", judged_by="cs-sup-1"), at(2, 9, 10)),
        ev(Assigned(
            ticket_id=ticket, round=1, departments=["engineering", "cleaning"], assigned_by="cs-01",
            deadlines=[Deadline(clock="tracking", due_at=at(5, 17, 30))],
        ), at(2, 9, 15)),
        ev(Acknowledged(ticket_id=ticket, round=1, department="engineering", acknowledged_by="eng-3"), at(2, 9, 20)),
        ev(Acknowledged(ticket_id=ticket, round=1, department="cleaning", acknowledged_by="cl-1"), at(2, 9, 25)),
        ev(Arrived(ticket_id=ticket, round=1, department="engineering", arrived_by="eng-3", arrived_at=at(2, 9, 50)),
           at(2, 9, 51)),
        ev(ProgressUpdated(ticket_id=ticket, note="已关闭楼上水阀,正在查找漏点", updated_by="cs-01"), at(2, 14, 0)),
        ev(SlaBreached(ticket_id=ticket, round=1, clock="tracking", due_at=at(5, 17, 30)), at(5, 17, 31)),
        ev(Escalated(ticket_id=ticket, round=1, rung="department_head", reason="跟踪时限已过", clock="tracking",
                     nonconformity=True), at(5, 17, 32)),
        ev(SignedBack(ticket_id=ticket, round=1, department="engineering", opinion="更换楼上漏水管件",
                      result="已更换,不再渗漏", signed_by="eng-3", verified_by="eng-head"), at(6, 10, 0)),
        ev(SignedBack(ticket_id=ticket, round=1, department="cleaning", opinion="清理积水",
                      result="已清理", signed_by="cl-1", verified_by="cl-head"), at(6, 10, 5)),
        ev(Completed(ticket_id=ticket, round=1, kind=Kind.complaint, departments=["engineering", "cleaning"],
                     completed_at=at(6, 10, 5)), at(6, 10, 6)),
        ev(CallbackScheduled(ticket_id=ticket, callback_id="cb-1", round=1, due_at=at(10, 17, 30),
                             method=ReplyMethod.phone, rule="complaint_working_days"), at(6, 10, 7)),
        ev(CallbackDone(ticket_id=ticket, callback_id="cb-1", round=1, method=ReplyMethod.phone,
                        handled_in_time=True, result_satisfied=False, attitude_satisfied=True,
                        suggestions="天花板仍有水渍", done_by="cs-02"), at(7, 15, 0)),
        ev(Reopened(ticket_id=ticket, round=2, reason="业主反映天花板仍有水渍", reopened_by="cs-02",
                    departments=["engineering"]), at(7, 15, 5)),
        ev(Assigned(ticket_id=ticket, round=2, departments=["engineering"], assigned_by="cs-02"), at(7, 15, 10)),
        ev(ProgressUpdated(ticket_id=ticket, note="安排明日修补天花板", updated_by="cs-02"), at(7, 16, 0)),
        ev(SignedBack(ticket_id=ticket, round=2, department="engineering", opinion="修补并粉刷天花板",
                      result="已修复", signed_by="eng-4", verified_by="eng-head"), at(9, 11, 0)),
        ev(Completed(ticket_id=ticket, round=2, kind=Kind.complaint, departments=["engineering"],
                     completed_at=at(9, 11, 0)), at(9, 11, 1)),
        ev(CallbackScheduled(ticket_id=ticket, callback_id="cb-2", round=2, due_at=at(11, 17, 30),
                             method=ReplyMethod.phone, rule="complaint_working_days"), at(9, 11, 2)),
        ev(CallbackDone(ticket_id=ticket, callback_id="cb-2", round=2, method=ReplyMethod.phone,
                        handled_in_time=True, result_satisfied=True, attitude_satisfied=True,
                        owner_confirmed=True, done_by="cs-02"), at(10, 10, 0)),
        ev(Closed(ticket_id=ticket, round=2, closed_by="cs-02", reason="业主满意"), at(10, 10, 5)),
    ]


@pytest.fixture(scope="module")
def form() -> ArchivedForm:
    return assemble_form(complaint_events())


# --- assembling the form ----------------------------------------------------------------


def test_form_carries_intake_and_validity(form: ArchivedForm) -> None:
    assert form.ticket_id == TICKET and form.estate == ESTATE
    assert form.form_number == "HX01-2026-11-0042"
    intake = form.intake
    assert intake.kind == Kind.complaint and intake.channel == Channel.walk_in
    assert intake.first_contact == "cs-01" and intake.registered_by == "cs-01"
    assert (intake.building, intake.unit, intake.location) == ("3栋", "1201", "客厅")
    assert intake.owner_id == "owner-7788" and intake.owner_loss_cny == 800.0
    assert intake.received_at == at(2, 8, 55) and intake.received_at.tzinfo == UTC
    assert [(v.valid, v.reason, v.judged_by) for v in form.validity] == [(True, "属物业维修责任", "cs-sup-1")]


def test_form_groups_everything_by_round(form: ArchivedForm) -> None:
    first, second = form.rounds
    assert first.round == 1 and first.reopen is None
    assert [t.departments for t in first.transfers] == [("engineering", "cleaning")]
    assert first.transfers[0].deadlines[0].clock == "tracking"
    assert [a.department for a in first.acknowledgements] == ["engineering", "cleaning"]
    assert first.arrivals[0].arrived_at == at(2, 9, 50)
    assert [b.clock for b in first.breaches] == ["tracking"]
    assert first.escalations[0].rung == "department_head" and first.escalations[0].nonconformity
    assert [(s.department, s.verified_by) for s in first.sign_backs] == [("engineering", "eng-head"), ("cleaning", "cl-head")]
    assert first.completions[0].completed_at == at(6, 10, 5)
    assert [p.note for p in first.progress_updates] == ["已关闭楼上水阀,正在查找漏点"]
    (callback,) = first.callbacks
    assert callback.schedule is not None and callback.schedule.due_at == at(10, 17, 30)
    assert [a.result_satisfied for a in callback.answers] == [False]
    assert first.closure is None

    assert second.round == 2
    assert second.reopen is not None and second.reopen.reason == "业主反映天花板仍有水渍"
    assert second.reopen.departments == ("engineering",)
    assert [p.note for p in second.progress_updates] == ["安排明日修补天花板"]  # after the reopen: round 2
    assert second.callbacks[0].answers[0].result_satisfied
    assert form.closure is not None and form.closure.round == 2 and form.closure.reason == "业主满意"
    assert form.closed_at == at(10, 10, 5)
    assert [s.event for s in form.source_events][:3] == ["accepted", "validity_judged", "assigned"]
    assert len(form.source_events) == len(complaint_events())


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.lists(st.integers(min_value=0, max_value=21), max_size=6))
def test_same_events_in_any_order_with_redeliveries_give_the_same_bytes(rng: random.Random, redelivered: list[int]) -> None:
    events = complaint_events()
    expected = canonical_bytes(assemble_form(events))
    shuffled = events + [events[i] for i in redelivered]
    rng.shuffle(shuffled)
    assert canonical_bytes(assemble_form(shuffled)) == expected


def test_events_at_the_same_time_are_ordered_by_id() -> None:
    base = complaint_events()[:1]
    same_time = at(3, 10, 0)
    notes = [
        ev(ProgressUpdated(ticket_id=TICKET, note=f"note {n}", updated_by="cs-01"), same_time, n=n) for n in ("b", "a", "c")
    ]
    form = assemble_form(base + notes)
    assert [p.note for p in form.rounds[0].progress_updates] == ["note a", "note b", "note c"]


def test_the_same_instant_in_any_offset_serialises_identically() -> None:
    events = complaint_events()
    in_utc = [e.model_copy(update={"time": e.time.astimezone(UTC)}) for e in events]
    assert canonical_bytes(assemble_form(in_utc)) == canonical_bytes(assemble_form(events))


def test_conflicting_redelivery_is_refused() -> None:
    events = complaint_events()
    tampered = events[1].model_copy(update={"data": {**events[1].data, "reason": "另一个理由"}})
    with pytest.raises(ValueError, match="two different contents"):
        assemble_form(events + [tampered])


def test_events_of_two_tickets_are_refused() -> None:
    with pytest.raises(ValueError, match="several tickets"):
        assemble_form(complaint_events() + [complaint_events(ticket="T-2")[0].model_copy(update={"id": "other"})])


def test_a_form_needs_exactly_one_intake() -> None:
    events = complaint_events()
    with pytest.raises(ValueError, match="no accepted event"):
        assemble_form(events[1:])
    second_intake = events[0].model_copy(update={"id": "evt-accepted-again"})
    with pytest.raises(ValueError, match="accepted twice"):
        assemble_form(events + [second_intake])
    with pytest.raises(ValueError, match="no events"):
        assemble_form([])


def test_unknown_event_types_and_naive_times_are_refused() -> None:
    events = complaint_events()
    stranger = events[0].model_copy(update={"id": "x", "type": "estatedesk.ticket.teleported"})
    with pytest.raises(ValueError, match="unknown to the archive"):
        assemble_form(events + [stranger])
    naive = events[1].model_copy(update={"time": dt.datetime(2026, 11, 2, 9, 10)})
    with pytest.raises(ValueError, match="timezone-aware"):
        assemble_form([events[0], naive])


def test_lifecycle_events_after_archiving_do_not_change_the_form(form: ArchivedForm) -> None:
    later = [
        ev(Archived(ticket_id=TICKET, record_number="HX01-DA-2026-000001", content_hash="0" * 64,
                    previous_hash="1" * 64, closed_month="2026-11"), at(12)),
        ev(Lent(ticket_id=TICKET, loan_id="L1", record_number="HX01-DA-2026-000001", borrower="cs-9",
                purpose="复核", mode="consult"), at(13)),
    ]
    assert canonical_bytes(assemble_form(complaint_events() + later)) == canonical_bytes(form)


def test_an_attitude_complaint_raised_on_a_callback_is_not_part_of_the_form(form: ArchivedForm) -> None:
    # It becomes a ticket with its own form; this one keeps the owner's answers (issue 15).
    raised = ev(AttitudeComplaintRaised(
        ticket_id=TICKET, callback_id="cb-1", round=1, reply_method=ReplyMethod.phone, answered_by=ReplyMethod.phone,
        recorded_by="cs-02", client_request_id="attitude-cb-1"), at(10, 10, 1))
    assert canonical_bytes(assemble_form(complaint_events() + [raised])) == canonical_bytes(form)


def test_owner_appears_only_as_owner_id_and_numbers_in_free_text_are_redacted() -> None:
    events = complaint_events(description="业主张先生,电话138 1234 5678,座机021-62345678,身份证110101199003071234,要求赔偿")
    # A phone field a careless client slipped into the payload must not survive either.
    events[0] = events[0].model_copy(update={"data": {**events[0].data, "phone": "13912345678", "owner_name": "张三"}})
    content = canonical_bytes(assemble_form(events)).decode()
    for leaked in ("1381234", "5678", "62345678", "110101199003071234", "13912345678", "张三"):
        assert leaked not in content
    assert PHONE_REDACTED in content and ID_CARD_REDACTED in content
    assert '"owner_id":"owner-7788"' in content


@pytest.mark.parametrize(
    "text, expected",
    [
        ("电话13812345678", f"电话{PHONE_REDACTED}"),
        ("+86 138-1234-5678", PHONE_REDACTED),
        ("座机 0755-8888666", f"座机 {PHONE_REDACTED}"),
        ("证件 44030419900101123X 已核", f"证件 {ID_CARD_REDACTED} 已核"),
        ("房号1201,损失800元,单号20261102", "房号1201,损失800元,单号20261102"),
        ("编号A13812345678B", "编号A13812345678B".replace("13812345678", PHONE_REDACTED)),
    ],
)
def test_redaction_of_personal_numbers(text: str, expected: str) -> None:
    assert redact_personal_numbers(text) == expected


def test_progress_note_before_any_reopen_stays_in_round_one() -> None:
    form = assemble_form(complaint_events()[:7])
    assert len(form.rounds) == 1 and form.rounds[0].progress_updates


def test_callback_overdue_is_kept_with_its_callback() -> None:
    events = complaint_events()[:13] + [
        ev(CallbackOverdue(ticket_id=TICKET, callback_id="cb-1", round=1, due_at=at(10, 17, 30)), at(10, 17, 31)),
        ev(CallbackOverdue(ticket_id=TICKET, callback_id="cb-1", round=1, due_at=at(10, 17, 30)), at(10, 18, 0), n=2),
    ]
    (callback,) = assemble_form(events).rounds[0].callbacks
    assert callback.overdue_at == at(10, 17, 31) and callback.answers == ()


def test_a_closure_followed_by_a_reopen_is_not_closed() -> None:
    events = complaint_events()
    closed_early = ev(Closed(ticket_id=TICKET, round=1, closed_by="cs-01", reason="无回访途径,一个月内未再反映"), at(7, 14, 0))
    form = assemble_form(events[:14] + [closed_early] + [events[14]])
    assert form.rounds[0].closure is not None
    assert form.closure is None and not form.is_closed
    with pytest.raises(RuleViolation) as refused:
        check_archivable(form)
    assert refused.value.code == "not_closed"
    check_archivable(assemble_form(events))  # the whole story is closed


def test_canonical_bytes_are_sorted_compact_utf8_and_round_trip(form: ArchivedForm) -> None:
    content = canonical_bytes(form)
    parsed = json.loads(content.decode("utf-8"))
    assert content == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert "楼上漏水".encode("utf-8") in content and b"\\u" not in content
    assert b", " not in content and b": " not in content and b"\n" not in content
    assert canonical_bytes(form_from_bytes(content)) == content
    assert form_from_bytes(content) == form


# --- hash chain ---------------------------------------------------------------------------


def build_chain(n: int, estate: str = ESTATE) -> list[ChainRecord]:
    records: list[ChainRecord] = []
    last = None
    for i in range(1, n + 1):
        previous, sequence = (genesis_hash(estate), 1) if last is None else (last.stored_hash, last.sequence + 1)
        content = json.dumps({"record": i, "text": f"会签单 {i}"}, ensure_ascii=False).encode()
        last = seal_record(previous, sequence, record_number(estate, 2026, i), content)
        records.append(last)
    return records


def test_hash_formulas_are_the_documented_ones() -> None:
    assert genesis_hash("hx01") == hashlib.sha256(b"estatedesk:hx01:genesis").hexdigest()
    assert genesis_hash("hx01") != genesis_hash("hx02")
    assert content_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    expected = hashlib.sha256(f"{'a' * 64}|7|HX01-DA-2026-000007|{'b' * 64}".encode()).hexdigest()
    assert chain_hash("a" * 64, 7, "HX01-DA-2026-000007", "b" * 64) == expected
    first = build_chain(1)[0]
    assert first.previous_hash == genesis_hash(ESTATE) and first.sequence == 1


def test_an_intact_chain_verifies() -> None:
    chain = build_chain(5)
    result = verify_chain(chain, estate=ESTATE)
    assert result.ok and result.first_broken is None and result.records_checked == 5
    assert verify_chain(list(reversed(chain)), estate=ESTATE).ok  # storage order does not matter
    assert verify_chain([], estate=ESTATE).ok


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_altered_byte_of_content_is_pinned_to_its_record(data: st.DataObject) -> None:
    chain = build_chain(6)
    index = data.draw(st.integers(0, len(chain) - 1))
    content = bytearray(chain[index].content)
    position = data.draw(st.integers(0, len(content) - 1))
    content[position] ^= data.draw(st.integers(1, 255))
    chain[index] = chain[index].model_copy(update={"content": bytes(content)})
    result = verify_chain(chain, estate=ESTATE)
    assert not result.ok
    assert result.first_broken == chain[index].record_number
    assert "content altered" in result.reason


def test_altered_content_hash_stored_hash_or_link_is_detected_at_that_record() -> None:
    for field, value, reason in (
        ("content_hash", "f" * 64, "content altered"),
        ("stored_hash", "f" * 64, "record hash does not recompute"),
        ("previous_hash", "f" * 64, "broken link"),
    ):
        chain = build_chain(4)
        chain[2] = chain[2].model_copy(update={field: value})
        result = verify_chain(chain, estate=ESTATE)
        assert (result.ok, result.first_broken) == (False, "HX01-DA-2026-000003"), field
        assert reason in result.reason


def test_a_record_linking_to_the_wrong_predecessor_breaks_the_chain() -> None:
    chain = build_chain(4)
    # Re-seal record 3 on top of record 1: itself consistent, but not linked to record 2.
    chain[2] = seal_record(chain[0].stored_hash, 3, chain[2].record_number, chain[2].content)
    result = verify_chain(chain)
    assert result.first_broken == "HX01-DA-2026-000003" and "broken link" in result.reason


def test_first_record_must_start_from_the_estates_genesis() -> None:
    foreign = build_chain(3, estate="hx02")
    relabelled = [r.model_copy(update={"record_number": r.record_number.replace("HX02", "HX01")}) for r in foreign]
    result = verify_chain(relabelled, estate=ESTATE)
    assert result.first_broken == "HX01-DA-2026-000001" and "genesis" in result.reason


def test_a_gap_in_the_sequence_is_detected() -> None:
    chain = build_chain(5)
    del chain[2]
    result = verify_chain(chain, estate=ESTATE)
    assert (result.ok, result.first_broken) == (False, "HX01-DA-2026-000004")
    assert "sequence 3 missing" in result.reason
    headless = build_chain(3)[1:]
    assert verify_chain(headless).first_broken == "HX01-DA-2026-000002"


def test_duplicate_sequence_or_record_number_is_detected() -> None:
    chain = build_chain(3)
    twin = chain[1].model_copy(update={"record_number": "HX01-DA-2026-000099"})
    result = verify_chain(chain + [twin], estate=ESTATE)
    assert not result.ok and "appears twice" in result.reason
    chain = build_chain(3)
    chain[2] = seal_record(chain[1].stored_hash, 3, chain[1].record_number, chain[2].content)
    result = verify_chain(chain, estate=ESTATE)
    assert result.first_broken == chain[1].record_number and "appears twice" in result.reason


def test_relabelling_or_swapping_records_is_detected() -> None:
    chain = build_chain(3)
    chain[1] = chain[1].model_copy(update={"record_number": "HX01-DA-2026-000777"})
    assert verify_chain(chain, estate=ESTATE).first_broken == "HX01-DA-2026-000777"
    chain = build_chain(3)
    a, b = chain[1], chain[2]
    chain[1] = a.model_copy(update={"sequence": 3})
    chain[2] = b.model_copy(update={"sequence": 2})
    result = verify_chain(chain, estate=ESTATE)
    assert not result.ok and result.first_broken == b.record_number


def test_destroyed_records_keep_the_chain_verifiable() -> None:
    chain = build_chain(5)
    chain[1] = tombstone(chain[1])
    chain[3] = tombstone(chain[3])
    assert chain[1].content is None and chain[1].destroyed
    assert verify_chain(chain, estate=ESTATE).ok
    # A destroyed record's hashes are still guarded.
    chain[1] = chain[1].model_copy(update={"content_hash": "0" * 64})
    assert verify_chain(chain, estate=ESTATE).first_broken == chain[1].record_number


def test_destruction_must_be_logged_and_complete_when_a_log_is_given() -> None:
    chain = build_chain(3)
    chain[1] = tombstone(chain[1])
    result = verify_chain(chain, estate=ESTATE, destruction_log=[])
    assert result.first_broken == chain[1].record_number and "without a destruction log entry" in result.reason
    entry = check_destruction(
        _record(sequence=2, number=chain[1].record_number, content=chain[1].content_hash),
        at(1, year=2030), "gm-1", {"general_manager"}, "GM-2030-001",
    )
    assert verify_chain(chain, estate=ESTATE, destruction_log=[entry]).ok
    wrong = entry.model_copy(update={"content_hash": "e" * 64})
    assert "another content hash" in verify_chain(chain, estate=ESTATE, destruction_log=[wrong]).reason


def test_half_destroyed_and_missing_content_are_detected() -> None:
    chain = build_chain(3)
    chain[1] = chain[1].model_copy(update={"destroyed": True})
    assert "still holds its content" in verify_chain(chain).reason
    chain = build_chain(3)
    chain[1] = chain[1].model_copy(update={"content": None})
    result = verify_chain(chain)
    assert result.first_broken == chain[1].record_number and "content missing" in result.reason


def test_a_full_rewrite_of_the_tail_is_caught_by_the_published_anchors() -> None:
    chain = build_chain(4)
    anchors = {r.record_number: r.content_hash for r in chain}
    forged = list(chain[:1])
    for original in chain[1:]:
        content = original.content.replace("会签单".encode(), "伪造单".encode()) if original.sequence == 2 else original.content
        forged.append(seal_record(forged[-1].stored_hash, original.sequence, original.record_number, content))
    assert verify_chain(forged, estate=ESTATE).ok  # the chain alone cannot know
    result = verify_chain(forged, estate=ESTATE, anchors=anchors)
    assert result.first_broken == "HX01-DA-2026-000002" and "published" in result.reason


# --- numbering, months, quarters, volumes -----------------------------------------------


def test_record_numbers() -> None:
    assert record_number("hx01", 2026, 1) == "HX01-DA-2026-000001"
    assert record_number("north-gate", 2027, 999_999) == "NORTH-GATE-DA-2027-999999"
    assert parse_record_number("HX01-DA-2026-000042") == ("HX01", 2026, 42)
    for bad in ((2026, 0), (2026, 1_000_000), (26, 1)):
        with pytest.raises(ValueError):
            record_number("hx01", *bad)
    with pytest.raises(ValueError):
        parse_record_number("HX01-2026-000042")


def test_closed_month_is_the_local_month_of_closing() -> None:
    # 16:30 UTC on 30 November is 00:30 on 1 December in Shanghai.
    assert closed_month(dt.datetime(2026, 11, 30, 16, 30, tzinfo=UTC), "Asia/Shanghai") == "2026-12"
    assert closed_month(dt.datetime(2026, 11, 30, 15, 59, tzinfo=UTC), "Asia/Shanghai") == "2026-11"
    with pytest.raises(ValueError):
        closed_month(dt.datetime(2026, 11, 30), "Asia/Shanghai")


def test_a_ticket_spanning_months_goes_with_the_month_it_closes() -> None:
    events = complaint_events()
    events[0] = ev(Accepted.model_validate({**events[0].data, "received_at": at(30, 17, 0, month=10).isoformat()}),
                   at(30, 17, 0, month=10))
    form = assemble_form(events)
    assert closed_month(form.closed_at, form.timezone) == "2026-11"


@pytest.mark.parametrize(
    "month, quarter",
    [("2026-01", "2026Q1"), ("2026-03", "2026Q1"), ("2026-04", "2026Q2"), ("2026-06", "2026Q2"),
     ("2026-07", "2026Q3"), ("2026-09", "2026Q3"), ("2026-10", "2026Q4"), ("2026-12", "2026Q4")],
)
def test_quarter_of(month: str, quarter: str) -> None:
    assert quarter_of(month) == quarter
    assert month in months_of_quarter(quarter)


def test_quarter_inputs_are_validated() -> None:
    for bad in ("2026-13", "2026-1", "26-01"):
        with pytest.raises(ValueError):
            quarter_of(bad)
    with pytest.raises(ValueError):
        months_of_quarter("2026Q5")
    assert months_of_quarter("2026Q4") == ("2026-10", "2026-11", "2026-12")


def _record(
    sequence: int = 1,
    number: str | None = None,
    cls: RetentionClass = RetentionClass.ordinary,
    month: str = "2026-11",
    archived: dt.datetime | None = None,
    content: str = "c" * 64,
    destroyed: bool = False,
    estate: str = ESTATE,
) -> ArchivedRecord:
    return ArchivedRecord(
        estate=estate, sequence=sequence, record_number=number or record_number(estate, 2026, sequence),
        ticket_id=f"T-{sequence}", form_number=f"F-{sequence}", kind=Kind.repair, title=f"报修 {sequence}",
        closed_month=month, retention_class=cls, archived_at=archived or at(1, 10, 0, month=12),
        content_hash=content, destroyed=destroyed,
    )


def quarter_records() -> list[ArchivedRecord]:
    classes = [RetentionClass.ordinary] * 5 + [RetentionClass.important_event] * 2 + [RetentionClass.company_handled] * 3
    months = ["2026-12", "2026-10", "2026-11"]
    return [_record(i + 1, cls=cls, month=months[i % 3]) for i, cls in enumerate(classes)]


def test_volumes_keep_one_retention_class_each_with_catalogues() -> None:
    policy = effective_policy({"archive": {"volume_max_items": 2}})
    plan = assign_volumes(quarter_records(), quarter="2026Q4", policy=policy)
    numbers = [v.catalogue.volume_number for v in plan.volumes]
    assert numbers == [f"HX01-2026Q4-V{i:02d}" for i in range(1, 7)]
    assert [v.catalogue.retention_class for v in plan.volumes] == [
        RetentionClass.ordinary] * 3 + [RetentionClass.important_event] + [RetentionClass.company_handled] * 2
    assert [v.catalogue.item_count for v in plan.volumes] == [2, 2, 1, 2, 2, 1]
    for volume in plan.volumes:
        assert [i.item_number for i in volume.items] == list(range(1, len(volume.items) + 1))
        assert {i.volume_number for i in volume.items} == {volume.catalogue.volume_number}
        assert volume.catalogue.first_record == volume.items[0].record_number
        assert volume.catalogue.last_record == volume.items[-1].record_number
    # Within a class: closing month, then record number.
    ordinary = [i for v in plan.volumes[:3] for i in v.items]
    assert [(i.closed_month, i.record_number) for i in ordinary] == sorted((i.closed_month, i.record_number) for i in ordinary)
    general = {g.retention_class: g for g in plan.general_catalogue}
    assert general[RetentionClass.ordinary].item_count == 5
    assert general[RetentionClass.ordinary].volume_numbers == tuple(numbers[:3])
    assert general[RetentionClass.important_event].retention_years == 10
    assert general[RetentionClass.company_handled].custodian == "company_general_management"
    assert plan.volume_catalogue == tuple(v.catalogue for v in plan.volumes)
    assert "第四季度" in plan.volumes[0].catalogue.title and "保管期限3年" in plan.volumes[0].catalogue.title
    assert "第1卷/共3卷" in plan.volumes[0].catalogue.title


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_volume_plan_is_deterministic(rng: random.Random) -> None:
    records = quarter_records()
    expected = assign_volumes(records, quarter="2026Q4")
    shuffled = list(records)
    rng.shuffle(shuffled)
    assert assign_volumes(shuffled, quarter="2026Q4") == expected
    assert assign_volumes(records, quarter="2026Q4") == expected


def test_destroyed_records_keep_their_place_in_the_volumes() -> None:
    records = quarter_records()
    before = assign_volumes(records, quarter="2026Q4")
    records[0] = records[0].model_copy(update={"destroyed": True})
    after = assign_volumes(records, quarter="2026Q4")
    flat = lambda plan: [(i.volume_number, i.item_number, i.record_number) for v in plan.volumes for i in v.items]  # noqa: E731
    assert flat(after) == flat(before)
    assert any(i.destroyed for v in after.volumes for i in v.items)


def test_volume_plan_refuses_foreign_months_estates_and_duplicates() -> None:
    with pytest.raises(ValueError, match="did not close in 2026Q4"):
        assign_volumes([_record(1, month="2027-01")], quarter="2026Q4")
    with pytest.raises(ValueError, match="several estates"):
        assign_volumes([_record(1), _record(2, estate="hx02")], quarter="2026Q4")
    with pytest.raises(ValueError, match="twice"):
        assign_volumes([_record(1), _record(1)], quarter="2026Q4")
    assert assign_volumes([], quarter="2026Q4").volumes == ()


# --- retention -----------------------------------------------------------------------------


def test_retention_classes(form: ArchivedForm) -> None:
    assert retention_class(form, marked_important=False, handled_by_company=False) == RetentionClass.ordinary
    assert retention_class(form, marked_important=True, handled_by_company=True) == RetentionClass.important_event
    assert retention_class(form, marked_important=False, handled_by_company=True) == RetentionClass.company_handled
    company = form.model_copy(update={"intake": form.intake.model_copy(update={"accepted_by": AcceptedBy.company})})
    assert retention_class(company, False, False) == RetentionClass.company_handled


def test_escalation_to_the_general_manager_makes_an_important_event() -> None:
    events = complaint_events() + [
        ev(Escalated(ticket_id=TICKET, round=2, rung="general_manager", reason="重大影响"), at(8, 9, 0)),
    ]
    assert retention_class(assemble_form(events), False, False) == RetentionClass.important_event
    policy = effective_policy(estate_overrides={"archive": {"important_event_rungs": []}})
    assert retention_class(assemble_form(events), False, False, policy) == RetentionClass.ordinary


def test_retention_expiry_boundaries() -> None:
    archived = dt.datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI)
    assert retention_expires(archived, RetentionClass.ordinary) == dt.datetime(2029, 12, 1, 10, 0, tzinfo=SHANGHAI)
    assert retention_expires(archived, RetentionClass.company_handled).year == 2031
    assert retention_expires(archived, RetentionClass.important_event).year == 2036
    leap = dt.datetime(2028, 2, 29, 12, 0, tzinfo=SHANGHAI)
    assert retention_expires(leap, RetentionClass.ordinary) == dt.datetime(2031, 2, 28, 12, 0, tzinfo=SHANGHAI)
    longer = effective_policy({"archive": {"retention_years_ordinary": 5}})
    assert retention_expires(archived, RetentionClass.ordinary, longer).year == 2031
    next_year = effective_policy({"archive": {"retention_starts": "next_january_first"}})
    expires = retention_expires(archived, RetentionClass.ordinary, next_year)
    assert expires.replace(tzinfo=None) == dt.datetime(2030, 1, 1) and expires.utcoffset() == dt.timedelta(hours=8)
    with pytest.raises(ValueError):
        retention_expires(dt.datetime(2026, 12, 1), RetentionClass.ordinary)


def test_archived_record_from_a_closed_form(form: ArchivedForm) -> None:
    content = canonical_bytes(form)
    record = archived_record(
        form, sequence=1, record_number="HX01-DA-2026-000001", retention_class=RetentionClass.ordinary,
        archived_at=at(1, month=12), content_hash=content_hash(content),
    )
    assert record.closed_month == "2026-11" and record.kind == Kind.complaint
    assert record.title.startswith("投诉(3栋1201):楼上漏水")
    open_form = assemble_form(complaint_events()[:5])
    with pytest.raises(RuleViolation):
        archived_record(open_form, sequence=2, record_number="HX01-DA-2026-000002",
                        retention_class=RetentionClass.ordinary, archived_at=at(1, month=12), content_hash="0" * 64)


# --- lending register --------------------------------------------------------------------

NOW = dt.datetime(2027, 1, 4, 10, 0, tzinfo=SHANGHAI)
CS = Person("cs-01", frozenset({"customer_service"}), frozenset({ESTATE}))
CS_OTHER_ESTATE = Person("cs-77", frozenset({"customer_service"}), frozenset({"hx02"}))
ENGINEER = Person("eng-3", frozenset({"engineering"}), frozenset({ESTATE}))
MANAGER = Person("mgr-1", frozenset({"estate_manager"}), frozenset({ESTATE}))
DIRECTOR = Person("dir-1", frozenset({"estate_director"}), frozenset({ESTATE}))
OTHER_MANAGER = Person("mgr-2", frozenset({"estate_manager"}), frozenset({"hx02"}))
LAWYER = Person("ext-lawyer", frozenset(), frozenset(), external=True, organisation="某律师事务所")


def request(borrower: Person, mode: str = "consult", approver: Person | None = None, reference: str | None = None,
            purpose: str = "核查投诉处理过程", record: ArchivedRecord | None = None, policy=DEFAULT_POLICY):
    return check_loan_request(
        loan_id="L-1", record=record or _record(), borrower=borrower, purpose=purpose, mode=mode, now=NOW,
        approver=approver, approval_reference=reference, policy=policy,
    )


def test_customer_service_staff_register_themselves_to_consult() -> None:
    entry = request(CS)
    assert entry.basis == AccessBasis.custodian and entry.approved_by is None
    assert entry.mode == LoanMode.consult and entry.due_back is None
    assert entry.valid_until == NOW + dt.timedelta(hours=DEFAULT_POLICY.archive.consult_hours)
    assert (entry.borrower, entry.purpose, entry.registered_at) == ("cs-01", "核查投诉处理过程", NOW)
    assert may_read(CS, ESTATE, entry.record_number, entry, NOW + dt.timedelta(hours=1))


def _refusal(code: str, *args, **kwargs) -> RuleViolation:
    with pytest.raises(RuleViolation) as refused:
        request(*args, **kwargs)
    assert refused.value.code == code
    assert refused.value.reason and str(refused.value) == refused.value.reason
    return refused.value


def test_other_staff_need_the_estate_managers_approval() -> None:
    assert "director or manager" in _refusal("approval_required", ENGINEER).reason
    _refusal("approval_required", CS_OTHER_ESTATE)  # customer service of another estate is "other staff"
    _refusal("approver_not_authorised", ENGINEER, approver=CS)
    _refusal("approver_not_authorised", ENGINEER, approver=OTHER_MANAGER)
    entry = request(ENGINEER, approver=MANAGER)
    assert entry.basis == AccessBasis.manager_approval and entry.approved_by == "mgr-1"
    assert request(ENGINEER, approver=DIRECTOR).approved_by == "dir-1"


def test_nobody_approves_their_own_access() -> None:
    _refusal("self_approval", MANAGER, approver=MANAGER)
    assert request(MANAGER, approver=DIRECTOR).basis == AccessBasis.manager_approval


@pytest.mark.parametrize("mode", ["loan", "copy", "export"])
def test_loans_copies_and_exports_need_written_approval_even_for_customer_service(mode: str) -> None:
    _refusal("approval_required", CS, mode=mode)
    assert "written approval" in _refusal("written_approval_required", CS, mode=mode, approver=MANAGER).reason
    _refusal("written_approval_required", CS, mode=mode, approver=MANAGER, reference="   ")
    entry = request(CS, mode=mode, approver=MANAGER, reference="批-2027-003")
    assert entry.basis == AccessBasis.written_approval and entry.approval_reference == "批-2027-003"


def test_loan_due_back_follows_policy() -> None:
    entry = request(ENGINEER, mode="loan", approver=MANAGER, reference="批-1")
    assert entry.due_back == NOW + dt.timedelta(days=7) and entry.valid_until == entry.due_back
    longer = effective_policy(estate_overrides={"archive": {"loan_days": 14}})
    assert request(ENGINEER, mode="loan", approver=MANAGER, reference="批-1", policy=longer).due_back == NOW + dt.timedelta(days=14)
    copy = request(ENGINEER, mode="copy", approver=MANAGER, reference="批-1")
    assert copy.due_back is None


def test_people_outside_the_company_need_written_approval_with_its_reference() -> None:
    _refusal("approval_required", LAWYER)
    _refusal("written_approval_required", LAWYER, approver=MANAGER)
    entry = request(LAWYER, approver=MANAGER, reference="书面批准 2027-01")
    assert entry.basis == AccessBasis.written_approval and entry.borrower_external
    assert entry.borrower_organisation == "某律师事务所"
    impostor = Person("ext-2", frozenset({"estate_manager"}), frozenset({ESTATE}), external=True)
    _refusal("approver_not_authorised", LAWYER, approver=impostor, reference="x")
    # An outsider holding a customer-service role label is still an outsider.
    _refusal("approval_required", Person("ext-3", frozenset({"customer_service"}), frozenset({ESTATE}), external=True))


def test_register_needs_purpose_a_known_mode_and_a_living_record() -> None:
    _refusal("purpose_required", CS, purpose="  ")
    _refusal("unknown_mode", CS, mode="borrow")
    _refusal("record_destroyed", CS, record=_record(destroyed=True))


def test_nothing_is_readable_without_a_register_entry() -> None:
    decision = may_read(CS, ESTATE, "HX01-DA-2026-000001", None, NOW)
    assert not decision and "no register entry" in decision.reason


def test_a_register_entry_serves_only_its_person_record_and_time() -> None:
    entry = request(CS)
    number = entry.record_number
    cases = [
        (may_read(CS, ESTATE, "HX01-DA-2026-000002", entry, NOW), "not HX01-DA-2026-000002"),
        (may_read(CS, "hx02", number, entry, NOW), "is for record"),
        (may_read(ENGINEER, ESTATE, number, entry, NOW), "someone else"),
        (may_read(CS, ESTATE, number, entry, NOW - dt.timedelta(minutes=1)), "not in force yet"),
        (may_read(CS, ESTATE, number, entry, entry.valid_until), "expired"),
        (may_read(CS, ESTATE, number, return_loan(entry, NOW + dt.timedelta(minutes=5)), NOW + dt.timedelta(minutes=6)), "returned"),
    ]
    for decision, reason in cases:
        assert not decision and reason in decision.reason
    assert may_read(CS, ESTATE, number, entry, entry.valid_until - dt.timedelta(seconds=1))
    moved = Person("cs-01", frozenset({"customer_service"}), frozenset({"hx02"}))
    decision = may_read(moved, ESTATE, number, entry, NOW)
    assert not decision and "customer-service staff of estate" in decision.reason


def test_an_approved_entry_stays_readable_without_custodian_roles() -> None:
    entry = request(ENGINEER, approver=MANAGER)
    assert may_read(ENGINEER, ESTATE, entry.record_number, entry, NOW + dt.timedelta(hours=2))
    loan = request(ENGINEER, mode="loan", approver=MANAGER, reference="批-1")
    late = may_read(ENGINEER, ESTATE, loan.record_number, loan, loan.due_back)
    assert not late and "overdue" in late.reason


def test_overdue_and_outstanding_loans() -> None:
    def loan(loan_id: str, borrower: Person, days_ago: int, mode: str = "loan") -> object:
        return check_loan_request(
            loan_id=loan_id, record=_record(), borrower=borrower, purpose="复核", mode=mode,
            now=NOW - dt.timedelta(days=days_ago), approver=MANAGER, approval_reference="批-9",
        )

    a, b, c, d = loan("A", ENGINEER, 10), loan("B", CS, 8), loan("C", ENGINEER, 7), loan("D", ENGINEER, 9, "copy")
    returned = return_loan(loan("E", ENGINEER, 12), NOW - dt.timedelta(days=1))
    loans = [c, returned, b, a, d]
    assert [e.loan_id for e in overdue_loans(loans, NOW)] == ["A", "B"]  # C is due exactly now: not late yet
    assert [e.loan_id for e in overdue_loans(loans, NOW + dt.timedelta(seconds=1))] == ["A", "B", "C"]
    assert [e.loan_id for e in outstanding_loans(loans, "eng-3")] == ["A", "C"]
    assert [e.loan_id for e in outstanding_loans(loans)] == ["A", "B", "C"]  # everyone's, oldest first
    with pytest.raises(RuleViolation, match="already"):
        return_loan(returned, NOW)


# --- destruction ---------------------------------------------------------------------------


def test_destruction_is_refused_before_retention_expires() -> None:
    record = _record(archived=dt.datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI))
    expiry = dt.datetime(2029, 12, 1, 10, 0, tzinfo=SHANGHAI)
    with pytest.raises(RuleViolation) as refused:
        check_destruction(record, expiry - dt.timedelta(seconds=1), "gm-1", {"general_manager"}, "GM-1")
    assert refused.value.code == "retention_not_expired" and "2029-12-01" in refused.value.reason
    entry = check_destruction(record, expiry, "gm-1", {"general_manager"}, "GM-1")
    assert entry.retention_expired_at == expiry and entry.destroyed_at == expiry
    important = record.model_copy(update={"retention_class": RetentionClass.important_event})
    with pytest.raises(RuleViolation, match="kept until 2036"):
        check_destruction(important, expiry, "gm-1", {"general_manager"}, "GM-1")


def test_destruction_needs_the_general_managers_approval_and_its_reference() -> None:
    record = _record(archived=dt.datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI))
    later = dt.datetime(2030, 1, 1, tzinfo=SHANGHAI)
    for roles in (set(), {"estate_manager"}, {"estate_director", "quality_manager"}):
        with pytest.raises(RuleViolation) as refused:
            check_destruction(record, later, "someone", roles, "REF-1")
        assert refused.value.code == "general_manager_approval_required" and "general manager" in refused.value.reason
    with pytest.raises(RuleViolation) as refused:
        check_destruction(record, later, "gm-1", {"general_manager"}, " ")
    assert refused.value.code == "approval_reference_required"


def test_destruction_refuses_destroyed_and_lent_records_and_logs_the_rest() -> None:
    record = _record(archived=dt.datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI), content="d" * 64)
    later = dt.datetime(2030, 1, 1, tzinfo=SHANGHAI)
    with pytest.raises(RuleViolation, match="already destroyed"):
        check_destruction(record.model_copy(update={"destroyed": True}), later, "gm-1", {"general_manager"}, "R")
    out = check_loan_request(loan_id="L-9", record=record, borrower=ENGINEER, purpose="审计", mode="loan",
                             now=later - dt.timedelta(days=1), approver=MANAGER, approval_reference="批")
    with pytest.raises(RuleViolation) as refused:
        check_destruction(record, later, "gm-1", {"general_manager"}, "R", open_loans=[out])
    assert refused.value.code == "on_loan" and "L-9" in refused.value.reason
    entry = check_destruction(record, later, "gm-1", {"general_manager"}, " GM-2030-7 ",
                              open_loans=[return_loan(out, later)])
    assert (entry.record_number, entry.approved_by, entry.approval_reference) == (record.record_number, "gm-1", "GM-2030-7")
    assert entry.content_hash == "d" * 64 and entry.ticket_id == record.ticket_id and "shredded" in entry.method
    policy = effective_policy({"archive": {"destruction_approver_roles": ["general_manager", "chairman"]}})
    assert check_destruction(record, later, "ch-1", {"chairman"}, "R", policy)


# --- printed form ---------------------------------------------------------------------------

RECORD = "HX01-DA-2026-000001"


def test_html_form_is_laid_out_like_the_paper_form(form: ArchivedForm) -> None:
    digest = content_hash(canonical_bytes(form))
    page = render.form_html(form, RECORD, digest)
    assert page.startswith("<!DOCTYPE html>") and 'charset="utf-8"' in page
    for text in ("业主(住户)服务登记会签单", RECORD, digest, form.form_number, "受理", "有效性判定", "派工/签收",
                 "处理意见与结果", "回访", "结案", "第2轮", "来访事由", "楼上漏水", "工程部", "保洁部",
                 "业主反映天花板仍有水渍", "owner-7788", "王芳", "来访", "投诉"):
        assert text in page, text
    # Times print in the estate's local time.
    assert "2026-11-02 08:55" in page and "2026-11-10 10:05" in page
    assert page.index("受理") < page.index("有效性判定") < page.index("派工/签收") < page.index("处理意见与结果") < page.index("五、回访") < page.index("结案")


def test_html_escapes_what_owners_wrote() -> None:
    form = assemble_form(complaint_events(description='<script>alert("x")</script> & 漏水'))
    page = render.form_html(form, RECORD, "0" * 64)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&amp; 漏水" in page


def test_pdf_text_extracts_with_number_hash_and_chinese(form: ArchivedForm) -> None:
    digest = content_hash(canonical_bytes(form))
    pdf = render.form_pdf(form, RECORD, digest)
    assert pdf.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    for expected in (RECORD, digest, form.form_number, "会签单", "受理", "处理意见与结果", "楼上漏水", "业主满意"):
        assert expected in text, expected
    assert reader.metadata.title == f"业主(住户)服务登记会签单 {RECORD}"


def test_pdf_is_reproducible(form: ArchivedForm) -> None:
    digest = content_hash(canonical_bytes(form))
    assert render.form_pdf(form, RECORD, digest) == render.form_pdf(form, RECORD, digest)


def test_pdf_of_an_open_single_round_form() -> None:
    form = assemble_form(complaint_events()[:3])
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(render.form_pdf(form, RECORD, "a" * 64))).pages)
    assert "未结案" in text and "第2轮" not in text and "a" * 64 in text


def test_pdf_runs_a_long_description_over_pages_and_keeps_markup_as_text() -> None:
    description = "天花板大面积渗水," * 400 + "<b>业主</b> & 物业 结尾"
    form = assemble_form(complaint_events(description=description))
    reader = PdfReader(io.BytesIO(render.form_pdf(form, RECORD, "b" * 64)))
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert len(reader.pages) > 2
    assert "<b>业主</b> & 物业 结尾" in text and "业主满意" in text


def test_addenda_hang_from_their_record_and_any_change_breaks_them():
    from services.archive.rules import AddendumLink, addendum_content, addendum_hash, content_hash, verify_addenda

    def chain(record_hash, contents):
        links, previous = [], record_hash
        for number, content in enumerate(contents, start=1):
            digest = content_hash(content)
            stored = addendum_hash(previous, "R-1", number, digest)
            links.append(AddendumLink(number, content, digest, previous, stored))
            previous = stored
        return links

    contents = [addendum_content({"id": "e1", "b": 1}), addendum_content({"id": "e2"})]
    links = chain("h" * 64, contents)
    assert verify_addenda("R-1", "h" * 64, links) is None
    assert "not linked" in verify_addenda("R-1", "x" * 64, links)
    altered = [links[0], AddendumLink(2, b"{}", links[1].content_hash, links[1].previous_hash, links[1].stored_hash)]
    assert "addendum 2 of R-1: content altered" in verify_addenda("R-1", "h" * 64, altered)
    assert "out of turn" in verify_addenda("R-1", "h" * 64, [links[1]])
    assert addendum_content({"b": 1, "a": "楼"}) == '{"a":"楼","b":1}'.encode()
