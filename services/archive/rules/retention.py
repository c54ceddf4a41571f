"""Retention classes and periods (001 第6篇 1.1.2; 002 §4.8.4)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from zoneinfo import ZoneInfo

from shared.events import AcceptedBy, Kind
from shared.policy import DEFAULT_POLICY, Policy
from services.archive.rules.common import _require_aware
from services.archive.rules.form import ArchivedForm


# --- retention ------------------------------------------------------------------------------


class RetentionClass(StrEnum):
    ordinary = "ordinary"
    important_event = "important_event"  # 重要事件资料档案, 004 篇5 §4.1.4
    company_handled = "company_handled"  # archived by the general management dept, 002 §4.8.4


RETENTION_CLASS_LABELS = {
    RetentionClass.ordinary: "一般",
    RetentionClass.important_event: "重要事件",
    RetentionClass.company_handled: "公司处理",
}

KIND_LABELS = {
    Kind.inquiry: "咨询",
    Kind.suggestion: "建议",
    Kind.complaint: "投诉",
    Kind.praise: "表扬",
    Kind.repair: "报修",
    Kind.special_service: "特约服务",
    Kind.situation_report: "情况反映",
    Kind.activity: "社区活动",
}


def retention_years(retention_class: RetentionClass, policy: Policy = DEFAULT_POLICY) -> int:
    archive = policy.archive
    return {
        RetentionClass.ordinary: archive.retention_years_ordinary,
        RetentionClass.important_event: archive.retention_years_important_event,
        RetentionClass.company_handled: archive.retention_years_company_handled,
    }[RetentionClass(retention_class)]


def retention_class(
    form: ArchivedForm, marked_important: bool, handled_by_company: bool, policy: Policy = DEFAULT_POLICY
) -> RetentionClass:
    """Important events (marked by the estate manager, or escalated to a major-impact rung)
    are filed separately; then opinions the company itself handled or accepted; the rest
    are ordinary."""
    important_rungs = set(policy.archive.important_event_rungs)
    escalated_to_top = any(e.rung in important_rungs for r in form.rounds for e in r.escalations)
    if marked_important or escalated_to_top:
        return RetentionClass.important_event
    if handled_by_company or form.intake.accepted_by == AcceptedBy.company:
        return RetentionClass.company_handled
    return RetentionClass.ordinary


def _add_years(moment: dt.datetime, years: int) -> dt.datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February into a common year: the last day of February
        return moment.replace(year=moment.year + years, day=28)


def retention_expires(
    archived_at: dt.datetime, retention_class: RetentionClass, policy: Policy = DEFAULT_POLICY
) -> dt.datetime:
    """The moment the retention period ends (destruction allowed from then on), in the
    estate's local time: archived_at + N years, or 1 January after archiving + N years."""
    _require_aware(archived_at, "archived_at")
    zone = ZoneInfo(policy.timezone)
    local = archived_at.astimezone(zone)
    years = retention_years(retention_class, policy)
    if policy.archive.retention_starts == "next_january_first":
        return dt.datetime(local.year + 1 + years, 1, 1, tzinfo=zone)
    return _add_years(local, years)


def handled_by_company(form: ArchivedForm, policy: Policy = DEFAULT_POLICY) -> bool:
    """The company's general management dept took the opinion over (002 §4.8.4)."""
    rungs = set(policy.archive.company_handled_rungs)
    return any(e.rung in rungs for r in form.rounds for e in r.escalations)


