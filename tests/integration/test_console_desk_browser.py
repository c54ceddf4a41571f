"""The back-office screens of the staff console in headless Chromium: 档案 Archive,
报表 Reports and 设置 Settings, used by an estate director who signs in with the account
the company admin made (and the general manager, who approves the director's destruction
request: RULES §5 Destruction); on a desk (1366×768) and a phone (390×844), in Chinese and
English (screenshots console-desk-*.png in tests/artifacts/). The lists are live: a new
request shows on the reports screen without a reload. The browser runs in New York
time; times shown are the estate's."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import httpx
import nats
import pytest
from playwright.async_api import Page, async_playwright

from shared.clock import FileOffsetClock
from shared.directory import Company, StaffMember, ensure_bucket, publish_directory
from tests.conftest import ARTIFACTS, auth, eventually, token_for
from tests.integration.test_archive_flow import history, publish
from tests.integration.test_console_browser import CHROMIUM, CHROMIUM_ARGS, DESK, PHONE, no_horizontal_scroll, \
    pick, sign_in, toggle_language

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def estate_definition(code: str) -> dict:
    return {
        "code": code, "name": f"后台小区 {code}", "director": f"{code}-director",
        "departments": [
            {"code": "engineering", "name": "工程部", "head": f"{code}-eng-head"},
            {"code": "customer_service", "name": "客服部", "head": f"{code}-cs-head"},
        ],
        "staff": [
            {"id": f"{code}-director", "name": "周主任", "roles": ["estate_director"]},
            {"id": f"{code}-deputy", "name": "吴副主任", "roles": ["estate_director"]},
            {"id": f"{code}-cs01", "name": "王芳", "roles": ["customer_service"], "department": "customer_service"},
            {"id": f"{code}-eng-head", "name": "赵主管", "roles": ["department_head"], "department": "engineering"},
        ],
        "buildings": ["1", "2"],
        # Records expire at once here, so the director may ask to destroy one.
        "policy": {"archive": {"retention_years_ordinary": 0, "retention_years_company_handled": 0}},
    }


async def add_company_staff(nats_url: str, member: StaffMember) -> None:
    """Head-office staff join the company's list (what else the company holds stays)."""
    nc = await nats.connect(nats_url)
    try:
        kv = await ensure_bucket(nc)
        try:
            company = Company.model_validate_json((await kv.get("company")).value)
        except nats.js.errors.KeyNotFoundError:
            company = Company()
    finally:
        await nc.close()
    company.staff = [s for s in company.staff if s.id != member.id] + [member]
    await publish_directory(nats_url, company, [])


async def shoot(page: Page, name: str) -> None:
    await page.wait_for_timeout(200)  # transitions
    await page.screenshot(path=str(ARTIFACTS / f"console-desk-{name}.png"), full_page=True)


