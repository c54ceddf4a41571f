"""The intake and dispatch HTTP APIs over the real stack: every invalid transition gets a
clear 4xx; invalid complaints end handling; transfers, reschedules, nonconformity
records, bills, owners' privacy, policies as data, and a reopened round."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import nats
import pytest

from shared.clock import FileOffsetClock
from shared.events import Reopened, make_event, subject_for
from tests.conftest import auth, eventually, read_stream, token_for
from tests.integration.test_lifecycle import define_estate, staff_token

pytestmark = pytest.mark.integration

REPAIR = {"kind": "repair", "repair_class": "general", "channel": "phone", "category": "plumbing",
          "description": "厨房水管漏水", "building": "1", "unit": "1-2-301"}


@pytest.fixture
async def estate(stack, clock_file) -> str:
    code = f"a{uuid.uuid4().hex[:8]}"
    await define_estate(stack, code, clock_file)
    return code


class Api:
    def __init__(self, stack, estate: str, client: httpx.AsyncClient):
        self.intake = stack.service("intake").url + f"/v1/estates/{estate}"
        self.dispatch = stack.service("dispatch").url + f"/v1/estates/{estate}"
        self.client = client
        self.stack = stack
        self.estate = estate
        self.cs = staff_token(stack, f"{estate}-cs01", ["customer_service"], estate, ["customer_service"])
        self.eng = staff_token(stack, f"{estate}-eng01", ["department_staff"], estate, ["engineering"])
        self.sec = staff_token(stack, f"{estate}-sec01", ["department_staff"], estate, ["security"])
        self.director = staff_token(stack, f"{estate}-director", ["estate_director"], estate)
        self.eng_head = staff_token(stack, f"{estate}-eng-head", ["department_head"], estate, ["engineering"])

    async def register(self, body: dict, headers=None) -> dict:
        r = await self.client.post(f"{self.intake}/requests", json=body, headers=headers or self.cs)
        assert r.status_code == 201, r.text
        return r.json()

    async def form(self, ticket_id: str) -> dict:
        async def routed():
            r = await self.client.get(f"{self.dispatch}/forms/{ticket_id}", headers=self.cs)
            return r.json() if r.status_code == 200 else None

        form = await eventually(routed, timeout=45)
        assert form, f"form {ticket_id} never routed"
        return form

    async def post(self, path: str, body: dict | None, headers) -> httpx.Response:
        return await self.client.post(path, json=body, headers=headers)


@pytest.fixture
async def api(stack, estate):
    async with httpx.AsyncClient(timeout=30) as client:
        yield Api(stack, estate, client)


async def test_invalid_transitions_are_refused_with_clear_4xx(api, stack, estate):
    repair = await api.register(REPAIR)
    form = await api.form(repair["id"])
    assert form["departments"] == ["engineering"]
    url = f"{api.dispatch}/forms/{repair['id']}"
    sign = {"department": "engineering", "opinion": "o", "result": "r", "verified_by": f"{estate}-eng-head"}

    r = await api.post(f"{url}/sign-back", sign, api.eng)
    assert r.status_code == 409 and "sign-back before acknowledgement" in r.json()["error"]
    r = await api.post(f"{url}/arrive", {"department": "engineering"}, api.eng)
    assert r.status_code == 409 and "before acknowledgement" in r.json()["error"]
    r = await api.post(f"{url}/acknowledge", {"department": "engineering"}, api.sec)
    assert r.status_code == 403 and "does not act for department engineering" in r.json()["error"]
    r = await api.post(f"{url}/acknowledge", {"department": "security"}, api.sec)
    assert r.status_code == 409 and "security" in r.json()["error"]
    assert (await api.post(f"{url}/acknowledge", {"department": "engineering"}, api.eng)).status_code == 200
    r = await api.post(f"{url}/acknowledge", {"department": "engineering"}, api.eng)
    assert r.status_code == 409 and "already acknowledged" in r.json()["error"]
    r = await api.post(f"{url}/sign-back", sign, api.eng)
    assert r.status_code == 409 and "before arrival" in r.json()["error"]
    assert (await api.post(f"{url}/arrive", {"department": "engineering"}, api.eng)).status_code == 200
    r = await api.post(f"{url}/sign-back", {**sign, "verified_by": f"{estate}-eng01"}, api.eng)
    assert r.status_code == 403 and "department head" in r.json()["error"]
    r = await api.post(f"{url}/sign-back", {**sign, "opinion": ""}, api.eng)
    assert r.status_code == 422
    # The technician signs back; the line waits for the head, who alone verifies or returns it.
    r = await api.post(f"{url}/sign-back", {k: v for k, v in sign.items() if k != "verified_by"}, api.eng)
    assert r.status_code == 200 and r.json()["status"] == "in_handling", r.text
    line = r.json()["ledger"][-1]
    assert (line["status"], line["signed_by"], line["verified_by"], line["signed_back_at"]) == (
        "awaiting_verify", f"{estate}-eng01", None, None) and line["signed_at"]
    r = await api.post(f"{url}/sign-back", sign, api.eng)
    assert r.status_code == 409 and "waits for its head's verification" in r.json()["error"]
    r = await api.post(f"{url}/sign-back/verify", {"department": "engineering"}, api.eng)
    assert r.status_code == 403 and "not the head of department engineering" in r.json()["error"]
    r = await api.post(f"{url}/sign-back/return", {"department": "engineering", "reason": " "}, api.eng_head)
    assert r.status_code == 422
    r = await api.post(f"{url}/sign-back/return", {"department": "engineering", "reason": "照片不清，请补拍"},
                       api.eng_head)
    assert r.status_code == 200, r.text
    line = r.json()["ledger"][-1]
    assert (line["status"], line["opinion"], line["notes"][-1]["note"]) == ("arrived", None, "照片不清，请补拍")
    r = await api.post(f"{url}/sign-back/verify", {"department": "engineering"}, api.eng_head)
    assert r.status_code == 409 and "not waiting for its head's verification" in r.json()["error"]
    # The old one-step call naming the head from a technician: the line still waits for the head.
    r = await api.post(f"{url}/sign-back", sign, api.eng)
    assert r.json()["status"] == "in_handling" and r.json()["ledger"][-1]["status"] == "awaiting_verify"
    r = await api.post(f"{url}/sign-back/verify", {"department": "engineering"}, api.eng_head)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    line = r.json()["ledger"][-1]
    assert (line["status"], line["signed_by"], line["verified_by"]) == (
        "signed_back", f"{estate}-eng01", f"{estate}-eng-head") and line["signed_back_at"]
    r = await api.post(f"{url}/sign-back", sign, api.eng)
    assert r.status_code == 409 and "already completed" in r.json()["error"]

    # Judging validity of anything but a complaint.
    inquiry = await api.register({"kind": "inquiry", "channel": "phone", "description": "停车费怎么交？"})
    r = await api.post(f"{api.intake}/requests/{inquiry['id']}/validity", {"valid": True, "reason": "x"}, api.cs)
    assert r.status_code == 409 and "only complaints" in r.json()["error"]

    # Acting outside one's estate.
    elsewhere = staff_token(stack, "outsider", ["customer_service", "department_staff"], "other-estate", ["engineering"])
    r = await api.post(f"{url}/acknowledge", {"department": "engineering"}, elsewhere)
    assert r.status_code == 403 and estate in r.json()["error"]
    r = await api.post(f"{api.intake}/requests/{inquiry['id']}/validity", {"valid": True, "reason": "x"}, elsewhere)
    assert r.status_code == 403
    r = await api.client.get(f"{api.intake}/requests/{inquiry['id']}", headers=elsewhere)
    assert r.status_code == 403

    # Unknown things.
    assert (await api.client.get(f"{api.dispatch}/forms/nope", headers=api.cs)).status_code == 404
    assert (await api.post(f"{api.dispatch}/forms/nope/acknowledge", {"department": "engineering"}, api.eng)).status_code == 404

    # Registration input the rules reject.
    r = await api.client.post(f"{api.intake}/requests", headers=api.cs,
                              json={"kind": "complaint", "channel": "walk_in", "description": "当面投诉"})
    assert r.status_code == 422 and "signature" in r.json()["error"]
    walk_in = await api.register({"kind": "complaint", "channel": "walk_in", "description": "当面投诉",
                                  "owner_signed": True})
    assert walk_in["signature"]["requirement"] == "signed"
    r = await api.client.post(f"{api.intake}/requests", headers=api.cs, json={**REPAIR, "building": "9"})
    assert r.status_code == 422 and "no building '9'" in r.json()["error"]
    r = await api.client.post(f"{api.intake}/requests", headers=api.cs,
                              json={"kind": "complaint", "channel": "phone", "description": "x", "repair_class": "simple"})
    assert r.status_code == 422
    r = await api.client.post(f"{api.intake}/requests", headers=api.cs,
                              json={**REPAIR, "repair_class": "appointment"})
    assert r.status_code == 422 and "appointment" in r.json()["error"]


async def test_an_invalid_complaint_needs_a_manager_and_ends_handling(api, stack, estate):
    complaint = await api.register({"kind": "complaint", "channel": "phone", "category": "noise",
                                    "description": "邻居装修噪音"})
    form = await api.form(complaint["id"])
    assert form["departments"] == ["security"]
    # The estate wants owners told at once (policy: 0 working days instead of 1).
    overrides = (await api.client.get(f"{api.intake}/policy", headers=api.cs)).json()["overrides"]
    overrides["intake"] = {**overrides.get("intake", {}), "invalid_complaint_notice_working_days": 0}
    assert (await api.client.put(f"{api.intake}/policy", json=overrides, headers=api.director)).status_code == 200
    url = f"{api.intake}/requests/{complaint['id']}/validity"
    invalid = {"valid": False, "reason": "装修在允许时段内进行，不属物业责任"}
    # The clerk's judgement (naming a manager confirms nothing) waits for the manager.
    r = await api.post(url, {**invalid, "confirmed_by": f"{estate}-director"}, api.cs)
    assert r.status_code == 200, r.text
    assert r.json()["validity"]["state"] == "awaiting_confirmation" and r.json()["status"] != "invalid"
    assert (await api.post(url, {"valid": True, "reason": "again"}, api.cs)).status_code == 409
    r = await api.post(f"{url}/confirmation", {"confirm": True}, api.cs)
    assert r.status_code == 403 and "manager" in r.json()["error"]
    r = await api.post(f"{url}/confirmation", {"confirm": True}, api.director)
    assert r.status_code == 200, r.text
    validity = r.json()["validity"]
    assert validity["valid"] is False and validity["state"] == "confirmed" and validity["notify_owner_by"]
    assert validity["confirmed_by"] == f"{estate}-director" and r.json()["status"] == "invalid"
    assert (await api.post(url, {"valid": True, "reason": "again"}, api.cs)).status_code == 409
    assert (await api.post(f"{url}/confirmation", {"confirm": False, "note": "x"}, api.director)).status_code == 409

    async def handling_ended():
        form = await api.form(complaint["id"])
        return form if form["status"] == "invalid" else None

    form = await eventually(handling_ended)
    assert form and all(d["met_at"] and d["outcome"] == "cancelled" for d in form["deadlines"])
    r = await api.post(f"{api.dispatch}/forms/{complaint['id']}/acknowledge", {"department": "security"}, api.sec)
    assert r.status_code == 409 and "judged invalid" in r.json()["error"]
    overdue = (await api.client.get(f"{api.intake}/requests", params={"notice": "overdue"}, headers=api.cs)).json()
    assert [t["id"] for t in overdue] == [complaint["id"]] and overdue[0]["validity"]["notice_overdue"] is True
    # The owner is told why: the first update after the judgement is the notice (even
    # once the callback service has closed the ticket).
    r = await api.post(f"{api.intake}/requests/{complaint['id']}/progress",
                       {"note": "已电话告知业主无效原因", "method": "phone"}, api.cs)
    assert r.status_code == 201 and r.json()["validity"]["owner_notified_at"]
    assert (await api.client.get(f"{api.intake}/requests", params={"notice": "overdue"}, headers=api.cs)).json() == []
    judged = await read_stream(stack.nats_url, subject_for(estate, "validity_judged"), expected=1)
    assert judged[0]["data"]["confirmed_by"] == f"{estate}-director" and judged[0]["data"]["valid"] is False


async def test_transfer_reschedule_and_a_reopened_round(api, stack, estate, clock_file):
    complaint = await api.register({"kind": "complaint", "channel": "phone", "category": "noise",
                                    "description": "夜间有人在车库施工"})
    await api.form(complaint["id"])
    url = f"{api.dispatch}/forms/{complaint['id']}"
    r = await api.post(f"{url}/transfer", {"department": "greening"}, api.sec)
    assert r.status_code == 422 and "no department 'greening'" in r.json()["error"]
    r = await api.post(f"{url}/transfer", {"department": "engineering"}, api.eng)
    assert r.status_code == 403
    r = await api.post(f"{url}/transfer", {"department": "engineering", "note": "属设备问题"}, api.sec)
    assert r.status_code == 200, r.text
    form = r.json()
    assert form["departments"] == ["engineering"]
    lines = {(l["department"], l["status"]) for l in form["ledger"]}
    assert lines == {("security", "transferred"), ("engineering", "assigned")}
    r = await api.post(f"{url}/acknowledge", {"department": "security"}, api.sec)
    assert r.status_code == 409
    assert (await api.post(f"{url}/acknowledge", {"department": "engineering"}, api.eng)).status_code == 200
    assigned = await read_stream(stack.nats_url, subject_for(estate, "assigned"), expected=2)
    assert [e["data"].get("transferred_from") for e in assigned] == [None, "security"]
    r = await api.post(f"{url}/sign-back", {"department": "engineering", "opinion": "已协调施工方停工",
                                            "result": "夜间施工已停止", "verified_by": f"{estate}-eng-head"},
                       api.eng_head)  # the head signing back their department's line verifies it at once
    assert r.json()["status"] == "completed"
    await read_stream(stack.nats_url, subject_for(estate, "completed"), expected=1)

    # The owner is not satisfied: the callback service reopens; dispatch starts round 2.
    nc = await nats.connect(stack.nats_url)
    event = make_event(Reopened(ticket_id=complaint["id"], round=2, reason="夜间仍有噪音", reopened_by="cb01"),
                       estate=estate, actor="cb01", source="callback", time=FileOffsetClock(clock_file).now())
    await nc.jetstream().publish(event.nats_subject, event.model_dump_json().encode())
    await nc.close()
    assigned = await read_stream(stack.nats_url, subject_for(estate, "assigned"), expected=3)
    round2 = assigned[-1]["data"]
    assert round2["round"] == 2 and round2["departments"] == ["engineering"]
    assert {d["clock"] for d in round2["deadlines"]} >= {"acknowledge", "reply", "tracking"}

    async def reopened():
        form = await api.form(complaint["id"])
        shown = (await api.client.get(f"{api.intake}/requests/{complaint['id']}", headers=api.cs)).json()
        return (form, shown) if form["round"] == 2 and shown["round"] == 2 else None

    form, shown = await eventually(reopened)
    assert form["status"] == "in_handling" and shown["status"] == "in_handling"  # one vocabulary (issue 11)
    r = await api.post(f"{url}/sign-back", {"department": "engineering", "opinion": "o", "result": "r",
                                            "verified_by": f"{estate}-eng-head"}, api.eng_head)
    assert r.status_code == 409 and "before acknowledgement" in r.json()["error"]

    # Appointment repair, owner not at home: the arrival clock follows the new appointment.
    appointment = (FileOffsetClock(clock_file).now() + dt.timedelta(hours=30)).replace(microsecond=0)
    repair = await api.register({**REPAIR, "repair_class": "appointment", "appointment_at": appointment.isoformat()})
    form = await api.form(repair["id"])
    arrival = next(d for d in form["deadlines"] if d["clock"] == "arrival")
    assert dt.datetime.fromisoformat(arrival["due_at"]) == appointment
    url = f"{api.dispatch}/forms/{repair['id']}"
    assert (await api.post(f"{url}/acknowledge", {"department": "engineering"}, api.eng)).status_code == 200
    past = {"department": "engineering", "appointment_at": "2020-01-01T09:00:00+08:00", "note": "x"}
    assert (await api.post(f"{url}/reschedule", past, api.eng)).status_code == 422
    later = appointment + dt.timedelta(days=1)
    r = await api.post(f"{url}/reschedule", {"department": "engineering", "appointment_at": later.isoformat(),
                                             "note": "业主不在家，已留言，改约次日"}, api.eng)
    assert r.status_code == 200, r.text
    deadlines = {d["clock"]: dt.datetime.fromisoformat(d["due_at"]) for d in r.json()["deadlines"]}
    assert deadlines["arrival"] == later and deadlines["repair_slip_return"] == later + dt.timedelta(hours=24)
    line = next(l for l in r.json()["ledger"] if l["department"] == "engineering")
    assert line["notes"][-1]["note"].startswith("业主不在家")


async def test_nonconformity_escalation_by_subject_and_bills(api, stack, estate):
    loss = await api.register({"kind": "complaint", "channel": "phone", "category": "water leak",
                               "description": "水管维修不当泡坏地板", "owner_loss_cny": 800})
    about_staff = await api.register({"kind": "complaint", "channel": "phone", "description": "客服态度恶劣",
                                      "about_role": "customer_service_staff"})
    escalated = await read_stream(stack.nats_url, subject_for(estate, "escalated"), expected=2)
    by_ticket = {e["subject"]: e["data"] for e in escalated}
    assert by_ticket[loss["id"]]["nonconformity"] is True
    assert by_ticket[loss["id"]]["rung"] == "management_representative"
    assert by_ticket[about_staff["id"]]["rung"] == "estate_director"  # straight to the director

    form = await api.form(loss["id"])
    assert form["nonconformity"]["state"] == "opened"
    url = f"{api.dispatch}/forms/{loss['id']}/nonconformity"
    r = await api.post(f"{url}/approve", None, api.director)
    assert r.status_code == 403 and "management_representative" in r.json()["error"]
    assert (await api.post(f"{url}/close", {"result": "x"}, api.director)).status_code == 409
    rep = auth(token_for(stack, "mr01", ["management_representative"], ["*"]))
    r = await api.post(f"{url}/approve", None, rep)
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    r = await api.post(f"{url}/corrective-action", {"action": "赔偿并重做防水", "responsible": f"{estate}-eng-head"},
                       api.director)
    assert r.json()["state"] == "corrective_action"
    assert (await api.post(f"{url}/close", {"result": "已赔偿"}, api.director)).json()["state"] == "closed"
    assert (await api.post(f"{url}/capa-report", {"report": "维修前须检查防水层"}, api.director)).status_code == 200
    assert (await api.post(f"{url}/capa-report", {"report": "again"}, api.director)).status_code == 409
    assert (await api.post(url, {"content": "again"}, api.director)).status_code == 409

    # Paid household services: catalogue, a bill in three copies, settled through finance.
    items = [{"code": "pipe-fix", "name": "水管维修", "paid": True, "price_cny": "50.00"},
             {"code": "advice", "name": "用水咨询", "paid": False},
             {"code": "custom", "name": "非标维修", "paid": True}]
    r = await api.client.put(f"{api.dispatch}/service-items", json=items, headers=api.eng)
    assert r.status_code == 403
    r = await api.client.put(f"{api.dispatch}/service-items", json=items, headers=api.director)
    assert r.status_code == 200, r.text
    bad = [{"code": "gift", "name": "免费项目", "paid": False, "price_cny": "5"}]
    assert (await api.client.put(f"{api.dispatch}/service-items", json=bad, headers=api.director)).status_code == 422
    repair = await api.register(REPAIR)
    await api.form(repair["id"])
    r = await api.post(f"{api.dispatch}/bills", {"ticket_id": repair["id"], "services": [{"code": "custom"}]}, api.eng)
    assert r.status_code == 422 and "supervisors" in r.json()["error"]
    r = await api.post(f"{api.dispatch}/bills", {
        "ticket_id": repair["id"], "services": [{"code": "pipe-fix", "quantity": 2}, {"code": "advice"}],
        "materials": [{"name": "PPR 水管", "quantity": 1, "unit_price_cny": "30"}]}, api.eng)
    assert r.status_code == 201, r.text
    bill = r.json()
    assert bill["total_cny"] == "130.00" and bill["copies"] == ["owner", "finance", "stub"]
    settle = f"{api.dispatch}/bills/{bill['number']}/settle"
    r = await api.post(settle, {"channel": "technician_cash"}, api.eng)
    assert r.status_code == 422 and "no cash" in r.json()["error"]
    r = await api.post(settle, {"channel": "finance_counter"}, api.eng)
    assert r.status_code == 403 and "finance" in r.json()["error"]
    finance = staff_token(stack, f"{estate}-fin01", ["department_staff"], estate, ["finance"])
    r = await api.post(settle, {"channel": "finance_counter"}, finance)
    assert r.status_code == 200 and r.json()["settled_by"] == f"{estate}-fin01"
    assert (await api.post(settle, {"channel": "finance_counter"}, finance)).status_code == 409


async def test_owners_are_masked_and_disclosures_logged(api, stack, estate):
    r = await api.post(f"{api.intake}/units", {"building": "1", "entrance": "2", "room": "301"}, api.cs)
    assert r.status_code == 201 and r.json()["code"] == "1-2-301"
    assert (await api.post(f"{api.intake}/units", {"building": "1", "entrance": "2", "room": "301"}, api.cs)).status_code == 409
    assert (await api.post(f"{api.intake}/units", {"building": "7", "entrance": "1", "room": "101"}, api.cs)).status_code == 422
    r = await api.post(f"{api.intake}/owners", {"name": "王先生", "unit": "1-9-999", "phone": "13812345678"}, api.cs)
    assert r.status_code == 422
    r = await api.post(f"{api.intake}/owners", {
        "name": "王先生", "unit": "1-2-301", "phone": "13812345678", "id_number": "110101199003071234",
        "contacts": [{"name": "王太太", "phone": "13987654321", "relation": "spouse"}]}, api.cs)
    assert r.status_code == 201, r.text
    owner = r.json()
    assert owner["phone"] == "13812345678" and owner["masked"] is False  # customer service sees it all

    masked = (await api.client.get(f"{api.intake}/owners", params={"unit": "1-2-301"}, headers=api.eng)).json()
    assert masked[0]["phone"] == "138****5678" and masked[0]["masked"] is True
    assert "19900307" not in masked[0]["id_number"] and masked[0]["contacts"][0]["phone"] == "139****4321"
    full = await api.client.get(f"{api.intake}/owners/{owner['id']}", params={"purpose": "回访"}, headers=api.cs)
    assert full.json()["id_number"] == "110101199003071234"
    log = (await api.client.get(f"{api.intake}/disclosures", headers=api.director)).json()
    assert [(e["viewer"], e["purpose"]) for e in log] == [(f"{estate}-cs01", "回访")]
    assert (await api.client.get(f"{api.intake}/disclosures", headers=api.eng)).status_code == 403

    # The later signature (补签) of a phone request.
    phoned = await api.register({"kind": "suggestion", "channel": "phone", "description": "建议增加充电桩"})
    assert phoned["signature"]["requirement"] == "later" and phoned["signature"]["next_reminder_at"]
    pending = (await api.client.get(f"{api.intake}/requests", params={"signature": "pending"}, headers=api.cs)).json()
    assert phoned["id"] in {t["id"] for t in pending}
    r = await api.post(f"{api.intake}/requests/{phoned['id']}/signature", {"signed_by_owner": True}, api.cs)
    assert r.status_code == 200 and r.json()["signature"]["requirement"] == "signed"
    assert r.json()["signature"]["next_reminder_at"] is None
    assert (await api.post(f"{api.intake}/requests/{phoned['id']}/signature", {"signed_by_owner": True}, api.cs)).status_code == 409


async def test_policies_are_data_changed_through_the_api(api, stack, estate):
    policy_url = f"{api.intake}/policy"
    r = await api.client.put(policy_url, json={"clocks": {"arrival_minutes_general": 45}}, headers=api.cs)
    assert r.status_code == 403
    r = await api.client.put(policy_url, json={"clocks": {"arrival_minutes_sometimes": 45}}, headers=api.director)
    assert r.status_code == 422 and "arrival_minutes_sometimes" in r.json()["error"]
    r = await api.client.put(policy_url, json={"intake": {"office_opens": "18:00", "office_closes": "09:00"}},
                             headers=api.director)
    assert r.status_code == 422 and "office hours" in r.json()["error"]
    r = await api.client.put(policy_url, json={"escalation": {"subject_rung": "chairman"}}, headers=api.director)
    assert r.status_code == 422
    current = (await api.client.get(policy_url, headers=api.cs)).json()["overrides"]
    r = await api.client.put(policy_url, json={**current, "clocks": {"arrival_minutes_general": 45}},
                             headers=api.director)
    assert r.status_code == 200, r.text
    assert r.json()["effective"]["clocks"]["arrival_minutes_general"] == 45

    async def dispatch_uses_it():
        repair = await api.register({**REPAIR, "description": f"policy probe {uuid.uuid4().hex[:6]}"})
        form = await api.form(repair["id"])
        arrival = next(d for d in form["deadlines"] if d["clock"] == "arrival")
        minutes = (dt.datetime.fromisoformat(arrival["due_at"])
                   - dt.datetime.fromisoformat(repair["received_at"])).total_seconds() / 60
        return minutes == 45

    assert await eventually(dispatch_uses_it, timeout=20)
    company = auth(token_for(stack, "qm", ["quality_manager"], ["*"]))
    r = await api.client.put(f"{stack.service('intake').url}/v1/company/calendar", headers=company,
                             json={"days_off": ["2027-01-04"], "workdays": ["2027-01-04"]})
    assert r.status_code == 422 and "2027-01-04" in r.json()["error"]
    r = await api.client.put(f"{stack.service('intake').url}/v1/company/policy", headers=api.cs, json={})
    assert r.status_code == 403
    r = await api.client.put(f"{stack.service('intake').url}/v1/estates/{estate}", headers=company,
                             json={"code": estate, "name": "x"})
    assert r.status_code == 403  # estate definitions are the company admin's
