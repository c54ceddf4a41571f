"""Issue 15 over the API, on the real stack: an owner binds a unit with the code the
notifier sent, submits a repair with a photo, the desk clerk who opens it becomes its
first-contact owner, the departments handle it, the owner answers the callback online
"not satisfied" (round 2) then "satisfied" (closed) - and the monthly report counts the
owner's answers like desk-recorded ones. An owner of another unit sees and answers
nothing of it; five wrong codes lock binding for a unit; staff tokens are no owner tokens."""

from __future__ import annotations

import asyncio
import base64
import re
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.auth import issue_token
from shared.clock import FileOffsetClock
from tests.conftest import auth, eventually, head_verifies, token_for

pytestmark = pytest.mark.integration

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
WAIT = 45


def device(name: str) -> dict[str, str]:
    return {"X-Device-Id": f"test-device-{name}"}


async def add_unit(client, estate: str, desk: dict, code: str) -> None:
    building, entrance, room = code.split("-")
    r = await client.post(f"/v1/estates/{estate}/units", json={"building": building, "entrance": entrance, "room": room},
                          headers=desk)
    assert r.status_code in (201, 409), r.text


async def code_from_sent_messages(client, estate: str, desk: dict, unit: str) -> str:
    r = await client.get(f"/v1/estates/{estate}/owner-messages", params={"unit": unit}, headers=desk)
    assert r.status_code == 200, r.text
    latest = next(m for m in r.json() if m["purpose"] == "bind_code")
    return re.search(r"验证码 (\d+)", latest["text"]).group(1)


async def bind(client, estate: str, desk: dict, unit: str, who: str) -> dict:
    r = await client.post(f"/v1/owner/estates/{estate}/units/{unit}/code", headers=device(who))
    assert r.status_code == 200, r.text
    code = await code_from_sent_messages(client, estate, desk, unit)
    r = await client.post(f"/v1/owner/estates/{estate}/units/{unit}/bind", json={"code": code}, headers=device(who))
    assert r.status_code == 200, r.text
    return {**auth(r.json()["token"]), **device(who)}


async def handle_round(client, estate: str, ticket_id: str, round_: int, *, handler: str | None = None,
                       heads: dict[str, str] | None = None) -> None:
    """Each department holding the form acknowledges, arrives and signs back, its head
    verifying (the demo estate's heads unless `heads` names them)."""
    departments = ["engineering", "security", "cleaning", "customer_service"]
    token = auth(issue_token(client.signing_key, handler or f"{estate}-head",
                             ["department_head", "department_staff", "customer_service"], [estate],
                             departments=departments))
    form = f"/v1/estates/{estate}/forms/{ticket_id}"

    async def assigned():
        r = await client.get(form, headers=token)
        return r.status_code == 200 and r.json()["round"] == round_ and r.json()["departments"] and r.json()

    state = await eventually(assigned, timeout=WAIT)
    assert state and state["departments"], f"round {round_} never reached dispatch"
    for department in state["departments"]:
        head = (heads or {}).get(department) or {"engineering": f"{estate}-eng-head"}.get(
            department, f"{estate}-{department[:3]}-head")
        for step, body in (("acknowledge", {"department": department}), ("arrive", {"department": department}),
                           ("sign-back", {"department": department, "opinion": "更换进水管",
                                          "result": f"第{round_}轮已修复", "verified_by": head})):
            r = await client.post(f"{form}/{step}", json=body, headers=token)
            assert r.status_code < 300, (step, r.text)
        await head_verifies(client, client.signing_key, r, estate, department, head)


async def answerable(client, estate: str, ticket_id: str, owner: dict, round_: int) -> dict | None:
    async def found():
        r = await client.get(f"/v1/owner/estates/{estate}/tickets/{ticket_id}/callbacks", headers=owner)
        return r.status_code == 200 and next(
            (c for c in r.json()["callbacks"] if c["answerable"] and c["round"] == round_), None)

    return await eventually(found, timeout=WAIT)


