"""Issue 16: sign-in rules, pure — who a login speaks for, lock-out, password quality."""

from __future__ import annotations

import datetime as dt

import pytest

from services.intake.accounts import after_wrong_password, find_identity, password_problem, refusal
from shared.directory import Company, Department, Estate, StaffMember
from shared.policy import AccountPolicy

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)
POLICY = AccountPolicy()
COMPANY = Company(staff=[StaffMember(id="qm01", name="品质主管", roles=["quality_manager"], phone="13800000001")])
ESTATES = {
    "hx01": Estate(code="hx01", name="华轩", departments=[Department(code="engineering", name="工程部", head="hx01-eh")],
                   staff=[StaffMember(id="cs01", name="王芳", roles=["customer_service"], department="customer_service",
                                      phone="13900000002"),
                          StaffMember(id="hx01-eh", name="工程主管", roles=["department_head"])]),
    "ch02": Estate(code="ch02", name="晨晖",
                   staff=[StaffMember(id="cs01", name="王芳", roles=["customer_service_supervisor"])]),
}


def test_head_office_staff_act_for_every_estate():
    who = find_identity(COMPANY, ESTATES, "qm01")
    assert who.estates == ("*",) and who.roles == ("quality_manager",)
    assert find_identity(COMPANY, ESTATES, "13800000001").staff_id == "qm01"


def test_estate_staff_get_every_estate_that_lists_them_with_the_union_of_roles():
    who = find_identity(COMPANY, ESTATES, "13900000002")
    assert who.staff_id == "cs01" and who.estates == ("ch02", "hx01")
    assert who.roles == ("customer_service", "customer_service_supervisor")


def test_a_head_named_on_the_department_heads_it():
    assert find_identity(COMPANY, ESTATES, "hx01-eh").departments == ("engineering",)


def test_a_company_wide_role_in_an_estate_list_is_not_widened():
    estates = {"hx01": ESTATES["hx01"].model_copy(update={"staff": [
        StaffMember(id="x", name="x", roles=["customer_service", "general_manager"])]})}
    assert find_identity(Company(), estates, "x").roles == ("customer_service",)


def test_nobody_by_that_login():
    assert find_identity(COMPANY, ESTATES, "nobody") is None


def test_five_wrong_passwords_in_a_row_lock_for_fifteen_minutes():
    failures, locked = 0, None
    for _ in range(POLICY.max_failed_logins - 1):
        failures, locked = after_wrong_password(failures, NOW, POLICY)
        assert locked is None
    failures, locked = after_wrong_password(failures, NOW, POLICY)
    assert failures == 0 and locked == NOW + dt.timedelta(minutes=15)
    english, chinese = refusal(locked, None, NOW + dt.timedelta(minutes=14))
    assert "locked" in english and "锁定至 2026-12-01 09:15" in chinese
    assert refusal(locked, None, NOW + dt.timedelta(minutes=15)) is None


def test_the_lock_out_is_policy():
    policy = AccountPolicy(max_failed_logins=2, lockout_minutes=60)
    assert after_wrong_password(1, NOW, policy) == (0, NOW + dt.timedelta(hours=1))


def test_a_disabled_account_is_refused_whatever_the_lock():
    assert "disabled" in refusal(None, NOW, NOW)[0]


@pytest.mark.parametrize("password, problem", [("short", "at least 8"), (" leading-space", "space"),
                                               ("long enough", None)])
def test_password_quality(password, problem):
    found = password_problem(password, POLICY)
    assert (found is None) if problem is None else (problem in found)
