"""Issue 15 in headless Chromium on a 390×844 phone: an owner binds a unit with the code
the desk reads from its "sent messages" page, submits a repair with a photo, follows it
while the technician (over the API) acknowledges, arrives and signs back, answers the
callback "not satisfied", sees the second round, answers "satisfied" and sees it closed.
An owner of another unit opens the first owner's page and sees nothing. Screenshots:
tests/artifacts/owner-*.png."""

from __future__ import annotations

import base64
import re
import uuid

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from tests.conftest import ARTIFACTS, auth, eventually, token_for
from tests.integration.test_console_browser import (
    CHROMIUM, CHROMIUM_ARGS, DESK, DIST, PHONE, estate_definition, no_horizontal_scroll, sign_in,
)
from tests.integration.test_owners import handle_round

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
WAIT = 45


async def shoot(page: Page, name: str) -> None:
    await page.wait_for_timeout(250)  # transitions
    await page.screenshot(path=str(ARTIFACTS / f"owner-{name}.png"), full_page=True)


async def test_owner_binds_submits_follows_and_answers_on_a_phone(stack, tmp_path):
    assert (DIST / "index.html").is_file(), "console/dist is missing: run make install"
    ARTIFACTS.mkdir(exist_ok=True)
    code = f"o{uuid.uuid4().hex[:8]}"
    url = stack.console_url.rstrip("/")
    admin = auth(token_for(stack, "admin", ["company_admin"], ["*"]))
    clerk = {"id": f"{code}-cs01", "password": f"pw-{code}-cs01-7"}
    photo = tmp_path / "leak.png"
    photo.write_bytes(PNG)
    errors: list[str] = []
    failed: list[tuple[int, str, str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        client.signing_key = stack.signing_key
        r = await client.put(f"/v1/estates/{code}", json=estate_definition(code), headers=admin)
        assert r.status_code == 200, r.text
        r = await client.put(f"/v1/accounts/{clerk['id']}/password", json={"password": clerk["password"]}, headers=admin)
        assert r.status_code == 204, r.text
        desk_token = auth(token_for(stack, clerk["id"], ["customer_service"], [code]))
        for unit in ("1-1-101", "2-1-201"):
            building, entrance, room = unit.split("-")
            r = await client.post(f"/v1/estates/{code}/units", json={"building": building, "entrance": entrance,
                                                                      "room": room}, headers=desk_token)
            assert r.status_code == 201, r.text

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                async def context(viewport, mobile=False):
                    ctx = await browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile,
                                                    locale="zh-CN", timezone_id="Asia/Shanghai")
                    page = await ctx.new_page()
                    page.on("console", lambda m: errors.append(m.text)
                            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    page.on("response", lambda r: failed.append((r.status, r.request.method, r.url))
                            if r.status >= 400 else None)
                    return ctx, page

                # --- 1. the owner opens the unit's link on a phone and asks for a code ------------
                _, phone = await context(PHONE, mobile=True)
                await phone.goto(f"{url}/o/bind/{code}/1-1-101")
                await phone.wait_for_selector("#send-code")
                assert await phone.text_content("#bind-unit") == "1-1-101"
                await phone.click("#send-code")
                await phone.wait_for_selector("#code-sent")
                assert "前台" in await phone.text_content("#code-sent")  # no phone on file: the desk reads it out
                await no_horizontal_scroll(phone, "bind")
                await shoot(phone, "01-bind-phone")

                # --- 2. the desk reads the code from its "sent messages" page ---------------------
                _, desk = await context(DESK)
                await sign_in(desk, url, clerk)
                await desk.click('[data-menu="ownerDesk"]')
                await desk.get_by_role("tab", name="已发送消息").click()
                await desk.wait_for_selector("#sent-messages .message-text .cell:has-text('验证码')")
                text = await desk.text_content("#sent-messages")
                one_time = re.search(r"验证码 (\d+)", text).group(1)
                await shoot(desk, "02-desk-sent-messages")

                # --- 3. bound; a repair with a photo --------------------------------------------------
                await phone.fill("#code", one_time)
                await phone.click("#bind")
                await phone.wait_for_selector("#new-request")
                assert "1-1-101" in await phone.text_content("#owner-unit")
                await shoot(phone, "03-home-phone")
                await phone.click("#new-request")
                await phone.wait_for_selector("#submit")
                await phone.fill("#description", "厨房水龙头漏水，地面积水")
                await phone.set_input_files("#photos", str(photo))
                await phone.wait_for_selector(".photo img")
                await no_horizontal_scroll(phone, "submit")
                await shoot(phone, "04-submit-phone")
                await phone.click("#submit")
                await phone.wait_for_selector("#stage[data-stage='submitted']")
                submission = phone.url.rstrip("/").split("/")[-1]
                await shoot(phone, "05-submitted-phone")

                # --- 4. the clerk who opens it is its first-contact owner (首问) ------------------------
                await desk.get_by_role("tab", name="网上报事").click()
                await desk.click("#refresh-desk")
                await desk.click(f".online-request[data-id='{submission}'] .open-request")
                await desk.wait_for_selector("#ticket-form-number")
                ticket_id = desk.url.rstrip("/").split("/")[-1]
                await shoot(desk, "06-desk-opened-ticket")
                await phone.wait_for_selector("#first-contact", timeout=WAIT * 1000)
                assert await phone.text_content("#first-contact") == "王芳"
                await shoot(phone, "07-accepted-phone")

                # --- 5. the technician handles round 1 (API); the owner answers "not satisfied" ---------
                await handle_round(client, code, ticket_id, 1, handler=f"{code}-eng-head")
                await phone.wait_for_selector("#callback-form", timeout=WAIT * 1000)
                assert await phone.get_attribute("#stage", "data-stage") == "callback"
                await no_horizontal_scroll(phone, "follow")
                await phone.locator("#handled-in-time").get_by_text("及时", exact=True).click()
                await phone.locator("#result-satisfied").get_by_text("不满意", exact=True).click()
                await phone.locator("#attitude-satisfied").get_by_text("满意", exact=True).click()
                await phone.fill("#suggestions", "水龙头还在滴水")
                await shoot(phone, "08-callback-phone")
                await phone.click("#answer")
                await phone.wait_for_selector("#answer-sent")
                assert "第 2 轮" in await phone.text_content("#answer-sent")
                await phone.wait_for_selector("#stage[data-round='2']", timeout=WAIT * 1000)
                await shoot(phone, "09-second-round-phone")

                # --- 6. another unit's owner sees nothing of it ------------------------------------------
                r = await client.post(f"/v1/estates/{code}/units/2-1-201/bind-code", headers=desk_token)
                other_code = r.json()["code"]
                _, other = await context(PHONE, mobile=True)
                await other.goto(f"{url}/o/bind/{code}/2-1-201")
                await other.fill("#code", other_code)
                await other.click("#bind")
                await other.wait_for_selector("#new-request")
                assert await other.locator(".owner-request").count() == 0
                await other.goto(f"{url}/o/r/{submission}")
                await other.wait_for_selector("#follow-error")
                assert "未找到" in await other.text_content("#follow-error")
                assert "厨房水龙头" not in await other.text_content("body")
                await shoot(other, "10-other-unit-phone")

                # --- 7. round 2, "satisfied", closed -----------------------------------------------------
                await handle_round(client, code, ticket_id, 2, handler=f"{code}-eng-head")
                await phone.wait_for_selector("#callback-form", timeout=WAIT * 1000)
                await phone.locator("#handled-in-time").get_by_text("及时", exact=True).click()
                await phone.locator("#result-satisfied").get_by_text("满意", exact=True).click()
                await phone.locator("#attitude-satisfied").get_by_text("满意", exact=True).click()
                await phone.click("#answer")
                await phone.wait_for_selector("#stage[data-stage='closed']", timeout=WAIT * 1000)
                history = await phone.text_content(".history")
                for words in ("受理", "派工", "到场", "处理完成", "回访", "已关闭", "第 2 轮"):
                    assert words in history, (words, history)
                # The photo, fetched with the owner's token, shows on the page.
                await phone.wait_for_function("() => document.querySelector('.thumb')?.naturalWidth > 0")
                await no_horizontal_scroll(phone, "closed")
                await shoot(phone, "11-closed-phone")

                # Each change reached the owner as a message, listed on the home page.
                await phone.click(".back")
                await phone.wait_for_selector(".owner-message:has-text('已关闭')")
                await shoot(phone, "12-messages-phone")

                # --- 8. the desk: the unit's printable QR code, and who is bound (masked) -------------
                await desk.click('[data-menu="ownerDesk"]')
                await desk.get_by_role("tab", name="房屋绑定").click()
                await desk.fill("#desk-unit", "1-1-101")
                await desk.click("#show-qr")
                await desk.wait_for_selector(".qr svg")
                assert f"/o/bind/{code}/1-1-101" in await desk.text_content(".qr")
                assert await desk.locator("#bindings .el-table__row:has-text('1-1-101')").count() == 1
                await shoot(desk, "13-desk-qr-and-bindings")
            except BaseException:
                for i, ctx in enumerate(browser.contexts):
                    for j, p in enumerate(ctx.pages):
                        await p.screenshot(path=str(ARTIFACTS / f"owner-failure-{i}-{j}.png"), full_page=True)
                print("failed calls:", failed, "errors:", errors)
                raise
            finally:
                await browser.close()
    assert not errors, errors
    # Not found on purpose: the other unit's owner opening the first owner's page; and a
    # ticket the callback, dispatch or archive service has not heard of yet.
    expected = re.compile(rf"/v1/owner/estates/{code}/(requests/{submission}|tickets/[^/]+/callbacks)$"
                          rf"|/v1/estates/{code}/(forms/[^/]+|tickets/[^/]+/(callbacks|timeline))$")
    unexpected = [f for f in failed if not (f[0] == 404 and f[1] == "GET" and expected.search(f[2]))]
    assert not unexpected, unexpected
