"""Archive rules the service shell leans on: refusal statuses, the archive's calendar,
monthly manifests, supplementary volumes, and auditing the stored archive beyond the
chain (head, catalogue, anchors)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.archive import rules
from services.archive.rules import (
    Anchor,
    RetentionClass,
    RuleViolation,
    archived_record,
    assemble_form,
    assign_volumes,
    canonical_bytes,
    check_destruction,
    check_loan_request,
    check_period_over,
    genesis_hash,
    handled_by_company,
    month_manifest,
    ManifestLine,
    period_end,
    record_number,
    scheduled_run_due,
    seal_record,
    supplementary_plan,
    tombstone,
    verify_archive,
)
from shared.errors import RuleViolation as SharedRuleViolation
from shared.events import Escalated
from shared.policy import effective_policy
from tests.unit.test_archive_rules import ENGINEER, LAWYER, TICKET, _record, at, complaint_events, ev

SHANGHAI = "Asia/Shanghai"


# --- refusals answer with the right HTTP status ---------------------------------------------


def test_archive_refusals_are_shared_rule_violations_with_statuses() -> None:
    record = _record()
    with pytest.raises(SharedRuleViolation) as missing_approval:
        check_loan_request(loan_id="L", record=record, borrower=ENGINEER, purpose="核查", mode="consult",
                           now=at(5, month=12))
    assert missing_approval.value.status == 403 and missing_approval.value.code == "approval_required"
    with pytest.raises(RuleViolation) as outsider:
        check_loan_request(loan_id="L", record=record, borrower=LAWYER, purpose="诉讼", mode="copy",
                           now=at(5, month=12))
    assert outsider.value.status == 403
    with pytest.raises(RuleViolation) as early:
        check_destruction(record, at(5, month=12), "gm", {"general_manager"}, "GM-1")
    assert early.value.status == 409 and early.value.code == "retention_not_expired"
    with pytest.raises(RuleViolation) as not_gm:
        check_destruction(record, at(5, month=12, year=2040), "qm", {"quality_manager"}, "GM-1")
    assert not_gm.value.status == 403
    with pytest.raises(RuleViolation) as bad_mode:
        check_loan_request(loan_id="L", record=record, borrower=ENGINEER, purpose="x", mode="borrow",
                           now=at(5, month=12))
    assert bad_mode.value.status == 422
    assert all(status in (403, 409, 422) for status in rules.REFUSAL_STATUS.values())


# --- the archive's calendar ---------------------------------------------------------------


def test_period_end_is_the_first_local_instant_after_it() -> None:
    assert period_end("2026-11", SHANGHAI).isoformat() == "2026-12-01T00:00:00+08:00"
    assert period_end("2026-12", SHANGHAI).isoformat() == "2027-01-01T00:00:00+08:00"
    assert period_end("2026Q4", SHANGHAI).isoformat() == "2027-01-01T00:00:00+08:00"
    assert period_end("2027Q1", "UTC").isoformat() == "2027-04-01T00:00:00+00:00"
    for bad in ("2026-13", "2026Q5", "Nov 2026"):
        with pytest.raises(ValueError):
            period_end(bad, SHANGHAI)


def test_a_period_is_organised_only_once_it_is_over() -> None:
    # 2026-11-30 23:59 in Shanghai is 15:59 UTC: November is not over there yet.
    just_before = dt.datetime(2026, 11, 30, 15, 59, tzinfo=dt.timezone.utc)
    with pytest.raises(RuleViolation) as refused:
        check_period_over("2026-11", just_before, SHANGHAI)
    assert refused.value.code == "period_not_over" and refused.value.status == 409
    check_period_over("2026-11", just_before + dt.timedelta(minutes=1), SHANGHAI)
    with pytest.raises(RuleViolation):
        check_period_over("2026Q4", dt.datetime(2026, 12, 31, 15, 59, tzinfo=dt.timezone.utc), SHANGHAI)


def test_the_schedule_waits_the_policy_grace_after_the_period() -> None:
    end = period_end("2026-11", SHANGHAI)
    assert not scheduled_run_due("2026-11", end + dt.timedelta(hours=23, minutes=59), SHANGHAI)
    assert scheduled_run_due("2026-11", end + dt.timedelta(hours=24), SHANGHAI)
    prompt = effective_policy(estate_overrides={"archive": {"organise_grace_hours": 0}})
    assert scheduled_run_due("2026-11", end, SHANGHAI, prompt)
    assert not scheduled_run_due("2026Q4", end + dt.timedelta(days=20), SHANGHAI, prompt)


def test_forms_the_company_handled_are_company_handled() -> None:
    form = assemble_form(complaint_events())
    assert not handled_by_company(form)
    taken_over = assemble_form(complaint_events() + [
        ev(Escalated(ticket_id=TICKET, round=2, rung="company_general_management", reason="超出管理处权限"),
           at(8, 9, 0)),
    ])
    assert handled_by_company(taken_over)
    assert rules.retention_class(taken_over, False, handled_by_company(taken_over)) == RetentionClass.company_handled
    none = effective_policy(estate_overrides={"archive": {"company_handled_rungs": []}})
    assert not handled_by_company(taken_over, none)


# --- monthly manifests and supplementary volumes ----------------------------------------------


def _line(n: int) -> ManifestLine:
    return ManifestLine(record_number=f"HX01-DA-2026-{n:06d}", sequence=n, ticket_id=f"T-{n}", form_number=f"F-{n}",
                        title="投诉", retention_class=RetentionClass.ordinary, archived_at=at(1, month=12),
                        content_hash="a" * 64, record_hash="b" * 64)


def test_month_manifest_is_ordered_and_its_digest_is_stable() -> None:
    one = month_manifest("hx01", "2026-11", 1, at(2, month=12), [_line(3), _line(1), _line(2)])
    two = month_manifest("hx01", "2026-11", 1, at(2, month=12), [_line(2), _line(3), _line(1)])
    assert [line.sequence for line in one.records] == [1, 2, 3]
    assert one.digest() == two.digest() and len(one.digest()) == 64
    assert month_manifest("hx01", "2026-11", 1, at(2, month=12), [_line(1)]).digest() != one.digest()
    with pytest.raises(ValueError):
        month_manifest("hx01", "2026-13", 1, at(2, month=12), [])


def test_supplementary_volumes_continue_the_quarters_numbering() -> None:
    records = [_record(i, month="2026-11") for i in (1, 2, 3)]
    plan = assign_volumes(records, quarter="2026Q4")
    assert supplementary_plan(plan, first_index=1, part=1) == plan
    later = supplementary_plan(plan, first_index=4, part=2)
    assert [v.catalogue.volume_number for v in later.volumes] == ["HX01-2026Q4-V04"]
    assert {i.volume_number for v in later.volumes for i in v.items} == {"HX01-2026Q4-V04"}
    assert later.general_catalogue[0].volume_numbers == ("HX01-2026Q4-V04",)
    assert "补充归档第2批" in later.volumes[0].catalogue.title
    assert [i.record_number for i in later.volumes[0].items] == [i.record_number for i in plan.volumes[0].items]


# --- auditing the stored archive --------------------------------------------------------------


def _archive(n: int = 3):
    """A chain of n real forms, with catalogue lines and anchors as the service stores them."""
    chain, catalogue, anchors = [], [], {}
    previous = genesis_hash("hx01")
    for i in range(1, n + 1):
        form = assemble_form(complaint_events(ticket=f"T-{i}", description=f"第{i}件:楼上漏水"))
        content = canonical_bytes(form)
        number = record_number("hx01", 2026, i)
        link = seal_record(previous, i, number, content)
        archived_at = at(11 + i, month=11)
        chain.append(link)
        catalogue.append(archived_record(form, sequence=i, record_number=number, retention_class=RetentionClass.ordinary,
                                         archived_at=archived_at, content_hash=link.content_hash))
        anchors[number] = Anchor(record_number=number, content_hash=link.content_hash, archived_at=archived_at)
        previous = link.stored_hash
    return chain, catalogue, anchors


def _verify(chain, catalogue, anchors, head="auto", log=()):
    if head == "auto":
        head = (chain[-1].sequence, chain[-1].stored_hash)
    return verify_archive(chain, catalogue, estate="hx01", head=head, destruction_log=list(log), anchors=anchors)


def test_an_intact_archive_verifies() -> None:
    chain, catalogue, anchors = _archive()
    result = _verify(chain, catalogue, anchors)
    assert result.ok and result.records_checked == 3 and result.first_broken is None
    assert verify_archive([], [], estate="hx01", head=(0, genesis_hash("hx01")), destruction_log=[], anchors={}).ok
    assert _verify(chain, catalogue, None).ok  # without the stream, the chain alone


def test_cutting_records_off_the_end_is_seen_by_the_head_and_by_the_anchors() -> None:
    chain, catalogue, anchors = _archive()
    head = (chain[-1].sequence, chain[-1].stored_hash)
    cut = _verify(chain[:2], catalogue[:2], None, head=head)
    assert not cut and cut.first_broken == chain[1].record_number and "removed from the end" in cut.reason
    # A forger who also rewinds the head is caught by the published anchors.
    rewound = _verify(chain[:2], catalogue[:2], anchors)
    assert not rewound and rewound.first_broken == chain[2].record_number
    assert "missing from the store" in rewound.reason


def test_catalogue_lines_must_say_what_the_content_says() -> None:
    chain, catalogue, anchors = _archive()
    for field, value in (("title", "表扬:一切都好"), ("closed_month", "2026-10"), ("ticket_id", "T-other")):
        forged = list(catalogue)
        forged[1] = forged[1].model_copy(update={field: value})
        result = _verify(chain, forged, anchors)
        assert not result and result.first_broken == chain[1].record_number and field in result.reason
    moved = list(catalogue)
    moved[2] = moved[2].model_copy(update={"archived_at": at(1, month=1, year=2020)})
    result = _verify(chain, moved, anchors)
    assert not result and result.first_broken == chain[2].record_number and "archiving time" in result.reason
    assert _verify(chain, moved, None).ok  # the archiving time is only pinned by the stream


def test_a_rewritten_record_with_recomputed_hashes_is_pinned_by_its_anchor() -> None:
    chain, catalogue, anchors = _archive()
    forged_form = assemble_form(complaint_events(ticket="T-2", description="第2件:一切正常"))
    content = canonical_bytes(forged_form)
    forged = [chain[0], seal_record(chain[0].stored_hash, 2, chain[1].record_number, content)]
    forged.append(seal_record(forged[1].stored_hash, 3, chain[2].record_number, chain[2].content))
    lines = [catalogue[0], catalogue[1].model_copy(update={"content_hash": forged[1].content_hash,
                                                           "title": rules.record_title(forged_form)}),
             catalogue[2].model_copy(update={"content_hash": forged[2].content_hash})]
    assert _verify(forged, lines, None).ok  # the chain alone is defeated by a full rewrite
    result = _verify(forged, lines, anchors)
    assert not result and result.first_broken == chain[1].record_number and "published" in result.reason


def test_a_destroyed_record_keeps_the_archive_verifiable() -> None:
    chain, catalogue, anchors = _archive()
    entry = check_destruction(catalogue[0], at(1, month=12, year=2030), "gm", {"general_manager"}, "GM-1")
    chain[0] = tombstone(chain[0])
    catalogue[0] = catalogue[0].model_copy(update={"destroyed": True})
    assert _verify(chain, catalogue, anchors, log=[entry]).ok
    unlogged = _verify(chain, catalogue, anchors, log=[])
    assert not unlogged and "destruction log" in unlogged.reason


# --- the full record content ----------------------------------------------------------------


def test_record_content_transfers_and_escalated_departments_are_archived_and_printed() -> None:
    from services.archive import render
    from shared.events import Accepted, Assigned

    events = complaint_events()
    accepted = events[0].payload().model_copy(update={
        "occurred_at": at(1, 22, 30), "cause": "楼上住户洗衣机排水管脱落,电话13912345678",
        "people": ["楼上住户 李先生 13700001111", "保安 张三"], "attachments": ["photo-001.jpg"],
        "owner_signature": "later",
    })
    events[0] = ev(Accepted.model_validate(accepted.model_dump()), events[0].time)
    events.append(ev(Assigned(ticket_id=TICKET, round=1, departments=["security"], assigned_by="eng-3",
                              transferred_from="engineering"), at(2, 9, 30)))
    events.append(ev(Escalated(ticket_id=TICKET, round=1, rung="department_head", reason="签收超时",
                               clock="acknowledge", department="security"), at(2, 10, 30)))
    form = assemble_form(events)
    intake = form.intake
    assert intake.occurred_at == at(1, 22, 30) and intake.owner_signature == "later"
    assert intake.attachments == ("photo-001.jpg",)
    assert "13912345678" not in intake.cause and rules.PHONE_REDACTED in intake.cause
    assert intake.people == (f"楼上住户 李先生 {rules.PHONE_REDACTED}", "保安 张三")
    assert [t.transferred_from for t in form.rounds[0].transfers] == [None, "engineering"]
    assert any(e.department == "security" for e in form.rounds[0].escalations)
    html = render.form_html(form, "HX01-DA-2026-000001", "a" * 64)
    for text in ("事发时间", "待补签", "洗衣机排水管脱落", "保安 张三", "photo-001.jpg", "(由工程部转来)", "签收超时"):
        assert text in html, text
    # Forms archived before these fields existed still read back (their bytes are never rewritten).
    import json
    old = json.loads(canonical_bytes(assemble_form(complaint_events())))
    for key in ("occurred_at", "cause", "people", "attachments", "owner_signature"):
        del old["intake"][key]
    assert rules.form_from_bytes(json.dumps(old, ensure_ascii=False).encode()).intake.people == ()
