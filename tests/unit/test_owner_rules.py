"""Owners' self-service rules (issue 15), without I/O: codes and the lock, limits, photo
checks, the owner's plain-word stages, and the owner's online callback answers deciding
like a desk callback."""

from __future__ import annotations

import base64
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from services.callback import rules as cb
from services.callback.rules import CallbackAnswers, CallbackPurpose
from services.intake import owner_rules as o
from shared.errors import RuleViolation
from shared.events import ReplyMethod
from shared.policy import DEFAULT_POLICY, OwnerPortalPolicy

NOW = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.timezone.utc)
SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = DEFAULT_POLICY.owners
KEY = "a-test-signing-key-of-at-least-32-bytes"
# A 1×1 PNG and the start of a JPEG, as a phone would send them.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 200


def test_codes_have_the_policys_digits_and_are_stored_keyed_per_unit():
    code = o.new_code(OwnerPortalPolicy(bind_code_digits=8))
    assert len(code) == 8 and code.isdigit()
    assert len(o.new_code(POLICY)) == POLICY.bind_code_digits
    stored = o.code_hash("k", "e1", "1-2-301", "123456")
    assert stored == o.code_hash("k", "e1", "1-2-301", " 123456 ")
    assert stored != o.code_hash("k", "e1", "1-2-302", "123456")  # another unit's code does not bind this one
    assert stored != o.code_hash("other key", "e1", "1-2-301", "123456")
    assert "123456" not in stored


def test_five_wrong_codes_in_a_row_lock_binding_for_the_policys_minutes():
    wrong, locked = 0, None
    for attempt in range(1, POLICY.bind_max_wrong_codes + 1):
        wrong, locked = o.after_wrong_code(wrong, NOW, POLICY)
        if attempt < POLICY.bind_max_wrong_codes:
            assert (wrong, locked) == (attempt, None)
    assert wrong == 0 and locked == NOW + dt.timedelta(minutes=POLICY.bind_lock_minutes)
    english, chinese = o.bind_locked(locked, NOW, SHANGHAI)
    assert "locked" in english and "10:30" in chinese  # 02:00 UTC + 30 min, shown in Shanghai
    assert o.bind_locked(locked, locked, SHANGHAI) is None
    assert o.bind_locked(None, NOW, SHANGHAI) is None
    # Per estate: a stricter policy locks sooner.
    assert o.after_wrong_code(1, NOW, OwnerPortalPolicy(bind_max_wrong_codes=2))[1] is not None


def test_the_first_used_up_limit_is_named():
    assert o.first_exceeded(o.Limit("a", "甲", 4, 5), o.Limit("b", "乙", 1, 5)) is None
    hit = o.first_exceeded(o.Limit("a", "甲", 4, 5), o.Limit("b", "乙", 5, 5))
    assert hit.what == "b"


def test_photos_are_checked_by_their_bytes_and_size():
    assert o.photo_problem(PNG, POLICY) is None and o.photo_type(PNG) == "image/png"
    assert o.photo_problem(JPEG, POLICY) is None and o.photo_type(JPEG) == "image/jpeg"
    assert "empty" in o.photo_problem(b"", POLICY)[0]
    english, chinese = o.photo_problem(b"%PDF-1.7\n" + b"x" * 100, POLICY)
    assert "application/pdf" in english and "JPEG" in chinese
    assert o.photo_problem(b"just text pretending to be a photo", POLICY) is not None
    big = JPEG + b"\x00" * (POLICY.photo_max_kib * 1024)
    assert "KiB" in o.photo_problem(big, POLICY)[0]
    assert o.photo_problem(PNG, OwnerPortalPolicy(photo_types=("image/jpeg",))) is not None


@pytest.mark.parametrize("current, round_, event, event_round, expected", [
    ("submitted", 1, "accepted", 1, "accepted"),
    ("accepted", 1, "assigned", 1, "dispatched"),
    ("dispatched", 1, "acknowledged", 1, None),  # not a step the owner sees
    ("dispatched", 1, "arrived", 1, "arrived"),
    ("arrived", 1, "assigned", 1, None),  # a transfer within the round is no step back
    ("arrived", 1, "completed", 1, "completed"),
    ("completed", 1, "callback_scheduled", 1, "callback"),
    ("callback", 1, "callback_scheduled", 1, None),  # a second callback of the round
    ("callback", 1, "reopened", 2, "dispatched"),  # not satisfied: round 2
    ("dispatched", 2, "completed", 1, None),  # a late event of round 1
    ("dispatched", 2, "reopened", 2, None),  # a redelivered reopen
    ("callback", 2, "closed", 2, "closed"),
    ("closed", 2, "reopened", 3, None),
])
def test_the_owner_sees_each_step_once_in_order(current, round_, event, event_round, expected):
    stage = o.next_stage(o.Stage(current), round_, event, event_round)
    assert (stage.value if stage else None) == expected


