"""Issue 9: what the API accepts it can process; every write checks its role; never a 5xx.

Each test is a row of the issue's table (or a kind it stands for) against the running
stack, with the right value."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from shared.directory import publish_directory
from tests.conftest import auth, demo_estate, read_stream, token_for, wait_for_directory

pytestmark = pytest.mark.integration

INQUIRY = {"kind": "inquiry", "channel": "phone", "description": "物业费怎么交？"}
REPAIR = {"kind": "repair", "channel": "phone", "repair_class": "general", "building": "1",
          "description": "厨房水龙头漏水"}


def intake(stack) -> str:
    return stack.service("intake").url


def cs_token(stack, estate: str) -> str:
    return token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])


async def register(client, stack, estate: str, body: dict, token: str | None = None) -> httpx.Response:
    # json.dumps escapes a lone surrogate as \\ud800, as any JSON client would send it.
    return await client.post(f"{intake(stack)}/v1/estates/{estate}/requests", content=json.dumps(body),
                             headers={**auth(token or cs_token(stack, estate)), "content-type": "application/json"})


def assert_error(response: httpx.Response, status: int, *needles: str) -> dict:
    """The one documented error shape, with the reason in it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"status", "error", "error_zh", "problems", "details"}, body
    assert body["status"] == status and body["error_zh"]
    text = body["error"] + " " + " ".join(body["problems"])
    for needle in needles:
        assert needle in text, (needle, body)
    return body


async def test_a_32_character_estate_code_gets_its_full_form_number(stack):
    code = "e" + uuid.uuid4().hex[:31]
    assert len(code) == 32
    await publish_directory(stack.nats_url, None, [demo_estate(code)])
    await wait_for_directory(stack, code)
    async with httpx.AsyncClient(timeout=30) as client:
        r = await register(client, stack, code, INQUIRY)
    assert r.status_code == 201, r.text
    number = r.json()["form_number"]
    assert number.startswith(code.upper() + "-") and len(number) == 32 + 1 + 4 + 1 + 6
    assigned = await read_stream(stack.nats_url, f"estatedesk.{code}.ticket.assigned", expected=1)
    assert [e["subject"] for e in assigned] == [r.json()["id"]]


async def test_an_estate_code_too_long_is_refused_when_defined(stack):
    admin = token_for(stack, "admin", ["company_admin"], ["*"])
    code = "e" * 33
    body = demo_estate("x").model_dump() | {"code": code}
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.put(f"{intake(stack)}/v1/estates/{code}", json=body, headers=auth(admin))
    assert_error(r, 422, "code")


async def test_an_unknown_time_zone_is_refused_and_nothing_stored(stack, estate):
    director = token_for(stack, f"{estate}-director", ["estate_director"], [estate])
    url = f"{intake(stack)}/v1/estates/{estate}/policy"
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.put(url, json={"timezone": "Asia/Beijing"}, headers=auth(director))
        assert_error(r, 422, "timezone", "Asia/Beijing")
        policy = await client.get(url, headers=auth(director))
        assert policy.json()["overrides"] == {} and policy.json()["effective"]["timezone"] == "Asia/Shanghai"
        # The estate keeps working; the dashboard too.
        assert (await register(client, stack, estate, INQUIRY)).status_code == 201
        qm = token_for(stack, "qm", ["quality_manager"], ["*"])
        summary = await client.get(f"{stack.service('analytics').url}/v1/dashboard/summary", headers=auth(qm))
        assert summary.status_code == 200


async def test_a_policy_value_outside_its_range_is_refused(stack, estate):
    director = token_for(stack, f"{estate}-director", ["estate_director"], [estate])
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.put(f"{intake(stack)}/v1/estates/{estate}/policy",
                             json={"clocks": {"arrival_minutes_general": 10**12}}, headers=auth(director))
    assert_error(r, 422, "arrival_minutes_general")


