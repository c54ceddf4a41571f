"""Pure rules of the owners' self-service (issue 15), tested without I/O: one-time binding
codes and the lock after wrong ones, rate limits, photo checks, and the countersign form's
progress in the owner's plain words (受理 → 派工 → 到场 → 处理完成 → 回访 → 已关闭).

Every number comes from `policy.owners` (shared.policy.OwnerPortalPolicy)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

import filetype

from shared.policy import OwnerPortalPolicy

# --- binding -------------------------------------------------------------------------------------


def new_code(policy: OwnerPortalPolicy) -> str:
    """A one-time code of the policy's digits, from the OS's secure random source."""
    return "".join(secrets.choice("0123456789") for _ in range(policy.bind_code_digits))


def code_hash(key: str, estate: str, unit: str, code: str) -> str:
    """The stored form of a code: keyed (the installation's signing key), tied to its unit,
    so a leaked table yields neither codes nor codes of other units."""
    material = "\x1f".join((estate, unit, code.strip()))
    return hmac.new(key.encode(), material.encode(), hashlib.sha256).hexdigest()


def bind_locked(locked_until: dt.datetime | None, now: dt.datetime, zone: dt.tzinfo) -> tuple[str, str] | None:
    """Why binding the unit is refused now (English, Chinese), or None."""
    if locked_until is not None and locked_until > now:
        until = locked_until.astimezone(zone)
        return (f"binding is locked for this unit after repeated wrong codes until "
                f"{until.isoformat(timespec='minutes')}; ask the front desk",
                f"验证码连续输错，本户绑定已锁定至 {until:%Y-%m-%d %H:%M}，请联系前台")
    return None


def after_wrong_code(wrong: int, now: dt.datetime, policy: OwnerPortalPolicy) -> tuple[int, dt.datetime | None]:
    """(wrong codes so far, locked until): the policy's count of wrong codes in a row locks
    binding for the unit for its minutes, and the count starts again."""
    wrong += 1
    if wrong >= policy.bind_max_wrong_codes:
        return 0, now + dt.timedelta(minutes=policy.bind_lock_minutes)
    return wrong, None


@dataclass(frozen=True)
class Limit:
    what: str  # English
    what_zh: str
    used: int
    allowed: int

    @property
    def exceeded(self) -> bool:
        return self.used >= self.allowed


def first_exceeded(*limits: Limit) -> Limit | None:
    """The first limit already used up (another request would pass it), or None."""
    return next((limit for limit in limits if limit.exceeded), None)


# --- photos --------------------------------------------------------------------------------------


def photo_problem(data: bytes, policy: OwnerPortalPolicy) -> tuple[str, str] | None:
    """Why an uploaded photo is refused (English, Chinese), or None. The type is read from
    the bytes themselves (a renamed file is what it is), the size from their count."""
    if not data:
        return "the photo is empty", "照片为空"
    if len(data) > policy.photo_max_kib * 1024:
        return (f"a photo may have at most {policy.photo_max_kib} KiB, this one has {len(data) // 1024} KiB",
                f"照片不能超过 {policy.photo_max_kib} KB")
    kind = filetype.guess(data)
    if kind is None or kind.mime not in policy.photo_types:
        found = kind.mime if kind else "unknown"
        return (f"a photo must be one of {', '.join(policy.photo_types)}, this is {found}",
                "只能上传 JPEG、PNG 或 WebP 格式的照片")
    return None


def photo_type(data: bytes) -> str:
    kind = filetype.guess(data)
    return kind.mime if kind else "application/octet-stream"


# --- progress in plain words ---------------------------------------------------------------------


class Stage(StrEnum):
    submitted = "submitted"  # waiting for a desk clerk to open it
    accepted = "accepted"  # 受理: a clerk opened it and owns it (首问)
    dispatched = "dispatched"  # 派工
    arrived = "arrived"  # 到场
    completed = "completed"  # 处理完成
    callback = "callback"  # 回访
    closed = "closed"  # 已关闭


STAGE_WORDS = {
    Stage.submitted: "待受理", Stage.accepted: "受理", Stage.dispatched: "派工", Stage.arrived: "到场",
    Stage.completed: "处理完成", Stage.callback: "回访", Stage.closed: "已关闭",
}
# The path shown as steps; `submitted` is before the first one.
STEPS = (Stage.accepted, Stage.dispatched, Stage.arrived, Stage.completed, Stage.callback, Stage.closed)

# Which ticket event moves the owner's view to which stage.
EVENT_STAGES = {
    "accepted": Stage.accepted,
    "assigned": Stage.dispatched,
    "reopened": Stage.dispatched,  # not satisfied: the form goes round again
    "arrived": Stage.arrived,
    "completed": Stage.completed,
    "callback_scheduled": Stage.callback,
    "closed": Stage.closed,
}


def next_stage(current: Stage, current_round: int, event: str, event_round: int | None) -> Stage | None:
    """The stage an event moves the owner's view to, or None when it changes nothing the
    owner sees: an event of an earlier round, or a step back within the round (events of
    one ticket reach intake through separate consumers, not always in order)."""
    stage = EVENT_STAGES.get(event)
    if stage is None or current is Stage.closed:
        return None
    round_ = event_round or current_round
    if round_ < current_round:
        return None
    if event == "reopened":
        return stage if round_ > current_round else None
    if round_ == current_round and current in STEPS and STEPS.index(stage) <= STEPS.index(current):
        return None
    return stage


def stage_message(stage: Stage, form_number: str | None, round_: int, promised_at: dt.datetime | None,
                  zone: dt.tzinfo, note: str | None = None) -> str:
    """The text sent to the owner at a change, in plain words."""
    form = f"您的报事（{form_number}）" if form_number else "您的报事"
    again = f"第 {round_} 轮" if round_ > 1 else ""
    text = {
        Stage.accepted: f"{form}已受理，首问责任人{note or ''}将跟进到底。",
        Stage.dispatched: f"{form}{again}已派工{('：' + note) if note else ''}。",
        Stage.arrived: f"{form}{again}：工作人员已到场。",
        Stage.completed: f"{form}{again}已处理完成，稍后请您评价。",
        Stage.callback: f"{form}{again}待您评价（回访）：处理是否及时，对结果和服务态度是否满意。",
        Stage.closed: f"{form}已关闭，感谢您的支持。",
        Stage.submitted: f"{form}已提交，等待客服受理。",
    }[stage]
    if promised_at is not None:
        text += f" 承诺时间：{promised_at.astimezone(zone):%m-%d %H:%M}。"
    return text


def promised_time(event: str, data: dict) -> dt.datetime | None:
    """The time promised to the owner that an event carries: the round's arrival (or first
    reply) deadline of `assigned`, the callback's due time."""
    if event == "assigned":
        deadlines = data.get("deadlines") or []
        preferred = [d for d in deadlines if "arrival" in d.get("clock", "")] or deadlines
        return _instant(preferred[0]["due_at"]) if preferred else None
    if event == "callback_scheduled":
        return _instant(data.get("due_at"))
    return None


def _instant(value) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)
