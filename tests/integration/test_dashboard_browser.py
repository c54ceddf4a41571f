"""The live dashboard in headless Chromium (Debian's, launched by Playwright): it shows an
estate's open forms, and a request registered through the API changes the count on the
page without a reload. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.async_api import async_playwright

from tests.conftest import ARTIFACTS, auth, token_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def cell(estate: str, field: str) -> str:
    return f'#estates tr[data-estate="{estate}"] td[data-field="{field}"]'


async def test_dashboard_follows_a_new_request_without_reloading(stack, estate):
    ARTIFACTS.mkdir(exist_ok=True)
    qm = token_for(stack, "qm-browser", ["quality_manager"], ["*"])
    cs = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{stack.service('analytics').url}/dashboard?token={qm}")

            # Chinese by default; the estate is listed with nothing open yet.
            await page.wait_for_selector(cell(estate, "open"))
            assert await page.text_content("h1") == "品质监控看板"
            assert await page.text_content(cell(estate, "open")) == "0"
            assert "token=" not in page.url  # the token left the address bar for sessionStorage
            await page.wait_for_selector("#status.live")
            await page.evaluate("window.__sameDocument = true")
            await page.screenshot(path=str(ARTIFACTS / "dashboard-1-before.png"), full_page=True)

            async with httpx.AsyncClient(base_url=stack.service("intake").url, timeout=10) as client:
                r = await client.post(f"/v1/estates/{estate}/requests", headers=auth(cs), json={
                    "kind": "repair", "channel": "phone", "category": "plumbing", "repair_class": "general",
                    "building": "1", "unit": "1-1-101", "description": "卫生间漏水"})
            assert r.status_code == 201, r.text
            ticket = r.json()
            registered = time.monotonic()
            await page.wait_for_function(
                "([selector, expected]) => document.querySelector(selector)?.textContent === expected",
                arg=[cell(estate, "open"), "1"], timeout=10_000, polling=50,
            )
            seen_after = time.monotonic() - registered
            assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
            assert await page.text_content(cell(estate, "today_opened")) == "1"
            await page.screenshot(path=str(ARTIFACTS / "dashboard-2-after-request.png"), full_page=True)
            print(f"the dashboard showed the new request {seen_after:.2f} s after intake answered")

            # Drill down: the estate, its departments, the ticket list.
            await page.click(f'#estates tr[data-estate="{estate}"]')
            await page.wait_for_selector(f'#tickets tr[data-ticket="{ticket["id"]}"]')
            assert ticket["form_number"] in await page.text_content("#tickets")
            open_by_department = await page.eval_on_selector_all(
                '#departments td[data-field="open"]', "cells => cells.map(c => Number(c.textContent))")
            assert sum(open_by_department) >= 1
            await page.screenshot(path=str(ARTIFACTS / "dashboard-3-estate.png"), full_page=True)

            # English on request.
            await page.click("#lang")
            assert await page.text_content("h1") == "Quality dashboard"
            assert await page.get_attribute("html", "lang") == "en"
            await page.click("#crumbs a")  # back to all estates
            await page.wait_for_selector(cell(estate, "open"))
            await page.screenshot(path=str(ARTIFACTS / "dashboard-4-english.png"), full_page=True)
        finally:
            await browser.close()
    assert not errors, errors
    assert seen_after < 2.0, f"the page took {seen_after:.2f} s to show the change"
