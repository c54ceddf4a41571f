"""Policies: every number of RULES.md as data, with its default, per company and estate.

A company may change any value for all its estates, and an estate may change it again for
itself; `effective_policy` layers estate over company over these defaults. Rules read
their numbers from a `Policy`, never from literals.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from shared.limits import FORM_SEQUENCE_DIGITS_MAX, FORM_SEQUENCE_DIGITS_MIN, StorableText, TimeZoneName

# Every whole number of a policy (minutes, hours, days, amounts, counts) lies in this
# range unless its field says otherwise: a deadline computed from it can never overflow.
POLICY_INT_MAX = 100_000
CLOCK_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class _Section(StorableText):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _plausible_numbers(self) -> "_Section":
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= POLICY_INT_MAX:
                raise ValueError(f"{name} must lie between 0 and {POLICY_INT_MAX}, got {value}")
        return self


class IntakePolicy(_Section):
    # RULES §1 Opening hours: the customer-service centre's day shift (local time).
    office_opens: str = Field("08:30", pattern=CLOCK_TIME)
    office_closes: str = Field("17:30", pattern=CLOCK_TIME)
    # RULES §1 Invalid complaint: tell the customer the reason within 1 working day.
    invalid_complaint_notice_working_days: int = 1
    # RULES §1 Complaint validity (002 §4.2.2, §4.2.4): an invalid judgement is final only
    # when a manager confirms it with their own sign-in; these roles may confirm or reject.
    invalid_confirmation_roles: tuple[str, ...] = (
        "customer_service_supervisor", "estate_manager", "estate_director",
    )
    # Phone and letter requests get a record now and the owner's signature later (补签);
    # remind every this many hours until it is supplied.
    signature_reminder_hours: int = 24
    # RULES §1 Privacy: roles that see owners' phone and ID numbers unmasked.
    unmasked_roles: tuple[str, ...] = ("customer_service", "customer_service_supervisor")
    # Masked display keeps this many leading and trailing characters (138****5678).
    mask_keep_head: int = 3
    mask_keep_tail: int = 4
    # RULES §1 Record content (000 §五.1–2): walk-ins sign the form now; phone and letter
    # requests are recorded and signed later (补签). Channels in neither list need no owner
    # signature: online opinions have no person present to sign (their record is the
    # posting itself), and a superior's or government transfer record stands in for one.
    # An anonymous request, or one that wants no reply, owes no later signature either.
    signature_now_channels: tuple[str, ...] = ("walk_in", "walk_around_visit")
    signature_later_channels: tuple[str, ...] = ("phone", "letter", "relayed_by_employee")
    # Countersign-form numbers: ESTATE-YEAR-sequence, the sequence zero-padded to this width.
    form_sequence_digits: int = Field(6, ge=FORM_SEQUENCE_DIGITS_MIN, le=FORM_SEQUENCE_DIGITS_MAX)
    # Duty roster (001 第7篇 1.2.1 三班制; 第11篇; 004 篇3 §3.4): the posts that keep a
    # monthly roster, and the three shifts as (name, starts, ends) local "HH:MM" (a shift
    # ending at or before its start ends the next day). Holidays are rostered like any day.
    duty_posts: tuple[str, ...] = ("customer_service_desk", "security_control_centre")
    duty_shifts: tuple[tuple[str, str, str], ...] = (
        ("early", "08:00", "16:00"), ("middle", "16:00", "00:00"), ("night", "00:00", "08:00"),
    )
    # An item the incoming shift has not claimed by its start escalates to this role.
    handover_escalation_role: str = "customer_service_supervisor"

    @model_validator(mode="after")
    def _opens_before_closes(self) -> "IntakePolicy":
        if self.office_opens >= self.office_closes:
            raise ValueError(f"office hours must open before they close, got {self.office_opens}–{self.office_closes}")
        return self


class ClockPolicy(_Section):
    # RULES §2 Repair arrival (minutes). Emergency means "immediately": 0 minutes.
    arrival_minutes_emergency: int = 0
    arrival_minutes_general: int = 60
    arrival_minutes_simple: int = 20
    arrival_minutes_commissioned_immediate: int = 15
    # Grace before an "immediate" (立即) emergency arrival counts as breached. The documents
    # give none (000 §五.2(1), 004 篇2 一.四: 立即), so none by default; a company that wants
    # to allow travel time sets it here, and the form shows it beside the arrival clock.
    arrival_grace_minutes_immediate: int = Field(0, ge=0)
    # RULES §2 Repair slip back to customer service.
    repair_slip_return_hours: int = 24
    # RULES §1 Reply deadline when none agreed: urgent → 2 h, not urgent → 2 working days.
    reply_hours_urgent: int = 2
    reply_working_days_not_urgent: int = 2
    # Kinds that owe the customer an answer (a praise or an activity does not).
    reply_kinds: tuple[str, ...] = (
        "inquiry", "suggestion", "complaint", "repair", "special_service", "situation_report",
    )
    # RULES §2 Tracking control: department-accepted 3, company-accepted 7 working days.
    tracking_working_days_department: int = 3
    tracking_working_days_company: int = 7
    # RULES §2 Handover ledger: an unacknowledged transfer is overdue after this.
    acknowledge_minutes: int = 30
    # RULES §2 Progress updates: complaints open longer than a week, 2 updates a week.
    progress_updates_after_days: int = 7
    progress_updates_per_week: int = 2


class EscalationPolicy(_Section):
    # RULES §2 Economic loss: above this an owner's loss opens a nonconformity record.
    nonconformity_loss_cny: int = 500
    # How long each rung may hold an unresolved breach before the next rung is told.
    minutes_per_rung: int = 120
    ladder: tuple[str, ...] = (
        "department_head",
        "estate_director",
        "company_general_management",
        "general_manager",
    )
    # RULES §2 Escalation by subject: a complaint about these people starts at this rung.
    subject_rung: str = "estate_director"
    subject_roles: tuple[str, ...] = ("supervisor_or_above", "customer_service_staff", "company_staff")
    # RULES §2 Economic loss: who approves the nonconformity form.
    nonconformity_approver_role: str = "management_representative"

    @model_validator(mode="after")
    def _subject_rung_on_ladder(self) -> "EscalationPolicy":
        if not self.ladder or self.subject_rung not in self.ladder:
            raise ValueError("subject_rung must be one of the ladder's rungs")
        return self


class CallbackPolicy(_Section):
    # RULES §3 When: complaint within 2 working days (002) or 3 calendar days (001).
    complaint_rule: Literal["working_days", "calendar_days"] = "working_days"
    complaint_working_days: int = Field(2, ge=0)
    complaint_calendar_days: int = Field(3, ge=0)
    small_repair_days: int = Field(3, ge=0)
    repair_project_days: int = Field(30, ge=0)
    engineering_supervisor_hours: int = Field(24, ge=0)
    activity_days: int = Field(30, ge=0)
    other_service_days: int = Field(7, ge=0)
    # RULES §3 When: special services "mid-way and at the end" (001 第9篇 一.3) name no
    # number. The end callback defaults to the small-repair window: both are one
    # household's commissioned service, called back by the same administrator (001 第9篇 三.2).
    special_service_end_days: int = Field(3, ge=0)
    # A service shorter than this has no "middle" worth a separate call: end callback only.
    special_service_midway_min_days: int = Field(2, ge=0)
    # Mid-way call for a service whose expected end is not known yet.
    special_service_midway_default_days: int = Field(7, ge=0)
    # Praise needs no satisfaction callback by default (see services/callback/rules/planning.py);
    # an estate that wants to thank every praising owner again can switch it on.
    praise_callback: bool = False
    # RULES §3 Not satisfied: result-satisfied but attitude-dissatisfied owners either get
    # a new attitude complaint about the handler (default) or reopen the same ticket.
    attitude_dissatisfied: Literal["new_complaint", "reopen"] = "new_complaint"
    # RULES §3 Who: 100 % of complaints, repairs, special services; 70 % of activities.
    activity_rate_percent: int = Field(70, ge=0, le=100)
    # RULES §3 No callback path: a repeat within this many days counts as not satisfied.
    recurrence_window_days: int = Field(30, ge=1)
    # RULES §3 Walk-around visits per customer-service staff member per month.
    visits_per_month_min: int = Field(2, ge=0)
    visits_per_month_max: int = Field(3, ge=0)

    @model_validator(mode="after")
    def _visit_range(self) -> "CallbackPolicy":
        if self.visits_per_month_min > self.visits_per_month_max:
            raise ValueError("visits_per_month_min must not exceed visits_per_month_max")
        return self


class AnalyticsPolicy(_Section):
    # RULES §2 Repeated opinions trigger corrective measures: threshold within a window.
    repeat_problem_threshold: int = 3
    repeat_problem_window_days: int = 30
    # Only opinions about a problem can repeat as "the same problem" (a praise or an
    # inquiry asked again is not one); intake's default category says nothing about the
    # cause, so its tickets are never called repeats of each other.
    repeat_problem_kinds: tuple[str, ...] = ("complaint", "repair", "situation_report")
    repeat_problem_ignored_categories: tuple[str, ...] = ("general",)
    # The live dashboard's feed of breaches, escalations and repeats keeps this many days.
    dashboard_alerts_kept_days: int = 30
    # RULES §4 Monthly report due to the company by this day of the next month.
    monthly_report_due_day: int = 5
    # RULES §4 Company consolidation: weights (percent) of the estates' composite score,
    # published at the directors' meeting. A component an estate has no data for is
    # left out and the remaining weights are rescaled.
    ranking_weight_on_time_percent: int = 40
    ranking_weight_callback_percent: int = 30
    ranking_weight_satisfaction_percent: int = 30


class ArchivePolicy(_Section):
    # RULES §5 Retention (years) per class; important events are kept longer.
    retention_years_ordinary: int = 3
    retention_years_important_event: int = 10
    retention_years_company_handled: int = 5
    # Retention counts from the archiving moment, or (Chinese archival practice) from
    # 1 January of the year after archiving.
    retention_starts: Literal["archived_at", "next_january_first"] = "archived_at"
    # RULES §5 Lending: a loan comes back within this many days; a consultation, copy or
    # export register entry lets its holder read the record for this many hours.
    loan_days: int = 7
    consult_hours: int = 8
    # Customer-service staff of the record's estate may register themselves to consult
    # owner files (level-1 confidential, 004 篇5 §4.2); everybody else needs one of the
    # estate's approvers, and loans, copies, exports and outsiders a written approval.
    self_register_roles: tuple[str, ...] = ("customer_service", "customer_service_supervisor")
    approver_roles: tuple[str, ...] = ("estate_director", "estate_manager")
    # RULES §5 Destruction: only with the general manager's approval.
    destruction_approver_roles: tuple[str, ...] = ("general_manager",)
    # Escalation rungs that make a form an important event (RULES §2: major impact goes
    # to the general manager) even when nobody marked it.
    important_event_rungs: tuple[str, ...] = ("general_manager",)
    # Paper volumes (案卷) hold at most this many forms; more open the next volume.
    volume_max_items: int = 100
    # Who may put a record into the important-events file (004 篇5 §4.1.4) at any time.
    important_mark_roles: tuple[str, ...] = (
        "estate_director", "estate_manager", "customer_service_supervisor",
        "company_general_management", "quality_manager", "general_manager",
    )
    # Escalation rungs that mean the company itself handled the opinion: archived by the
    # general management dept as company-handled (002 §4.8.4).
    company_handled_rungs: tuple[str, ...] = ("company_general_management",)
    # The scheduled monthly organisation and quarterly archiving wait this long after the
    # period ends, so forms closed on its last evening are archived before it is organised.
    organise_grace_hours: int = 24


class AccountPolicy(_Section):
    # Issue 16: a sign-in lasts a shift, renewable while it lasts.
    session_hours: int = Field(8, ge=1, le=24)
    # Lock-out: this many wrong passwords in a row lock the account for this long.
    max_failed_logins: int = Field(5, ge=1, le=100)
    lockout_minutes: int = Field(15, ge=1)
    min_password_length: int = Field(8, ge=6, le=128)


class OwnerPortalPolicy(_Section):
    """Owners' self-service (issue 15): binding a unit by one-time code, submitting online
    (002 §4.2.1 c, §4.2.3), limits against abuse. Photo sizes stay under the services'
    1 MiB request body limit (shared.service.MAX_BODY_BYTES): the page shrinks photos first."""

    bind_code_digits: int = Field(6, ge=4, le=10)
    bind_code_minutes: int = Field(10, ge=1)
    # This many wrong codes in a row lock binding for the unit for this long.
    bind_max_wrong_codes: int = Field(5, ge=1, le=100)
    bind_lock_minutes: int = Field(30, ge=1)
    codes_per_unit_per_hour: int = Field(5, ge=1)
    codes_per_device_per_hour: int = Field(5, ge=1)
    # A binding lasts until the owner or the desk removes it; its token is refused at once
    # then (the directory's revoked list). The token itself is renewed on use.
    owner_token_days: int = Field(90, ge=1, le=3650)
    submissions_per_unit_per_day: int = Field(10, ge=1)
    submissions_per_device_per_hour: int = Field(5, ge=1)
    photos_per_request: int = Field(5, ge=0, le=20)
    photo_max_kib: int = Field(1000, ge=16, le=1000)
    photo_types: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")


class Policy(_Section):
    timezone: TimeZoneName = "Asia/Shanghai"
    intake: IntakePolicy = Field(default_factory=IntakePolicy)
    clocks: ClockPolicy = Field(default_factory=ClockPolicy)
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    callback: CallbackPolicy = Field(default_factory=CallbackPolicy)
    analytics: AnalyticsPolicy = Field(default_factory=AnalyticsPolicy)
    archive: ArchivePolicy = Field(default_factory=ArchivePolicy)
    accounts: AccountPolicy = Field(default_factory=AccountPolicy)
    owners: OwnerPortalPolicy = Field(default_factory=OwnerPortalPolicy)


DEFAULT_POLICY = Policy()


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def effective_policy(company_overrides: dict | None = None, estate_overrides: dict | None = None) -> Policy:
    """Defaults ← company ← estate. Raises pydantic.ValidationError on unknown keys or
    wrong types, so a bad policy is refused when it is set, not when it is used."""
    data = DEFAULT_POLICY.model_dump(mode="json")
    data = _deep_merge(data, company_overrides or {})
    data = _deep_merge(data, estate_overrides or {})
    return Policy.model_validate(data)


class _Overrides(StorableText):
    model_config = ConfigDict(extra="forbid")


def _overrides_of(model: type[BaseModel]) -> type[BaseModel]:
    """The same fields as `model`, each optional: what an estate or company may override.
    Each field keeps its own limits; the whole is checked again by `effective_policy`."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = _overrides_of(annotation)
        elif info.metadata:
            annotation = Annotated[annotation, *info.metadata]
        fields[name] = (annotation | None, Field(None, description=info.description))
    return create_model(f"{model.__name__}Overrides", __base__=_Overrides, **fields)


PolicyOverrides = _overrides_of(Policy)
"""Body of the policy PUT routes: any part of `Policy`, e.g. {"clocks": {"arrival_minutes_general": 45}}."""


def overrides_data(overrides: BaseModel) -> dict[str, Any]:
    """Only what the caller set, as stored in the directory."""
    return overrides.model_dump(mode="json", exclude_unset=True)
