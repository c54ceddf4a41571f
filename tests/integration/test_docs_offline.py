"""Issue 16: `/docs` and `/redoc` work on an intranet without internet. Every service's
pages and the gateway's reference no other host, and every script, stylesheet and icon
they name loads from the same address."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.integration

SERVICES = ("intake", "dispatch", "callback", "archive", "analytics")
# src=/href= attributes and the `url:` / `spec-url` of the page's inline script.
REFERENCES = re.compile(r"""(?:src|href|url|spec-url)\s*[=:]\s*['"]([^'"]+)['"]""")


async def assert_self_contained(client: httpx.AsyncClient, page: str) -> None:
    r = await client.get(page)
    assert r.status_code == 200, f"{page}: {r.status_code}"
    references = REFERENCES.findall(r.text)
    assert references, f"{page} names no assets"
    for reference in references:
        assert not urlsplit(reference).netloc, f"{page} loads {reference} from another host"
        assert not reference.startswith("//"), reference
        asset = await client.get(reference)
        assert asset.status_code == 200, f"{page}: {reference} answered {asset.status_code}"
        if reference.endswith(".json"):
            assert asset.json()["components"]["securitySchemes"], f"{reference}: no bearer scheme (Authorize button)"


async def test_every_services_docs_load_without_a_cdn(stack):
    for name in SERVICES:
        async with httpx.AsyncClient(base_url=stack.service(name).url, timeout=30) as client:
            for page in ("/docs", "/redoc"):
                await assert_self_contained(client, page)


async def test_the_gateways_docs_show_every_service_without_a_cdn(stack):
    async with httpx.AsyncClient(base_url=stack.console_url.rstrip("/"), timeout=30) as client:
        index = await client.get("/docs")
        assert index.status_code == 200
        for name in SERVICES:
            assert f'href="/docs/{name}"' in index.text
            await assert_self_contained(client, f"/docs/{name}")
            await assert_self_contained(client, f"/redoc/{name}")
        assert (await client.get("/docs/nosuch")).status_code == 404