async def test_owner_binds_submits_follows_and_answers_online(stack, estate, clock_file):
    desk = auth(token_for(stack, f"{estate}-cs01", ["customer_service"], [estate]))
    async with httpx.AsyncClient(base_url=stack.console_url.rstrip("/"), timeout=30) as client:
        client.signing_key = stack.signing_key
        for unit in ("1-1-101", "2-1-201", "3-1-301"):
            await add_unit(client, estate, desk, unit)
        r = await client.post(f"/v1/estates/{estate}/owners", json={"name": "业主甲", "unit": "1-1-101",
                                                                     "phone": "13812345678"}, headers=desk)
        assert r.status_code == 201, r.text

        # --- five wrong codes lock binding for the unit (policy.owners) -------------------------
        r = await client.post(f"/v1/owner/estates/{estate}/units/3-1-301/code", headers=device("mallory"))
        assert r.json()["sent_to"] == "前台"  # no phone on file: the desk reads it out
        right = await code_from_sent_messages(client, estate, desk, "3-1-301")
        wrong = "000000" if right != "000000" else "111111"
        answers = []
        for _ in range(5):
            r = await client.post(f"/v1/owner/estates/{estate}/units/3-1-301/bind", json={"code": wrong},
                                  headers=device("mallory"))
            answers.append(r.status_code)
        assert answers == [401, 401, 401, 401, 403], answers
        assert "锁定" in r.json()["error_zh"]
        r = await client.post(f"/v1/owner/estates/{estate}/units/3-1-301/bind", json={"code": right},
                              headers=device("mallory"))
        assert r.status_code == 403, r.text  # even the right code, while locked
        r = await client.get(f"/v1/estates/{estate}/owner-binding-log", params={"unit": "3-1-301"}, headers=desk)
        assert [e["action"] for e in r.json()] == ["locked", "wrong_code", "wrong_code", "wrong_code", "wrong_code",
                                                   "code_sent"]

        # --- owner A binds (code to the phone on file), uploads a photo, submits -----------------
        r = await client.post(f"/v1/owner/estates/{estate}/units/1-1-101/code", headers=device("alice"))
        assert r.json()["sent_to"] == "138****5678", r.text
        code = await code_from_sent_messages(client, estate, desk, "1-1-101")
        r = await client.post(f"/v1/owner/estates/{estate}/units/1-1-101/bind", json={"code": code},
                              headers=device("alice"))
        alice = {**auth(r.json()["token"]), **device("alice")}
        bob = await bind(client, estate, desk, "2-1-201", "bob")
        # A staff token is no owner token, and an owner token is no staff token.
        r = await client.post(f"/v1/owner/estates/{estate}/requests", json={"kind": "repair", "description": "x"},
                              headers=desk)
        assert r.status_code == 401, r.text
        r = await client.get(f"/v1/estates/{estate}/requests", headers=alice)
        assert r.status_code == 401, r.text

        r = await client.post(f"/v1/owner/estates/{estate}/photos", content=b"%PDF-1.7\n" + b"x" * 200,
                              headers={**alice, "Content-Type": "image/jpeg"})
        assert r.status_code == 422 and "JPEG" in r.json()["error_zh"], r.text
        r = await client.post(f"/v1/owner/estates/{estate}/photos", content=PNG, headers={**alice, "Content-Type": "image/png"})
        assert r.status_code == 201, r.text
        photo = r.json()["id"]
        r = await client.post(f"/v1/owner/estates/{estate}/requests", json={
            "kind": "repair", "category": "plumbing", "description": "厨房水龙头漏水", "photos": [photo],
            "reply_method": "online"}, headers=alice)
        assert r.status_code == 201, r.text
        submission = r.json()
        assert submission["words"] == "待受理" and submission["photos"] == [photo]
        r = await client.get(f"/v1/owner/estates/{estate}/photos/{photo}", headers=bob)
        assert r.status_code == 404  # another unit's photo

        # --- the clerk who opens it is its first-contact owner --------------------------------------
        r = await client.get(f"/v1/estates/{estate}/online-requests", params={"status": "waiting"}, headers=desk)
        assert [s["id"] for s in r.json()] == [submission["id"]]
        r = await client.post(f"/v1/estates/{estate}/online-requests/{submission['id']}/open", headers=desk)
        assert r.status_code == 200, r.text
        ticket = r.json()
        assert ticket["channel"] == "online" and ticket["first_contact"] == f"{estate}-cs01"
        assert ticket["unit"] == "1-1-101" and ticket["attachments"] == [f"/v1/estates/{estate}/owner-photos/{photo}"]
        head = auth(token_for(stack, f"{estate}-head", ["customer_service"], [estate]))
        again = await client.post(f"/v1/estates/{estate}/online-requests/{submission['id']}/open", headers=head)
        assert again.json()["id"] == ticket["id"] and again.json()["first_contact"] == f"{estate}-cs01"

        # --- another unit's owner sees nothing of it ---------------------------------------------------
        for path in (f"requests/{submission['id']}", f"tickets/{ticket['id']}/callbacks"):
            r = await client.get(f"/v1/owner/estates/{estate}/{path}", headers=bob)
            assert r.status_code == 404, (path, r.text)
        assert (await client.get(f"/v1/owner/estates/{estate}/requests", headers=bob)).json() == []

        # --- handled, called back online: not satisfied, round 2, satisfied ------------------------------
        await handle_round(client, estate, ticket["id"], 1)
        callback = await answerable(client, estate, ticket["id"], alice, 1)
        assert callback, "no online callback for the owner"
        r = await client.post(f"/v1/owner/estates/{estate}/callbacks/{callback['callback_id']}/answer", json={
            "handled_in_time": True, "result_satisfied": False, "attitude_satisfied": True,
            "suggestions": "还在滴水"}, headers=bob)
        assert r.status_code == 404, r.text  # not bob's
        r = await client.post(f"/v1/owner/estates/{estate}/callbacks/{callback['callback_id']}/answer", json={
            "handled_in_time": True, "result_satisfied": False, "attitude_satisfied": True,
            "suggestions": "还在滴水"}, headers=alice)
        assert r.json() == {"outcome": "reopened", "round": 2}, r.text
        await handle_round(client, estate, ticket["id"], 2)
        callback = await answerable(client, estate, ticket["id"], alice, 2)
        assert callback, "no second-round callback"
        r = await client.post(f"/v1/owner/estates/{estate}/callbacks/{callback['callback_id']}/answer", json={
            "handled_in_time": True, "result_satisfied": True, "attitude_satisfied": True}, headers=alice)
        assert r.json() == {"outcome": "closed", "round": 2}, r.text

        async def closed():
            r = await client.get(f"/v1/owner/estates/{estate}/requests/{submission['id']}", headers=alice)
            return r.json()["stage"] == "closed" and r.json()

        followed = await eventually(closed, timeout=WAIT)
        assert followed, "the owner never saw it closed"
        words = [(h["words"], h["round"]) for h in followed["history"]]
        for step in [("待受理", 1), ("受理", 1), ("派工", 1), ("到场", 1), ("处理完成", 1), ("回访", 1), ("派工", 2),
                     ("处理完成", 2), ("回访", 2), ("已关闭", 2)]:
            assert step in words, (step, words)
        assert followed["first_contact_name"] == ticket["first_contact_name"] and followed["form_number"] == ticket["form_number"]
        r = await client.get(f"/v1/estates/{estate}/owner-messages", params={"unit": "1-1-101"}, headers=desk)
        progress = [m["text"] for m in r.json() if m["purpose"] == "progress"]
        assert any("已关闭" in t for t in progress) and any("第 2 轮" in t for t in progress), progress

        mine = (await client.get(f"/v1/owner/estates/{estate}/messages", headers=alice)).json()
        assert any("已关闭" in m["text"] and m["submission_id"] == submission["id"] for m in mine), mine
        assert not any("验证码" in m["text"] for m in mine)
        assert (await client.get(f"/v1/owner/estates/{estate}/messages", headers=bob)).json() == []

        # --- the monthly report counts the owner's answers like desk-recorded ones -----------------------
        month = FileOffsetClock(clock_file).now().astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
        admin = auth(token_for(stack, "qm", ["quality_manager"], ["*"]))

        async def counted():
            r = await client.get(f"/v1/estates/{estate}/reports/monthly/{month}", headers=admin)
            totals = r.json().get("totals", {}) if r.status_code == 200 else {}
            return totals.get("callbacks_done") == 2 and totals

        totals = await eventually(counted, timeout=WAIT)
        assert totals, (await client.get(f"/v1/estates/{estate}/reports/monthly/{month}", headers=admin)).text
        assert totals["satisfaction_answers"] == 2 and totals["result_satisfied"] == 1

        # --- unbinding: logged, and the token is refused at once ------------------------------------------
        r = await client.delete(f"/v1/owner/estates/{estate}/binding", headers=bob)
        assert r.status_code == 204, r.text

        async def refused():
            return (await client.get(f"/v1/owner/estates/{estate}/me", headers=bob)).status_code == 401

        assert await eventually(refused, timeout=10)
        r = await client.get(f"/v1/estates/{estate}/owner-bindings", headers=desk)
        assert [(b["unit"], b["on_file"]) for b in r.json()] == [("1-1-101", ["业主甲 138****5678"])]
        await asyncio.sleep(0)