def test_plain_words_and_promised_times():
    assert [o.STAGE_WORDS[s] for s in o.STEPS] == ["受理", "派工", "到场", "处理完成", "回访", "已关闭"]
    due = NOW + dt.timedelta(hours=1)
    text = o.stage_message(o.Stage.dispatched, "E-2026-000001", 2, due, SHANGHAI, "工程部")
    assert "第 2 轮" in text and "工程部" in text and "11:00" in text
    assert o.promised_time("assigned", {"deadlines": [
        {"clock": "reply", "due_at": "2026-11-30T06:00:00+00:00"},
        {"clock": "arrival", "due_at": "2026-11-30T03:00:00+00:00"}]}) == NOW + dt.timedelta(hours=1)
    assert o.promised_time("callback_scheduled", {"due_at": due.isoformat()}) == due
    assert o.promised_time("arrived", {}) is None


def answers(satisfied: bool) -> CallbackAnswers:
    return CallbackAnswers(handled_in_time=True, result_satisfied=satisfied, attitude_satisfied=True,
                           suggestions="", owner_confirmed=True, method=ReplyMethod.online)


def test_an_online_callback_the_owner_answers_decides_like_a_desk_callback():
    # One-way online reply (nobody answered): the recurrence rule judges, as before.
    assert not cb.decides_outcome(CallbackPurpose.satisfaction, ReplyMethod.online)
    assert cb.record_outcome(CallbackPurpose.satisfaction, ReplyMethod.online, answers(False), 1,
                             current_round=1, ticket_closed=False, policy=DEFAULT_POLICY) is None
    # The owner's own answers on the page: not satisfied reopens, satisfied closes.
    reopened = cb.record_outcome(CallbackPurpose.satisfaction, ReplyMethod.online, answers(False), 1,
                                 current_round=1, ticket_closed=False, policy=DEFAULT_POLICY, answered_by_owner=True)
    desk = cb.record_outcome(CallbackPurpose.satisfaction, ReplyMethod.phone, answers(False), 1,
                             current_round=1, ticket_closed=False, policy=DEFAULT_POLICY)
    assert reopened == desk and reopened.event == "reopened" and reopened.round == 2
    closed = cb.record_outcome(CallbackPurpose.satisfaction, ReplyMethod.online, answers(True), 2,
                               current_round=2, ticket_closed=False, policy=DEFAULT_POLICY, answered_by_owner=True)
    assert closed.event == "closed"
    # The engineering supervisor's check never decides, whoever answers.
    assert not cb.decides_outcome(CallbackPurpose.repair_check, ReplyMethod.online, answered_by_owner=True)


def test_the_owner_answers_only_an_online_satisfaction_callback():
    cb.check_owner_may_answer(CallbackPurpose.satisfaction, ReplyMethod.online, "pending")
    cb.check_owner_may_answer(CallbackPurpose.satisfaction, ReplyMethod.online, "done")  # a repeat: duplicate
    with pytest.raises(RuleViolation, match="by phone"):
        cb.check_owner_may_answer(CallbackPurpose.satisfaction, ReplyMethod.phone, "pending")
    with pytest.raises(RuleViolation, match="satisfaction"):
        cb.check_owner_may_answer(CallbackPurpose.repair_check, ReplyMethod.online, "pending")
    with pytest.raises(RuleViolation, match="cancelled"):
        cb.check_owner_may_answer(CallbackPurpose.satisfaction, ReplyMethod.online, "cancelled")


def test_owner_and_staff_tokens_are_never_taken_for_each_other():
    from shared.auth import AuthError, issue_token, verify_token
    from shared.owner_auth import issue_owner_token, verify_owner_token

    real_now = dt.datetime.now(dt.timezone.utc)
    token = issue_owner_token(KEY, "b1", "e1", "1-2-301", now=real_now, ttl=dt.timedelta(days=1))
    who = verify_owner_token(KEY, f"Bearer {token}")
    assert (who.binding, who.estate, who.unit, who.actor) == ("b1", "e1", "1-2-301", "owner:b1")
    with pytest.raises(AuthError):
        verify_token(KEY, token)  # not a staff token
    staff = issue_token(KEY, "e1-cs01", ["customer_service"], ["e1"])
    for header in (f"Bearer {staff}", None, "Basic x", f"Bearer {token}x"):
        with pytest.raises(AuthError) as refused:
            verify_owner_token(KEY, header)
        assert refused.value.status == 401 and refused.value.reason_zh
    with pytest.raises(AuthError, match="expired"):
        verify_owner_token(KEY, "Bearer " + issue_owner_token(KEY, "b1", "e1", "u", now=real_now - dt.timedelta(days=2),
                                                                 ttl=dt.timedelta(days=1)))


async def test_the_folder_store_keeps_files_under_the_data_directory(tmp_path):
    from shared.storage import FolderStorage, file_store_from_env

    store = file_store_from_env(tmp_path, {})
    assert isinstance(store, FolderStorage) and store.root == tmp_path / "files"
    await store.put("owner-photos/e1/p1", PNG, "image/png")
    assert await store.get("owner-photos/e1/p1") == PNG
    with pytest.raises(FileNotFoundError):
        await store.get("owner-photos/e1/none")
    for bad in ("../escape", "/abs", "a/../../b"):
        with pytest.raises(ValueError):
            await store.put(bad, b"x", "image/png")
    with pytest.raises(SystemExit):
        file_store_from_env(tmp_path, {"ESTATEDESK_FILE_STORE": "ftp://x"})
