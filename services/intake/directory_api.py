"""The directory API: policies (defaults ← company ← estate), the company calendar and
estate definitions, written to the directory bucket every service watches. Who may change
what: `service.write_roles` in app.py (POLICY_ROLES_*)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import Body, Depends
from pydantic import BaseModel, Field, ValidationError, field_validator

from services.intake.app import service
from shared.auth import Principal
from shared.calendar import CalendarOverrides
from shared.directory import Company, Estate, publish_directory
from shared.errors import RuleViolation
from shared.events import Kind
from shared.limits import Contract, Day
from shared.policy import DEFAULT_POLICY, Policy, PolicyOverrides, effective_policy, overrides_data
from shared.service import known_estate, principal, require_estate

log = logging.getLogger("estatedesk.intake")


class PolicyOut(BaseModel):
    estate: str
    overrides: dict = Field(description="This estate's overrides of the company policy")
    company_overrides: dict
    effective: dict = Field(description="Defaults ← company ← estate: what the services apply")
    defaults: dict = Field(description="The RULES.md defaults (shared/policy.py), shown beside each value")


class CalendarIn(Contract):
    days_off: list[Day] = Field(default_factory=list, description="Extra days off (company holidays)")
    workdays: list[Day] = Field(default_factory=list, description="Extra workdays (make-up days)")
    loaded_years: list[int] = Field(default_factory=list, description="Years whose full arrangement is loaded here")

    @field_validator("loaded_years")
    @classmethod
    def _years(cls, years: list[int]) -> list[int]:
        for year in years:
            if not 2000 <= year <= 2100:
                raise ValueError(f"year {year} is out of range 2000–2100")
        return years


def _validated_policy(company_overrides: dict, estate_overrides: dict | None, what: str) -> Policy:
    try:
        policy = effective_policy(company_overrides, estate_overrides)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise RuleViolation(f"{what} refused: {problems}", status=422) from None
    return policy


async def _publish(company: Company | None, estates: list[Estate]) -> None:
    """Write the directory bucket, then wait until our own watcher has seen it, so the
    caller's next request is served with the change."""
    await publish_directory(service.settings.nats_url, company, estates)
    for _ in range(100):
        seen = (company is None or service.directory.company == company) and all(
            service.directory.estate(e.code) == e for e in estates
        )
        if seen:
            return
        await asyncio.sleep(0.02)
    log.warning("directory change not seen by this process within 2 s")


def _policy_out(code: str) -> PolicyOut:
    estate = service.directory.estate(code)
    return PolicyOut(estate=code, overrides=estate.policy, company_overrides=service.directory.company.policy,
                     effective=service.directory.policy_for(code).model_dump(mode="json"),
                     defaults=DEFAULT_POLICY.model_dump(mode="json"))


@service.http.get("/estates/{estate}/policy", response_model=PolicyOut, tags=["directory"])
async def get_estate_policy(estate: str, who: Principal = Depends(require_estate)) -> PolicyOut:
    known_estate(service, estate)
    return _policy_out(estate)


@service.http.put("/estates/{estate}/policy", response_model=PolicyOut, tags=["directory"])
async def put_estate_policy(estate: str, body: PolicyOverrides = Body(..., description="The estate's overrides "
                            "(replaces the previous ones), e.g. {\"clocks\": {\"arrival_minutes_general\": 45}}"),
                            who: Principal = Depends(require_estate)) -> PolicyOut:
    """Change this estate's policy (estate director, quality manager, company admin)."""
    known_estate(service, estate)
    overrides = overrides_data(body)
    _validated_policy(service.directory.company.policy, overrides, f"policy of estate {estate}")
    updated = service.directory.estate(estate).model_copy(update={"policy": overrides})
    await _publish(None, [updated])
    return _policy_out(estate)


@service.http.put("/company/policy", response_model=dict, tags=["directory"])
async def put_company_policy(body: PolicyOverrides = Body(..., description="The company's overrides of the "
                             "RULES.md defaults (replaces the previous ones)"),
                             who: Principal = Depends(principal)) -> dict:
    """Change the company policy for every estate (quality manager, company admin)."""
    overrides = overrides_data(body)
    _validated_policy(overrides, None, "company policy")
    for code, estate in service.directory.estates.items():
        _validated_policy(overrides, estate.policy, f"company policy (with estate {code}'s overrides)")
    company = service.directory.company.model_copy(update={"policy": overrides})
    await _publish(company, [])
    return {"policy": company.policy, "effective": effective_policy(company.policy).model_dump(mode="json")}


@service.http.get("/company/calendar", response_model=CalendarIn, tags=["directory"])
async def get_company_calendar(who: Principal = Depends(principal)) -> CalendarIn:
    """The company's own calendar as last saved (extra days off, workdays, loaded years)."""
    return CalendarIn.model_validate(CalendarOverrides.from_data(service.directory.company.calendar).to_data())


@service.http.put("/company/calendar", response_model=CalendarIn, tags=["directory"])
async def put_company_calendar(body: CalendarIn, who: Principal = Depends(principal)) -> CalendarIn:
    """The company's own calendar: extra days off and workdays, and the years it has
    loaded (deadlines reaching into a loaded year stop being provisional)."""
    both = set(body.days_off) & set(body.workdays)
    if both:
        raise RuleViolation(f"a day cannot be both off and a workday: {', '.join(sorted(d.isoformat() for d in both))}",
                            status=422)
    overrides = CalendarOverrides(frozenset(body.days_off), frozenset(body.workdays), frozenset(body.loaded_years))
    company = service.directory.company.model_copy(update={"calendar": overrides.to_data()})
    await _publish(company, [])
    return CalendarIn.model_validate(overrides.to_data())


class RoutingRuleIn(Contract):
    kind: Kind | None = None
    category: str | None = Field(None, max_length=500, description="Shell patterns, alternatives separated by |")
    location: str | None = Field(None, max_length=500)
    departments: list[str] = Field(min_length=1)
    priority: int = Field(0, ge=-1000, le=1000)


@service.http.get("/estates/{estate}", response_model=Estate, tags=["directory"])
async def get_estate(estate: str, who: Principal = Depends(require_estate)) -> Estate:
    known_estate(service, estate)
    return service.directory.estate(estate)


@service.http.put("/estates/{estate}", response_model=Estate, tags=["directory"])
async def put_estate(estate: str, body: Estate, who: Principal = Depends(principal)) -> Estate:
    """Define an estate: departments, staff, buildings, routing rules and policy
    overrides (company admin)."""
    if body.code != estate:
        raise RuleViolation(f"the body defines estate {body.code!r}, the path names {estate!r}", status=422)
    codes = body.department_codes()
    if len(set(codes)) != len(codes):
        raise RuleViolation("a department code appears twice", status=422)
    for index, raw in enumerate(body.routing_rules):
        try:
            rule = RoutingRuleIn.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
            raise RuleViolation(f"routing rule {index + 1} refused: {problems}", status=422) from None
        unknown = [d for d in rule.departments if codes and d not in codes]
        if unknown:
            raise RuleViolation(f"routing rule {index + 1} names departments the estate lacks: {unknown}", status=422)
    _validated_policy(service.directory.company.policy, body.policy, f"policy of estate {estate}")
    await _publish(None, [body])
    return body
