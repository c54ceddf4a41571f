"""Company reference data every service needs: estates, departments, staff, buildings,
policies and the company calendar.

It lives in a JetStream key-value bucket (keys ``company`` and ``estate.<code>``). Every
service watches the bucket and keeps the current values in memory, so a policy changed
through the API reaches every replica within milliseconds and the bucket keeps history.
No service reads another's tables for it.
"""

from __future__ import annotations

import asyncio
import logging
from zoneinfo import ZoneInfo

import nats
from nats.js.api import KeyValueConfig
from pydantic import Field, ValidationError, field_validator

from shared.auth import KNOWN_ROLES
from shared.calendar import CalendarOverrides, WorkingCalendar
from shared.limits import (
    DEPARTMENT_CODE_MAX, DEPARTMENT_CODE_PATTERN, ESTATE_CODE_MAX, ESTATE_CODE_PATTERN, NAME_MAX, Contract, PersonName,
    StaffId, UnitPart,
)
from shared.policy import Policy, effective_policy
from shared.settings import nats_replicas, nats_servers

log = logging.getLogger("estatedesk.directory")
BUCKET = "estatedesk_directory"
REVOKED_PREFIX = "revoked."


DepartmentCodeField = Field(pattern=DEPARTMENT_CODE_PATTERN, max_length=DEPARTMENT_CODE_MAX)


class Department(Contract):
    code: str = DepartmentCodeField
    name: PersonName
    head: StaffId | None = None  # staff id of the department head


class StaffMember(Contract):
    id: StaffId
    name: PersonName
    roles: list[str]
    department: str | None = Field(None, pattern=DEPARTMENT_CODE_PATTERN, max_length=DEPARTMENT_CODE_MAX)
    phone: str | None = Field(None, pattern=r"^\+?[0-9-]{5,20}$", description="Signs in with it instead of the id")

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: list[str]) -> list[str]:
        unknown = sorted(set(roles) - KNOWN_ROLES)
        if unknown:
            raise ValueError(f"unknown roles {unknown}; known: {sorted(KNOWN_ROLES)}")
        return roles


class Estate(Contract):
    code: str = Field(pattern=ESTATE_CODE_PATTERN, max_length=ESTATE_CODE_MAX)
    name: str = Field(min_length=1, max_length=NAME_MAX)
    director: StaffId | None = None  # 物业中心主任, staff id
    departments: list[Department] = Field(default_factory=list)
    staff: list[StaffMember] = Field(default_factory=list)
    buildings: list[UnitPart] = Field(default_factory=list)
    policy: dict = Field(default_factory=dict)  # overrides of the company policy
    routing_rules: list[dict] = Field(default_factory=list)  # dispatch routing, as data

    def knows(self, staff_id: str) -> bool:
        """Is `staff_id` on this estate's staff (its list, its director, a department head)?"""
        return (staff_id in {member.id for member in self.staff} or staff_id == self.director
                or staff_id in {d.head for d in self.departments})

    def department_codes(self) -> list[str]:
        return [d.code for d in self.departments]


class Company(Contract):
    code: str = "company"
    name: str = "EstateDesk Property Management"
    # Head-office people (quality manager, general manager, management representative,
    # company admin, general management dept): they act for every estate.
    staff: list[StaffMember] = Field(default_factory=list)
    policy: dict = Field(default_factory=dict)  # overrides of the RULES.md defaults
    calendar: dict = Field(default_factory=dict)  # CalendarOverrides.to_data()