async def test_codes_are_limited_per_unit_by_the_estates_policy(stack, estate):
    """policy.owners is data per estate: two codes an hour here, the third is a 429 with a reason."""
    admin = auth(token_for(stack, "admin", ["company_admin"], ["*"]))
    desk = auth(token_for(stack, f"{estate}-cs01", ["customer_service"], [estate]))
    async with httpx.AsyncClient(base_url=stack.console_url.rstrip("/"), timeout=30) as client:
        await add_unit(client, estate, desk, "1-1-102")
        r = await client.put(f"/v1/estates/{estate}/policy", json={"owners": {"codes_per_unit_per_hour": 2}},
                             headers=admin)
        assert r.status_code == 200 and r.json()["effective"]["owners"]["codes_per_unit_per_hour"] == 2, r.text
        answers = []
        for attempt in range(3):
            r = await client.post(f"/v1/owner/estates/{estate}/units/1-1-102/code", headers=device(f"d{attempt}"))
            answers.append(r.status_code)
        assert answers == [200, 200, 429], answers
        assert "过于频繁" in r.json()["error_zh"] and "at most 2" in r.json()["error"]
        r = await client.post(f"/v1/owner/estates/{estate}/units/9-9-999/code", headers=device("d9"))
        assert r.status_code == 404, r.text  # no such unit


