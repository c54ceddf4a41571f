"""Issue 16: the production routing (deploy/nginx/estatedesk.conf) is the gateway's twin —
Debian's nginx runs it in front of the embedded stack, and a request goes all the way
through: sign in, register, see the form routed, and the live stream unbuffered."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from estatedesk.embedded import free_port
from estatedesk.gateway import CONSOLE_DIST, NGINX_GATEWAY_PORT, NGINX_PORTS, nginx_config
from shared.directory import publish_directory
from tests.conftest import auth, demo_estate, token_for, wait_for_directory

pytestmark = pytest.mark.integration
DEPLOYED = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "estatedesk.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def test_the_deployed_configuration_is_current():
    assert DEPLOYED.read_text() == nginx_config(), "run `estatedesk nginx` and commit deploy/nginx/estatedesk.conf"


@pytest.fixture
def nginx(stack, tmp_path):
    """Debian's nginx with the deployed configuration, pointed at this stack's services."""
    assert Path(NGINX).exists(), "nginx is not installed (make test installs Debian's nginx)"
    port = free_port()
    console = tmp_path / "console"
    if (CONSOLE_DIST / "index.html").exists():
        shutil.copytree(CONSOLE_DIST, console)
    else:
        console.mkdir()
        (console / "index.html").write_text("<!doctype html><title>EstateDesk</title><div id=app></div>")
    site = DEPLOYED.read_text().replace("listen 8080;", f"listen 127.0.0.1:{port};")
    site = site.replace("root /srv/estatedesk/console;", f"root {console};")
    for name, default in {**NGINX_PORTS, "gateway": NGINX_GATEWAY_PORT}.items():
        site = site.replace(f"server {name}:{default};", f"server {stack.service(name).url.removeprefix('http://')};")
    (tmp_path / "estatedesk.conf").write_text(site)
    temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for folder in temp.values():
        folder.mkdir()
    main = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path {temp['body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    include {tmp_path}/estatedesk.conf;
}}
"""
    (tmp_path / "nginx.conf").write_text(main)
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/", timeout=1)
            break
        except httpx.HTTPError:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read().decode())
            import time
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(10)


async def test_one_request_through_nginx(stack, nginx):
    code = f"n{uuid.uuid4().hex[:8]}"
    await publish_directory(stack.nats_url, None, [demo_estate(code)])
    await wait_for_directory(stack, code)
    admin = token_for(stack, "admin", ["company_admin"], ["*"])
    async with httpx.AsyncClient(base_url=nginx, timeout=30) as client:
        page = await client.get("/")
        deep = await client.get("/tickets/some-ticket")  # a console route: the app's index
        assert page.status_code == deep.status_code == 200 and "<title>" in deep.text
        nothing = await client.get("/v1/no/such/api")
        assert nothing.status_code == 404 and nothing.json()["error_zh"]

        r = await client.put(f"/v1/accounts/{code}-cs01/password", json={"password": "nginx-pass-1"}, headers=auth(admin))
        assert r.status_code == 204, r.text
        session = await client.post("/v1/auth/login", json={"login": f"{code}-cs01", "password": "nginx-pass-1"})
        assert session.status_code == 200, session.text
        token = session.json()["token"]
        created = await client.post(f"/v1/estates/{code}/requests", headers=auth(token),
                                    json={"kind": "repair", "channel": "phone", "repair_class": "general",
                                          "building": "1", "description": "楼道灯不亮"})
        assert created.status_code == 201, created.text
        ticket = created.json()["id"]
        for _ in range(150):
            form = await client.get(f"/v1/estates/{code}/forms/{ticket}", headers=auth(token))
            if form.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert form.status_code == 200 and form.json()["form_number"] == created.json()["form_number"]

        qm = token_for(stack, "qm", ["quality_manager"], ["*"])
        async with client.stream("GET", f"/v1/dashboard/stream?token={qm}") as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")

            async def first_event():
                async for line in stream.aiter_lines():
                    if line.startswith("event:"):
                        return line

            # Unbuffered: the first summary arrives at once, not when a buffer fills.
            assert re.match(r"event: ?summary", await asyncio.wait_for(first_event(), 10))

        # The live lists' stream goes to the gateway, unbuffered too.
        async with client.stream("GET", f"/v1/live?estate={code}", headers=auth(token)) as stream:
            assert stream.status_code == 200

            async def ready():
                async for line in stream.aiter_lines():
                    if line.startswith("event:"):
                        return line

            assert re.match(r"event: ?ready", await asyncio.wait_for(ready(), 10))
