"""`estatedesk up --demo`: a company with three estates and a live stream of owners'
requests and of the staff's and owners' responses, on an accelerated clock.

The feeder plays every person outside the services: owners raise requests through the
customer-service desk (or the night duty), departments acknowledge, arrive and sign back,
department heads verify, supervisors judge complaints, customer service takes over the
night shift's handover list, calls owners back, and sometimes an owner is not satisfied
and the form goes round again. Some people are slow on purpose, so breaches and
escalations happen too. It talks to the services only through their HTTP APIs, and
listens to the ticket events on NATS to know what to do next, as an integration would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import httpx
import nats

from estatedesk.stack import wait_until_intake_knows
from shared.auth import issue_token
from shared.settings import nats_servers
from shared.calendar import WorkingCalendar
from shared.clock import AcceleratedClock, clock_from_spec
from shared.directory import Company, Department, Estate, StaffMember, publish_directory

log = logging.getLogger("estatedesk.demo")
SHANGHAI = ZoneInfo("Asia/Shanghai")

DEPARTMENTS = [
    ("engineering", "工程部"), ("security", "保安部"), ("cleaning", "保洁部"),
    ("greening", "绿化部"), ("finance", "财务部"), ("customer_service", "客服部"),
]
ESTATES = [("hx01", "华溪花园"), ("ch02", "翠湖苑"), ("jg03", "金桂园")]

# (kind, category, repair class, channel, description) — what owners actually bring.
OPENING_REQUEST = ("complaint", "noise", None, "phone", "楼下装修噪音太大，晚上十点还在施工")
REQUEST_TEMPLATES = [
    ("repair", "plumbing", "general", "phone", "厨房水管漏水，地面有积水"),
    ("repair", "water", "emergency", "phone", "楼上漏水严重，水从天花板往下滴"),
    ("repair", "electric", "simple", "walk_in", "客厅灯不亮，需要更换灯管"),
    ("repair", "door lock", "general", "phone", "入户门锁卡住，钥匙转不动"),
    ("repair", "elevator", "emergency", "phone", "2号楼电梯困人"),
    ("repair", "gas", "emergency", "phone", "闻到燃气味"),
    ("repair", "window", "appointment", "walk_in", "卧室窗户密封条老化，约周末上门"),
    ("complaint", "noise", None, "phone", "楼下装修噪音太大，晚上十点还在施工"),
    ("complaint", "garbage", None, "online", "垃圾桶满了没人清理，有异味"),
    ("complaint", "parking", None, "walk_in", "车位被外来车辆占用"),
    ("complaint", "service attitude", None, "phone", "客服人员态度冷淡"),
    ("complaint", "elevator maintenance", None, "letter", "电梯经常停运维修，影响出行"),
    ("complaint", "greening", None, "walk_in", "小区绿化带长期无人修剪"),
    ("inquiry", "fees", None, "phone", "物业费怎么缴纳，能否开发票"),
    ("inquiry", "renovation rules", None, "walk_in", "装修需要办理什么手续"),
    ("suggestion", "security", None, "online", "建议在东门增加一个监控摄像头"),
    ("praise", "cleaning", None, "walk_in", "保洁阿姨很负责，楼道非常干净"),
    ("special_service", "household", None, "phone", "委托代收快递并送到家"),
    ("situation_report", "security", None, "walk_around_visit", "地下车库照明不足"),
]


def demo_origin(now: dt.datetime | None = None) -> dt.datetime:
    """Virtual time starts at this morning's (or the last working day's) office opening."""
    calendar = WorkingCalendar()
    local = (now or dt.datetime.now(dt.timezone.utc)).astimezone(SHANGHAI)
    day = local.date()
    while not calendar.is_working_day(day):
        day -= dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(8, 30), tzinfo=SHANGHAI)


def demo_clock_spec(speed: float) -> str:
    return AcceleratedClock(origin=demo_origin(), speed=speed, anchor=time.time()).spec()


def demo_directory() -> tuple[Company, list[Estate]]:
    estates = []
    for code, name in ESTATES:
        staff = [
            StaffMember(id=f"{code}-cs01", name="客服 王芳", roles=["customer_service"], department="customer_service"),
            StaffMember(id=f"{code}-cs02", name="客服 李娜", roles=["customer_service"], department="customer_service"),
            StaffMember(id=f"{code}-css", name="客服主管 陈静", roles=["customer_service_supervisor"],
                        department="customer_service"),
            StaffMember(id=f"{code}-duty", name="值班 张强", roles=["duty_staff"], department="security"),
            StaffMember(id=f"{code}-dir", name="物业中心主任 刘洋", roles=["estate_director"]),
        ]
        departments = []
        for dept, dept_name in DEPARTMENTS:
            head = f"{code}-{dept}-head"
            departments.append(Department(code=dept, name=dept_name, head=head))
            staff.append(StaffMember(id=head, name=f"{dept_name}主管", roles=["department_head"], department=dept))
            staff.append(StaffMember(id=f"{code}-{dept}-1", name=f"{dept_name}员工", roles=["department_staff"],
                                     department=dept))
        estates.append(Estate(code=code, name=name, director=f"{code}-dir", departments=departments, staff=staff,
                              buildings=[str(b) for b in range(1, 9)]))
    head_office = [
        StaffMember(id="qm01", name="品质主管 赵敏", roles=["quality_manager"]),
        StaffMember(id="gm01", name="总经理 孙伟", roles=["general_manager"]),
        StaffMember(id="mr01", name="管理者代表 周涛", roles=["management_representative"]),
        StaffMember(id="admin", name="系统管理员", roles=["company_admin"]),
    ]
    return Company(name="示范物业管理有限公司", staff=head_office), estates


# Every demo account signs in with this password (printed by `make demo`, in the README).
DEMO_PASSWORD = "estatedesk-demo"


def demo_accounts() -> list[tuple[str, str]]:
    """(staff id, what they do) of the accounts worth trying first, one per role."""
    first = ESTATES[0][0]
    return [
        (f"{first}-cs01", "前台客服 front desk"), (f"{first}-engineering-1", "工程部员工 technician"),
        (f"{first}-engineering-head", "工程部主管 department head"), (f"{first}-css", "客服主管 supervisor"),
        (f"{first}-dir", "物业中心主任 estate director"), (f"{first}-duty", "值班 duty staff"),
        ("qm01", "品质主管 quality manager"), ("admin", "系统管理员 company admin"),
    ]


@dataclass(order=True)
class _Action:
    due: dt.datetime
    seq: int
    name: str = field(compare=False)
    run: object = field(compare=False)


class DemoFeeder:
    """Runs in its own thread with its own event loop beside the supervisor."""

    def __init__(self, stack, seed: int | None = None):
        self.stack = stack
        self.clock = clock_from_spec(stack.clock_spec)
        self.random = random.Random(seed)
        self.company, self.estates = demo_directory()
        self.tokens: dict[str, str] = {}
        self.queue: list[_Action] = []
        self.sequence = itertools.count()
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stats: dict[str, int] = {}
        self.failures = 0
        self.rounds: dict[str, int] = {}

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self._thread_main, name="demo-feeder", daemon=True)
        self.thread.start()

    def _thread_main(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self.run())
        except asyncio.CancelledError:  # stop(): the way out, not an error
            pass
        except Exception:
            log.exception("demo feeder stopped")
        finally:
            self.loop.close()

    def check(self) -> None:
        if self.thread and not self.thread.is_alive():
            print("[demo] feeder stopped; restarting it", flush=True)
            self.start()

    def stop(self) -> None:
        if self.loop and self.loop.is_running():
            for task in asyncio.all_tasks(self.loop):
                self.loop.call_soon_threadsafe(task.cancel)
        if self.thread:
            self.thread.join(timeout=5)

    # --- people -------------------------------------------------------------------------
    def token(self, estate: str, staff_id: str) -> str:
        if staff_id not in self.tokens:
            member = next(s for e in self.estates if e.code == estate for s in e.staff if s.id == staff_id)
            self.tokens[staff_id] = issue_token(
                self.stack.signing_key, staff_id, member.roles, [estate], name=member.name,
                departments=[member.department] if member.department else [],
            )
        return self.tokens[staff_id]

    async def create_accounts(self) -> None:
        """An account for every demo staff member, with the one demo password."""
        admin = issue_token(self.stack.signing_key, "admin", ["company_admin"], ["*"], name="系统管理员")
        people = [m.id for m in self.company.staff] + [m.id for e in self.estates for m in e.staff]
        for staff_id in dict.fromkeys(people):
            r = await self.client.put(f"{self.url('intake')}/v1/accounts/{staff_id}/password",
                                      json={"password": DEMO_PASSWORD}, headers={"Authorization": f"Bearer {admin}"})
            if r.status_code != 204:
                log.warning("demo account %s not created: %s", staff_id, r.text)

    def url(self, service: str) -> str:
        return self.stack.service(service).url

    def later(self, minutes_low: float, minutes_high: float, name: str, run) -> None:
        due = self.clock.now() + dt.timedelta(minutes=self.random.uniform(minutes_low, minutes_high))
        heapq.heappush(self.queue, _Action(due, next(self.sequence), name, run))

    async def call(self, client: httpx.AsyncClient, method: str, service: str, path: str, estate: str,
                   staff: str, body: dict | None = None) -> httpx.Response | None:
        try:
            response = await client.request(method, self.url(service) + path, json=body,
                                            headers={"Authorization": f"Bearer {self.token(estate, staff)}"})
        except httpx.HTTPError as error:
            self.failures += 1
            log.warning("demo %s %s failed: %s", method, path, error)
            return None
        if response.status_code >= 400:
            self.failures += 1
            log.info("demo %s %s → %s %s", method, path, response.status_code, response.text[:200])
        return response

    # --- the show -----------------------------------------------------------------------
    async def run(self) -> None:
        await publish_directory(self.stack.nats_url, self.company, self.estates)
        async with httpx.AsyncClient(timeout=30) as client:
            self.client = client
            first = self.estates[0].code
            await wait_until_intake_knows(client, self.url("intake"), first, self.token(first, f"{first}-cs01"),
                                          timeout=20)
            await self.create_accounts()
            nc = await nats.connect(nats_servers(self.stack.nats_url))
            await nc.subscribe("estatedesk.*.ticket.*", cb=self._on_event)
            for estate in self.estates:
                # The show opens with a complaint in every estate, so its progress
                # updates, validity and callback show within the first minutes.
                self.later(0, 1, "first request", lambda e=estate.code: self.new_request(e, OPENING_REQUEST))
                self.later(30, 60, "shift handover", lambda e=estate.code: self.take_over_handover(e))
                self.later(60, 240, "walk-around visit", lambda e=estate.code: self.walk_around_visit(e))
            print(f"[demo] feeding {len(self.estates)} estates; virtual time "
                  f"{self.clock.now().astimezone(SHANGHAI):%Y-%m-%d %H:%M} Beijing time "
                  f"({self.clock.speed:g}×)", flush=True)
            try:
                while True:
                    now = self.clock.now()
                    while self.queue and self.queue[0].due <= now:
                        action = heapq.heappop(self.queue)
                        try:
                            await action.run()
                        except Exception:
                            log.exception("demo action %s failed", action.name)
                    wait = 0.2
                    if self.queue:
                        wait = min(wait, max(0.01, (self.queue[0].due - now).total_seconds() / self.clock.speed))
                    await asyncio.sleep(wait)
            finally:
                await nc.close()

    async def _on_event(self, msg) -> None:
        try:
            event = json.loads(msg.data)
            name = event["type"].rsplit(".", 1)[-1]
            self.stats[name] = self.stats.get(name, 0) + 1
            handler = getattr(self, f"on_{name}", None)
            if handler:
                handler(event["estate"], event["subject"], event["data"])
        except Exception:
            log.exception("demo could not react to %s", msg.subject)

    # --- owners bring requests ------------------------------------------------------------
    async def new_request(self, estate: str, template: tuple | None = None) -> None:
        """Register one owner's request (`template`, else one drawn from REQUEST_TEMPLATES)
        and schedule the estate's next one."""
        kind, category, repair_class, channel, description = template or self.random.choice(REQUEST_TEMPLATES)
        local = self.clock.now().astimezone(SHANGHAI)
        office = dt.time(8, 30) <= local.time() < dt.time(17, 30) and WorkingCalendar().is_working_day(local.date())
        staff = self.random.choice([f"{estate}-cs01", f"{estate}-cs02"]) if office else f"{estate}-duty"
        building = str(self.random.randint(1, 8))
        body = {
            "kind": kind, "channel": channel, "category": category, "description": description,
            "building": building, "unit": f"{building}-{self.random.randint(1, 3)}-{self.random.randint(1, 18)}0{self.random.randint(1, 4)}",
            "severity": self.random.choice(["serious", "not_serious", "not_serious"]),
            "urgency": "urgent" if repair_class == "emergency" else self.random.choice(["urgent", "not_urgent", "not_urgent"]),
            "reply_method": "none" if channel == "online" and self.random.random() < 0.5 else self.random.choice(["phone", "phone", "visit"]),
            "owner_id": f"{estate}-owner-{self.random.randint(1, 400)}",
            # Face to face, the owner signs the form now; phone and letter sign later.
            "owner_signed": channel in ("walk_in", "walk_around_visit"),
        }
        if repair_class:
            body["repair_class"] = repair_class
        if repair_class == "appointment":
            body["appointment_at"] = (self.clock.now() + dt.timedelta(hours=self.random.randint(3, 30))).isoformat()
        if kind == "complaint" and category == "service attitude":
            body["about_role"] = "customer_service_staff"
        if kind == "complaint" and self.random.random() < 0.1:
            body["owner_loss_cny"] = self.random.choice([300, 800, 1500])
        await self.call(self.client, "POST", "intake", f"/v1/estates/{estate}/requests", estate, staff, body)
        # Busier by day than by night: about one request every 8 virtual minutes per estate by day.
        gap = (4, 12) if office else (20, 60)
        self.later(*gap, "next request", lambda: self.new_request(estate))

    async def take_over_handover(self, estate: str) -> None:
        r = await self.call(self.client, "GET", "intake", f"/v1/estates/{estate}/handover", estate, f"{estate}-cs01")
        if r is not None and r.status_code == 200:
            items = r.json()
            items = items.get("items", items) if isinstance(items, dict) else items
            for item in items:
                if not item.get("taken_over_by") and not item.get("taken_over_at"):
                    await self.call(self.client, "POST", "intake",
                                    f"/v1/estates/{estate}/handover/{item['id']}/take-over", estate, f"{estate}-cs01")
        self.later(45, 90, "shift handover", lambda: self.take_over_handover(estate))

    async def walk_around_visit(self, estate: str) -> None:
        """Customer service visits 2–3 owners a month (RULES §3); what a visit raises
        is registered at intake like any other request."""
        staff = self.random.choice([f"{estate}-cs01", f"{estate}-cs02"])
        local = self.clock.now().astimezone(SHANGHAI)
        body = {"visited_on": local.date().isoformat(), "notes": "走访业主，了解对物业服务的意见",
                "owner_id": f"{estate}-owner-{self.random.randint(1, 400)}",
                "client_visit_id": f"demo-{estate}-{next(self.sequence)}"}
        if self.random.random() < 0.5:
            body["raised_request"] = {"kind": "situation_report", "category": "greening",
                                      "description": "业主反映楼下绿化带杂草较多", "owner_signed": True}
        r = await self.call(self.client, "POST", "callback", f"/v1/estates/{estate}/visits", estate, staff, body)
        if r is not None and r.status_code < 300 and r.json().get("intake_request"):
            await self.call(self.client, "POST", "intake", r.json()["intake_endpoint"], estate, staff,
                            r.json()["intake_request"])
        self.later(60 * 24 * 5, 60 * 24 * 12, "walk-around visit", lambda: self.walk_around_visit(estate))

    # --- reactions to events ------------------------------------------------------------
    def on_accepted(self, estate: str, ticket: str, data: dict) -> None:
        if data["kind"] == "complaint":  # keep the complainant informed (RULES §2 progress updates)
            self.on_progress_due(estate, ticket)
        if data["kind"] == "complaint":
            valid = self.random.random() > 0.12
            body = {"valid": valid, "reason": "属于物业服务范围，责任在我方" if valid else "属开发商遗留问题，非物业责任"}
            self.later(5, 40, "judge validity", lambda: self.call(
                self.client, "POST", "intake", f"/v1/estates/{estate}/requests/{ticket}/validity", estate,
                f"{estate}-css", body))
            if not valid:  # the director confirms an invalid judgement with their own sign-in
                self.later(45, 90, "confirm invalid", lambda: self.call(
                    self.client, "POST", "intake", f"/v1/estates/{estate}/requests/{ticket}/validity/confirmation",
                    estate, f"{estate}-dir", {"confirm": True}))

    def on_assigned(self, estate: str, ticket: str, data: dict) -> None:
        round_ = data.get("round", 1)
        repair = any(d.get("clock") == "arrival" for d in data.get("deadlines", []))
        for department in data["departments"]:
            self._work_the_form(estate, ticket, department, round_, repair)

    def _work_the_form(self, estate: str, ticket: str, department: str, round_: int, repair: bool) -> None:
        """One department's part, in order: sign the ledger, go on site, sign back."""
        staff, head = f"{estate}-{department}-1", f"{estate}-{department}-head"
        form = f"/v1/estates/{estate}/forms/{ticket}"

        async def sign_back():
            await self.call(self.client, "POST", "dispatch", f"{form}/sign-back", estate, head,
                            {"department": department, "opinion": "已派员处理",
                             "result": "问题已解决" if round_ == 1 else "已返工处理完毕", "verified_by": head})

        def then_sign_back():
            # Mostly within the hour (so a visitor sees closures soon); one in ten drags on.
            slow = self.random.random() < 0.1
            self.later(*((60 * 20, 60 * 60) if slow else (10, 60)), "sign back", sign_back)

        async def arrive():
            r = await self.call(self.client, "POST", "dispatch", f"{form}/arrive", estate, staff,
                                {"department": department})
            if r is not None and r.status_code < 300:
                then_sign_back()

        async def acknowledge():
            r = await self.call(self.client, "POST", "dispatch", f"{form}/acknowledge", estate, staff,
                                {"department": department})
            if r is not None and r.status_code < 300:
                if repair:
                    self.later(5, 70, "arrive", arrive)
                else:
                    then_sign_back()

        # Most sign the handover ledger within its 30-minute limit; some are late (breach).
        self.later(2, 45, "acknowledge", acknowledge)

    def on_progress_due(self, estate: str, ticket: str) -> None:
        self.later(10, 120, "progress update", lambda: self.call(
            self.client, "POST", "intake", f"/v1/estates/{estate}/requests/{ticket}/progress", estate,
            f"{estate}-cs01", {"note": "已联系相关部门，正在处理中", "method": "phone"}))

    def on_sla_breached(self, estate: str, ticket: str, data: dict) -> None:
        if data.get("clock") == "tracking":
            self.on_progress_due(estate, ticket)

    def on_callback_scheduled(self, estate: str, ticket: str, data: dict) -> None:
        round_ = data.get("round", 1)
        satisfied = self.random.random() < (0.6 if round_ == 1 else 0.95)
        body = {"handled_in_time": self.random.random() < 0.85, "result_satisfied": satisfied,
                "attitude_satisfied": self.random.random() < 0.92, "suggestions": "" if satisfied else "希望尽快彻底解决",
                "owner_confirmed": True}
        self.later(3, 30, "callback", lambda: self.call(
            self.client, "POST", "callback", f"/v1/estates/{estate}/callbacks/{data['callback_id']}/record", estate,
            f"{estate}-cs02", body))

    def on_archived(self, estate: str, ticket: str, data: dict) -> None:
        if self.random.random() < 0.15:
            number = data["record_number"]

            async def consult():
                r = await self.call(self.client, "POST", "archive", f"/v1/estates/{estate}/archive/loans", estate,
                                    f"{estate}-cs01", {"record_number": number, "purpose": "回访复核", "mode": "consult"})
                if r is not None and r.status_code < 300:
                    loan = r.json().get("loan_id") or r.json().get("id")
                    self.later(10, 60, "return", lambda: self.call(
                        self.client, "POST", "archive", f"/v1/estates/{estate}/archive/loans/{loan}/return", estate,
                        f"{estate}-cs01"))

            self.later(5, 60, "consult archive", consult)