async def test_archive_reports_and_settings_in_the_console(stack, clock_file):
    ARTIFACTS.mkdir(exist_ok=True)
    code = f"d{uuid.uuid4().hex[:8]}"
    url = stack.console_url.rstrip("/")
    admin = auth(token_for(stack, "admin", ["company_admin"], ["*"]))
    director = {"id": f"{code}-director", "password": f"pw-{code}-director-7"}
    company_admin = {"id": f"{code}-hq-admin", "password": f"pw-{code}-hq-admin-7"}
    general_manager = {"id": f"{code}-gm", "password": f"pw-{code}-gm-7"}
    fresh = f"n{uuid.uuid4().hex[:8]}"
    await add_company_staff(stack.nats_url, StaffMember(id=company_admin["id"], name="总部管理员",
                                                        roles=["company_admin"]))
    await add_company_staff(stack.nats_url, StaffMember(id=general_manager["id"], name="总经理 孙伟",
                                                        roles=["general_manager"]))
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        r = await client.put(f"/v1/estates/{code}", json=estate_definition(code), headers=admin)
        assert r.status_code == 200, r.text
        for account in (director, company_admin, general_manager):
            r = await client.put(f"/v1/accounts/{account['id']}/password", json={"password": account["password"]},
                                 headers=admin)
            assert r.status_code == 204, r.text

        async def archive_knows():
            return (await client.get(f"/v1/estates/{code}/archive/records", headers=admin)).status_code == 200

        assert await eventually(archive_knows, timeout=20)
        # A closed complaint's whole story, as the services emit it: archive seals it.
        story = history(code, FileOffsetClock(clock_file).now() - dt.timedelta(hours=1))
        await publish(stack.nats_url, story)
        form_number = story[0].data["form_number"]

        async def sealed():
            r = await client.get(f"/v1/estates/{code}/archive/records", headers=admin)
            return r.status_code == 200 and len(r.json()) == 1

        assert await eventually(sealed, timeout=60)
        [record] = (await client.get(f"/v1/estates/{code}/archive/records", headers=admin)).json()
        record_number = record["record_number"]
    clerk = auth(token_for(stack, f"{code}-cs01", ["customer_service"], [code]))
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context(viewport=DESK, timezone_id="America/New_York", locale="zh-CN",
                                            accept_downloads=True)
            page = await ctx.new_page()
            page.on("console", lambda m: errors.append(m.text)
                    if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await sign_in(page, url, director)

            # --- 档案 Archive: the catalogue, the register, destruction, the chain ---------
            await page.goto(f"{url}/archive")
            await page.wait_for_selector("#records")
            assert (await page.text_content("h2")).strip() == "档案"
            await page.wait_for_selector("#live")  # the live stream is open
            # The catalogue opens on the month the record was closed in: this one.
            assert await page.input_value("#archive-month") == record["closed_month"]
            await page.fill("#archive-search", form_number[-6:])
            row = page.locator("#records .el-table__row", has_text=form_number)
            await row.wait_for()
            # 借阅登记: the director registers a consultation, reads the form, returns it.
            await row.locator(".borrow").click()
            await page.fill("#loan-purpose", "复核投诉处理过程")
            await page.fill("#loan-approver", f"{code}-deputy")  # nobody approves their own access
            await page.fill("#loan-reference", "审批-2026-001")
            await page.click("#save-loan")
            await page.wait_for_selector(".el-message")
            assert await page.locator(".el-message--success").count(), await page.text_content(".el-message")
            async with page.expect_popup() as popup:
                await row.locator(".open-form").click()
            form = await popup.value
            await form.wait_for_load_state()
            assert form_number in await form.content()
            await form.close()
            await page.click("#tab-loans")
            await page.locator("#loans .give-back").first.click()
            await page.wait_for_selector("#loans .el-tag:has-text('已归还')")
            await page.click("#tab-records")
            await shoot(page, "archive-records-zh")
            await page.click("#tab-verify")
            await page.click("#verify")
            await page.wait_for_selector("#chain-result")
            assert "档案链完整" in await page.text_content("#chain-result")
            await no_horizontal_scroll(page, "archive")
            await shoot(page, "archive-zh")
            await toggle_language(page, "en")
            assert "The chain is intact" in await page.text_content("#chain-result")
            await page.click("#tab-loans")
            await shoot(page, "archive-en")
            await toggle_language(page, "zh")

            # 销毁申请: the director asks to destroy the expired record; the general manager,
            # signed in on his own desk, approves; the director's screen follows live.
            await page.click("#tab-destruction")
            await page.locator("#eligible .el-table__row", has_text=record_number).locator(".el-checkbox").click()
            await page.fill("#destruction-reason", "保管期满，无查考价值")
            await shoot(page, "archive-destruction-ask-zh")
            await page.click("#request-destruction")
            await page.wait_for_selector("#destruction-requests .request-state:has-text('待审批')")
            assert not await page.locator("#destruction-requests .approve").count()  # not the director's to decide
            gctx = await browser.new_context(viewport=DESK, timezone_id="America/New_York", locale="zh-CN")
            gpage = await gctx.new_page()
            gpage.on("pageerror", lambda e: errors.append(str(e)))
            await sign_in(gpage, url, general_manager)
            if await gpage.locator("#estate").count():  # head office: every estate is offered
                await pick(gpage, "#estate", code)
            await gpage.click('[data-menu="archive"]')
            await gpage.click("#tab-destruction")
            asked = gpage.locator("#destruction-requests .el-table__row", has_text=record_number)
            await asked.locator(".approve").wait_for()
            await shoot(gpage, "archive-destruction-request-zh")
            await asked.locator(".approve").click()
            await gpage.click("#confirm-decision")
            await gpage.wait_for_selector("#destruction-requests .request-state:has-text('已批准销毁')")
            await gpage.wait_for_selector(f"#destructions .el-table__row:has-text('{record_number}')")
            await no_horizontal_scroll(gpage, "archive destruction")
            await shoot(gpage, "archive-destruction-zh")
            await toggle_language(gpage, "en")
            await gpage.wait_for_selector("#destruction-requests .request-state:has-text('Approved, destroyed')")
            await shoot(gpage, "archive-destruction-en")
            await gctx.close()
            await page.wait_for_selector("#destruction-requests .request-state:has-text('已批准销毁')")
            await page.click("#tab-records")
            await page.wait_for_selector(f"#records .el-table__row:has-text('{record_number}') .el-tag:has-text('已销毁')")

            # --- 报表 Reports: the month's figures, sign-off, xlsx, live ---------------------
            await page.goto(f"{url}/reports")
            # The screen opens on the services' month (their clock is moved by other tests).
            services_month = FileOffsetClock(clock_file).now().astimezone(dt.timezone(dt.timedelta(hours=8)))
            await page.wait_for_function("m => document.querySelector('#report-month')?.value === m",
                                         arg=services_month.strftime("%Y-%m"))
            # The services' month's figures, not the first paint's (the browser's month).
            await page.wait_for_selector(f'#estate-report[data-month="{services_month:%Y-%m}"] [data-metric="opened"] .value')
            # Departments the estate does not name show RULES.md's standard names.
            by_department = await page.text_content("#by-department")
            assert "保洁部" in by_department and "cleaning" not in by_department, by_department
            opened = await page.text_content('#estate-report [data-metric="opened"] .value')
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                r = await client.post(f"/v1/estates/{code}/requests", headers=clerk, json={
                    "kind": "repair", "channel": "phone", "category": "plumbing", "repair_class": "general",
                    "building": "1", "unit": "1-1-101", "description": "水管漏水"})
                assert r.status_code == 201, r.text
            # Live: the month's count moves without a reload.
            await page.wait_for_function(
                "([sel, before]) => document.querySelector(sel)?.textContent.trim() === String(Number(before) + 1)",
                arg=['#estate-report [data-metric="opened"] .value', opened.strip()], timeout=20_000)
            await page.fill("#sign-problems", "夜间报修响应偏慢")
            await page.fill("#sign-actions", "增加夜班工程人员")
            await page.click("#sign-off")
            await page.wait_for_function("() => document.querySelector('#sign-off-state')?.textContent.includes('已签署')")
            async with page.expect_download() as download:
                await page.click("#report-xlsx")
            assert (await download.value).suggested_filename.endswith(".xlsx")
            await no_horizontal_scroll(page, "reports")
            await shoot(page, "reports-zh")
            await toggle_language(page, "en")
            await page.wait_for_function("() => document.querySelector('#sign-off-state')?.textContent.includes('Signed')")
            await shoot(page, "reports-en")
            await toggle_language(page, "zh")
            await page.click("#open-dashboard")
            await page.wait_for_url(re.compile(r"/dashboard$"))
            await page.wait_for_selector(f'#estates tr[data-estate="{code}"]')
            await page.go_back()

            # --- 设置 Settings: policies beside their defaults, accounts -----------------------
            await page.goto(f"{url}/settings")
            await page.wait_for_selector("#estate-form")
            await page.click("#tab-policy")
            field = page.locator('input[data-policy="clocks.arrival_minutes_general"]')
            await field.fill("abc")
            assert await page.is_disabled("#save-policy"), "a number that is not one can be saved"
            await field.fill("-5")
            await page.click("#save-policy")  # the server's refusal, in Chinese
            await page.wait_for_selector(".el-message--error")
            assert "arrival_minutes_general" in await page.text_content(".el-message--error")
            await field.fill("45")
            await page.click("#save-policy")
            await page.wait_for_selector(".el-message--success")
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                policy = (await client.get(f"/v1/estates/{code}/policy", headers=admin)).json()
            assert policy["effective"]["clocks"]["arrival_minutes_general"] == 45
            assert policy["defaults"]["clocks"]["arrival_minutes_general"] != 45
            await shoot(page, "settings-policy-zh")
            await page.click("#tab-accounts")
            await page.wait_for_selector(f'#accounts :text("{code}-cs01")')
            await shoot(page, "settings-accounts-zh")
            await toggle_language(page, "en")
            await page.click("#tab-policy")
            await shoot(page, "settings-policy-en")
            await toggle_language(page, "zh")
            await ctx.close()

            # --- the same screens on a phone -----------------------------------------------------
            phone = await browser.new_context(viewport=PHONE, timezone_id="America/New_York", locale="zh-CN",
                                              is_mobile=True, has_touch=True)
            ppage = await phone.new_page()
            ppage.on("pageerror", lambda e: errors.append(str(e)))
            await sign_in(ppage, url, director)
            for screen, ready in (("archive", "#records"), ("reports", "#estate-report"), ("settings", "#estate-form")):
                await ppage.goto(f"{url}/{screen}")
                await ppage.wait_for_selector(ready)
                await no_horizontal_scroll(ppage, f"{screen} on a phone")
                await shoot(ppage, f"{screen}-phone-zh")
            await toggle_language(ppage, "en")
            await shoot(ppage, "settings-phone-en")
            await phone.close()

            # --- 设置 → 新建小区: the company admin defines a new estate from the console -------
            actx = await browser.new_context(viewport=DESK, timezone_id="America/New_York", locale="zh-CN")
            apage = await actx.new_page()
            apage.on("pageerror", lambda e: errors.append(str(e)))
            await sign_in(apage, url, company_admin)
            await apage.goto(f"{url}/settings")
            await apage.wait_for_selector("#estate-form")
            template = await apage.input_value("#estate-name")
            await apage.click("#new-estate")
            await apage.fill("#new-estate-code", "New Estate!")  # the service names what it refuses
            await apage.fill("#new-estate-name", f"新建小区 {fresh}")
            await apage.click("#create-estate")
            await apage.wait_for_selector(".el-message--error")
            assert "code" in await apage.text_content(".el-message--error")
            await apage.fill("#new-estate-code", fresh)
            await apage.click("#create-estate")
            await apage.wait_for_selector(".el-message--success")
            # The console moves to the new estate, listed beside the others.
            await apage.wait_for_function("n => document.querySelector('#estate-name')?.value === n",
                                          arg=f"新建小区 {fresh}")
            await shoot(apage, "settings-new-estate-zh")
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                created = (await client.get(f"/v1/estates/{fresh}", headers=admin)).json()
            assert created["name"] == f"新建小区 {fresh}" and created["staff"] == [], created
            assert created["departments"] and all(d["head"] is None for d in created["departments"]), (template, created)
            await actx.close()
        finally:
            await browser.close()
    assert not errors, errors