async def test_an_integration_token_may_not_register_or_update(stack, estate):
    robot = token_for(stack, "erp-sync", ["integration"], [estate])
    async with httpx.AsyncClient(timeout=30) as client:
        created = await register(client, stack, estate, INQUIRY)
        ticket = created.json()["id"]
        r = await register(client, stack, estate, INQUIRY, robot)
        assert_error(r, 403, "needs one of the roles", "customer_service")
        r = await client.post(f"{intake(stack)}/v1/estates/{estate}/requests/{ticket}/progress",
                              json={"note": "已联系业主"}, headers=auth(robot))
        assert_error(r, 403, "needs one of the roles")
        # Reading stays open to integrations.
        r = await client.get(f"{intake(stack)}/v1/estates/{estate}/requests/{ticket}", headers=auth(robot))
        assert r.status_code == 200


async def test_staff_unknown_to_the_estate_is_refused(stack, estate):
    stranger = token_for(stack, "walk-in-stranger", ["customer_service"], [estate])
    async with httpx.AsyncClient(timeout=30) as client:
        r = await register(client, stack, estate, INQUIRY, stranger)
    assert_error(r, 403, "walk-in-stranger", "not on the staff")


@pytest.mark.parametrize("field, value, needle", [
    ("description", "漏水\u0000严重", "NUL"),
    ("cause", "\ud800", "surrogate"),
    ("people", ["\u0000"], "NUL"),
    # A vertical tab (pasted from a spreadsheet) broke the monthly report's xlsx export.
    ("category", "漏水\u000b", "U+000B"),
])
async def test_unstorable_text_is_refused_everywhere(stack, estate, field, value, needle):
    async with httpx.AsyncClient(timeout=30) as client:
        r = await register(client, stack, estate, {**REPAIR, field: value})
    assert_error(r, 422, needle)


async def test_nul_in_a_path_or_query_is_refused(stack, estate):
    token = cs_token(stack, estate)
    async with httpx.AsyncClient(timeout=30) as client:
        in_path = await client.get(f"{intake(stack)}/v1/estates/{estate}/requests/ab%00cd", headers=auth(token))
        in_query = await client.get(f"{intake(stack)}/v1/estates/{estate}/requests?first_contact=a%00b",
                                    headers=auth(token))
        not_utf8 = await client.get(f"{intake(stack)}/v1/estates/{estate}/requests?first_contact=%ff", headers=auth(token))
    assert_error(in_path, 400, "NUL")
    assert_error(in_query, 400, "NUL")
    assert_error(not_utf8, 400, "UTF-8")


async def test_money_is_bounded_and_travels_as_a_decimal_string(stack, estate):
    complaint = {"kind": "complaint", "channel": "walk_in", "owner_signed": True, "description": "装修损坏地板"}
    async with httpx.AsyncClient(timeout=30) as client:
        too_much = await register(client, stack, estate, {**complaint, "owner_loss_cny": 10000000000})
        too_fine = await register(client, stack, estate, {**complaint, "owner_loss_cny": "12.345"})
        ok = await register(client, stack, estate, {**complaint, "owner_loss_cny": 800.5})
    assert_error(too_much, 422, "owner_loss_cny", "9999999999.99")
    assert_error(too_fine, 422, "owner_loss_cny")
    assert ok.status_code == 201 and ok.json()["owner_loss_cny"] == "800.50"
    accepted = await read_stream(stack.nats_url, f"estatedesk.{estate}.ticket.accepted", expected=1)
    assert accepted[-1]["data"]["owner_loss_cny"] == "800.50"


@pytest.mark.parametrize("field, value", [
    ("appointment_at", "9999-12-31T20:00:00+08:00"),
    ("appointment_at", "2026-12-01T20:00:00"),
    ("occurred_at", "1900-01-01T00:00:00+08:00"),
    ("reply_agreed_by", "2200-01-01T00:00:00+08:00"),
])
async def test_instants_outside_the_plausible_window_are_refused_at_intake(stack, estate, field, value):
    body = {**REPAIR, "repair_class": "appointment", "appointment_at": "2099-06-01T10:00:00+08:00", field: value}
    async with httpx.AsyncClient(timeout=30) as client:
        r = await register(client, stack, estate, body)
    assert_error(r, 422, field)