class Directory:
    """In-memory view of the directory bucket, kept current by a watcher."""

    def __init__(self) -> None:
        self.company = Company()
        self.estates: dict[str, Estate] = {}
        self._calendar = WorkingCalendar()
        self._policies: dict[str, Policy] = {}
        # Signed-out sessions (token `jti` → when the token would have expired).
        self.revoked: dict[str, str] = {}
        self._nc = None
        self._watcher = None
        self._task: asyncio.Task | None = None
        self.changed = asyncio.Event()

    # --- queries ---
    def estate(self, code: str) -> Estate | None:
        return self.estates.get(code)

    def company_staff(self, staff_id: str) -> StaffMember | None:
        return next((member for member in self.company.staff if member.id == staff_id), None)

    def policy_for(self, estate: str) -> Policy:
        if estate not in self._policies:
            overrides = self.estates[estate].policy if estate in self.estates else {}
            try:
                self._policies[estate] = effective_policy(self.company.policy, overrides)
            except ValidationError as error:
                # Stored before the API refused such values: serve the company's policy
                # rather than failing every request of the estate.
                log.error("estate %s has an invalid policy, using the company's: %s", estate, error)
                try:
                    self._policies[estate] = effective_policy(self.company.policy)
                except ValidationError:
                    self._policies[estate] = effective_policy()
        return self._policies[estate]

    def calendar_for(self, estate: str) -> WorkingCalendar:
        return self._calendar

    def timezone_for(self, estate: str) -> ZoneInfo:
        return ZoneInfo(self.policy_for(estate).timezone)

    # --- updates ---
    def apply(self, key: str, value: bytes | None) -> None:
        if key == "company":
            self.company = Company.model_validate_json(value) if value else Company()
            self._calendar = WorkingCalendar(CalendarOverrides.from_data(self.company.calendar))
        elif key.startswith("estate."):
            code = key.removeprefix("estate.")
            if value:
                self.estates[code] = Estate.model_validate_json(value)
            else:
                self.estates.pop(code, None)
        elif key.startswith(REVOKED_PREFIX):
            session = key.removeprefix(REVOKED_PREFIX)
            if value:
                self.revoked[session] = value.decode()
            else:
                self.revoked.pop(session, None)
            return
        self._policies.clear()
        self.changed.set()

    async def start(self, nats_url: str, connect_options: dict | None = None, replicas: int | None = None) -> None:
        """Load the directory and follow its changes; `connect_options` for nats.connect
        (the service's reconnect policy); `replicas` of the bucket when it is created."""
        self._nc = await nats.connect(nats_servers(nats_url), **(connect_options or {}))
        kv = await ensure_bucket(self._nc, replicas)
        self._watcher = await kv.watchall()
        # Initial values arrive first, then a None marker.
        while True:
            entry = await self._watcher.updates(timeout=10)
            if entry is None:
                break
            self._apply_entry(entry)
        self._task = asyncio.create_task(self._follow())

    def _apply_entry(self, entry) -> None:
        try:
            self.apply(entry.key, entry.value if entry.operation is None else None)
        except Exception:
            log.exception("ignored a malformed directory entry %s", entry.key)

    async def _follow(self) -> None:
        async for entry in self._watcher:
            if entry is not None:
                self._apply_entry(entry)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._watcher:
            try:
                await self._watcher.stop()
            except Exception:
                pass
        if self._nc:
            await self._nc.close()

    @property
    def connected(self) -> bool:
        return bool(self._nc and self._nc.is_connected)


async def ensure_bucket(nc, replicas: int | None = None):
    """The directory bucket, created when missing with `replicas` copies (default: the
    process's ESTATEDESK_NATS_REPLICAS, 1 when unset; 3 on a three-node cluster)."""
    js = nc.jetstream()
    try:
        return await js.key_value(BUCKET)
    except nats.js.errors.BucketNotFoundError:
        replicas = replicas or nats_replicas()
        return await js.create_key_value(KeyValueConfig(bucket=BUCKET, history=16, replicas=replicas))


async def revoke_session(nats_url: str, session: str, expires_at: str) -> None:
    """Tell every service that a sign-in ended: its tokens are refused from now on."""
    nc = await nats.connect(nats_servers(nats_url))
    try:
        kv = await ensure_bucket(nc)
        await kv.put(f"{REVOKED_PREFIX}{session}", expires_at.encode())
    finally:
        await nc.close()


async def publish_directory(nats_url: str, company: Company | None, estates: list[Estate]) -> None:
    """Write company and estates into the directory bucket (used by the loader and API)."""
    nc = await nats.connect(nats_servers(nats_url))
    try:
        kv = await ensure_bucket(nc)
        if company is not None:
            effective_policy(company.policy)  # refuse a bad policy before it is stored
            await kv.put("company", company.model_dump_json().encode())
        for estate in estates:
            effective_policy(company.policy if company else {}, estate.policy)
            await kv.put(f"estate.{estate.code}", estate.model_dump_json().encode())
    finally:
        await nc.close()
