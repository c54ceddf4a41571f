"""The live dashboard in headless Chromium (Debian's, launched by Playwright): a screen of
the staff console at the one address, signed in the same way as the console (no token in
any address, the stream included). It shows an estate's open forms on ECharts charts, and
a request registered through the API changes the count on the page without a reload.
The browser runs in New York time: the times shown must still be the estate's
(Asia/Shanghai). Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json
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


def console_session(token: str, staff: str, roles: list[str], estates: list[str]) -> str:
    """What the console keeps after signing in (console/src/session.js), as a script."""
    saved = {"token": token, "expiresAt": None, "staff": {"id": staff, "name": staff, "roles": roles, "estates": estates}}
    return f"localStorage.setItem('estatedesk.session', {json.dumps(json.dumps(saved))})"


async def test_dashboard_follows_a_new_request_without_reloading(stack, estate):
    ARTIFACTS.mkdir(exist_ok=True)
    qm = token_for(stack, "qm-browser", ["quality_manager"], ["*"])
    cs = token_for(stack, f"{estate}-cs01", ["customer_service"], [estate])
    base = stack.console_url.rstrip("/")
    errors: list[str] = []
    addresses: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="America/New_York")
            page = await context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: addresses.append(r.url))

            # Not signed in: the console's sign-in, then back here.
            await page.goto(f"{base}/dashboard")
            await page.wait_for_url("**/login?**")
            assert "next=%2Fdashboard" in page.url or "next=/dashboard" in page.url
            await page.evaluate(console_session(qm, "qm-browser", ["quality_manager"], ["*"]))
            await page.goto(f"{base}/dashboard")

            # Chinese by default; the estate is listed with nothing open yet.
            await page.wait_for_selector(cell(estate, "open"))
            assert await page.text_content("h1") == "品质监控看板"
            assert await page.text_content(cell(estate, "open")) == "0"
            await page.wait_for_selector("#status.live")
            # Charts are ECharts instances (tooltips, legends, zoom, save as image).
            for chart in ("#chart-estates", "#chart-daily", "#chart-rates"):
                await page.wait_for_selector(f"{chart}[_echarts_instance_] canvas")
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
            row = f'#tickets tr[data-ticket="{ticket["id"]}"]'
            await page.wait_for_selector(row)
            assert ticket["form_number"] in await page.text_content("#tickets")
            # Received at, on the estate's clock (the API's +08:00), not New York's.
            shown = await page.text_content(f"{row} td:nth-child(6)")
            assert shown == ticket["received_at"][5:19].replace("T", " "), (shown, ticket["received_at"])
            open_by_department = await page.eval_on_selector_all(
                '#departments td[data-field="open"]', "cells => cells.map(c => Number(c.textContent))")
            assert sum(open_by_department) >= 1
            await page.wait_for_selector("#chart-departments[_echarts_instance_] canvas")
            await page.screenshot(path=str(ARTIFACTS / "dashboard-3-estate.png"), full_page=True)

            # English on request, remembered with the console's toggle.
            await page.click("#lang")
            assert await page.text_content("h1") == "Quality dashboard"
            assert await page.get_attribute("html", "lang") == "en"
            assert await page.evaluate("localStorage.getItem('estatedesk.lang')") == "en"
            await page.click("#crumbs a")  # back to all estates
            await page.wait_for_selector(cell(estate, "open"))
            await page.screenshot(path=str(ARTIFACTS / "dashboard-4-english.png"), full_page=True)

            # A phone: one column, no sideways scrolling of the page.
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.wait_for_timeout(300)
            widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1], widths
            await page.screenshot(path=str(ARTIFACTS / "dashboard-5-phone.png"), full_page=True)
        finally:
            await browser.close()
    assert not errors, errors
    assert not [a for a in addresses if "token=" in a], "a token went into an address"
    assert any(a.endswith("/v1/dashboard/stream") for a in addresses), "the live stream was not opened"
    assert seen_after < 2.0, f"the page took {seen_after:.2f} s to show the change"