async def test_empty_client_request_id_is_refused_and_a_repeat_returns_the_first_ticket(stack, estate):
    async with httpx.AsyncClient(timeout=30) as client:
        empty = await register(client, stack, estate, {**INQUIRY, "client_request_id": ""})
        assert_error(empty, 422, "client_request_id")
        key = f"desk-{uuid.uuid4()}"
        first, second = await asyncio.gather(
            register(client, stack, estate, {**INQUIRY, "client_request_id": key}),
            register(client, stack, estate, {**INQUIRY, "client_request_id": key}),
        )
        third = await register(client, stack, estate, {**INQUIRY, "client_request_id": key})
    assert {first.status_code, second.status_code, third.status_code} == {201}
    assert first.json()["id"] == second.json()["id"] == third.json()["id"]


async def test_unit_codes_cannot_collide(stack, estate):
    token = cs_token(stack, estate)
    url = f"{intake(stack)}/v1/estates/{estate}/units"
    async with httpx.AsyncClient(timeout=30) as client:
        dashed = await client.post(url, json={"building": "2", "entrance": "1", "room": "1-302"}, headers=auth(token))
        other = await client.post(url, json={"building": "2", "entrance": "1-1", "room": "302"}, headers=auth(token))
        plain = await client.post(url, json={"building": "2", "entrance": "1", "room": "302"}, headers=auth(token))
    assert_error(dashed, 422, "room")
    assert_error(other, 422, "entrance")
    assert plain.status_code == 201 and plain.json()["code"] == "2-1-302"


async def test_times_come_back_in_the_estate_zone(stack, estate):
    async with httpx.AsyncClient(timeout=30) as client:
        created = await register(client, stack, estate, INQUIRY)
        assert created.json()["received_at"].endswith("+08:00")
        ticket = created.json()["id"]
        shown = await client.get(f"{intake(stack)}/v1/estates/{estate}/requests/{ticket}",
                                 headers=auth(cs_token(stack, estate)))

        async def form():
            r = await client.get(f"{stack.service('dispatch').url}/v1/estates/{estate}/forms/{ticket}",
                                 headers=auth(cs_token(stack, estate)))
            return r.json() if r.status_code == 200 else None

        for _ in range(100):
            routed = await form()
            if routed:
                break
            await asyncio.sleep(0.2)
    assert shown.json()["received_at"].endswith("+08:00")
    assert routed and routed["accepted_at"].endswith("+08:00")


def test_token_command_refuses_a_company_wide_role_for_one_estate(tmp_path):
    env = {**os.environ, "ESTATEDESK_SIGNING_KEY": "k" * 48}
    run = subprocess.run([sys.executable, "-m", "estatedesk.cli", "token", "--staff", "q1", "--role", "quality_manager",
                          "--estate", "hx01"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode != 0 and "--estate '*'" in run.stderr
    wide = subprocess.run([sys.executable, "-m", "estatedesk.cli", "token", "--staff", "q1", "--role", "quality_manager",
                           "--estate", "*"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert wide.returncode == 0 and wide.stdout.count(".") == 2


def test_token_command_outside_a_data_directory_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ESTATEDESK_SIGNING_KEY", "ESTATEDESK_DATA_DIR")}
    run = subprocess.run([sys.executable, "-m", "estatedesk.cli", "token", "--staff", "cs01", "--role",
                          "customer_service", "--estate", "hx01"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode != 0 and "no signing key" in run.stderr
    assert not (tmp_path / ".estatedesk").exists()


async def test_company_policy_refuses_what_an_estate_could_not_use(stack):
    qm = token_for(stack, "qm", ["quality_manager"], ["*"])
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.put(f"{intake(stack)}/v1/company/policy", json={"timezone": "Mars/Olympus"}, headers=auth(qm))
    assert_error(r, 422, "timezone")
