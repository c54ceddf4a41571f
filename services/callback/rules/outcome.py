"""Recording a callback (RULES.md §3 Questions, Not satisfied): what the owner's answers
mean (close, or another round; an attitude complaint), which recordings are allowed, double
submits (RULES.md §5 Integrity) and when the owner may answer on the owners' page."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Literal

from shared.errors import RuleViolation
from shared.events import ReplyMethod
from shared.policy import Policy
from services.callback.rules.planning import CallbackPurpose, decides_outcome


# --- recording the outcome ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    event: Literal["closed", "reopened"]
    # closed: the round the owner was satisfied in; reopened: the new round's number.
    round: int
    # A new callback follows the reopened round's completion.
    call_back_again: bool
    # Register a new complaint about the handler's attitude (a valid complaint, RULES §1).
    open_attitude_complaint: bool
    reason: str


def decide_outcome(
    result_satisfied: bool, attitude_satisfied: bool, current_round: int, *, policy: Policy
) -> Outcome:
    """What the owner's answers mean (RULES §3 Not satisfied).

    Not satisfied with the result: the form goes back to the handler for another round
    and is called back again, until the owner is satisfied (002 §4.4.2 d; 001 第9篇 五.2).

    Satisfied with the result but not with the attitude: re-doing the work cannot mend
    how the owner was treated, and staff attitude is itself a ground for a valid
    complaint (RULES §1 Complaint validity). So by default the ticket closes and a new
    attitude complaint is opened, which is routed and escalated by its subject (RULES §2)
    and called back on its own. An estate that reads 002 §4.4.2 d ("如仍存在问题 … 再一次
    的循环操作") strictly sets attitude_dissatisfied="reopen" to send the same ticket round
    again instead. Under the default an attitude complaint is also opened when both
    answers are "no"."""
    if current_round < 1:
        raise RuleViolation(f"rounds start at 1, got {current_round}", status=422)
    attitude_as_complaint = policy.callback.attitude_dissatisfied == "new_complaint"
    open_attitude_complaint = not attitude_satisfied and attitude_as_complaint
    if result_satisfied and (attitude_satisfied or attitude_as_complaint):
        reason = "owner satisfied with the result"
        if not attitude_satisfied:
            reason += "; attitude complaint opened"
        return Outcome("closed", current_round, False, open_attitude_complaint, reason)
    reasons = []
    if not result_satisfied:
        reasons.append("owner not satisfied with the result")
    if not attitude_satisfied:
        reasons.append("owner not satisfied with the attitude")
    return Outcome("reopened", current_round + 1, True, open_attitude_complaint, "; ".join(reasons))


@dataclass(frozen=True)
class CallbackAnswers:
    """What the owner said on a callback (002 §4.4.2 d) and how the call was made."""

    handled_in_time: bool
    result_satisfied: bool
    attitude_satisfied: bool
    suggestions: str
    owner_confirmed: bool
    method: ReplyMethod


def check_resubmission(recorded: CallbackAnswers, submitted: CallbackAnswers) -> None:
    """A second submit of a callback already recorded. The same answers are a double
    submit, answered with the first record; different answers are refused, because a
    signed record is never altered (RULES §5 Integrity) — a new opinion is a new request."""
    differing = [
        field.name
        for field in dataclasses.fields(CallbackAnswers)
        if _normalised(getattr(recorded, field.name)) != _normalised(getattr(submitted, field.name))
    ]
    if differing:
        raise RuleViolation(
            "this callback is already recorded with different answers "
            f"({', '.join(differing)}); a recorded callback is never altered",
            status=409,
        )


def _normalised(value):
    return value.strip() if isinstance(value, str) else value


def check_call_method(method: ReplyMethod) -> None:
    """A callback is made by phone, visit, letter or online (002 §4.4.2 c); "none" is the
    absence of a callback path, not a way of calling."""
    if method is ReplyMethod.none:
        raise RuleViolation("a callback is made by phone, visit, letter or online, not 'none'", status=422)


def check_recordable(status: str, cancel_reason: str | None = None) -> None:
    """Only a scheduled callback can be recorded (a done one is handled by check_resubmission)."""
    if status == "cancelled":
        raise RuleViolation(f"this callback was cancelled ({cancel_reason or 'no reason given'}); there is nothing to record")
    if status not in ("pending", "done"):
        raise RuleViolation(f"a callback in status {status!r} cannot be recorded")


def record_outcome(
    purpose: CallbackPurpose,
    method: ReplyMethod,
    answers: CallbackAnswers,
    callback_round: int,
    *,
    current_round: int,
    ticket_closed: bool,
    policy: Policy,
    answered_by_owner: bool = False,
) -> Outcome | None:
    """What recording this callback does to the ticket; None when it only records.

    `method` is the method the callback was planned with (the owner's choice): an online
    reply stays one-way even if the staff member noted another method. A callback of a
    round the ticket has left (or of a closed ticket) records the answers and decides
    nothing: that round was already judged. `answered_by_owner`: the owner gave the
    answers on the owners' page (see decides_outcome)."""
    if not decides_outcome(purpose, method, answered_by_owner):
        return None
    if ticket_closed or callback_round != current_round:
        return None
    if purpose is CallbackPurpose.thanks:
        return Outcome("closed", callback_round, False, False, "owner thanked for the praise")
    return decide_outcome(answers.result_satisfied, answers.attitude_satisfied, callback_round, policy=policy)


def callback_submission_key(ticket_id: str, callback_id: str, round: int) -> str:
    """Idempotency key of recording one callback: a double submit yields the same key.

    The answers are deliberately not part of it: a second submit with different answers
    is still the same callback recorded twice, and a signed record is never altered
    (RULES §5 Integrity), so the shell refuses it rather than overwriting."""
    material = "\x1f".join(("callback_done", ticket_id, callback_id, str(round)))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def check_owner_may_answer(purpose: CallbackPurpose, method: ReplyMethod, status: str) -> None:
    """The owners' page answers a satisfaction callback the owner chose to get online
    (issue 15; 002 §4.4.2 c): a phone or visit callback is the desk's to make."""
    if purpose is not CallbackPurpose.satisfaction:
        raise RuleViolation("only the satisfaction callback is answered on the owners' page", status=409,
                            zh="此回访由工作人员完成")
    if method is not ReplyMethod.online:
        raise RuleViolation(f"this callback will be made by {method.value}, not online", status=409,
                            zh="您选择了其他回访方式，工作人员会与您联系")
    if status not in ("pending", "done"):  # done: the same answers again are a duplicate, not an error
        raise RuleViolation(f"this callback is {status}, not waiting for answers", status=409, zh="该回访已取消")