async def test_a_binding_outlives_its_token_by_renewal_until_it_is_removed(stack, estate):
    """The owner's page renews its token while the binding stands; once the desk removes
    the binding, the old token and the renewed one are both refused, and renewal too."""
    desk = auth(token_for(stack, f"{estate}-cs01", ["customer_service"], [estate]))
    async with httpx.AsyncClient(base_url=stack.console_url.rstrip("/"), timeout=30) as client:
        await add_unit(client, estate, desk, "1-1-103")
        first = await bind(client, estate, desk, "1-1-103", "renewer")
        r = await client.post(f"/v1/owner/estates/{estate}/session/renew", headers=first)
        assert r.status_code == 200, r.text
        renewed = {**auth(r.json()["token"]), **device("renewer")}
        assert r.json()["unit"] == "1-1-103" and r.json()["expires_at"]
        me = await client.get(f"/v1/owner/estates/{estate}/me", headers=renewed)
        assert me.status_code == 200 and me.json()["binding"] == r.json()["binding"]
        # A staff token is no owner token.
        assert (await client.post(f"/v1/owner/estates/{estate}/session/renew", headers=desk)).status_code == 401
        r = await client.delete(f"/v1/estates/{estate}/owner-bindings/{me.json()['binding']}", headers=desk)
        assert r.status_code == 204, r.text

        async def refused():
            answers = [(await client.get(f"/v1/owner/estates/{estate}/me", headers=h)).status_code
                       for h in (first, renewed)]
            return answers == [401, 401]

        assert await eventually(refused, timeout=10)
        again = await client.post(f"/v1/owner/estates/{estate}/session/renew", headers=renewed)
        assert again.status_code == 401 and again.json()["error_zh"]
